"""Analysis of RPG networks: power laws (paper Sec. 5.2), feature similarity (Fig. 7) and
structured pruning (Appendix A).

The names are imported on first use (PEP 562): ``rpg_core.analysis.power_law`` needs numpy only,
and the API fits power laws without loading torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .power_law import PowerLawFit, SaturatingFit, fit_power_law
    from .pruning import (
        PruneReport,
        PruneResult,
        PruneSpec,
        count_macs,
        evaluate,
        finetune,
        prunable_blocks,
        prune_model,
        rebuild_pruned,
        run_prune,
    )
    from .similarity import (
        SimilarityCallback,
        SimilarityHistogram,
        channel_correlation,
        feature_similarity,
    )

_LAZY: dict[str, str] = {  # public name -> the submodule that defines it
    "PowerLawFit": "power_law",
    "PruneReport": "pruning",
    "PruneResult": "pruning",
    "PruneSpec": "pruning",
    "SaturatingFit": "power_law",
    "SimilarityCallback": "similarity",
    "SimilarityHistogram": "similarity",
    "channel_correlation": "similarity",
    "count_macs": "pruning",
    "evaluate": "pruning",
    "feature_similarity": "similarity",
    "finetune": "pruning",
    "fit_power_law": "power_law",
    "prunable_blocks": "pruning",
    "prune_model": "pruning",
    "rebuild_pruned": "pruning",
    "run_prune": "pruning",
}

__all__ = [
    "PowerLawFit",
    "PruneReport",
    "PruneResult",
    "PruneSpec",
    "SaturatingFit",
    "SimilarityCallback",
    "SimilarityHistogram",
    "channel_correlation",
    "count_macs",
    "evaluate",
    "feature_similarity",
    "finetune",
    "fit_power_law",
    "prunable_blocks",
    "prune_model",
    "rebuild_pruned",
    "run_prune",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

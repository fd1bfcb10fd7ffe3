"""Analysis of trained networks: power laws (paper Sec. 5.2), the adaptive
choice of a scaling study's next size (``adaptive``) and feature similarity (Fig. 7).
Pruning with fine-tuning (Appendix A) trains, so it lives in :mod:`rpg_core.training.pruning`.

The names are imported on first use (PEP 562): ``rpg_core.analysis.power_law`` needs numpy only,
and the API fits power laws without loading torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .adaptive import AdaptiveLaw, Observation, Proposal, propose
    from .power_law import PowerLawFit, SaturatingFit, fit_power_law
    from .similarity import (
        SimilarityCallback,
        SimilarityHistogram,
        channel_correlation,
        feature_similarity,
    )

_LAZY: dict[str, str] = {  # public name -> the submodule that defines it
    "AdaptiveLaw": "adaptive",
    "Observation": "adaptive",
    "Proposal": "adaptive",
    "propose": "adaptive",
    "PowerLawFit": "power_law",
    "SaturatingFit": "power_law",
    "SimilarityCallback": "similarity",
    "SimilarityHistogram": "similarity",
    "channel_correlation": "similarity",
    "feature_similarity": "similarity",
    "fit_power_law": "power_law",
}

__all__ = [
    "AdaptiveLaw",
    "Observation",
    "Proposal",
    "PowerLawFit",
    "SaturatingFit",
    "SimilarityCallback",
    "SimilarityHistogram",
    "channel_correlation",
    "feature_similarity",
    "fit_power_law",
    "propose",
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

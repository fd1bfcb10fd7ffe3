"""Analysis of RPG networks: power laws (paper Sec. 5.2), feature similarity (Fig. 7) and
structured pruning (Appendix A)."""

from __future__ import annotations

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
from .similarity import SimilarityHistogram, channel_correlation, feature_similarity

__all__ = [
    "PowerLawFit",
    "PruneReport",
    "PruneResult",
    "PruneSpec",
    "SaturatingFit",
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

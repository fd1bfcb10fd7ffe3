"""One experiment, from spec to stored result, whichever way it is started.

:func:`train_experiment` trains with :func:`rpg_core.training.engine.train` and attaches what every run's
result carries beyond the engine's: the feature-similarity histogram of the trained model
(:class:`rpg_core.analysis.similarity.SimilarityCallback`, on the validation data the run
loaded). The service's worker (``worker.runner``), ``rpg train`` and ``rpg sweep`` all call it,
so a run started from the command line stores the same result as one the service ran.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .result import ExperimentResult

SIMILARITY_IMAGES = 256  # validation images of the similarity histogram (the worker's default)


def train_experiment(
    spec: Any,
    *,
    callbacks: Sequence[Any] | None = None,
    similarity_images: int = SIMILARITY_IMAGES,
    attempt: int | None = None,
    **train_kwargs: Any,
) -> ExperimentResult:
    """Train ``spec`` and return its stored result: the engine's result plus the similarity
    histogram (None for a stopped run, or a model without ``layer3``) and ``attempt``.

    ``train_kwargs`` go to :func:`rpg_core.training.engine.train` (``checkpoint_dir``, ``data_root``,
    ``resume``, ``step_interval_s``, ``source_model``). The stored result leaves the checkpoint
    path out; a caller that wants it knows the ``checkpoint_dir`` it passed.
    """
    from ..analysis.similarity import SimilarityCallback
    from .engine import train  # imported when something is trained (torch)

    similarity = SimilarityCallback(similarity_images)
    result = train(spec, callbacks=[*(callbacks or []), similarity], **train_kwargs)
    hist = similarity.histogram
    return ExperimentResult.of(
        result, similarity=hist.as_dict() if hist is not None else None, attempt=attempt
    )

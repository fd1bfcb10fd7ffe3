"""The result contract: what a run achieved, from the engine to the database to the API.

:class:`TrainResult` is what :func:`rpg_core.training.engine.train` returns. :class:`ExperimentResult` is
the stored result (the ``results`` table's JSON and the ``result`` of
``GET /api/experiments/{id}``): a ``TrainResult`` plus the columns the API lists and sorts by,
the feature-similarity histogram (:class:`Similarity`, computed by
:class:`rpg_core.analysis.similarity.SimilarityCallback` from the validation data the run loaded)
and the attempt that produced it. :func:`result_columns` names the fields that are also columns
of the experiments table (marked :data:`COLUMN`).

Adding a field to a result: declare it in :class:`TrainResult` (with a default, so that results
stored before it still validate) and set it where the engine builds the result
(``rpg_core.training.engine._result``); the stored JSON (the ``results`` table) and the API's schema
(``ExperimentResult``) follow. A field marked :data:`COLUMN` is also a column of the experiments
table: it needs that column in ``api/models.py`` and a migration in ``api/migrations``
(``lifecycle.finish_experiment`` then fills it).

Torch-free: the API imports this module.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .health import flag_codes

__all__ = [
    "COLUMN",
    "ExperimentResult",
    "Similarity",
    "Status",
    "TrainResult",
    "finite",
    "result_columns",
]

Status = Literal["completed", "stopped"]


class _Column:
    """Marks a result field that is also a column of the experiments table."""

    def __repr__(self) -> str:
        return "COLUMN"


COLUMN = _Column()

Metric = int | float | None  # one value of a history record (NaN is stored as None)


def finite(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None (JSON columns reject them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


class TrainResult(BaseModel):
    """What a run achieved. Accuracies are fractions in [0, 1].

    Every field has a default so that a result stored before a field existed still validates.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = ""
    status: Status = "completed"
    epochs_run: int = 0  # epochs completed (including ones before a resume)
    epochs: int = 0  # epochs the spec asks for
    final_val_acc: float | None = None
    best_val_acc: Annotated[float | None, COLUMN] = None
    best_epoch: int | None = None
    final_val_top5: float | None = None  # 100+ classes only
    best_val_top5: float | None = None
    # the last epoch's running accuracy on augmented batches
    train_acc: Annotated[float | None, COLUMN] = None
    train_val_gap: float | None = None  # train_acc - final_val_acc
    params: dict[str, int] = Field(default_factory=dict)  # count_params(model).as_dict()
    flops: int | None = None  # multiply-accumulates of conv + linear layers for one image
    wall_time_s: float | None = None  # this call's time
    images_per_s: float | None = None  # this call's training throughput
    device: str | None = None
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    history: list[dict[str, Metric]] = Field(default_factory=list)  # one record per epoch
    checkpoint: str | None = None  # the checkpoint directory (not stored: a worker's path)
    spec: dict[str, Any] = Field(default_factory=dict)
    prune: dict[str, Any] | None = None  # pruning jobs: params and FLOPs before and after
    health: list[dict[str, str]] = Field(default_factory=list)  # guard-rail flags (health.py)
    # eval.ood: accuracy per shifted set ("rotation@3", "folder:objectnet-mini"; rpg_core.evaluate.ood)
    ood: dict[str, float] | None = None
    ood_acc: float | None = None  # the mean of ``ood`` over every entry but severity 0
    # eval-mode forward time per image after training, on the run's device (rpg_core.training.timing)
    inference_ms_per_image: float | None = None
    # the task (rpg_core.catalog.tasks) and its validation metrics by key (acc, pckh, depth_rmse, ...)
    task: Annotated[str, COLUMN] = "classification"
    metrics: dict[str, float | None] = Field(default_factory=dict)  # the last epoch's
    best_metrics: dict[str, float | None] = Field(default_factory=dict)  # best epoch's, per key
    # the task's primary metric (the first of its primary keys) and its last-epoch value:
    # what the power law fits and the runs list sorts by, whatever the task
    primary_metric: Annotated[str | None, COLUMN] = None
    primary_value: Annotated[float | None, COLUMN] = None
    # a few validation images with predictions, for the run page (rpg_core.tasks.Task.samples):
    # pose, {"image": PNG base64, "pred": [[x, y]...], "true": [[x, y, visible]...]};
    # multitask, {"image", "depth_pred", "depth_true", "normal_pred", "normal_true"}: PNG base64
    samples: list[dict[str, Any]] | None = None
    # pose, multitask: the metrics of a constant prediction from the training targets (the mean
    # pose, the per-pixel mean maps), {"val_<key>": value}: the dense tasks' chance level
    baseline: dict[str, float] | None = None
    # the cost of a run, on one axis with the other ways to shrink a network (issue 24,
    # docs/METHODS.md): the spec's method (None: no method section), its budget as a count of
    # backbone parameters, the backbone parameters the network really has (a pruned network's
    # non-zero ones: params["backbone"]), and what training it took: every epoch (the dense
    # epochs and a pruning method's fine-tuning epochs) and their wall time (over resumes too)
    method: str | None = None
    budget: int | None = None
    backbone: int | None = None
    total_epochs: int | None = None
    total_wall_s: float | None = None
    # a pruning method's dense network was another run's (the sweep's dense cache): its epochs
    # and seconds are counted in total_epochs / total_wall_s all the same (what the method costs)
    dense_reused: bool | None = None

    @property
    def stopped(self) -> bool:
        return self.status == "stopped"

    @property
    def flagged(self) -> bool:
        """True when a guard rail flagged the run (diverged, near chance)."""
        return bool(self.health)

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump()


class Similarity(BaseModel):
    """The layer's feature-similarity histogram (rpg_core.analysis.similarity, paper Fig. 7):
    ``fractions[i]`` of the channel pairs have ``|correlation|`` in
    ``[bin_edges[i], bin_edges[i + 1])``."""

    model_config = ConfigDict(extra="allow")

    layer: str | None = None
    channels: int | None = None
    images: int | None = None
    samples_per_channel: int | None = None
    pairs: int | None = None
    constant_channels: int | None = None
    bin_edges: list[float] = Field(default_factory=list)
    fractions: list[float] = Field(default_factory=list)
    mean: float | None = None
    median: float | None = None
    statistic: str | None = None


class ExperimentResult(TrainResult):
    """The stored result of a finished experiment: a :class:`TrainResult` plus the columns the
    API lists and sorts by, the similarity histogram and the attempt. Build it with :meth:`of`.

    Keys it does not know (written by a newer or an older worker) are kept and served as they are.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    val_acc: Annotated[float | None, COLUMN] = None  # final_val_acc
    backbone_params: Annotated[int | None, COLUMN] = None  # params["backbone"]
    total_params: Annotated[int | None, COLUMN] = None  # params["total"]
    train_time_s: Annotated[float | None, COLUMN] = None  # sum of the epochs' seconds
    # the guard-rail flags' codes, comma-separated (rpg_core.training.health.flag_codes)
    flags: Annotated[str | None, COLUMN] = None
    similarity: Similarity | None = None  # None: not computed (no "layer3", or an old run)
    attempt: int | None = None  # the job's attempt that produced it

    @model_validator(mode="before")
    @classmethod
    def _finite(cls, data: Any) -> Any:
        return finite(data) if isinstance(data, dict) else data

    @classmethod
    def of(
        cls,
        result: TrainResult,
        *,
        similarity: Similarity | dict[str, Any] | None = None,
        attempt: int | None = None,
    ) -> ExperimentResult:
        """The stored result of the engine's ``result`` (its checkpoint path left out)."""
        data = result.model_dump(exclude={"checkpoint"})
        return cls.model_validate(
            {
                **data,
                "val_acc": result.final_val_acc,
                "backbone_params": result.params.get("backbone"),
                "total_params": result.params.get("total"),
                "train_time_s": sum(float(h.get("seconds") or 0.0) for h in result.history),
                "flags": flag_codes(result.health),
                "similarity": similarity,
                "attempt": attempt,
            }
        )

    def stored(self) -> dict[str, Any]:
        """The JSON stored in the ``results`` table: the fields that were set."""
        out: dict[str, Any] = self.model_dump(mode="json", exclude_unset=True)
        return out

    def columns(self) -> dict[str, Any]:
        """The experiments table's columns this result sets (None values left out)."""
        return {k: v for k in result_columns() if (v := getattr(self, k)) is not None}


def result_columns() -> tuple[str, ...]:
    """The result fields that are also columns of the experiments table."""
    fields = ExperimentResult.model_fields
    return tuple(name for name, f in fields.items() if COLUMN in f.metadata)

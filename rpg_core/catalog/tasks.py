"""The task registry: what a spec's ``task`` names, known without importing torch.

A task says which datasets and architectures it can use, how its sub-networks may share
weights (``model.sharing``), its metrics, its primary metric(s) and whether higher or lower is
better. The spec validates ``task`` / ``data.dataset`` / ``model.arch`` / ``model.sharing``
against it; the engine asks :mod:`rpg_core.tasks` (torch) for the task's loss and metrics; the
result, the API's power law and the dashboard read the primary metric from here.

Built-in tasks (``rpg tasks`` lists them):

- ``classification``: top-1 accuracy (higher is better). Every architecture that is not a
  stacked one (``resnet18``, ``resnet34``, ``mdeq`` and plugins).
- ``pose`` (paper Table 4): PCKh@0.5 (higher). ``hourglass``: stacked hourglass sub-networks,
  ``model.sharing`` ``none | full | rpg``.
- ``multitask`` (paper Table 5): depth RMSE and surface-normal RMSE (both lower). ``encdec``:
  stacked encoder-decoders predicting both maps, ``model.sharing``
  ``single | reuse | reuse-new-bn | rpg``.

A metric ``key`` is what a history record stores as ``val_<key>`` (``val_acc``, ``val_pckh``,
``val_depth_rmse``, ``val_normal_rmse``) and what a result's ``metrics`` maps.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..exceptions import RPGConfigError
from .archs import archs_of_task
from .datasets import dataset_pattern, datasets_help

__all__ = [
    "CLASSIFICATION_DATASETS",
    "DEFAULT_TASK",
    "TASKS",
    "MetricInfo",
    "TaskInfo",
    "check_task",
    "list_tasks",
    "metric_info",
    "task_info",
    "task_of_arch",
    "task_of_dataset",
]


@dataclass(frozen=True)
class MetricInfo:
    """One metric of a task: its key, how to show it and which way is better.

    The one owner of a metric's direction: whatever compares, ranks or fits values of a metric
    (the engine's best epoch, the guard rails' near-chance, the API's tables and power laws, the
    dashboard's error axis) asks :meth:`better`, :meth:`best` or :meth:`as_error`."""

    key: str  # history: val_<key>; result.metrics[key]
    label: str  # axis and table label
    higher_is_better: bool
    unit: str = ""  # "" for a fraction in [0, 1]

    @property
    def direction(self) -> str:
        return "higher" if self.higher_is_better else "lower"

    def better(self, a: float, b: float) -> bool:
        """Whether ``a`` is better than ``b``."""
        return a > b if self.higher_is_better else a < b

    def best(self, values: Iterable[float]) -> float:
        """The best of ``values`` (the highest or the lowest); ValueError when empty."""
        it = iter(values)
        try:
            top = next(it)
        except StopIteration:
            raise ValueError(f"metric {self.key}: no values to choose the best of") from None
        for v in it:
            if self.better(v, top):
                top = v
        return top

    def as_error(self, value: float) -> float:
        """The error a power law fits (lower is better, 0 is perfect): ``1 - value`` for a
        higher-is-better fraction (accuracy, PCKh), the value itself for a lower-is-better one
        (an RMSE)."""
        return 1.0 - value if self.higher_is_better else value

    def from_error(self, error: float) -> float:
        """The inverse of :meth:`as_error`: the metric's value at a fitted error."""
        return 1.0 - error if self.higher_is_better else error

    def fitted(self) -> str:
        """What a power law of this metric fits, in words: ``1 - pckh`` or ``depth_rmse``."""
        return f"1 - {self.key}" if self.higher_is_better else self.key

    def as_dict(self) -> dict[str, object]:
        return {
            "key": self.key,
            "label": self.label,
            "higher_is_better": self.higher_is_better,
            "direction": self.direction,
            "unit": self.unit,
        }


@dataclass(frozen=True)
class TaskInfo:
    """A task: the datasets and architectures it takes, its sharing variants and its metrics."""

    name: str
    description: str
    datasets: str  # a regex (fullmatch) over data.dataset keys
    datasets_help: str  # the same, in words, for error messages
    archs: tuple[str, ...] | None  # None: every architecture no other task claims
    sharing: tuple[str, ...]  # model.sharing values (empty: the task has no sub-networks)
    default_sharing: str | None
    metrics: tuple[MetricInfo, ...]
    primary: tuple[str, ...]  # the primary metric keys; the first is what a power law fits
    train_metric: str | None  # the metric a training pass also tracks (history: train_<key>)
    default_dataset: str = "digits"  # data.dataset when a spec of this task names none
    # what the task's runs can do beyond training: prune jobs and eval.ood sets (classifiers)
    prune_and_ood: bool = False
    top5: bool = False  # its evaluation also reports top-5 accuracy (100 classes or more)
    pictures: bool = False  # its result holds validation pictures with predictions (run page)
    # the experiments table's own columns of its primary metric, from before tasks existed
    # (classification: best_val_acc, val_acc); the first is the analysis' default, the last
    # holds the final value of the primary metric. Empty: the metrics live in the results.
    metric_columns: tuple[str, ...] = ()
    predict_with: str = "predict"  # the rpg_core function that predicts with its models

    @property
    def primary_metric(self) -> MetricInfo:
        return self.metric(self.primary[0])

    @property
    def default_metric(self) -> str:
        """What an analysis reads when no metric is asked for."""
        return self.metric_columns[0] if self.metric_columns else self.primary[0]

    @property
    def analysis_metrics(self) -> tuple[str, ...]:
        """The metrics an analysis can read: the metric columns, then the metric keys."""
        return (*self.metric_columns, *(m.key for m in self.metrics))

    def column_of(self, metric: str) -> str | None:
        """The experiments table's column holding ``metric`` (None: read from the results)."""
        if metric in self.metric_columns:
            return metric
        if self.metric_columns and metric == self.primary[0]:
            return self.metric_columns[-1]
        return None

    def metric_info(self, metric: str) -> MetricInfo:
        """The MetricInfo of an analysis metric (a metric column is the primary metric)."""
        return self.primary_metric if metric in self.metric_columns else self.metric(metric)

    def metric(self, key: str) -> MetricInfo:
        for m in self.metrics:
            if m.key == key:
                return m
        raise RPGConfigError(
            f"metric: task {self.name!r} has no metric {key!r}; "
            f"use one of {', '.join(m.key for m in self.metrics)}"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "description": self.description,
            "datasets": self.datasets_help,
            "archs": list(self.archs) if self.archs is not None else None,
            "sharing": list(self.sharing),
            "default_sharing": self.default_sharing,
            "metrics": [m.as_dict() for m in self.metrics],
            "primary": list(self.primary),
        }


CLASSIFICATION_DATASETS = dataset_pattern("classification")  # fullmatch
# the task of a spec (and of an architecture) that names none; files of its models keep the
# {model, rpg} header that readers from before tasks accept
DEFAULT_TASK = "classification"

ACC = MetricInfo("acc", "top-1 accuracy", True)
PCKH = MetricInfo("pckh", "PCKh@0.5", True)
DEPTH_RMSE = MetricInfo("depth_rmse", "depth RMSE", False, "depth units")
NORMAL_RMSE = MetricInfo("normal_rmse", "normal RMSE", False, "unit-normal components")

TASKS: dict[str, TaskInfo] = {
    "classification": TaskInfo(
        name="classification",
        description="image classification (paper Tables 1-3, 6, 7)",
        datasets=CLASSIFICATION_DATASETS,
        datasets_help=datasets_help("classification"),
        archs=None,
        sharing=(),
        default_sharing=None,
        metrics=(ACC,),
        primary=("acc",),
        train_metric="acc",
        prune_and_ood=True,
        top5=True,
        metric_columns=("best_val_acc", "val_acc"),
    ),
    "pose": TaskInfo(
        name="pose",
        description="human pose estimation by stacked hourglass sub-networks (paper Table 4)",
        datasets=dataset_pattern("pose"),
        datasets_help=f"{datasets_help('pose')} (an MPII-style folder under the data root)",
        archs=archs_of_task("pose"),
        sharing=("none", "full", "rpg"),
        default_sharing="rpg",
        metrics=(PCKH,),
        primary=("pckh",),
        train_metric=None,
        default_dataset="synthetic-pose",
        pictures=True,
        predict_with="predict_keypoints",
    ),
    "multitask": TaskInfo(
        name="multitask",
        description="depth + surface-normal regression by stacked encoder-decoders (paper Table 5)",
        datasets=dataset_pattern("multitask"),
        datasets_help=f"{datasets_help('multitask')} (an indoor-scene folder of RGB, depth "
        "and normal images under the data root)",
        archs=archs_of_task("multitask"),
        sharing=("single", "reuse", "reuse-new-bn", "rpg"),
        default_sharing="rpg",
        metrics=(DEPTH_RMSE, NORMAL_RMSE),
        primary=("depth_rmse", "normal_rmse"),
        train_metric=None,
        default_dataset="synthetic-scenes",
        pictures=True,
        predict_with="predict_maps",
    ),
}


def list_tasks() -> list[str]:
    """The task names, in registry order."""
    return list(TASKS)


def task_info(name: str) -> TaskInfo:
    try:
        return TASKS[name]
    except KeyError:
        raise RPGConfigError(f"task: unknown {name!r}; use one of {', '.join(TASKS)}") from None


def metric_info(key: str) -> MetricInfo:
    """A metric by key, over every task."""
    for t in TASKS.values():
        for m in t.metrics:
            if m.key == key:
                return m
    keys = sorted({m.key for t in TASKS.values() for m in t.metrics})
    raise RPGConfigError(f"metric: unknown {key!r}; use one of {', '.join(keys)}")


def _claimed_archs() -> set[str]:
    return {a for t in TASKS.values() if t.archs is not None for a in t.archs}


def task_of_arch(arch: str) -> str:
    """The task an architecture serves (``classification`` for any unclaimed one)."""
    for t in TASKS.values():
        if t.archs is not None and arch in t.archs:
            return t.name
    return DEFAULT_TASK


def task_of_dataset(dataset: str) -> str | None:
    """The task a dataset key belongs to, or None."""
    for t in TASKS.values():
        if re.fullmatch(t.datasets, dataset):
            return t.name
    return None


def check_task(task: str, *, dataset: str | None = None, arch: str | None = None) -> None:
    """Raise ValueError naming the task and the dataset or architecture it cannot use."""
    info = task_info(task)
    if dataset is not None and not re.fullmatch(info.datasets, dataset):
        other = task_of_dataset(dataset)
        hint = f" ({dataset!r} is a {other} dataset)" if other else ""
        raise ValueError(
            f"task {task!r} cannot use data.dataset {dataset!r}{hint}; use "
            f"{info.datasets_help}, or set task to the dataset's task"
        )
    if arch is not None:
        ok = arch in info.archs if info.archs is not None else arch not in _claimed_archs()
        if not ok:
            allowed = (
                ", ".join(info.archs)
                if info.archs is not None
                else "any architecture but " + ", ".join(sorted(_claimed_archs()))
            )
            raise ValueError(
                f"task {task!r} cannot use model.arch {arch!r} (a {task_of_arch(arch)} "
                f"architecture); use {allowed}"
            )

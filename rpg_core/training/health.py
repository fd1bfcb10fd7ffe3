"""Guard rails: flags on a finished run whose numbers should not be trusted as they are.

- ``diverged``: the last evaluation's loss is not finite, or far above both the training loss
  and the loss of a uniform guess (``ln C``): the network's evaluation-mode outputs blew up.
- ``near-chance``: a classifier's final validation accuracy is within ``CHANCE_SIGMAS``
  binomial standard deviations (and at least a quarter) of what always guessing the most
  frequent class scores (:func:`check_run`); a dense task's (pose, multitask) validation metric is no
  better than a constant prediction from the training targets (:func:`check_baseline`, in each
  metric's own direction).

A flagged run is stored with its flags, shown with a badge by the CLI and the dashboard, and
left out of power-law fits unless they are asked to include it. A run whose training loss
becomes NaN or inf does not get here: it fails with :class:`~rpg_core.RPGTrainingError`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from ..catalog.tasks import MetricInfo

CHANCE_SIGMAS = 3.0  # binomial standard deviations above chance that still count as chance
DIVERGED_LOSS_RATIO = 3.0  # val loss above this many times the train loss ...
DIVERGED_UNIFORM_RATIO = 3.0  # ... and above this many times a uniform guess's loss (ln C)


@dataclass(frozen=True)
class HealthFlag:
    code: str  # "diverged" | "near-chance"
    message: str  # one sentence a user can act on

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def chance_accuracy(label_counts: list[int]) -> float:
    """What always answering the most frequent class scores."""
    total = sum(label_counts)
    return max(label_counts) / total if total else 0.0


def near_chance_threshold(chance: float, n: int) -> float:
    """The accuracy at or below which a result on ``n`` images counts as chance."""
    sd = math.sqrt(max(chance * (1 - chance), 1e-12) / max(n, 1))
    return chance + max(CHANCE_SIGMAS * sd, 0.25 * chance)


def check_run(
    history: list[dict[str, float]], *, num_classes: int, val_label_counts: list[int]
) -> list[HealthFlag]:
    """The flags of a run from its per-epoch history (empty: nothing suspicious)."""
    if not history:
        return []
    last = history[-1]
    flags: list[HealthFlag] = []
    val_loss, train_loss = last.get("val_loss"), last.get("train_loss")
    uniform = math.log(max(num_classes, 2))
    if val_loss is not None and train_loss is not None:
        if not math.isfinite(val_loss) or (
            val_loss > DIVERGED_LOSS_RATIO * train_loss
            and val_loss > DIVERGED_UNIFORM_RATIO * uniform
        ):
            flags.append(
                HealthFlag(
                    "diverged",
                    f"validation loss {val_loss:.4g} against training loss {train_loss:.4g} at "
                    f"epoch {int(last['epoch'])}: evaluation blew up; lower train.lr, keep "
                    f"train.precise_bn on, or train longer",
                )
            )
    acc = last.get("val_acc")
    if acc is not None and val_label_counts:
        chance = chance_accuracy(val_label_counts)
        limit = near_chance_threshold(chance, sum(val_label_counts))
        if acc <= limit:
            flags.append(
                HealthFlag(
                    "near-chance",
                    f"validation accuracy {100 * acc:.1f}% is at chance ({100 * chance:.1f}% "
                    f"for the most frequent class; anything up to {100 * limit:.1f}% counts): "
                    f"train longer, check train.lr, or check the data",
                )
            )
    return flags


def check_baseline(
    last: dict[str, Any], baseline: dict[str, float], metrics: Iterable[MetricInfo]
) -> list[HealthFlag]:
    """A dense task's (pose, multitask) ``near-chance``: a validation metric no better than a
    constant prediction from the training targets scores (``baseline``: ``{"val_<key>": v}``,
    :meth:`rpg_core.tasks.Task.baseline`); ``metrics``: the task's (their direction decides)."""
    by_key = {m.key: m for m in metrics}
    worse = []
    for key, base in baseline.items():
        value = last.get(key)
        metric = by_key.get(key.removeprefix("val_"))
        if value is None or metric is None:
            continue
        name = metric.key
        if not metric.better(value, base):
            worse.append(f"{name} {value:.4g} against {base:.4g}")
    if not worse:
        return []
    return [
        HealthFlag(
            "near-chance",
            f"validation {'; '.join(worse)} for a constant prediction (the mean training "
            f"pose or maps): the network learnt nothing from its inputs; train longer, "
            f"check train.lr, or check the data",
        )
    ]


def flag_codes(flags: list[dict[str, Any]] | None) -> str | None:
    """The flags' codes joined by commas (what the database stores), None when there are none."""
    if not flags:
        return None
    return ",".join(sorted({str(f["code"]) for f in flags}))

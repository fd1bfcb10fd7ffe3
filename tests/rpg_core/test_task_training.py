"""Each task trains end to end through the engine on its synthetic data: the primary metric
improves, the result names the task's metrics, and the pictures for the run page come back."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from rpg_core._tasks import task_info
from rpg_core.engine import train
from rpg_core.exceptions import RPGConfigError
from rpg_core.spec import parse_spec


def _spec(task: str, dataset: str, sharing: str, **train_kw: Any) -> dict[str, Any]:
    return {
        "name": f"{task}-{sharing}",
        "task": task,
        "model": {"stacks": 2 if sharing != "single" else 1, "sharing": sharing, "width": 0.5},
        "data": {"dataset": dataset, "num_train": 256, "num_val": 64, "image_size": 32},
        "train": {"epochs": 3, "batch_size": 32, **train_kw},
    }


@pytest.mark.parametrize(
    ("task", "dataset", "sharing"),
    [("pose", "synthetic-pose", "rpg"), ("multitask", "synthetic-scenes", "rpg")],
)
def test_the_primary_metric_improves_over_a_short_run(
    task: str, dataset: str, sharing: str
) -> None:
    result = train(_spec(task, dataset, sharing))
    info = task_info(task)
    key = f"val_{info.primary_metric.key}"
    first, last = result.history[0][key], result.history[-1][key]
    assert first is not None and last is not None
    assert info.primary_metric.better(last, first), (first, last)
    assert result.task == task and result.primary_metric == info.primary_metric.key
    assert result.primary_value == last == result.metrics[info.primary_metric.key]
    assert set(result.metrics) == {m.key for m in info.metrics}
    assert result.final_val_acc is None and "train_acc" not in result.history[-1]
    assert result.health == []
    assert result.samples and len(result.samples) == 3
    png = base64.b64decode(result.samples[0]["image"])
    assert png.startswith(b"\x89PNG")


def test_a_task_with_a_dataset_of_another_task_is_refused_naming_both() -> None:
    with pytest.raises(RPGConfigError, match=r"task 'pose' cannot use data.dataset 'digits'"):
        parse_spec({"task": "pose", "data": {"dataset": "digits"}})
    with pytest.raises(RPGConfigError, match=r"task 'multitask' cannot use model.arch 'resnet18'"):
        parse_spec({"task": "multitask", "model": {"arch": "resnet18"}})
    with pytest.raises(RPGConfigError, match=r"sharing: arch 'hourglass' \(pose\) takes sharing"):
        parse_spec({"task": "pose", "model": {"sharing": "reuse"}})

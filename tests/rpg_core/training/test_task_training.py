"""Each task trains end to end through the engine on its synthetic data: the primary metric
improves, the result names the task's metrics, and the pictures for the run page come back."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import torch

from rpg_core.catalog.tasks import task_info
from rpg_core.exceptions import RPGConfigError
from rpg_core.spec import parse_spec
from rpg_core.training.engine import train


def _spec(task: str, dataset: str, sharing: str, **train_kw: Any) -> dict[str, Any]:
    return {
        "name": f"{task}-{sharing}",
        "task": task,
        "model": {"stacks": 2 if sharing != "single" else 1, "sharing": sharing, "width": 0.5},
        "data": {"dataset": dataset, "num_train": 256, "num_val": 64, "image_size": 48},
        "train": {"epochs": 3, "batch_size": 16, **train_kw},
    }


@pytest.mark.slow
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
    # 48 steps learn something, not yet more than the mean pose (the twins in
    # docs/BENCHMARKS.md train past it); never a diverged run
    assert "diverged" not in {f["code"] for f in result.health}
    assert result.baseline is not None and set(result.baseline) == {
        f"val_{m.key}" for m in info.metrics
    }
    assert result.train_val_gap is None
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
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


def test_the_constant_prediction_baselines_by_hand() -> None:
    from rpg_core.tasks import get_task

    pose = get_task("pose")
    train = {
        "joints": torch.tensor([[[10.0, 10.0]], [[14.0, 10.0]]]),  # mean (12, 10)
        "visible": torch.ones(2, 1),
        "head": torch.ones(2),
    }
    val = {
        "joints": torch.tensor([[[12.0, 11.0]], [[20.0, 10.0]]]),  # 1 px and 8 px away
        "visible": torch.ones(2, 1),
        "head": torch.tensor([4.0, 4.0]),  # within 2 px counts
    }
    assert pose.baseline(train, val) == {"val_pckh": 0.5}
    multi = get_task("multitask")
    up = torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1)
    mt_train = {
        "depth": torch.tensor([1.0, 3.0]).view(2, 1, 1, 1),  # mean 2
        "normal": up.expand(2, 3, 1, 1),
        "mask": torch.ones(2, 1, 1, 1),
    }
    mt_val = {
        "depth": torch.tensor([[[[5.0]]]]),
        "normal": up.clone(),
        "mask": torch.ones(1, 1, 1, 1),
    }
    out = multi.baseline(mt_train, mt_val)
    assert out["val_depth_rmse"] == pytest.approx(3.0) and out["val_normal_rmse"] == 0.0


def test_a_dense_run_no_better_than_the_constant_prediction_is_flagged() -> None:
    from rpg_core.catalog.tasks import task_info
    from rpg_core.training.health import check_baseline

    up = task_info("pose").metrics + task_info("multitask").metrics
    assert check_baseline({"val_pckh": 0.4}, {"val_pckh": 0.1}, up) == []
    (flag,) = check_baseline({"val_pckh": 0.05}, {"val_pckh": 0.1}, up)
    assert flag.code == "near-chance" and "pckh 0.05 against 0.1" in flag.message
    last = {"val_depth_rmse": 1.2, "val_normal_rmse": 0.3}
    (flag,) = check_baseline(last, {"val_depth_rmse": 1.16, "val_normal_rmse": 0.41}, up)
    assert "depth_rmse 1.2 against 1.16" in flag.message and "normal" not in flag.message

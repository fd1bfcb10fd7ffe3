"""Guard rails: divergence and near-chance results are flagged; healthy runs are not."""

from __future__ import annotations

import math

import pytest

from rpg_core import train
from rpg_core.training.health import check_run, flag_codes, near_chance_threshold

TEN = [36] * 10  # a balanced 10-class validation set of 360 images (digits' size)


def _epoch(val_acc: float, val_loss: float = 0.5, train_loss: float = 0.4) -> dict[str, float]:
    return {"epoch": 3, "val_acc": val_acc, "val_loss": val_loss, "train_loss": train_loss}


def test_a_healthy_run_has_no_flag() -> None:
    assert check_run([_epoch(0.93)], num_classes=10, val_label_counts=TEN) == []
    # overfitting is not divergence: val loss 30x a tiny train loss, still below 3 ln 10
    assert check_run([_epoch(0.9, 0.3, 0.01)], num_classes=10, val_label_counts=TEN) == []


@pytest.mark.parametrize("acc", [0.10, 0.106, 0.12])
def test_chance_accuracy_is_flagged(acc: float) -> None:
    (flag,) = check_run([_epoch(acc)], num_classes=10, val_label_counts=TEN)
    assert flag.code == "near-chance" and "chance" in flag.message


def test_the_chance_threshold_follows_the_majority_class_and_the_sample_size() -> None:
    assert near_chance_threshold(0.1, 360) == pytest.approx(0.1 + 3 * math.sqrt(0.09 / 360))
    assert near_chance_threshold(0.1, 10**6) == pytest.approx(0.125)  # at least chance * 1.25
    # an imbalanced set: always answering the majority class scores 80%
    (flag,) = check_run([_epoch(0.81)], num_classes=2, val_label_counts=[80, 20])
    assert flag.code == "near-chance"


@pytest.mark.parametrize(
    ("val_loss", "train_loss"), [(55_969.0, 3.0), (497.3, 2.29), (math.inf, 1.0), (math.nan, 1.0)]
)
def test_evaluation_blow_up_is_flagged(val_loss: float, train_loss: float) -> None:
    flags = check_run([_epoch(0.5, val_loss, train_loss)], num_classes=10, val_label_counts=TEN)
    assert [f.code for f in flags] == ["diverged"]
    assert "validation loss" in flags[0].message and "train.lr" in flags[0].message


def test_flag_codes_is_what_the_database_stores() -> None:
    assert flag_codes([]) is None
    assert flag_codes([{"code": "near-chance", "message": "x"}, {"code": "diverged"}]) == (
        "diverged,near-chance"
    )


def test_a_run_that_learns_nothing_is_flagged_by_the_engine() -> None:
    """lr 1e-9: the network stays at its random init, so validation accuracy is chance."""
    spec = {
        "model": {"arch": "resnet18", "width": 0.125},
        "data": {
            "dataset": "synthetic",
            "num_classes": 4,
            "num_train": 64,
            "num_val": 200,
            "image_size": 8,
        },  # fmt: skip
        "train": {"epochs": 1, "batch_size": 32, "lr": 1e-9},
    }
    result = train(spec, step_interval_s=1e9)
    assert result.flagged
    assert "near-chance" in {f["code"] for f in result.health}

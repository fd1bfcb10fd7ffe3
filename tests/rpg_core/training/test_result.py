"""The result contract: TrainResult -> ExperimentResult (the stored JSON) -> back, unchanged."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from pydantic import ValidationError

from rpg_core.training.result import (
    ExperimentResult,
    Similarity,
    TrainResult,
    finite,
    result_columns,
)


def train_result(**over: Any) -> TrainResult:
    values: dict[str, Any] = {
        "name": "r",
        "status": "completed",
        "epochs_run": 2,
        "epochs": 2,
        "final_val_acc": 0.5,
        "best_val_acc": 0.6,
        "best_epoch": 1,
        "final_val_top5": None,
        "best_val_top5": None,
        "train_acc": 0.7,
        "train_val_gap": 0.2,
        "params": {"backbone": 1200, "generator": 30, "head": 44, "total": 1274},
        "flops": 9000,
        "wall_time_s": 3.5,
        "images_per_s": 100.0,
        "device": "cpu",
        "hyperparameters": {"lr": 0.1, "augment": "none"},
        "history": [
            {"epoch": 1, "train_loss": 1.0, "val_acc": 0.6, "seconds": 1.25},
            {"epoch": 2, "train_loss": float("nan"), "val_acc": 0.5, "seconds": 2.0},
        ],
        "checkpoint": "/srv/worker/ckpt",
        "spec": {"name": "r"},
        "health": [{"code": "near-chance", "message": "m"}, {"code": "diverged", "message": "x"}],
        "ood": {"rotation@1": 0.4, "rotation@3": 0.2},
        "ood_acc": 0.3,
    }
    return TrainResult(**{**values, **over})


SIM = {
    "layer": "layer3",
    "channels": 4,
    "images": 8,
    "samples_per_channel": 32,
    "pairs": 6,
    "constant_channels": 0,
    "bin_edges": [0.0, 0.5, 1.0],
    "fractions": [0.5, 0.5],
    "mean": 0.5,
    "median": 0.5,
    "statistic": "|Pearson correlation| between channels, off-diagonal pairs",
}


def test_the_stored_result_derives_its_columns_from_the_train_result() -> None:
    r = ExperimentResult.of(train_result(), similarity=SIM, attempt=2)
    assert r.val_acc == 0.5 and r.best_val_acc == 0.6 and r.train_acc == 0.7
    assert r.backbone_params == 1200 and r.total_params == 1274
    assert r.train_time_s == 3.25
    assert r.flags == "diverged,near-chance"
    assert r.attempt == 2 and r.similarity is not None and r.similarity.fractions == [0.5, 0.5]
    assert r.columns() == {
        "val_acc": 0.5,
        "best_val_acc": 0.6,
        "train_acc": 0.7,
        "backbone_params": 1200,
        "total_params": 1274,
        "train_time_s": 3.25,
        "flags": "diverged,near-chance",
        "task": "classification",
    }


def test_the_columns_are_the_marked_fields() -> None:
    assert set(result_columns()) == {
        "val_acc",
        "best_val_acc",
        "train_acc",
        "backbone_params",
        "total_params",
        "train_time_s",
        "flags",
        "task",
        "primary_metric",
        "primary_value",
    }
    for name in result_columns():
        assert name in ExperimentResult.model_fields


def test_the_stored_json_round_trips_without_the_workers_path_or_nan() -> None:
    r = ExperimentResult.of(train_result(), similarity=SIM, attempt=1)
    stored = json.loads(json.dumps(r.stored(), allow_nan=False))  # what a JSON column holds
    assert "checkpoint" not in stored
    assert stored["history"][1]["train_loss"] is None  # NaN is stored as null
    assert stored["history"][0]["epoch"] == 1 and isinstance(stored["history"][0]["epoch"], int)
    back = ExperimentResult.model_validate(stored)
    assert back == r
    for name in TrainResult.model_fields:
        if name != "checkpoint":
            assert name in stored, name


def test_an_old_result_without_the_newer_fields_validates_with_defaults() -> None:
    old = {
        "name": "old",
        "status": "completed",
        "final_val_acc": 0.4,
        "params": {"backbone": 10, "total": 12},
        "history": [{"epoch": 1, "val_acc": 0.4}],
        "val_acc": 0.4,
        "similarity": {"bin_edges": [0.0, 1.0], "fractions": [1.0]},
    }
    r = ExperimentResult.model_validate(old)
    assert r.ood is None and r.ood_acc is None and r.health == [] and r.prune is None
    assert r.attempt is None and r.flags is None
    assert r.similarity == Similarity(bin_edges=[0.0, 1.0], fractions=[1.0])
    assert r.stored() == old  # nothing it lacked is written back


def test_a_stored_key_the_contract_does_not_know_is_kept() -> None:
    stored = {**ExperimentResult.of(train_result(), attempt=1).stored(), "from_a_newer_worker": 1}
    assert ExperimentResult.model_validate(stored).stored() == stored


def test_the_engine_cannot_set_a_field_the_contract_lacks() -> None:
    with pytest.raises(ValidationError, match="inference_mss"):
        train_result(inference_mss=1.5)  # a typo fails instead of being stored unnoticed


def test_finite_replaces_nan_and_infinities_at_any_depth() -> None:
    out = finite({"a": [1.0, math.inf, {"b": -math.inf}], "c": math.nan, "d": 2})
    assert out == {"a": [1.0, None, {"b": None}], "c": None, "d": 2}


def test_the_cost_fields_are_optional_and_round_trip() -> None:
    """issue 24: method, budget, backbone, total_epochs and total_wall_s; results stored before
    them validate with None and are written back without them."""
    old = {"name": "old", "status": "completed", "params": {"backbone": 10, "total": 12}}
    r = ExperimentResult.model_validate(old)
    assert (r.method, r.budget, r.backbone, r.total_epochs, r.total_wall_s) == (None,) * 5
    assert r.stored() == old
    cost = {"method": "prune-filters", "budget": 17434, "backbone": 17400, "total_epochs": 5,
            "total_wall_s": 12.5}  # fmt: skip
    new = ExperimentResult.of(train_result(**cost), attempt=1)
    back = ExperimentResult.model_validate(json.loads(json.dumps(new.stored())))
    assert {k: getattr(back, k) for k in cost} == cost

"""A pruning job is an experiment like any other: its spec points at the run it prunes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from torch import nn

from rpg_core import RPGConfigError, parse_spec, save_compact, train
from rpg_core.training.engine import Callback

DATA = {"dataset": "digits", "image_size": 8, "augment": False}
TRAIN = {"epochs": 3, "lr": 0.05, "batch_size": 64, "milestones": [2]}


def trained_source() -> tuple[nn.Module, float]:
    kept: dict[str, Any] = {}

    class Keep(Callback):
        def on_train_end(self, result: Any, model: nn.Module) -> None:
            kept["model"] = model

    spec = {
        "model": {"arch": "resnet18", "width": 0.25, "in_channels": 1},
        "rpg": {"ring_size": 0.05},
        "data": DATA,
        "train": TRAIN,
    }
    result = train(spec, callbacks=[Keep()])
    assert result.best_val_acc is not None
    return kept["model"], result.best_val_acc


def test_prune_job_prunes_finetunes_and_reports(tmp_path: Path) -> None:
    source, source_acc = trained_source()
    spec = {"name": "pruned", "prune": {"source": 1, "fraction": 0.3}, "data": DATA}
    spec["train"] = {**TRAIN, "epochs": 1, "lr": 0.01, "milestones": []}
    with pytest.raises(RPGConfigError, match="prune.source: experiment 1 is resolved"):
        train(spec)
    result = train(spec, source_model=source, checkpoint_dir=tmp_path / "ckpt")
    assert result.prune is not None
    report = result.prune["report"]
    assert report["fraction_removed"] == pytest.approx(0.3, abs=0.05)
    assert result.params["total"] == report["total_after"] < report["total_before"]
    assert result.best_val_acc is not None and result.best_val_acc > source_acc - 0.1

    # the same job from a .rpg file under <data root>/models/
    (tmp_path / "data" / "models").mkdir(parents=True)
    save_compact(source, tmp_path / "data" / "models" / "source.rpg")
    spec["prune"] = {"source": "source.rpg", "fraction": 0.3}
    again = train(spec, data_root=tmp_path / "data")
    assert again.prune is not None and again.prune["report"] == report


def test_prune_spec_errors() -> None:
    with pytest.raises(RPGConfigError, match="omit rpg"):
        parse_spec({"prune": {"source": 3}, "rpg": {"ring_size": 10}})
    with pytest.raises(RPGConfigError, match="prune.finetune_epochs"):
        parse_spec({"prune": {"source": 3, "finetune_epochs": 2}})
    with pytest.raises(RPGConfigError, match="prune.source"):
        parse_spec({"prune": {"source": "../../etc/passwd"}})

"""``rpg train SPEC.yaml``: trains locally, shows progress on stderr, writes the result JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from rpg_core.cli import main
from rpg_core.training.checkpoint import load_checkpoint

SPEC: dict[str, Any] = {
    "name": "cli-tiny",
    "model": {"arch": "resnet18", "width": 0.125},
    "rpg": {"ring_size": 0.1},
    "data": {"dataset": "synthetic", "num_classes": 3, "num_train": 24, "num_val": 12,
             "image_size": 8},
    "train": {"epochs": 2, "batch_size": 12, "lr": 0.05},
}  # fmt: skip


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_cli_train_writes_result_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    out, ckpt = tmp_path / "result.json", tmp_path / "ckpt"
    argv = ["train", str(spec), "--out", str(out), "--checkpoint-dir", str(ckpt)]
    assert main([*argv, "--data-root", str(tmp_path)]) == 0
    result = json.loads(out.read_text())
    assert result["name"] == "cli-tiny" and result["status"] == "completed"
    assert result["epochs_run"] == 2 and len(result["history"]) == 2
    assert 0 <= result["final_val_acc"] <= 1 and result["params"]["ring"] > 0
    # the result the service stores (rpg_core.training.experiment.train_experiment), histogram included
    assert result["similarity"]["layer"] == "layer3" and result["val_acc"] is not None
    assert result["checkpoint"] == str(ckpt)
    err = capsys.readouterr().err
    assert "\repoch 1/2  step 2/2" in err and "ETA" in err and "val loss" in err
    assert load_checkpoint(ckpt).epoch == 2  # type: ignore[union-attr]


def test_cli_train_prints_json_without_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**SPEC, "train": {**SPEC["train"], "epochs": 1}}))
    assert main(["train", str(spec), "--quiet", "--threads", "1"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["epochs_run"] == 1
    # --quiet: no progress line; the guard rails still speak (a 1-epoch toy run is at chance)
    assert [f["code"] for f in result["health"]] == ["near-chance"]
    assert captured.err.splitlines() == [f"WARNING near-chance: {result['health'][0]['message']}"]


def test_cli_train_bad_spec_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump({**SPEC, "train": {"epochs": 0}}))
    assert main(["train", str(spec)]) == 2
    assert "train.epochs" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read spec file" in capsys.readouterr().err


def test_a_pruning_rounds_line_names_the_round_without_a_learning_rate() -> None:
    """Seen running the Fig. 1 twin: `rpg sweep` died with KeyError 'lr' at the first
    prune-global round (a round's record has no learning rate of its own)."""
    from rpg_core.cli.train import epoch_line

    plain = {"train_loss": 0.41, "train_acc": 0.851, "val_loss": 0.39, "val_acc": 0.86}
    line = epoch_line(2, {**plain, "lr": 0.05, "seconds": 12.3}, 5)
    assert line == (
        "epoch 2/5: train loss 0.4100 acc 85.1%  val loss 0.3900 acc 86.0%  lr 0.05  (12.3s)"
    )
    rnd = {"prune_round": 1, "backbone_nonzero": 200_000, "val_loss": 0.4, "val_acc": 0.8}
    line = epoch_line(4, {**rnd, "seconds": 3.0}, 3)
    assert line.startswith("epoch 4 (prune round 1, 200,000 non-zero):") and "lr" not in line

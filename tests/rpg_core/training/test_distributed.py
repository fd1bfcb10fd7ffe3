"""Data-parallel runs (train.devices > 1): the shards of a global batch are the 1-device batch,
and 2 ranks of DDP under torchrun (gloo, CPU) train as 1 device does.

Tolerance: the 2-rank run computes the same sums in another order (each rank's half of a batch,
then gloo adds the halves; batch statistics from two halves' sums; one OpenMP thread a rank), so
float32 rounding differs from the first step on. Measured here (docs/BENCHMARKS.md, "Data-parallel
runs"): epoch 1 within 2e-7 relative, a 3-epoch run within 3e-7 on every epoch, but the second
(last) epoch of a 2-epoch run within 7e-4 (train loss) and 3e-3 (val loss), not smaller at a
20x lower lr; the plain network (no ring) agrees to 4e-8 there, so it comes with the ring under
DDP and is not isolated yet (open, docs/BENCHMARKS.md). So losses are compared at
5e-3 relative, and the final accuracy (32 validation images) within 3 images, well inside the
seed-to-seed spread of this tiny run (0.34-0.47 over the runs measured)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from rpg_core.data import BatchLoader, load_datasets
from rpg_core.spec import parse_spec
from rpg_core.training.engine import train

RTOL = 5e-3


def ddp_spec(devices: int, epochs: int = 2, **train_kw: Any) -> dict[str, Any]:
    """Width 1/8, 8x8 images, 128 of them: 4 global batches of 32 an epoch."""
    return {
        "name": "ddp",
        "model": {"arch": "resnet18", "width": 0.125},
        "rpg": {"ring_size": 2000},
        "data": {
            "dataset": "synthetic",
            "image_size": 8,
            "num_train": 128,
            "num_val": 32,
            "num_classes": 4,
        },
        "train": {
            "epochs": epochs,
            "batch_size": 32,
            "devices": devices,
            "device": "cpu",
            "precise_bn": "off",
            "lr": 0.005,
            **train_kw,
        },
    }


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=RTOL, abs_tol=1e-7)


@pytest.mark.parametrize("num_train", [128, 99])  # 99: a last batch of 3 splits 2 + 1
def test_the_shards_of_a_global_batch_are_the_one_device_batch(num_train: int) -> None:
    spec = parse_spec(ddp_spec(2))
    data_spec = spec.data.model_copy(update={"num_train": num_train, "augment": "cifar"})
    data = load_datasets(data_spec)
    one = BatchLoader(data, "train", 32, seed=3)
    shards = [BatchLoader(data, "train", 32, seed=3, shard=(r, 2)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == len(one)  # every rank steps as often
    for (x, y), (x0, y0), (x1, y1) in zip(
        one.epoch(1), shards[0].epoch(1), shards[1].epoch(1), strict=True
    ):
        assert abs(len(x0) - len(x1)) <= 1
        assert torch.equal(torch.cat([x0, x1]), x)  # augmented as one batch, then split
        assert torch.equal(torch.cat([y0, y1]), y)
    assert shards[0].global_sizes == [len(x) for x, _ in one.epoch(1)]


def test_a_two_device_spec_names_train_devices_when_it_cannot_run() -> None:
    from rpg_core.exceptions import RPGConfigError

    with pytest.raises(RPGConfigError, match="train.devices"):
        parse_spec(ddp_spec(2, batch_size=3))
    pruning = {**ddp_spec(2), "method": {"name": "prune-global", "budget": 0.5}, "rpg": None}
    with pytest.raises(RPGConfigError, match="train.devices"):
        parse_spec(pruning)


@pytest.mark.slow
def test_two_ranks_train_as_one_device(tmp_path: Path) -> None:
    one = train(ddp_spec(1), checkpoint_dir=tmp_path / "one")
    seen: list[tuple[str, Any]] = []

    class Listen:
        def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
            seen.append(("epoch", epoch))

        def on_train_end(self, result: Any, model: torch.nn.Module) -> None:
            seen.append(("end", model))

    two = train(ddp_spec(2), checkpoint_dir=tmp_path / "two", callbacks=[Listen()])
    assert two.status == "completed" and two.epochs_run == 2
    first = (one.history[0], two.history[0])
    assert math.isclose(first[0]["train_loss"], first[1]["train_loss"], rel_tol=1e-5)
    for a, b in zip(one.history, two.history, strict=True):
        for key in ("train_loss", "val_loss"):
            assert close(a[key], b[key]), (key, a[key], b[key])
    assert one.final_val_acc is not None and two.final_val_acc is not None
    assert abs(two.final_val_acc - one.final_val_acc) <= 3 / 32 + 1e-9
    # the callbacks heard every epoch here, in this process, and got the trained model
    assert [s for s in seen if s[0] == "epoch"] == [("epoch", 1), ("epoch", 2)]
    model = next(m for k, m in seen if k == "end")
    assert not any("Global" in type(m).__name__ for m in model.modules())  # a plain network
    # rank 0 alone wrote: one checkpoint (loadable by a 1-device run), one result
    ranks = tmp_path / "two" / "ranks"
    assert json.loads((ranks / "result.json").read_text())["epochs_run"] == 2
    assert sorted(p.name for p in ranks.glob("rank*.pid")) == ["rank0.pid", "rank1.pid"]
    resumed = train(ddp_spec(1), checkpoint_dir=tmp_path / "two")  # done: nothing to train
    assert resumed.epochs_run == 2 and close(
        resumed.history[1]["val_loss"], two.history[1]["val_loss"]
    )

"""Data-parallel runs (train.devices > 1): the shards of a global batch are the 1-device batch,
and 2 ranks of DDP under torchrun (gloo, CPU) train as 1 device does.

Tolerance: losses agree within RTOL = 2e-6 relative, on every epoch. The 2-rank run computes
the same float32 sums in another order (each rank's half of a batch, then gloo adds the halves;
batch statistics from the two halves' sums; the ring's scatter-add per rank), so rounding (unit
roundoff 6e-8) differs from the first step on: ~1e-7 on the parameters after one step, growing
over the run's 12 steps to at most 3.4e-7 on an epoch's mean loss (measured, docs/BENCHMARKS.md,
"Data-parallel runs"). 2e-6 leaves 6x headroom over that and stays 300x below anything discrete
(another batch, a stale kernel, a different mode: >= 7e-4).

One discrete effect is legitimate and makes a run's curve unfit for this check: a ReLU input
within the rounding difference of 0 takes opposite signs in the two runs, and its gradient
passes in one and not in the other. The 2-epoch variant of this spec does that at epoch 2's
first step (image 17, channel 55 of layer4.1's last ReLU: -4.9e-6 on 1 device, +3.0e-7 on 2
ranks): a 12 % different gradient in layer4's batchnorms and 7e-4 on epoch 2's loss, not smaller
at a lower lr (a kink, not noise); the same step recomputed from either run's parameters on 1
device or on 2 ranks gives that run's gradient within 4e-6. So this test trains 3 epochs, whose
pre-activations all stay clear of the rounding difference (checked: every epoch within 3.4e-7).
A change of thread count, torch version or spec can move a pre-activation onto a kink; then a
failure here names the epoch, and docs/BENCHMARKS.md says how to tell a kink from a bug.
The final accuracy (32 validation images) may differ by one image for the same reason (a logit
near-tie)."""

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

RTOL = 2e-6  # relative, on an epoch's mean loss: see the module's docstring
EPOCHS = 3


def ddp_spec(devices: int, epochs: int = EPOCHS, **train_kw: Any) -> dict[str, Any]:
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
    return math.isclose(a, b, rel_tol=RTOL)


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
    assert two.status == "completed" and two.epochs_run == EPOCHS
    assert [h["epoch"] for h in two.history] == [h["epoch"] for h in one.history]
    for a, b in zip(one.history, two.history, strict=True):  # every epoch's losses
        for key in ("train_loss", "val_loss"):
            assert close(a[key], b[key]), (a["epoch"], key, a[key], b[key])
    assert one.final_val_acc is not None and two.final_val_acc is not None
    assert abs(two.final_val_acc - one.final_val_acc) <= 1 / 32 + 1e-9
    # the callbacks heard every epoch here, in this process, and got the trained model
    assert [s for s in seen if s[0] == "epoch"] == [("epoch", e) for e in range(1, EPOCHS + 1)]
    model = next(m for k, m in seen if k == "end")
    assert not any("Global" in type(m).__name__ for m in model.modules())  # a plain network
    # rank 0 alone wrote: one checkpoint (loadable by a 1-device run), one result
    ranks = tmp_path / "two" / "ranks"
    assert json.loads((ranks / "result.json").read_text())["epochs_run"] == EPOCHS
    assert sorted(p.name for p in ranks.glob("rank*.pid")) == ["rank0.pid", "rank1.pid"]
    resumed = train(ddp_spec(1), checkpoint_dir=tmp_path / "two")  # done: nothing to train
    assert resumed.epochs_run == EPOCHS and close(
        resumed.history[-1]["val_loss"], two.history[-1]["val_loss"]
    )


# of a gradient tensor's largest |element|: one step from equal parameters rounds its sums in
# another order (halves of the batch, gloo's sum); measured <= 3.9e-6 on each of the 3 steps
# (elements are sums of many terms that cancel, so a few ulps of the largest): 5x headroom
GRAD_RTOL = 2e-5


def _rank_steps(rank: int, world: int, port: int, out: str, steps: int) -> None:
    """``steps`` SGD steps of the ring's ResNet on 2 gloo ranks (GlobalBatchNorm, DDP, the
    engine's loss scale), as the engine runs them; rank 0 saves every step's gradients."""
    import os

    import torch.distributed as dist

    from rpg_core.models import create_model
    from rpg_core.training.distributed import Ranks, global_batchnorm, wrap_ddp

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        ranks = Ranks(rank, world, torch.device("cpu"), Path(out), bn_group=dist.new_group())
        model = _step_model(create_model)
        model = global_batchnorm(model, ranks)
        ddp = wrap_ddp(model, ranks)
        saved = _steps(ddp, model, steps, shard=(rank, world))
        if rank == 0:
            torch.save(saved, Path(out) / "grads.pt")
    finally:
        dist.destroy_process_group()


def _step_model(create_model: Any) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(parse_spec(ddp_spec(1)), num_classes=4, in_channels=3)  # type: ignore[no-any-return]


def _steps(
    net: torch.nn.Module, model: torch.nn.Module, steps: int, shard: tuple[int, int] = (0, 1)
) -> list[dict[str, torch.Tensor]]:
    opt = torch.optim.SGD(model.parameters(), lr=0.005, momentum=0.9)  # the spec's lr
    gen = torch.Generator().manual_seed(1)
    saved = []
    net.train()
    for _ in range(steps):
        x, y = torch.randn(32, 3, 8, 8, generator=gen), torch.randint(0, 4, (32,), generator=gen)
        rank, world = shard
        xs, ys = x.chunk(world)[rank], y.chunk(world)[rank]
        loss = torch.nn.functional.cross_entropy(net(xs), ys) * (len(ys) * world / len(y))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        saved.append({k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
        opt.step()
    return saved


@pytest.mark.slow
def test_two_ranks_compute_the_one_device_gradient_of_every_step(tmp_path: Path) -> None:
    """Step by step, without an epoch's worth of chaos: the 2-rank gradient (the ring's one
    Parameter through its scatter-add and DDP's buckets, GlobalBatchNorm's batch statistics)
    is the 1-device gradient to rounding, on the first steps (before and after DDP rebuilds
    its buckets, each after an optimizer step changed the ring)."""
    import socket

    import torch.multiprocessing as mp

    from rpg_core.models import create_model

    steps = 3
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(
        _rank_steps, args=(2, port, str(tmp_path), steps), nprocs=2, start_method="spawn"
    )
    two = torch.load(tmp_path / "grads.pt")
    model = _step_model(create_model)
    one = _steps(model, model, steps)
    assert len(one) == len(two) == steps
    for step, (a, b) in enumerate(zip(one, two, strict=True), start=1):
        assert a.keys() == b.keys() and "rpg_rings.global.weight" in a
        for key in a:
            scale = float(a[key].abs().max())
            diff = float((a[key] - b[key]).abs().max())
            assert diff <= GRAD_RTOL * scale, (step, key, diff / scale)

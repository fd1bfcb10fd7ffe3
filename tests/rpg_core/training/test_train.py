"""The training engine: learning on real data, bit-identical resume, NaN stop, callbacks."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from torch import nn

from rpg_core import RPGConfigError, RPGTrainingError
from rpg_core.models import create_model
from rpg_core.rpg.params import count_macs
from rpg_core.rpg.rpgify import rings
from rpg_core.training.checkpoint import CHECKPOINT_NAME, load_checkpoint
from rpg_core.training.engine import Callback, load_trained_model, train


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One thread: on a shared 2-core machine two OpenMP threads are many times slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_spec(epochs: int = 2, **train: Any) -> dict[str, Any]:
    return {
        "name": "tiny",
        "model": {"arch": "resnet18", "width": 0.125},
        "rpg": {"ring_size": 0.05, "seed": 1},
        "data": {
            "dataset": "synthetic",
            "num_classes": 4,
            "num_train": 48,
            "num_val": 16,
            "image_size": 8,
        },
        "train": {
            "epochs": epochs,
            "batch_size": 16,
            "lr": 0.05,
            **({"milestones": [1]} if epochs > 1 else {}),
            **train,
        },
    }


def without_time(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


@pytest.mark.slow
def test_rpg_resnet18_learns_digits(tmp_path: Path) -> None:
    """A CIFAR-form ResNet18-RPG with a ring of 5% of its generated weights, on real digits."""
    spec = {
        "model": {"arch": "resnet18", "variant": "cifar", "width": 0.25},
        "rpg": {"ring_size": 0.05},
        "data": {"dataset": "digits", "image_size": 8, "augment": False},
        "train": {"epochs": 5, "batch_size": 64, "lr": 0.05, "milestones": [4]},
    }
    result = train(spec, checkpoint_dir=tmp_path)
    assert result.status == "completed" and result.epochs_run == 5
    assert result.final_val_acc is not None and result.final_val_acc >= 0.90, result.history
    generated = result.params["generated"]
    assert result.params["ring"] == round(0.05 * generated)
    assert result.params["backbone"] == result.params["ring"]
    assert result.best_val_acc is not None and result.best_val_acc >= result.final_val_acc
    assert result.train_acc is not None
    assert result.train_val_gap == pytest.approx(result.train_acc - result.final_val_acc)
    assert result.images_per_s > 0 and result.flops > 0
    assert result.inference_ms_per_image is not None and result.inference_ms_per_image > 0
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4, 5]
    assert [h["lr"] for h in result.history] == pytest.approx([0.05] * 4 + [0.005])
    json.dumps(result.as_dict())  # JSON-serialisable
    model = load_trained_model(tmp_path)
    assert sum(p.numel() for p in model.parameters()) == result.params["total"]


def test_resume_is_bit_identical(tmp_path: Path) -> None:
    full = train(tiny_spec(epochs=2), checkpoint_dir=tmp_path / "full")

    class StopAfterFirstEpoch(Callback):
        def __init__(self) -> None:
            self.done = 0

        def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
            self.done = epoch

        def should_stop(self) -> bool:
            return self.done >= 1

    part = train(
        tiny_spec(epochs=2), checkpoint_dir=tmp_path / "part", callbacks=[StopAfterFirstEpoch()]
    )
    assert part.status == "stopped" and part.stopped and part.epochs_run == 1
    assert load_checkpoint(tmp_path / "part").epoch == 1  # type: ignore[union-attr]
    seen: list[list[dict[str, float]]] = []

    class Resumed(Callback):
        def on_resume(self, history: list[dict[str, float]]) -> None:
            seen.append(history)

    resumed = train(tiny_spec(epochs=2), checkpoint_dir=tmp_path / "part", callbacks=[Resumed()])
    assert resumed.status == "completed" and resumed.epochs_run == 2
    assert without_time(resumed.history) == without_time(full.history)
    assert [[r["epoch"] for r in h] for h in seen] == [[1]]  # told what was done before
    a, b = load_checkpoint(tmp_path / "full"), load_checkpoint(tmp_path / "part")
    assert a is not None and b is not None
    assert a.tensors.keys() == b.tensors.keys()
    assert any(k.startswith("optim/") for k in a.tensors)
    for key in a.tensors:
        assert torch.equal(a.tensors[key], b.tensors[key]), key
    done = train(tiny_spec(epochs=2), checkpoint_dir=tmp_path / "full")  # nothing left to do
    assert done.status == "completed" and done.history == full.history
    assert done.images_per_s == 0.0


def test_resume_refuses_another_spec(tmp_path: Path) -> None:
    train(tiny_spec(epochs=1), checkpoint_dir=tmp_path)
    with pytest.raises(RPGConfigError, match="different spec"):
        train(tiny_spec(epochs=1, seed=7), checkpoint_dir=tmp_path)
    again = train(tiny_spec(epochs=1, seed=7), checkpoint_dir=tmp_path, resume=False)
    assert again.epochs_run == 1


def test_checkpoint_is_safetensors_written_atomically(tmp_path: Path) -> None:
    before = torch.are_deterministic_algorithms_enabled()
    train(tiny_spec(epochs=1), checkpoint_dir=tmp_path)
    assert torch.are_deterministic_algorithms_enabled() == before  # the run restores it
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_NAME]
    with safe_open(str(tmp_path / CHECKPOINT_NAME), framework="pt") as f:
        meta = json.loads(f.metadata()["rpg_checkpoint"])
        keys = list(f.keys())
    assert meta["epoch"] == 1 and meta["spec"]["name"] == "tiny"
    assert "rng/torch_cpu" in keys and "model/rpg_rings.global.weight" in keys


def test_nan_loss_stops_with_its_position(monkeypatch: pytest.MonkeyPatch) -> None:
    import rpg_core.tasks.classification as tasks  # the classification loss the loop calls

    real = tasks.F.cross_entropy
    calls = {"n": 0}

    def poisoned(*args: Any, **kwargs: Any) -> torch.Tensor:
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 5 else loss

    monkeypatch.setattr(tasks.F, "cross_entropy", poisoned)
    with pytest.raises(RPGTrainingError, match=r"loss became NaN at epoch 2, step 1"):
        # calls: epoch 1 = 3 train steps + 1 val batch, so call 5 is epoch 2's first step
        train(tiny_spec(epochs=2))


def test_huge_learning_rate_stops_with_error() -> None:
    with pytest.raises(RPGTrainingError, match=r"loss became (NaN|inf) at epoch \d+, step \d+"):
        train(tiny_spec(epochs=5, lr=100.0, weight_decay=0.0, milestones=[], schedule="constant"))


def test_callbacks_see_steps_and_epochs_and_can_stop(tmp_path: Path) -> None:
    class Recorder(Callback):
        def __init__(self) -> None:
            self.steps: list[tuple[int, int]] = []
            self.epochs: list[int] = []
            self.ended: list[str] = []

        def on_step(self, step: int, total: int, metrics: dict[str, float]) -> None:
            self.steps.append((step, total))
            assert math.isfinite(metrics["loss"]) and 0 <= metrics["acc"] <= 1

        def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
            self.epochs.append(epoch)
            assert 0 <= metrics["val_acc"] <= 1

        def should_stop(self) -> bool:
            return len(self.steps) >= 4  # stop in the middle of epoch 2

        def on_train_end(self, result: Any, model: nn.Module) -> None:
            self.ended.append(result.status)

    rec = Recorder()
    result = train(tiny_spec(epochs=3), callbacks=[rec], checkpoint_dir=tmp_path, step_interval_s=0)
    assert rec.steps == [(1, 9), (2, 9), (3, 9), (4, 9)]
    assert rec.epochs == [1] and rec.ended == ["stopped"]
    assert result.status == "stopped" and result.epochs_run == 1
    assert load_checkpoint(tmp_path).epoch == 1  # type: ignore[union-attr]


def test_step_callbacks_are_throttled() -> None:
    steps: list[int] = []

    class Slow(Callback):
        def on_step(self, step: int, total: int, metrics: dict[str, float]) -> None:
            steps.append(step)

    train(tiny_spec(epochs=2), callbacks=[Slow()], step_interval_s=3600)
    assert steps == [1, 3, 6]  # the first step, then only each epoch's last step


def test_count_macs_counts_conv_and_linear_macs() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    assert count_macs(net, (1, 4, 4)) == 2 * 4 * 4 * 9 + 32 * 3
    plain = create_model({"model": {"width": 0.125, "in_channels": 1}})
    rpg = create_model({"model": {"width": 0.125, "in_channels": 1}, "rpg": {"ring_size": 0.1}})
    assert count_macs(plain, (1, 8, 8)) == count_macs(rpg, (1, 8, 8)) > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_device_without_cuda_is_a_config_error() -> None:
    with pytest.raises(RPGConfigError, match="train.device"):
        train(tiny_spec(epochs=1, device="cuda"))


class Crash(RuntimeError):
    pass


@pytest.mark.parametrize("how", ["should_stop", "exception"])
def test_interrupted_mid_epoch_then_resumed_is_bit_identical(tmp_path: Path, how: str) -> None:
    full = train(tiny_spec(epochs=2), checkpoint_dir=tmp_path / "full")

    class Interrupt(Callback):
        steps = 0

        def on_step(self, step: int, total: int, metrics: dict[str, float]) -> None:
            self.steps = step
            if how == "exception" and step == 5:
                raise Crash("worker died")

        def should_stop(self) -> bool:
            return how == "should_stop" and self.steps == 5

    if how == "exception":
        with pytest.raises(Crash):
            train(tiny_spec(epochs=2), checkpoint_dir=tmp_path / "part",
                  callbacks=[Interrupt()], step_interval_s=0)  # fmt: skip
    else:
        part = train(tiny_spec(epochs=2), checkpoint_dir=tmp_path / "part",
                     callbacks=[Interrupt()], step_interval_s=0)  # fmt: skip
        assert part.stopped and part.epochs_run == 1
    assert load_checkpoint(tmp_path / "part").epoch == 1  # type: ignore[union-attr]
    resumed = train(tiny_spec(epochs=2), checkpoint_dir=tmp_path / "part")
    assert without_time(resumed.history) == without_time(full.history)
    a, b = load_checkpoint(tmp_path / "full"), load_checkpoint(tmp_path / "part")
    assert a is not None and b is not None
    assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)


def test_short_recipe_lowers_the_lr_of_heavily_reused_rings() -> None:
    """lr_by_ring_uses: the recipe's lr times min(1, sqrt(256 / uses)) of the most-used ring;
    an explicit lr, a plain network and the paper's recipes keep theirs."""
    from rpg_core.training.engine import RING_LR_USES, ring_lr_factor

    heavy = create_model({"model": {"arch": "resnet18", "width": 0.125}, "rpg": {"ring_size": 100}})
    uses = sum(r.spec.generated for r in rings(heavy).values()) / 100
    assert ring_lr_factor(heavy) == pytest.approx(math.sqrt(RING_LR_USES / uses))
    light = create_model({"model": {"arch": "resnet18", "width": 0.125}, "rpg": {"ring_size": 1.0}})
    assert ring_lr_factor(light) == 1.0
    assert ring_lr_factor(create_model({"model": {"arch": "resnet18", "width": 0.125}})) == 1.0

    data = {
        "dataset": "synthetic",
        "num_classes": 4,
        "num_train": 32,
        "num_val": 8,
        "image_size": 8,
    }
    base = {"model": {"arch": "resnet18", "width": 0.125}, "rpg": {"ring_size": 100}, "data": data}
    fixed = {"epochs": 1, "batch_size": 16}  # a batch the spec sets: no auto-batch lr factor
    short = train({**base, "train": fixed}, step_interval_s=1e9).hyperparameters
    assert short["lr"] == pytest.approx(0.1 * ring_lr_factor(heavy))
    own = train({**base, "train": {"epochs": 1, "lr": 0.1}}, step_interval_s=1e9).hyperparameters
    assert own["lr"] == 0.1
    paper = {"epochs": 1, "recipe": "paper-cifar"}
    assert train({**base, "train": paper}, step_interval_s=1e9).hyperparameters["lr"] == 0.1


def test_an_auto_batch_below_32_lowers_the_lr_and_the_tighter_factor_wins() -> None:
    """auto_batch_lr_factor: a plain network at an auto batch of 16 trains at lr 0.05; a batch
    the spec sets keeps 0.1; with a heavily reused ring the smaller of the two factors applies."""
    from rpg_core.spec import auto_batch_lr_factor
    from rpg_core.training.engine import ring_lr_factor

    assert [auto_batch_lr_factor(b) for b in (16, 32, 128)] == [0.5, 1.0, 1.0]
    data = {"dataset": "synthetic", "num_classes": 4, "num_train": 32, "num_val": 8}
    plain = {"model": {"arch": "resnet18", "width": 0.125}, "data": {**data, "image_size": 8}}
    auto = train({**plain, "train": {"epochs": 1}}, step_interval_s=1e9).hyperparameters
    assert auto["batch_size"] == 16 and auto["lr"] == pytest.approx(0.05)
    assert auto["lr_factor"] == 0.5
    fixed = {**plain, "train": {"epochs": 1, "batch_size": 16}}
    assert train(fixed, step_interval_s=1e9).hyperparameters["lr"] == 0.1
    ring = {**plain, "rpg": {"ring_size": 20}, "train": {"epochs": 1}}
    heavy = ring_lr_factor(create_model({"model": plain["model"], "rpg": {"ring_size": 20}}))
    assert heavy < 0.5
    assert train(ring, step_interval_s=1e9).hyperparameters["lr"] == pytest.approx(0.1 * heavy)


def test_a_checkpoint_with_an_epoch_based_scheduler_resumes(tmp_path: Path) -> None:
    """Checkpoints written before the per-step schedules hold a MultiStepLR; resuming one
    continues the paper's step schedule at the right step instead of failing."""
    from rpg_core.training.checkpoint import save_checkpoint

    spec = tiny_spec(epochs=3, recipe="paper-cifar", milestones=[2])
    full = train(spec, checkpoint_dir=tmp_path / "full")

    class StopAfterFirstEpoch(Callback):
        def should_stop(self) -> bool:
            return bool(getattr(self, "done", False))

        def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
            self.done = True

    train(spec, checkpoint_dir=tmp_path / "x", callbacks=[StopAfterFirstEpoch()])
    ckpt = load_checkpoint(tmp_path / "x")
    assert ckpt is not None and ckpt.epoch == 1
    # rewrite it as the old engine did after epoch 1: an epoch-based MultiStepLR
    model = load_trained_model(tmp_path / "x")
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    old = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[2], gamma=0.1)
    old.step()
    meta = {k: v for k, v in ckpt.meta.items() if k not in ("scheduler", "optimizer")}
    save_checkpoint(tmp_path / "old", model=model, optimizer=opt, scheduler=old, epoch=1, meta=meta)
    resumed = train(spec, checkpoint_dir=tmp_path / "old")
    assert resumed.epochs_run == 3
    assert [h["lr"] for h in resumed.history] == pytest.approx([h["lr"] for h in full.history])

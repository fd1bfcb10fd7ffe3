"""A stop request is honoured everywhere in a run, not only between training steps: while data is
generated, during (OOD) evaluation and while a source network is pruned or fine-tuned
(rpg_core.stopping). Each test asks to stop in the middle of the work and measures how long it
takes to end."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import pytest
import torch
from torch import nn

from rpg_core import train
from rpg_core.data import BatchLoader, TensorImages, load_datasets
from rpg_core.evaluate.ood import Scorer, evaluate_ood
from rpg_core.models import create_model
from rpg_core.spec import OODSetSpec, parse_spec
from rpg_core.stopping import Stopped, callbacks_stop, checked
from rpg_core.training.pruning import finetune, prune_model

LATENCY_S = 1.0  # the longest a stop may take to be honoured


class StopAfter:
    """``should_stop``: False until ``delay_s`` after :meth:`arm` (or after ``calls`` checks
    once armed), then True; remembers when it first said so. ``arm_at_first_check``: armed by
    the first check (the work has begun)."""

    def __init__(
        self,
        delay_s: float | None = None,
        calls: int | None = None,
        arm_at_first_check: bool = False,
    ) -> None:
        self.delay_s, self.calls = delay_s, calls
        self.arm_at_first_check = arm_at_first_check
        self.armed_at: float | None = None
        self.said_stop_at: float | None = None
        self.checks = 0

    def arm(self) -> None:
        self.armed_at = time.monotonic()

    def __call__(self) -> bool:
        if self.armed_at is None and self.arm_at_first_check:
            self.arm()
        if self.armed_at is None:
            return False
        self.checks += 1
        due = (self.delay_s is not None and time.monotonic() - self.armed_at >= self.delay_s) or (
            self.calls is not None and self.checks >= self.calls
        )
        if due and self.said_stop_at is None:
            self.said_stop_at = time.monotonic()
        return self.said_stop_at is not None

    def latency(self) -> float:
        assert self.said_stop_at is not None, "the stop was never asked for (work too short?)"
        return time.monotonic() - self.said_stop_at


class StopCallback:
    """An engine callback whose ``should_stop`` is a :class:`StopAfter`."""

    def __init__(self, stop: StopAfter) -> None:
        self.stop = stop
        self.datasets_seen = False

    def on_datasets(self, _data: Any) -> None:
        self.datasets_seen = True

    def should_stop(self) -> bool:
        return self.stop()


def test_checked_and_callbacks_stop() -> None:
    flags = [False]
    stop = callbacks_stop([object(), type("C", (), {"should_stop": lambda self: flags[0]})()])
    seen = []
    with pytest.raises(Stopped):
        for i in checked(range(10), stop):
            seen.append(i)
            flags[0] = i == 3
    assert seen == [0, 1, 2, 3]


# --- data generation -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "data",
    [
        {"dataset": "synthetic-pose", "num_train": 20_000, "num_val": 10, "image_size": 64},
        {"dataset": "synthetic-pose", "num_train": 50, "num_val": 10, "image_size": 1024},
        {"dataset": "synthetic-scenes", "num_train": 20_000, "num_val": 10, "image_size": 64},
    ],
    ids=["pose", "pose-1024px", "scenes"],
)
def test_a_stop_during_data_generation_ends_it_within_a_second(data: dict[str, Any]) -> None:
    stop = StopAfter(delay_s=0.5)
    stop.arm()
    with pytest.raises(Stopped):
        load_datasets(data, should_stop=stop)
    assert stop.latency() < LATENCY_S


def test_a_run_stopped_while_its_data_is_generated_ends_stopped_before_training() -> None:
    stop = StopAfter(delay_s=0.5, arm_at_first_check=True)  # 0.5 s into the generation
    cb = StopCallback(stop)
    spec = {
        "name": "gen",
        "task": "pose",
        "model": {"arch": "hourglass", "width": 0.125},
        "data": {"dataset": "synthetic-pose", "num_train": 20_000, "num_val": 10},
        "train": {"epochs": 1},
    }
    result = train(spec, callbacks=[cb])
    assert stop.latency() < LATENCY_S
    assert result.stopped and result.epochs_run == 0 and not result.history
    assert result.epochs == 1 and result.task == "pose"
    assert not cb.datasets_seen  # it never got to train


# --- OOD evaluation ------------------------------------------------------------------------------
def _classifier_data() -> Any:
    return load_datasets(
        {"dataset": "synthetic", "num_train": 64, "num_val": 3000, "image_size": 16}
    )


def test_a_stop_during_ood_evaluation_ends_it_within_a_second() -> None:
    data = _classifier_data()
    model = create_model(
        parse_spec({"model": {"arch": "resnet18", "width": 0.125}}), num_classes=data.num_classes
    )
    stop = StopAfter(delay_s=0.5)
    scorer = Scorer(
        model=model,
        batch_size=64,
        device=torch.device("cpu"),
        autocast=contextlib.nullcontext,
        prepare=lambda x: x,
        should_stop=stop,
    )
    sets = [OODSetSpec(shift=s) for s in ("gaussian_noise", "rotation", "gaussian_blur")]
    stop.arm()
    with pytest.raises(Stopped):
        evaluate_ood(scorer, data, sets, ".")
    assert stop.latency() < LATENCY_S
    assert model.training  # its mode is restored


def test_a_run_cancelled_during_its_final_ood_pass_ends_stopped_not_completed() -> None:
    stop = StopAfter(calls=4)  # armed at the last epoch's end: the 4th check is inside the OOD pass

    class ArmAtLastEpoch(StopCallback):
        def on_epoch_end(self, epoch: int, _metrics: Any) -> None:
            if epoch == 1:
                self.stop.arm()

    spec = {
        "name": "ood",
        "model": {"arch": "resnet18", "width": 0.125},
        "rpg": None,
        "data": {"dataset": "synthetic", "num_train": 64, "num_val": 1000, "image_size": 16},
        "train": {"epochs": 1, "batch_size": 32},
        "eval": {"ood": [{"shift": "gaussian_noise"}, {"shift": "rotation"}]},
    }
    result = train(spec, callbacks=[ArmAtLastEpoch(stop)])
    assert stop.latency() < LATENCY_S
    assert result.status == "stopped"
    assert result.ood is None and result.epochs_run == 1


# --- pruning and fine-tuning -----------------------------------------------------------------------
def _source() -> nn.Module:
    return create_model(
        parse_spec({"model": {"arch": "resnet18", "width": 0.25}, "rpg": {"ring_size": 0.05}}),
        num_classes=4,
    )


def test_a_stop_while_pruning_raises_and_leaves_the_source_alone() -> None:
    source = _source()
    before = {k: v.clone() for k, v in source.state_dict().items()}
    stop = StopAfter(calls=4)  # past materialising, inside the block surgery
    stop.arm()
    with pytest.raises(Stopped):
        prune_model(source, 0.3, should_stop=stop)
    assert stop.latency() < LATENCY_S
    assert all(torch.equal(before[k], v) for k, v in source.state_dict().items())


def test_a_stop_during_fine_tuning_ends_it_within_a_second() -> None:
    pruned = prune_model(_source(), 0.3).model
    data = load_datasets({"dataset": "synthetic", "num_train": 512, "num_classes": 4})
    assert isinstance(data.train, TensorImages)
    loader = list(BatchLoader(data, "train", 32).epoch(0))
    stop = StopAfter(delay_s=0.5)
    stop.arm()
    with pytest.raises(Stopped):
        finetune(pruned, loader, epochs=1000, should_stop=stop)
    assert stop.latency() < LATENCY_S


def test_a_pruning_job_stopped_while_pruning_ends_stopped() -> None:
    stop = StopAfter(calls=1)
    stop.arm()
    spec = {
        "name": "pruned",
        "prune": {"source": 1, "fraction": 0.3},
        "data": {"dataset": "synthetic", "num_train": 64, "num_val": 32, "num_classes": 4},
        "train": {"epochs": 1},
    }
    result = train(spec, callbacks=[StopCallback(stop)], source_model=_source())
    assert result.stopped and result.epochs_run == 0 and result.prune is None

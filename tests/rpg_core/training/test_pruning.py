"""Structured L1 pruning: the asked fraction goes, FLOPs fall, the network runs and still works."""

from __future__ import annotations

import json

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from rpg_core import count_params, materialize, rings
from rpg_core.exceptions import RPGConfigError
from rpg_core.training.pruning import (
    PruneSpec,
    count_macs,
    evaluate,
    finetune,
    prune_model,
    rebuild_pruned,
    run_prune,
)

from ..analysis._digits import Epochs, digits, one_thread, small_resnet


def l1(conv: object) -> torch.Tensor:
    assert isinstance(conv, nn.Conv2d)
    return conv.weight.detach().abs().sum(dim=(1, 2, 3))


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.6])
def test_removes_the_asked_fraction_within_one_filter_per_block(fraction: float) -> None:
    model = small_resnet(5000)
    result = prune_model(model, fraction, input_size=(1, 16, 16))
    before = count_params(materialize(model)).backbone
    after = count_params(result.model).backbone
    plans = result.report.blocks
    assert len(plans) == 8  # resnet18: 4 stages x 2 blocks
    assert abs((before - after) - fraction * before) <= max(p.cost for p in plans)
    assert result.report.fraction_removed == pytest.approx(1 - after / before)
    share = sum(p.removed * p.cost for p in plans) / sum(p.channels * p.cost for p in plans)
    for p in plans:  # every block loses the same share of its filters, to one filter
        assert abs(p.removed - share * p.channels) <= 1.5
        assert p.kept >= 1


def test_keeps_the_filters_with_the_largest_l1_norm() -> None:
    model = small_resnet(5000)
    plain = materialize(model)
    result = prune_model(model, 0.4, input_size=(1, 16, 16))
    for name in ("layer1.0", "layer3.1"):
        original = l1(plain.get_submodule(name).conv1)
        pruned = result.model.get_submodule(name)
        kept = l1(pruned.conv1)
        expected = torch.sort(original, descending=True).values[: len(kept)]
        assert torch.allclose(torch.sort(kept, descending=True).values, expected)
        bn1, conv2 = pruned.get_submodule("bn1"), pruned.get_submodule("conv2")
        assert isinstance(bn1, nn.BatchNorm2d) and isinstance(conv2, nn.Conv2d)
        assert bn1.num_features == conv2.in_channels == len(kept)
        assert conv2.out_channels == plain.get_submodule(f"{name}.conv2").out_channels


def test_flops_fall_and_the_source_is_unchanged() -> None:
    model = small_resnet(5000)
    x = torch.randn(4, 1, 16, 16)
    model.eval()
    out_before = model(x)
    ring_before = rings(model)["global"].weight.detach().clone()
    result = prune_model(model, 0.3, input_size=(1, 16, 16))
    report = result.report
    assert report.macs_before == count_macs(materialize(model), (1, 16, 16))
    assert report.macs_after == count_macs(result.model, (1, 16, 16))
    assert report.macs_after < report.macs_before * (1 - 0.5 * 0.3)
    assert report.total_after < report.total_before
    assert report.source_ring_params == 5000
    assert torch.equal(rings(model)["global"].weight, ring_before)
    assert torch.equal(model(x), out_before)
    assert result.model(x).shape == (4, 10)
    assert not rings(result.model)
    d = json.loads(json.dumps(report.as_dict()))
    assert d["macs_ratio"] == pytest.approx(report.macs_after / report.macs_before)


def test_count_macs_by_hand() -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    assert count_macs(net, (1, 8, 8)) == 4 * 8 * 8 * 9 + 4 * 8 * 8 * 10
    with pytest.raises(RPGConfigError, match="input_size"):
        count_macs(net, (8, 8))  # type: ignore[arg-type]


class _NarrowBlockNet(nn.Module):
    """One tiny prunable block and a large conv that pruning cannot touch."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.block = nn.Module()
        self.block.conv1 = nn.Conv2d(4, 2, 1)
        self.block.bn1 = nn.BatchNorm2d(2)
        self.block.conv2 = nn.Conv2d(2, 4, 1)
        self.tail = nn.Conv2d(4, 64, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        b = self.block
        x = x + b.get_submodule("conv2")(b.get_submodule("bn1")(b.get_submodule("conv1")(x)))
        return self.tail(x)


def test_unreachable_fraction_and_bad_input() -> None:
    with pytest.raises(RPGConfigError, match="too high"):
        prune_model(_NarrowBlockNet(), 0.3, input_size=(1, 8, 8))
    with pytest.raises(RPGConfigError, match="prunable"):
        prune_model(nn.Sequential(nn.Conv2d(1, 2, 3)), 0.3, input_size=(1, 8, 8))
    for bad in (0, 0.96, -0.1, True):
        with pytest.raises(RPGConfigError, match="fraction"):
            prune_model(small_resnet(None), bad)


@pytest.mark.slow
def test_pruned_rpg_keeps_its_accuracy_after_finetuning() -> None:
    xt, yt, xv, yv = digits()
    val = [(xv, yv)]
    with one_thread():
        model = small_resnet(0.5)
        finetune(model, Epochs(xt, yt), epochs=2, lr=0.05)
        spec = PruneSpec(source=1, fraction=0.3)
        pruned, job = run_prune(
            model,
            spec,
            train_loader=Epochs(xt, yt),
            val_loader=val,
            input_size=(1, 16, 16),
            finetune_epochs=1,
        )
    assert job["accuracy_before"] > 0.8, job
    assert job["accuracy_after"] >= job["accuracy_before"] - 0.05, job
    assert job["accuracy_after"] == evaluate(pruned, val)
    assert len(job["finetune_losses"]) == 1
    assert job["report"]["fraction_removed"] == pytest.approx(0.3, abs=0.01)
    json.dumps(job)


def test_prune_spec() -> None:
    assert PruneSpec(source=3).fraction == 0.3
    spec = PruneSpec(source="r18-rpg.rpg", fraction=0.5)
    assert spec.source == "r18-rpg.rpg"
    with pytest.raises(ValidationError):
        spec.fraction = 0.1  # type: ignore[misc]  # frozen
    for bad in (
        {"source": "../x.rpg"},
        {"source": "runs/x.rpg"},
        {"source": "x.pt"},
        {"source": "/abs/x.rpg"},
        {"source": 0},
        {"source": True},
        {"source": 3, "fraction": 0},
        {"source": 3, "fraction": 0.96},
        {"source": 3, "finetune_epochs": -1},
        {"source": 3, "extra": 1},
    ):
        with pytest.raises(ValidationError):
            PruneSpec.model_validate(bad)


def test_a_pruned_network_reloads_from_its_kept_channels() -> None:
    model = small_resnet(5000)
    pruned = prune_model(model, 0.3, input_size=(1, 16, 16)).model
    info = pruned.__dict__["rpg_pruned"]
    kept = info["kept"]
    assert info["source_spec"] == model.__dict__["rpg_spec"]
    shell = rebuild_pruned(small_resnet(5000, seed=1), kept)  # other weights, same shapes
    shell.load_state_dict(pruned.state_dict())
    x = torch.randn(2, 1, 16, 16)
    pruned.eval()
    shell.eval()
    assert torch.equal(shell(x), pruned(x))
    with pytest.raises(RPGConfigError, match="kept"):
        rebuild_pruned(model, {"layer9.0": 3})
    with pytest.raises(RPGConfigError, match="kept"):
        rebuild_pruned(model, {"layer1.0": 0})

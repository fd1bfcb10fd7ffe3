"""The mdeq model and model.recurrence (paper Table 1): shared / rpg / equilibrium."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from rpg_core import RPGConfigError, count_params, rings
from rpg_core.format import load_compact, save_compact
from rpg_core.models import create_model
from rpg_core.models.mdeq import MDEQNet, is_tied, norm_params_per_block
from rpg_core.rpg.rpgify import generated_weight
from rpg_core.spec import parse_spec
from rpg_core.training.timing import measure_inference

from ..fresh_process import fresh_process_outputs


def _model(mode: str | None, repeats: int = 1, width: float = 0.25, **rec: Any) -> MDEQNet:
    recurrence = None if mode is None else {"mode": mode, "repeats": repeats, **rec}
    spec = {"model": {"arch": "mdeq", "width": width, "recurrence": recurrence}}
    model = create_model(spec, num_classes=5, in_channels=1)
    assert isinstance(model, MDEQNet)
    return model


def _x(n: int = 3, size: int = 12, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(n, 1, size, size, generator=torch.Generator().manual_seed(1), dtype=dtype)


@pytest.mark.parametrize("repeats", [1, 2, 4])
def test_parameter_counts_match_across_modes(repeats: int) -> None:
    shared = count_params(_model("shared", repeats))
    rpg_model = _model("rpg", repeats)
    rpg = count_params(rpg_model)
    eq = count_params(_model("equilibrium"))
    # shared and equilibrium: the same block (a ChannelAffine has a norm's weight and bias)
    assert shared.total == eq.total
    assert shared.conv == eq.conv
    # rpg: the ring is one block's convs; the stem's convs stay ordinary
    assert rpg.ring + rpg.conv == shared.conv
    assert rpg.backbone == shared.conv - rpg.conv
    # what differs: (repeats - 1) more sets of the block's norms
    extra = (repeats - 1) * norm_params_per_block(rpg_model.blocks[0])
    assert rpg.total - shared.total == extra


@pytest.mark.parametrize("repeats", [2, 4])
def test_shared_with_per_application_norms_ties_the_convs_only(repeats: int) -> None:
    model = _model("shared", repeats, norms="per_application")
    assert count_params(model).total == count_params(_model("rpg", repeats)).total
    assert count_params(model).conv == count_params(_model("shared", repeats)).conv
    assert len(model.blocks) == repeats
    a, b = model.blocks[0].branches[1], model.blocks[repeats - 1].branches[1]
    assert is_tied(b.conv2) and not is_tied(a.conv2)
    assert b.conv2.weight is a.conv2.weight  # the same tensor, not a copy
    assert b.norm2 is not a.norm2
    assert not any(
        k.startswith("blocks.1.") and k.endswith("conv1.weight") for k in model.state_dict()
    )
    x = _x()
    nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2])).backward()
    assert a.conv2.weight.grad is not None and float(a.conv2.weight.grad.abs().sum()) > 0
    with torch.no_grad():  # a change to block 0's conv changes every application
        a.conv2.weight.add_(1.0)
    assert torch.equal(b.conv2.weight, a.conv2.weight)


def test_rpg_applications_are_distinct_views_of_one_ring() -> None:
    model = _model("rpg", 3)
    (ring,) = rings(model).values()
    assert len(model.blocks) == 3
    one_block = sum(m.weight.numel() for m in model.blocks[0].modules() if isinstance(m, nn.Conv2d))
    assert ring.spec.size == one_block
    name = "branches.0.conv1"
    kernels = [generated_weight(b.get_submodule(name)) for b in model.blocks]
    for a in range(3):
        for b in range(a + 1, 3):
            assert not torch.equal(kernels[a], kernels[b])
    # each application's kernels are its own slots of the one ring's index array
    slots = {s.name: s for s in ring.spec.layers}
    offsets = {slots[f"blocks.{k}.{name}"].offset for k in range(3)}
    assert len(offsets) == 3
    assert ring.spec.generated == 3 * ring.spec.size
    # every application's norms are its own
    assert model.blocks[0].branches[0].norm1 is not model.blocks[1].branches[0].norm1


def test_shared_applies_the_same_block_k_times() -> None:
    model = _model("shared", 3).eval()
    assert len(model.blocks) == 1
    calls: list[int] = []
    model.blocks[0].register_forward_hook(lambda *a: calls.append(1))
    x = _x()
    with torch.no_grad():
        y = model(x)
        assert len(calls) == 3
        s = model.stem(x)
        zs = model.initial_states(s)
        for _ in range(3):
            zs = model.blocks[0](zs, s)
        by_hand = model.fc(model.head_norm(torch.cat([z.mean((2, 3)) for z in zs], 1)))
    assert torch.equal(y, by_hand)
    # a different K, same weights: a different function
    model.repeats = 1
    with torch.no_grad():
        assert not torch.allclose(model(x), y)


def test_equilibrium_converges_to_a_fixed_point() -> None:
    torch.manual_seed(0)
    # training mode: the stem's batchnorm normalises the injection as it does in training (a
    # fresh model's running statistics do not); no_grad: the solver alone, no backward pass
    model = _model("equilibrium", tol=1e-3, max_iter=60).train()
    x = _x()
    with torch.no_grad():
        s = model.stem(x)
        zs = model.solve(s)
        again = model.blocks[0](zs, s)
    assert model.last_residual is not None and model.last_residual < 1e-3
    num = sum(float((a - b).norm() ** 2) for a, b in zip(again, zs, strict=True)) ** 0.5
    den = sum(float(a.norm() ** 2) for a in again) ** 0.5
    assert num / den < 1e-3
    # the same block applied once from z_0 is far from it: the solver did the work
    once = model.blocks[0](model.initial_states(s), s)
    far = sum(float((a - b).norm() ** 2) for a, b in zip(once, zs, strict=True)) ** 0.5
    assert far / den > 10 * (num / den)


@pytest.mark.slow
def test_equilibrium_gradient_matches_finite_differences_float64() -> None:
    torch.manual_seed(0)
    model = _model(
        "equilibrium", width=0.125, tol=1e-11, max_iter=200, backward_tol=1e-11,
        backward_max_iter=200,
    ).double()  # fmt: skip
    with torch.no_grad():  # a firmer contraction: the solve converges to 1e-11 in float64
        for conv in model.blocks.modules():
            if isinstance(conv, nn.Conv2d):
                conv.weight.mul_(0.5)
    x = _x(2, 8, torch.float64)
    target = torch.randn(2, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    def loss() -> torch.Tensor:
        return ((model(x) - target) ** 2).sum()

    weight = model.blocks[0].branches[0].conv2.weight
    model.zero_grad()
    loss().backward()
    assert weight.grad is not None
    grad = weight.grad.flatten()
    eps = 1e-5
    for i in (0, 7, 23):
        with torch.no_grad():
            weight.view(-1)[i] += eps
            up = float(loss())
            weight.view(-1)[i] -= 2 * eps
            down = float(loss())
            weight.view(-1)[i] += eps
        fd = (up - down) / (2 * eps)
        assert float(grad[i]) == pytest.approx(fd, rel=1e-4, abs=1e-8)
    assert model.last_residual is not None and model.last_residual < 1e-10


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"model": {"arch": "resnet18", "recurrence": {"mode": "shared"}}}, "model.recurrence: arch"),
        ({"model": {"arch": "mdeq", "recurrence": {"mode": "equilibrium", "repeats": 2}}}, "recurrence: repeats"),
        ({"model": {"arch": "mdeq", "recurrence": {"mode": "shared", "repeats": 9}}}, "recurrence.repeats"),
        ({"model": {"arch": "mdeq", "recurrence": {"mode": "loop"}}}, "recurrence.mode"),
        ({"model": {"arch": "mdeq", "recurrence": {"mode": "equilibrium", "norms": "per_application"}}}, "norms: equilibrium"),
        (
            {"model": {"arch": "mdeq", "recurrence": {"mode": "rpg", "repeats": 2}},
             "rpg": {"ring_size": 1000, "scope": "stage"}},
            r"rpg: .*scope",
        ),
        (
            {"model": {"arch": "mdeq", "recurrence": {"mode": "rpg", "repeats": 2}},
             "rpg": {"ring_size": 1000, "include": ["stem.*"]}},
            r"rpg: .*include",
        ),
        (
            {"model": {"arch": "mdeq", "recurrence": {"mode": "shared", "repeats": 2}},
             "rpg": {"ring_size": 1000}},
            "rpg: recurrence mode shared",
        ),
    ],
)  # fmt: skip
def test_invalid_recurrence_names_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(RPGConfigError, match=field):
        parse_spec(spec)


def test_rpg_section_sets_the_ring_of_recurrence_rpg() -> None:
    spec = {
        "model": {"arch": "mdeq", "width": 0.25, "recurrence": {"mode": "rpg", "repeats": 2}},
        "rpg": {"ring_size": 3000, "seed": 5},
    }
    model = create_model(spec, in_channels=1)
    (ring,) = rings(model).values()
    assert ring.spec.size == 3000
    assert all(s.name.startswith("blocks.") for s in ring.spec.layers)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["rpg", "equilibrium", "shared", "shared-per-application"])
def test_rpg_file_rebuilds_bit_for_bit_in_a_fresh_process(mode: str, tmp_path: Path) -> None:
    torch.manual_seed(3)
    extra = {"norms": "per_application"} if mode == "shared-per-application" else {}
    mode = mode.split("-")[0]
    model = _model(mode, 1 if mode == "equilibrium" else 2, **extra)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(2):  # trained weights and batchnorm statistics, not the init
        opt.zero_grad()
        nn.functional.cross_entropy(model(_x(4)), torch.tensor([0, 1, 2, 3])).backward()
        opt.step()
    model.eval()
    path = tmp_path / "m.rpg"
    save_compact(model, path)
    loaded = load_compact(path)
    assert loaded.rpg_spec["model"]["recurrence"]["mode"] == mode  # type: ignore[index]
    x = _x()
    with torch.no_grad():
        expected = model(x).numpy()
        assert np.array_equal(loaded(x).numpy(), expected)
    assert np.array_equal(fresh_process_outputs(path, x, tmp_path), expected)


def test_default_mdeq_is_one_application() -> None:
    plain = _model(None)
    assert plain.mode == "shared" and plain.repeats == 1 and len(plain.blocks) == 1
    assert plain.rpg_spec["model"]["recurrence"] is None  # type: ignore[index]


class _Sleepy(nn.Module):
    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        time.sleep(self.seconds)
        return x


def test_measure_inference_is_the_median_per_image() -> None:
    model = _Sleepy(0.02)
    ms = measure_inference(model, torch.zeros(4, 1, 2, 2), warmup=1, repeats=3)
    assert model.calls == 4
    assert 5.0 <= ms < 5.0 * 4  # 20 ms per batch of 4; a busy machine only adds
    with pytest.raises(RPGConfigError):
        measure_inference(model, torch.zeros(0, 1, 2, 2))

"""The stacked architectures (paper Tables 4, 5): hourglass (none / full / rpg) and encdec
(single / reuse / reuse-new-bn / rpg): shapes, parameter counts, what is shared."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from rpg_core import RPGConfigError, count_params, rings
from rpg_core.models import create_model
from rpg_core.models.factory import _materialize_ordinary
from rpg_core.models.stacked import HEATMAP_STRIDE, EncDecNet, HourglassNet, StackedNet
from rpg_core.rpg.params import NORM_TYPES
from rpg_core.rpg.rpgify import generated_weight, is_generated, materialize, rpgify
from rpg_core.rpg.tying import is_tied
from rpg_core.spec import ENCDEC_BLOCKS, ModelSpec, sharing_rpg

JOINTS = 5
ARCHS = {"hourglass": ("none", "full", "rpg"), "encdec": ("single", "reuse", "reuse-new-bn", "rpg")}


def _build(arch: str, sharing: str, stacks: int, width: float = 0.25) -> StackedNet:
    """The plain network (sharing rpg: N sub-networks of ordinary convs)."""
    cls = HourglassNet if arch == "hourglass" else EncDecNet
    return cls(width=width, num_classes=JOINTS, in_channels=3, stacks=stacks, sharing=sharing)


def _rpg(arch: str, stacks: int, width: float = 0.25) -> StackedNet:
    """What create_model does for sharing rpg: the plain network on the meta device, rpgify
    with :func:`sharing_rpg`'s rings, then the ordinary tensors materialised."""
    spec = ModelSpec(arch=arch, width=width, stacks=stacks, sharing="rpg")
    with torch.device("meta"):
        model = _build(arch, "rpg", stacks, width)
    rpgify(model, **sharing_rpg(spec, None).rpgify_kwargs())
    _materialize_ordinary(model)
    return model


def _x(size: int = 32, n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def _conv_weights(module: nn.Module) -> int:
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Conv2d))


def _norms(module: nn.Module) -> int:
    return sum(
        p.numel() for m in module.modules() if isinstance(m, NORM_TYPES) for p in m.parameters()
    )


def _sub(model: nn.Module, i: int, name: str) -> Any:
    """Layer ``name`` of sub-network ``i``."""
    return model.get_submodule(f"stacks.{i}.{name}")


def _loss(outs: list[dict[str, torch.Tensor]]) -> torch.Tensor:
    return sum((v.square().mean() for o in outs for v in o.values()), torch.zeros(()))


@pytest.mark.parametrize(
    ("arch", "sharing"), [(a, s) for a, shs in ARCHS.items() for s in shs]
)  # fmt: skip
def test_forward_shapes(arch: str, sharing: str) -> None:
    stacks = 1 if sharing == "single" else 2
    model = _rpg(arch, stacks) if sharing == "rpg" else _build(arch, sharing, stacks)
    for size in (32, 40):  # 40: odd sizes on the way down (ceil pooling, upsampling to size)
        outs = model(_x(size))
        assert len(outs) == stacks
        for out in outs:
            if arch == "hourglass":
                s = size // HEATMAP_STRIDE
                assert set(out) == {"heatmaps"}
                assert out["heatmaps"].shape == (2, JOINTS, s, s)
            else:
                assert set(out) == {"depth", "normal"}
                assert out["depth"].shape == (2, 1, size, size)
                assert out["normal"].shape == (2, 3, size, size)
                assert float(out["depth"].detach().min()) > 0
                norms = out["normal"].norm(dim=1)
                assert torch.allclose(norms, torch.ones_like(norms), atol=1e-4)


@pytest.mark.parametrize("size", [64, 128, 256])
def test_hourglass_larger_inputs(size: int) -> None:
    (out,) = _build("hourglass", "full", 1, width=0.125)(_x(size, 1))
    assert out["heatmaps"].shape == (1, JOINTS, size // 2, size // 2)


@pytest.mark.parametrize("stacks", [1, 2, 4])
def test_hourglass_parameter_counts(stacks: int) -> None:
    one = _build("hourglass", "none", 1)
    stem = count_params(one.stem).total
    sub = count_params(one).total - stem
    none = _build("hourglass", "none", stacks)
    assert count_params(none).total == stem + stacks * sub
    full = _build("hourglass", "full", stacks)
    assert count_params(full).total == count_params(one).total
    assert len(list(full.parameters())) == len(list(one.parameters()))
    rpg = _rpg("hourglass", stacks)
    (ring,) = rings(rpg).values()
    assert ring.spec.size == _conv_weights(one.stacks[0])  # one global ring: one sub-network
    counts = count_params(rpg)
    assert counts.ring == ring.spec.size
    assert counts.conv == _conv_weights(one.stem)  # the stem alone stays ordinary
    assert counts.norm == _norms(one.stem) + stacks * _norms(one.stacks[0])
    assert counts.total == count_params(full).total + (stacks - 1) * _norms(one.stacks[0])
    assert counts.generated == stacks * ring.spec.size


@pytest.mark.parametrize("stacks", [1, 2, 4])
def test_encdec_parameter_counts(stacks: int) -> None:
    one = _build("encdec", "single", 1)
    base = count_params(one)
    sub_norms = _norms(one.stacks[0])
    reuse = _build("encdec", "reuse", stacks)
    assert count_params(reuse).total == base.total
    assert len(list(reuse.parameters())) == len(list(one.parameters()))
    tied = _build("encdec", "reuse-new-bn", stacks)
    assert count_params(tied).conv == base.conv  # one set of conv tensors ...
    assert count_params(tied).norm == base.norm + (stacks - 1) * sub_norms  # ... N of norms
    assert len(tied.stacks) == stacks
    rpg = _rpg("encdec", stacks)
    by_name = rings(rpg)
    assert sorted(by_name) == sorted(ENCDEC_BLOCKS)  # one ring per block
    for block in ENCDEC_BLOCKS:
        assert by_name[block].spec.size == _conv_weights(one.stacks[0].get_submodule(block))
    counts = count_params(rpg)
    assert counts.ring == _conv_weights(one.stacks[0])
    assert counts.conv == _conv_weights(one.stem)
    assert counts.norm == base.norm + (stacks - 1) * sub_norms
    assert counts.total == count_params(tied).total
    plain = _build("encdec", "rpg", stacks)  # the none-like plain build: N sub-networks
    assert (
        count_params(plain).total == base.total + (stacks - 1) * count_params(one.stacks[0]).total
    )


@pytest.mark.parametrize(("arch", "sharing"), [("hourglass", "full"), ("encdec", "reuse")])
def test_one_subnetwork_applied_n_times(arch: str, sharing: str) -> None:
    torch.manual_seed(0)
    once = _build(arch, "single" if arch == "encdec" else sharing, 1).eval()
    torch.manual_seed(0)
    twice = _build(arch, sharing, 2).eval()
    assert len(twice.stacks) == 1
    a, b = once.state_dict(), twice.state_dict()
    assert a.keys() == b.keys()
    # the same parameters; full keeps batchnorm statistics per application (buffers)
    params = {n for n, _ in once.named_parameters()}
    assert all(torch.equal(a[k], b[k]) for k in params)
    calls: list[int] = []
    twice.stacks[0].register_forward_hook(lambda *_: calls.append(1))
    x = _x()
    with torch.no_grad():
        (y1,) = once(x)
        y2 = twice(x)
    assert len(calls) == 2
    key = next(iter(y1))
    assert torch.equal(y2[0][key], y1[key])  # the first application is the one-stack model
    assert not torch.allclose(y2[1][key], y1[key])  # the second one computes something else


def test_reuse_new_bn_ties_convs_keeps_own_batchnorms() -> None:
    model = _build("encdec", "reuse-new-bn", 3)
    conv0, conv2 = _sub(model, 0, "enc2.conv1"), _sub(model, 2, "enc2.conv1")
    assert is_tied(conv2) and not is_tied(conv0)
    assert conv2.weight is conv0.weight
    assert _sub(model, 2, "head.predict").weight is _sub(model, 0, "head.predict").weight
    assert _sub(model, 2, "enc2.norm1") is not _sub(model, 0, "enc2.norm1")
    assert not any(k.startswith("stacks.1.") and "conv" in k for k in model.state_dict())
    _loss(model(_x())).backward()
    grad = conv0.weight.grad
    assert grad is not None and float(grad.abs().sum()) > 0
    assert _sub(model, 2, "enc2.norm1").weight.grad is not None


@pytest.mark.parametrize("arch", ["hourglass", "encdec"])
def test_rpg_subnetworks_are_distinct_views_of_one_ring(arch: str) -> None:
    model = _rpg(arch, 2)
    layer = "hourglass.inner.down.conv2" if arch == "hourglass" else "enc2.conv1"
    c0, c1 = _sub(model, 0, layer), _sub(model, 1, layer)
    assert is_generated(c0) and is_generated(c1)
    name = "global" if arch == "hourglass" else "enc2"
    assert c0.__dict__["_rpg_ring"] is c1.__dict__["_rpg_ring"] is rings(model)[name]
    assert not torch.equal(generated_weight(c0), generated_weight(c1))
    norm = layer.replace("conv", "norm")
    assert _sub(model, 0, norm) is not _sub(model, 1, norm)
    assert not any(is_generated(m) for m in model.stem.modules())
    _loss(model(_x())).backward()
    for r in rings(model).values():
        assert r.weight.grad is not None and float(r.weight.grad.abs().sum()) > 0
    assert model.get_submodule("stem.0").weight.grad is not None


def test_backward_reaches_every_subnetwork_none() -> None:
    model = _build("hourglass", "none", 2)
    _loss(model(_x())).backward()
    for i in range(2):
        grad = _sub(model, i, "hourglass.skip.conv2").weight.grad
        assert grad is not None and float(grad.abs().sum()) > 0


@pytest.mark.parametrize("arch", ["hourglass", "encdec"])
def test_init_weights_leaves_generated_convs_alone(arch: str) -> None:
    model = _rpg(arch, 2)
    before = {n: r.weight.detach().clone() for n, r in rings(model).items()}
    stem_conv: Any = model.get_submodule("stem.0")
    with torch.no_grad():
        stem_conv.weight.zero_()
        _sub(model, 1, "features.2" if arch == "hourglass" else "dec1.norm1").weight.fill_(3.0)
    model.init_weights()
    for n, r in rings(model).items():
        assert torch.equal(r.weight, before[n])
    assert float(stem_conv.weight.detach().abs().sum()) > 0  # ordinary convs re-initialised
    assert all(
        float(m.weight.detach().max()) == 1.0
        for m in model.modules()
        if isinstance(m, nn.BatchNorm2d)
    )


@pytest.mark.parametrize(
    ("arch", "sharing"), [("hourglass", "none"), ("encdec", "reuse-new-bn"), ("encdec", "rpg")]
)
def test_same_seed_same_weights(arch: str, sharing: str) -> None:
    def build() -> dict[str, torch.Tensor]:
        torch.manual_seed(3)
        m = _rpg(arch, 2) if sharing == "rpg" else _build(arch, sharing, 2)
        return m.state_dict()

    a, b = build(), build()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(("arch", "stacks"), [("hourglass", 2), ("encdec", 3)])
def test_plain_rpg_build_has_the_tensors_of_the_rpg_model(arch: str, stacks: int) -> None:
    plain = _build(arch, "rpg", stacks).state_dict()
    assert {k.split(".")[1] for k in plain if k.startswith("stacks.")} == {
        str(i) for i in range(stacks)
    }
    # the same tensors as a none-like layout, and as the rpg model's materialised copy
    other = "none" if arch == "hourglass" else "reuse-new-bn"
    if other == "none":
        none = _build(arch, other, stacks).state_dict()
        assert {k: v.shape for k, v in none.items()} == {k: v.shape for k, v in plain.items()}
    mat = materialize(_rpg(arch, stacks)).state_dict()
    assert {k: v.shape for k, v in mat.items()} == {k: v.shape for k, v in plain.items()}


@pytest.mark.parametrize(
    ("arch", "kwargs", "match"),
    [
        ("hourglass", {"sharing": "reuse"}, r"model\.sharing: .*none \| full \| rpg"),
        ("encdec", {"sharing": "full"}, r"model\.sharing: .*single \| reuse \| reuse-new-bn"),
        ("encdec", {"sharing": "single", "stacks": 2}, r"model\.stacks: sharing single"),
        ("hourglass", {"stacks": 0}, r"model\.stacks"),
        ("hourglass", {"variant": "tiny"}, r"model\.variant"),
    ],
)
def test_invalid_sharing_names_the_field(arch: str, kwargs: dict[str, Any], match: str) -> None:
    cls = HourglassNet if arch == "hourglass" else EncDecNet
    with pytest.raises(RPGConfigError, match=match):
        cls(width=0.25, **kwargs)


def test_encdec_single_defaults_to_one_stack() -> None:
    assert EncDecNet(width=0.25, sharing="single").num_stacks == 1
    assert EncDecNet(width=0.25, sharing="reuse").num_stacks == 2


@pytest.mark.parametrize(("arch", "task"), [("hourglass", "pose"), ("encdec", "multitask")])
def test_create_model_sharing_rpg(arch: str, task: str) -> None:
    spec = {"task": task, "model": {"arch": arch, "width": 0.25, "stacks": 2, "sharing": "rpg"}}
    model = create_model(spec, num_classes=JOINTS)
    assert rings(model)
    assert isinstance(model, StackedNet) and model.num_stacks == 2
    expect = count_params(_rpg(arch, 2))
    assert count_params(model) == expect
    plain = create_model(spec, num_classes=JOINTS, plain=True)
    assert not rings(plain)
    mat = materialize(model).state_dict()
    assert {k: v.shape for k, v in plain.state_dict().items()} == {
        k: v.shape for k, v in mat.items()
    }
    assert len(model(_x())) == 2


def test_full_sharing_keeps_batchnorm_statistics_per_application() -> None:
    """``full`` shares every parameter; each application normalises by its own running
    statistics (buffers), so evaluation sees what training saw at that stage."""
    from rpg_core.models.stacked import StagedBatchNorm2d

    torch.manual_seed(0)
    full = HourglassNet(width=0.25, stacks=3, sharing="full")
    one = HourglassNet(width=0.25, stacks=1, sharing="full")
    assert count_params(full) == count_params(one)
    staged = [m for m in full.modules() if isinstance(m, StagedBatchNorm2d)]
    assert staged and all(m.running_mean.shape == (3, m.num_features) for m in staged)
    full.train()
    full(torch.randn(4, 3, 32, 32))
    norm = staged[0]
    assert norm.num_batches_tracked.tolist() == [1, 1, 1]
    # the stages saw different inputs: different statistics
    assert not torch.allclose(norm.running_mean[0], norm.running_mean[2])
    # precise batchnorm (momentum None): each stage's cumulative average of its batches
    from rpg_core.training.precise_bn import recompute_batchnorm

    batches = [torch.randn(4, 3, 32, 32) for _ in range(3)]
    recompute_batchnorm(full, batches)
    assert norm.num_batches_tracked.tolist() == [3, 3, 3]

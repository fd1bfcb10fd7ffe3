"""rpgify on real architectures: counts, state_dict, scopes, switches, errors."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn

from rpg_core import RPGConfigError, count_params, is_generated, materialize, rings, rpgify


def small_input(model_name: str) -> torch.Tensor:
    return torch.randn(2, 3, 64, 64) if model_name != "vgg11_bn" else torch.randn(2, 3, 32, 32)


def test_torchvision_resnet_generated_counts() -> None:
    assert count_params(rpgify(torchvision.models.resnet18(), 45_000)).generated == 11_157_504
    assert count_params(torchvision.models.resnet34()).backbone == 21_258_240


def test_parameters_are_the_rings_and_the_ordinary_ones() -> None:
    model = rpgify(torchvision.models.resnet18(num_classes=10), 45_000)
    c = count_params(model)
    assert sum(p.numel() for p in model.parameters()) == c.total
    assert c.ring == 45_000 and c.conv == 9408 and c.head == 5130 and c.backbone == 45_000
    biggest = max(p.numel() for p in model.parameters())
    assert biggest == 45_000  # no full-size kernel left anywhere
    conv = model.layer2[0].conv1
    assert isinstance(conv, nn.Conv2d) and is_generated(conv)
    assert conv.weight.shape == (128, 64, 3, 3)
    assert not is_generated(model.conv1)


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "mobilenet_v2", "vgg11_bn"])
def test_supported_models_forward_backward(name: str) -> None:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(num_classes=10)
    rpgify(model, 0.01)
    model(small_input(name)).logsumexp(1).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
    assert rings(model)["global"].weight.grad.abs().sum() > 0


def test_grouped_depthwise_and_linear() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.Conv2d(8, 8, 3, groups=8),  # depthwise
        nn.Conv2d(8, 16, 3, groups=2),  # grouped
        nn.Flatten(),
        nn.Linear(16 * 8 * 8, 32),
        nn.ReLU(),
        nn.Linear(32, 4),
    )
    rpgify(model, 500, linear=True)
    generated = [n for n, m in model.named_modules() if is_generated(m)]
    assert generated == ["1", "2", "4"]  # not the stem, not the head
    assert model[1].weight.shape == (8, 1, 3, 3) and model[2].weight.shape == (16, 4, 3, 3)
    out = model(torch.randn(2, 3, 14, 14))
    out.sum().backward()
    assert out.shape == (2, 4)
    assert count_params(model).ring == 500


def test_state_dict_holds_each_ring_once_and_round_trips() -> None:
    torch.manual_seed(0)
    a = rpgify(torchvision.models.resnet18(num_classes=10), 2000, scope="stage", seed=4)
    sd = a.state_dict()
    ring_keys = [k for k in sd if "rpg_rings" in k]
    assert sorted(ring_keys) == [f"rpg_rings.layer{i}.weight" for i in range(1, 5)]
    assert not any(k.endswith("conv1.weight") and k.startswith("layer") for k in sd)
    with torch.no_grad():
        for p in a.parameters():
            p.add_(torch.randn_like(p) * 0.01)  # make it differ from a fresh init
    b = rpgify(torchvision.models.resnet18(num_classes=10), 2000, scope="stage", seed=4)
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_stage_scope_splits_the_ring_size() -> None:
    model = rpgify(torchvision.models.resnet18(), 45_000, scope="stage")
    rs = rings(model)
    assert list(rs) == ["layer1", "layer2", "layer3", "layer4"]
    assert sum(r.spec.size for r in rs.values()) == 45_000
    # proportional to the weights each ring generates
    ratio = {k: r.spec.size / r.spec.generated for k, r in rs.items()}
    assert max(ratio.values()) / min(ratio.values()) < 1.01
    assert model.layer1[0].conv1.rpg_ring_name == "layer1"


def test_mapping_scope_shares_a_ring_between_repeated_subnetworks() -> None:
    def block() -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)
        )

    class Stacked(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(1, 4, 3, padding=1)
            self.stack1, self.stack2 = block(), block()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.stack2(self.stack1(self.stem(x)))

    model = rpgify(
        Stacked(), {"first": 100, "second": 0.5}, scope={"*.0": "first", "*.2": "second"}
    )
    rs = rings(model)
    assert rs["first"].spec.size == 100 and rs["second"].spec.size == 144
    assert [s.name for s in rs["first"].spec.layers] == ["stack1.0", "stack2.0"]
    assert model(torch.randn(1, 1, 5, 5)).shape == (1, 4, 5, 5)


def test_seeds_change_the_tables_not_the_counts() -> None:
    a = rings(rpgify(torchvision.models.resnet18(), 1000, seed=1))["global"]
    b = rings(rpgify(torchvision.models.resnet18(), 1000, seed=2))["global"]
    assert not torch.equal(a.index, b.index)
    assert a.spec.generated == b.spec.generated


def test_ablation_switches_reach_the_tables() -> None:
    ring = rings(rpgify(torchvision.models.resnet18(), 1000, permute=False, reflect=False))[
        "global"
    ]
    assert torch.equal(ring.index[:3000].long(), torch.arange(3000) % 1000)
    assert (ring.scale > 0).all()


def test_deepcopy_and_materialize() -> None:
    model = rpgify(torchvision.models.resnet18(num_classes=10), 3000).eval()
    twin = copy.deepcopy(model)
    assert rings(twin)["global"] is not rings(model)["global"]
    assert twin.layer1[0].conv1.__dict__["_rpg_ring"] is rings(twin)["global"]
    plain = materialize(model)
    assert not rings(plain) and not any(is_generated(m) for m in plain.modules())
    assert type(plain.layer1[0].conv1) is nn.Conv2d
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), plain(x))
        assert torch.equal(model(x), twin(x))
    assert count_params(plain).backbone == 11_157_504


def test_sequential_model_still_runs() -> None:
    model = rpgify(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3), nn.Conv2d(4, 4, 3)), 20)
    assert len(model) == 3
    assert model(torch.randn(1, 3, 9, 9)).shape == (1, 4, 3, 3)
    assert list(rings(model)) == ["global"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ring_size": 0}, "ring_size must be > 0"),
        ({"ring_size": -5}, "ring_size must be > 0"),
        ({"ring_size": 1.5}, r"ring_size .* must be in \(0, 1\]"),
        ({"ring_size": 0.0}, r"ring_size .* must be in \(0, 1\]"),
        ({"ring_size": True}, "ring_size must be a count"),
        ({"ring_size": 10, "include": ["nothing.*"]}, "include: pattern 'nothing.*' matches no"),
        ({"ring_size": 10, "exclude": ["zzz"]}, "exclude: pattern 'zzz'"),
        ({"ring_size": 10, "scope": "blocks"}, "scope must be 'global', 'stage'"),
        ({"ring_size": 10, "seed": -1}, "seed must be in"),
        ({"ring_size": {"global": 10, "other": 3}}, "ring_size: the mapping must name exactly"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(RPGConfigError, match=match):
        rpgify(torchvision.models.resnet18(), **kwargs)


def test_nothing_to_generate_and_twice() -> None:
    with pytest.raises(RPGConfigError, match="nothing to generate"):
        rpgify(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), 10)
    model = rpgify(torchvision.models.resnet18(), 1000)
    with pytest.raises(RPGConfigError, match="already converted"):
        rpgify(model, 1000)
    with pytest.raises(RPGConfigError, match="torch.nn.Module"):
        rpgify("resnet18", 10)  # type: ignore[arg-type]

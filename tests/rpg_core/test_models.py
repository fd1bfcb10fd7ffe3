"""The model zoo: every registered model builds from a spec, plain and RPG, and trains."""

from __future__ import annotations

import pytest
import torch
import torchvision

from rpg_core import RPGConfigError, count_params, rings
from rpg_core.models import create_model, list_models, model_spec_of, register_model


def test_registry_lists_the_resnets() -> None:
    assert {"resnet18", "resnet34"} <= set(list_models())
    with pytest.raises(RPGConfigError, match="already registered"):
        register_model("resnet18")(lambda **kw: torch.nn.Identity())


@pytest.mark.parametrize("arch", ["resnet18", "resnet34"])
def test_imagenet_form_matches_torchvision(arch: str) -> None:
    ours = create_model({"model": {"arch": arch, "variant": "imagenet", "num_classes": 1000}})
    theirs = getattr(torchvision.models, arch)()
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [
        (n, p.shape) for n, p in theirs.named_parameters()
    ]
    assert count_params(ours).total == sum(p.numel() for p in theirs.parameters())


@pytest.mark.parametrize("arch", list_models())
@pytest.mark.parametrize("rpg", [None, {"ring_size": 0.02}, {"ring_size": 5000, "scope": "stage"}])
def test_every_model_builds_and_trains_a_step(arch: str, rpg: dict | None) -> None:
    torch.manual_seed(0)
    model = create_model(
        {"model": {"arch": arch, "width": 0.125, "in_channels": 1}, "rpg": rpg}, num_classes=7
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(4, 1, 16, 16), torch.randint(0, 7, (4,))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    before = [p.detach().clone() for p in model.parameters()]
    opt.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    assert model(x).shape == (4, 7)
    assert bool(rings(model)) == (rpg is not None)


def test_width_multiplier_matches_a_plain_baseline_to_an_rpg_budget() -> None:
    rpg = create_model({"model": {"arch": "resnet18"}, "rpg": {"ring_size": 45000}})
    narrow = create_model({"model": {"arch": "resnet18", "width": 0.0625}})
    assert count_params(narrow).backbone == pytest.approx(45000, rel=0.1)
    assert count_params(rpg).backbone == 45000


def test_model_carries_the_spec_that_rebuilds_it() -> None:
    model = create_model({"model": {"arch": "resnet34"}, "rpg": {"ring_size": 900, "seed": 3}})
    spec = model_spec_of(model)
    assert spec is not None
    assert spec["model"]["num_classes"] == 10 and spec["model"]["in_channels"] == 3
    twin = create_model(spec)
    assert torch.equal(rings(twin)["global"].index, rings(model)["global"].index)


def test_bad_model_specs() -> None:
    with pytest.raises(RPGConfigError, match="model.arch: unknown arch 'resnet99'"):
        create_model({"model": {"arch": "resnet99"}})
    with pytest.raises(RPGConfigError, match="model.variant"):
        create_model({"model": {"arch": "resnet18", "variant": "mnist"}})
    with pytest.raises(RPGConfigError, match="create_model needs"):
        create_model(42)

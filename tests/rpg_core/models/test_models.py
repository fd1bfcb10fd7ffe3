"""The model zoo: every registered model builds from a spec, plain and RPG, and trains."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torchvision

from rpg_core import RPGConfigError, count_params, rings
from rpg_core.catalog.tasks import task_info, task_of_arch
from rpg_core.models import create_model, list_models, model_spec_of, register_model
from rpg_core.tasks import get_task


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
    """Every registered model, with its task's loss: a classifier's logits, a stacked model's
    per-sub-network predictions (sharing rpg when there is an rpg section)."""
    torch.manual_seed(0)
    task = task_of_arch(arch)
    model_spec: dict[str, Any] = {"arch": arch, "width": 0.125, "in_channels": 1}
    if task != "classification":
        model_spec["sharing"] = "rpg" if rpg is not None else task_info(task).sharing[0]
        if rpg is not None and rpg.get("scope") == "stage":  # sharing rpg picks its rings
            with pytest.raises(RPGConfigError, match="sharing rpg chooses the rings itself"):
                create_model({"task": task, "model": model_spec, "rpg": rpg})
            return
    model = create_model({"task": task, "model": model_spec, "rpg": rpg}, num_classes=7)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(4, 1, 16, 16)
    loss = get_task(task).loss(model(x), _targets(task, x))
    loss.backward()
    # the one exception: the last sub-network of a stacked model feeds no next one, so its
    # merge convs (the re-injection) get no gradient (when it has its own: sharing none, single)
    idle = {n for n, p in model.named_parameters() if p.grad is None}
    last = f"stacks.{len(getattr(model, 'stacks', [])) - 1}."
    assert all(n.startswith(last) and ".merge_" in n for n in idle), idle
    trained = [p for n, p in model.named_parameters() if n not in idle]
    before = [p.detach().clone() for p in trained]
    opt.step()
    # every trained parameter has a gradient and moves, unless its step is below float32's
    # resolution at its value (a norm scale of 1 with a gradient of 1e-9: a tiny ring's draw)
    assert all(bool((p.grad != 0).any()) for p in trained if p.grad is not None)
    for b, p in zip(before, trained, strict=True):
        step = 0.1 * (p.grad.abs().max() if p.grad is not None else 0.0)
        assert not torch.equal(b, p) or step < 2**-22 * float(b.abs().max())
    out = model(x)
    if task == "classification":
        assert out.shape == (4, 7)
    else:
        saved = model_spec_of(model)
        assert saved is not None and saved["task"] == task
        assert isinstance(out, list) and len(out) == saved["model"]["stacks"]
        assert saved["model"]["stacks"] == (1 if model_spec["sharing"] == "single" else 2)
    assert bool(rings(model)) == (rpg is not None)


def _targets(task: str, x: torch.Tensor) -> Any:
    n, size = x.shape[0], x.shape[-1]
    if task == "classification":
        return torch.randint(0, 7, (n,))
    if task == "pose":
        joints = torch.rand(n, 7, 2) * (size - 1)
        return {"joints": joints, "visible": torch.ones(n, 7), "head": torch.full((n,), 3.0)}
    normal = torch.nn.functional.normalize(torch.randn(n, 3, size, size), dim=1)
    return {"depth": torch.rand(n, 1, size, size) + 1, "normal": normal,
            "mask": torch.ones(n, 1, size, size)}  # fmt: skip


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


def test_create_model_forwards_to_the_familys_own_entry_point(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """timm's way: the factory does not branch per family; a family's module names its own
    ``spec_options`` and create_model calls it (here a plugin family with a ``depth`` option)."""
    import sys
    import types

    family = types.ModuleType("deep_plugin_family")
    seen: list[tuple[str, Any, bool]] = []

    def spec_options(model_spec: Any, rpg: Any, plain: bool) -> tuple[Any, dict[str, Any], Any]:
        seen.append((model_spec.arch, rpg, plain))
        return model_spec, {"depth": 3}, rpg

    def build(
        *, variant: str, width: float, num_classes: int, in_channels: int, depth: int
    ) -> torch.nn.Module:
        convs = [torch.nn.Conv2d(in_channels, in_channels, 3, padding=1) for _ in range(depth)]
        head = [torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()]
        return torch.nn.Sequential(*convs, *head, torch.nn.Linear(in_channels, num_classes))

    build.__module__ = family.__name__
    family.spec_options = spec_options  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, family.__name__, family)
    register_model("deep-plugin")(build)
    model = create_model({"model": {"arch": "deep-plugin", "in_channels": 1}})
    assert seen == [("deep-plugin", None, False)]
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) == 3
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    # a family without its own entry point refuses what it cannot take
    with pytest.raises(RPGConfigError, match="does not apply a block repeatedly"):
        create_model(
            {"model": {"arch": "resnet18", "recurrence": {"mode": "shared", "repeats": 2}}}
        )

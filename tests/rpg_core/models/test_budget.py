"""method.budget made concrete (issue 24): width by bisection, ring size = budget, the checks
against the dense network (counts on the meta device)."""

from __future__ import annotations

from typing import Any

import pytest

from rpg_core.exceptions import RPGConfigError
from rpg_core.models import create_model
from rpg_core.models.budget import resolve_method, width_for_budget
from rpg_core.models.factory import backbone_counter, plain_backbone
from rpg_core.rpg.params import count_params
from rpg_core.spec import ModelSpec, parse_spec

MODEL: dict[str, Any] = {"arch": "resnet18", "width": 0.125}
COUNT = backbone_counter(10, 3)
DENSE = 174_336  # resnet18 at width 0.125 (cifar): conv weights except the stem


def test_dense_backbone_on_meta() -> None:
    assert plain_backbone(ModelSpec(**MODEL), num_classes=10, in_channels=3) == DENSE


def test_rpg_budget_is_the_ring_size() -> None:
    model = create_model({"model": MODEL, "method": {"name": "rpg", "budget": 4000}})
    counts = count_params(model)
    assert counts.backbone == counts.ring == 4000
    model = create_model({"model": MODEL, "method": {"name": "rpg", "budget": 0.1}})
    assert count_params(model).backbone == round(0.1 * DENSE)


def test_width_budget_is_the_closest_width() -> None:
    budget = 20_000
    width, backbone = width_for_budget(ModelSpec(**MODEL), budget, COUNT)
    assert 0 < width < 0.125
    model = create_model({"model": MODEL, "method": {"name": "width", "budget": budget}})
    assert count_params(model).backbone == backbone
    assert count_params(model).ring == 0  # a plain network
    # no other width is closer: the neighbouring networks (one channel step) are farther
    step = 1 / 64  # resnet18's first stage has round(64 * width) channels
    for other in (width - step, width + step):
        if 0 < other <= 0.125:
            near = plain_backbone(
                ModelSpec(**{**MODEL, "width": other}), num_classes=10, in_channels=3
            )
            assert abs(near - budget) >= abs(backbone - budget)
    assert abs(backbone - budget) / budget < 0.2


def test_resolving_twice_gives_the_same_network() -> None:
    spec = parse_spec({"model": MODEL, "method": {"name": "width", "budget": 20_000}})
    once = resolve_method(spec, COUNT)
    twice = resolve_method(once.spec, COUNT)
    assert twice.spec.model.width == once.spec.model.width
    assert twice.backbone == once.backbone


def test_budget_above_the_dense_network_names_the_field() -> None:
    for name in ("rpg", "hashed", "width", "prune-global"):
        with pytest.raises(RPGConfigError, match=rf"method\.budget: {DENSE + 1} .*at most {DENSE}"):
            create_model({"model": MODEL, "method": {"name": name, "budget": DENSE + 1}})


def test_width_budget_below_the_narrowest_says_the_minimum() -> None:
    narrowest = plain_backbone(ModelSpec(**{**MODEL, "width": 1e-4}), num_classes=10, in_channels=3)
    with pytest.raises(RPGConfigError, match=rf"method\.budget: .*at least {narrowest}"):
        create_model({"model": MODEL, "method": {"name": "width", "budget": narrowest - 1}})


def test_the_saved_spec_rebuilds_without_the_method() -> None:
    model = create_model({"model": MODEL, "method": {"name": "width", "budget": 20_000}})
    again = create_model(model.rpg_spec)
    assert count_params(again).backbone == count_params(model).backbone

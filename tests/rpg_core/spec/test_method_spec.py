"""The spec's ``method`` section (issue 24): validated torch-free, errors naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from rpg_core.exceptions import RPGConfigError
from rpg_core.spec import parse_spec

BASE: dict[str, Any] = {"model": {"arch": "resnet18", "width": 0.125}}


def spec(**extra: Any) -> Any:
    return parse_spec({**BASE, **extra})


def test_no_method_is_todays_spec() -> None:
    s = spec()
    assert s.method is None and s.rpg is None
    assert "method" in s.model_dump() and s.model_dump()["method"] is None


def test_rpg_method_fills_the_ring_size() -> None:
    s = spec(method={"name": "rpg", "budget": 5000})
    assert s.rpg is not None and s.rpg.ring_size == 5000 and s.rpg.generator == 4
    s = spec(method={"name": "rpg", "budget": 5000}, rpg={"seed": 3, "scope": "stage"})
    assert s.rpg is not None and s.rpg.seed == 3 and s.rpg.ring_size == 5000


def test_hashed_method_uses_generator_3() -> None:
    s = spec(method={"name": "hashed", "budget": 0.1})
    assert s.rpg is not None and s.rpg.generator == 3 and s.rpg.ring_size == 0.1


def test_width_and_prune_global_are_plain() -> None:
    assert spec(method={"name": "width", "budget": 3000}).rpg is None
    s = spec(method={"name": "prune-global", "budget": 0.2, "rounds": 2, "finetune_epochs": 0})
    assert s.method is not None and s.method.rounds == 2 and s.rpg is None


def test_prune_filters_is_plain_and_prunes_in_rounds() -> None:
    s = spec(method={"name": "prune-filters", "budget": 0.1, "rounds": 4, "finetune_epochs": 2})
    assert s.method is not None and s.method.rounds == 4 and s.method.finetune_epochs == 2
    assert s.rpg is None
    with pytest.raises(ValueError, match=r"rpg: method prune-filters shrinks the plain network"):
        spec(method={"name": "prune-filters", "budget": 0.1}, rpg={"ring_size": 9})


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"method": {"name": "lottery", "budget": 10}}, r"method\.name: .*unknown method"),
        ({"method": {"name": "rpg", "budget": 0}}, r"method\.budget: .*1\.\.2147483647"),
        ({"method": {"name": "rpg", "budget": -0.5}}, r"method\.budget: .*fraction"),
        ({"method": {"name": "rpg", "budget": 1.5}}, r"method\.budget: .*fraction"),
        ({"method": {"name": "rpg", "budget": True}}, r"method\.budget"),
        ({"method": {"name": "rpg"}}, r"method\.budget: Field required"),
        (
            {"method": {"name": "width", "budget": 9, "rounds": 2}},
            r"rounds: only methods prune-global and prune-filters",
        ),
        (
            {"method": {"name": "width", "budget": 9}, "rpg": {"ring_size": 9}},
            r"rpg: method width shrinks the plain network",
        ),
        (
            {"method": {"name": "rpg", "budget": 9}, "rpg": {"ring_size": 10}},
            r"rpg\.ring_size: method\.budget sets the ring size.*9",
        ),
        (
            {"method": {"name": "hashed", "budget": 9}, "rpg": {"generator": 2}},
            r"rpg\.generator: method hashed uses generator 3",
        ),
        (
            {"method": {"name": "hashed", "budget": 9}, "rpg": {"permute": False}},
            r"rpg\.permute: method hashed reads",
        ),
        (
            {"method": {"name": "rpg", "budget": 9}, "rpg": {"generator": 3}},
            r"use method\.name hashed",
        ),
        (
            {"method": {"name": "prune-global", "budget": 9}, "prune": {"source": 1}},
            r"method: a pruning job",
        ),
    ],
)
def test_errors_name_the_field(extra: dict[str, Any], match: str) -> None:
    with pytest.raises(RPGConfigError, match=match):
        spec(**extra)


def test_methods_refuse_recurrence_and_stacks() -> None:
    with pytest.raises(RPGConfigError, match="method: methods shrink a network without"):
        parse_spec(
            {
                "model": {"arch": "mdeq", "recurrence": {"mode": "shared", "repeats": 2}},
                "method": {"name": "width", "budget": 100},
            }
        )
    with pytest.raises(RPGConfigError, match="method: methods shrink a network without"):
        parse_spec({"task": "pose", "method": {"name": "rpg", "budget": 100}})


@pytest.mark.parametrize("name", ["rpg", "hashed", "width", "prune-global"])
def test_a_stored_method_spec_parses_again_to_itself(name: str) -> None:
    """The API stores the dump of the parsed spec and the worker parses it again: the
    prune-global defaults must not make another method's dump refused."""
    spec = parse_spec(
        {
            "model": {"arch": "resnet18", "width": 0.25},
            "data": {"dataset": "fashion-mnist"},
            "method": {"name": name, "budget": 5000},
        }
    )
    again = parse_spec(spec.model_dump(mode="json"))
    assert again == spec
    assert (again.method.rounds is None) == (name != "prune-global")


def test_a_dumped_method_spec_parses_again() -> None:
    """A stored spec is the dump, defaults filled (rounds 3, finetune_epochs 1): re-parsing it
    (the API derives a run's conditions so) must not refuse rounds for a method without them."""
    from rpg_core.spec import parse_spec

    for name in ("rpg", "hashed", "width"):
        s = spec(
            method={"name": name, "budget": 2000}, **({"rpg": None} if name == "width" else {})
        )
        again = parse_spec(s.model_dump())
        assert again.method is not None and again.method.name == name

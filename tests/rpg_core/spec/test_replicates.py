"""A sweep's ``seeds``: replicates that redraw every source of a run's randomness at once."""

from __future__ import annotations

import re
from typing import Any

import pytest
import torch

from rpg_core.exceptions import RPGConfigError
from rpg_core.models import create_model
from rpg_core.rpg.rpgify import rings
from rpg_core.spec import parse_spec
from rpg_core.spec.sweep import MAX_EXPERIMENTS, expand

BASE: dict[str, Any] = {
    "model": {"arch": "resnet18", "width": 0.125},
    "rpg": {"ring_size": 500, "seed": 7},
    "data": {"dataset": "digits"},
    "train": {"epochs": 1, "seed": 9},
}


def _sweep(**over: Any) -> dict[str, Any]:
    return {"name": "rep", "base": BASE, **over}


def test_seeds_set_train_and_rpg_seed_of_every_run() -> None:
    specs = expand(
        _sweep(grid={"rpg.ring_size": [500, 1000]}, extra=[{"name": "plain", "rpg": None}],
               seeds=[0, 3])
    )  # fmt: skip
    assert [s.name for s in specs] == [
        "rep-ring_size_500-seed_0",
        "rep-ring_size_500-seed_3",
        "rep-ring_size_1000-seed_0",
        "rep-ring_size_1000-seed_3",
        "rep-plain-seed_0",
        "rep-plain-seed_3",
    ]
    assert [s.train.seed for s in specs] == [0, 3, 0, 3, 0, 3]  # the base's 9 is replaced
    assert [s.rpg.seed for s in specs if s.rpg] == [0, 3, 0, 3]  # ... and its rpg.seed 7
    assert [s.rpg.ring_size for s in specs if s.rpg] == [500, 500, 1000, 1000]
    assert all(s.rpg is None for s in specs[4:])  # a plain network stays plain


def test_without_seeds_a_sweep_is_unchanged() -> None:
    (spec,) = expand(_sweep())
    assert spec.rpg is not None
    assert spec.name == "rep" and spec.train.seed == 9 and spec.rpg.seed == 7


def test_a_replicate_redraws_the_rings_where_train_seed_alone_does_not() -> None:
    def ring_values(spec: Any) -> torch.Tensor:
        torch.manual_seed(spec.train.seed)  # as the engine does before building the model
        (ring,) = rings(create_model(spec)).values()
        return ring.weight.detach().clone()

    a, b = expand(_sweep(seeds=[0, 1]))
    assert not torch.equal(ring_values(a), ring_values(b))
    # the problem replicates solve: a grid over train.seed keeps the ring's draws
    c, d = expand(_sweep(grid={"train.seed": [0, 1]}))
    assert torch.equal(ring_values(c), ring_values(d))


@pytest.mark.parametrize(
    "base",
    [
        {"task": "pose", "model": {"arch": "hourglass", "sharing": "rpg", "stacks": 2}},
        {"task": "multitask", "model": {"arch": "encdec", "sharing": "rpg", "stacks": 2}},
        {"model": {"arch": "mdeq", "recurrence": {"mode": "rpg", "repeats": 2}},
         "data": {"dataset": "digits"}},
    ],
)  # fmt: skip
def test_rings_a_model_chooses_get_the_seed_too(base: dict[str, Any]) -> None:
    (default,) = expand({"name": "x", "base": base})
    replicates = expand({"name": "x", "base": base, "seeds": [0, 5]})
    assert [s.rpg.seed for s in replicates] == [0, 5]  # type: ignore[union-attr]

    def ring_specs(spec: Any) -> list[Any]:
        return [
            (r.spec.size, r.spec.seed, r.spec.layers) for r in rings(create_model(spec)).values()
        ]

    # seed 0 is the model the sweep without seeds builds; seed 5 draws other rings, same sizes
    assert ring_specs(replicates[0]) == ring_specs(default)
    other = ring_specs(replicates[1])
    assert [r[0] for r in other] == [r[0] for r in ring_specs(default)]
    assert [r[1] for r in other] != [r[1] for r in ring_specs(default)]


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"grid": {"train.seed": [0, 1]}}, "grid.train.seed"),
        ({"grid": {"rpg.seed": [0, 1]}}, "grid.rpg.seed"),
        ({"extra": [{"name": "e", "train": {"seed": 4}}]}, "extra[0].train.seed"),
        ({"extra": [{"name": "e", "rpg": {"seed": 4}}]}, "extra[0].rpg.seed"),
    ],
)
def test_a_seed_varied_elsewhere_too_is_refused(over: dict[str, Any], field: str) -> None:
    with pytest.raises(RPGConfigError, match=re.escape(f"{field}: seeds sets train.seed")):
        expand(_sweep(seeds=[0, 1], **over))


@pytest.mark.parametrize(
    ("seeds", "message"),
    [
        ([1, 2, 1], "each seed once; repeated: 1"),
        ([-1], "greater than or equal to 0"),
        ([2**31], "less than 2147483648"),
        (["1"], "valid integer"),
        (list(range(101)), "at most 100"),
    ],
)
def test_bad_seeds_name_the_field(seeds: list[Any], message: str) -> None:
    with pytest.raises(RPGConfigError, match="seeds") as err:
        expand(_sweep(seeds=seeds))
    assert message in str(err.value)


def test_seeds_count_toward_the_experiment_limit() -> None:
    sizes = list(range(100, 100 + MAX_EXPERIMENTS // 2 + 1))
    with pytest.raises(RPGConfigError, match=r"seeds: \d+ experiments x 2 seeds"):
        expand(_sweep(grid={"rpg.ring_size": sizes}, seeds=[0, 1]))


def test_a_replicate_is_a_valid_spec_that_round_trips() -> None:
    (spec, _) = expand(_sweep(seeds=[2, 4]))
    assert parse_spec(spec.model_dump(mode="json")) == spec

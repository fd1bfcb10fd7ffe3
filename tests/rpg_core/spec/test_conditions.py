"""The conditions of a run (rpg_core.spec.conditions): derived from the resolved spec by leaving out
the compared knobs, the seeds and the labels; and readable numbers (rpg_core.analysis.readable)."""

from __future__ import annotations

from typing import Any

import pytest

from rpg_core.analysis.readable import params_needed_text, params_text
from rpg_core.spec.conditions import (
    comparable,
    conditions_key,
    conditions_of,
    describe,
    differences,
    key_of,
    table_key,
)

BASE: dict[str, Any] = {
    "name": "a",
    "model": {"arch": "resnet18"},
    "rpg": {"ring_size": 1000},
    "data": {"dataset": "fashion-mnist", "train_subset": 3000, "image_size": 14},
    "train": {"epochs": 3},
}


def _with(**sections: dict[str, Any]) -> dict[str, Any]:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in BASE.items()}
    for k, v in sections.items():
        out[k] = {**(out.get(k) or {}), **v} if v is not None else None
    return out


def test_size_seeds_names_and_execution_are_not_conditions() -> None:
    key = conditions_key(BASE)
    same = _with(
        rpg={"ring_size": 8000, "seed": 7},
        model={"width": 0.5},
        train={"seed": 3, "device": "cpu", "deterministic": False},
        data={"num_workers": 2},
    )
    same["name"], same["tags"] = "other-name", ["x"]
    assert conditions_key(same) == key


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"train": {"epochs": 4}}, "train.epochs"),
        ({"train": {"lr": 0.05}}, "train.lr"),
        ({"train": {"recipe": "paper-cifar", "epochs": 3}}, "train.schedule"),
        ({"data": {"train_subset": 6000}}, "data.train_subset"),
        ({"data": {"image_size": 28}}, "data.image_size"),
        ({"data": {"augment": True}}, "data.augment"),
        ({"model": {"variant": "imagenet"}}, "model.variant"),
        ({"rpg": {"permute": False}}, "rpg.permute"),
        ({"rpg": {"scope": "stage"}}, "rpg.scope"),
        ({"rpg": None}, "rpg"),
    ],
)
def test_what_changes_the_outcome_changes_the_key(change: dict[str, Any], field: str) -> None:
    other = _with(**change)
    assert conditions_key(other) != conditions_key(BASE)
    assert field in differences(comparable(conditions_of(BASE)), comparable(conditions_of(other)))


def test_the_resolved_spec_decides_not_its_spelling() -> None:
    # the short recipe's 15 epochs written out, or left to the recipe: the same conditions
    assert conditions_key(_with(train={"epochs": 15})) == conditions_key(
        {**BASE, "train": {"recipe": "short"}}
    )
    # old recipe names are the same recipe
    a = _with(train={"recipe": "cifar", "epochs": 3})
    b = _with(train={"recipe": "paper-cifar", "epochs": 3})
    assert conditions_key(a) == conditions_key(b)
    # 10 epochs and more augment by default: the resolved augmentation differs
    assert conditions_of(_with(train={"epochs": 10}))["data.augment"] is True
    assert conditions_of(BASE)["data.augment"] is False


def test_a_new_spec_field_is_a_condition_by_default() -> None:
    c = conditions_of(BASE)
    # every train hyper-parameter the recipe resolves is there, not a chosen list of them
    assert {"train.momentum", "train.weight_decay", "train.warmup_epochs", "train.gamma",
            "train.label_smoothing", "train.precise_bn"} <= set(c)  # fmt: skip
    assert "rpg.ring_size" in c and "rpg.ring_size" not in comparable(c)
    assert not {"name", "tags", "train.seed", "rpg.seed", "train.device"} & set(c)


def test_the_key_is_stable_and_short() -> None:
    assert conditions_key(BASE) == conditions_key(dict(BASE))
    assert len(conditions_key(BASE)) == 16
    assert key_of(conditions_of(BASE)) == conditions_key(BASE)


def test_a_table_key_leaves_the_sharing_variant_out_but_keeps_the_width() -> None:
    pose = {"task": "pose", "model": {"sharing": "none", "stacks": 2}}
    rpg = {"task": "pose", "model": {"sharing": "rpg", "stacks": 4}}
    assert table_key(conditions_of(pose)) == table_key(conditions_of(rpg))
    assert conditions_key(pose) != conditions_key(rpg)
    wide = {"task": "pose", "model": {"sharing": "rpg", "stacks": 4, "width": 0.5}}
    assert table_key(conditions_of(wide)) != table_key(conditions_of(rpg))
    longer = {"task": "pose", "model": {"sharing": "rpg"}, "train": {"epochs": 4}}
    assert table_key(conditions_of(longer)) != table_key(conditions_of(rpg))


def test_the_sentence_names_the_conditions() -> None:
    text = describe(comparable(conditions_of(BASE)))
    assert text.startswith("fashion-mnist, 3,000 training images at 14 px, no augmentation")
    assert "resnet18" in text and "global ring, permuted and reflected" in text
    assert "3 epochs, short recipe" in text
    assert "plain" in describe(comparable(conditions_of(_with(rpg=None))))
    assert describe({}) == "conditions unknown"


def test_numbers_stay_readable() -> None:
    assert params_text(152_345) == "152k" and params_text(11_200_000) == "11.2M"
    assert params_text(3.19e61) == "3e+61" and params_text(float("nan")) == "?"
    sizes = [1000.0, 64000.0]
    assert params_needed_text(3.19e61, sizes) == (
        "beyond 100× the largest run (64k): out of reach of this fit"
    )
    assert params_needed_text(128_000, sizes) == "128k (extrapolated: 2.0× the largest run)"
    assert params_needed_text(None, sizes) is None


def test_a_methods_budget_is_a_size_and_the_method_a_condition() -> None:
    """Issue 24: a sweep over budgets is one series per method (the budget is compared like a
    ring size; two methods are never pooled into one fit)."""

    def spec(method: str, budget: int) -> dict[str, Any]:
        out = _with(rpg=None)
        del out["rpg"]
        return {**out, "method": {"name": method, "budget": budget}}

    assert conditions_key(spec("width", 5_000)) == conditions_key(spec("width", 50_000))
    assert conditions_key(spec("hashed", 5_000)) == conditions_key(spec("hashed", 50_000))
    keys = {conditions_key(spec(m, 5_000)) for m in ("rpg", "hashed", "width", "prune-global")}
    assert len(keys) == 4


def test_another_method_differs_in_its_method_not_in_the_options_only_it_has() -> None:
    """Seen on the Fig. 1 twin's page: width runs were said to differ from prune-filters runs
    in "fine-tuning epochs (default), method (width), pruning rounds (default)"."""

    def spec(method: str) -> dict[str, Any]:
        out = _with(rpg=None)
        del out["rpg"]
        return {**out, "method": {"name": method, "budget": 20_000}}

    a, b = conditions_of(spec("prune-filters")), conditions_of(spec("width"))
    assert differences(a, b) == ["method.name"]
    c = conditions_of(
        {
            **spec("prune-filters"),
            "method": {"name": "prune-filters", "budget": 20_000, "rounds": 5},
        }
    )
    assert differences(a, c) == ["method.rounds"]  # the same method: its options do differ


def test_a_parsed_spec_and_its_stored_dump_have_the_same_conditions() -> None:
    """The API derives a submission's conditions from the ExperimentSpec it validated, the
    stored rows and migrations from its JSON dump: both must give the same conditions and key,
    for every spec of the paper's templates."""
    from pathlib import Path

    from rpg_core.spec import ExperimentSpec
    from rpg_core.spec.conditions import conditions_of, key_of
    from rpg_core.spec.sweep import expand, load_sweep

    paper = Path(__file__).resolve().parents[3] / "experiments" / "paper"
    specs = [s for f in sorted(paper.rglob("*.y*ml")) for s in expand(load_sweep(f))]
    assert len(specs) > 20
    for raw in specs:
        parsed = ExperimentSpec.model_validate(raw)
        dumped = parsed.model_dump(mode="json")
        assert conditions_of(parsed) == conditions_of(dumped), parsed.name
        assert key_of(conditions_of(parsed)) == key_of(conditions_of(dumped))

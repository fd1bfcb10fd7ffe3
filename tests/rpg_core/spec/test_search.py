"""The sweep's search section (rpg_core.spec.search): what it expands to, how it is counted, and
that the local runner refuses it with a message that says where it runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from rpg_core.cli import main
from rpg_core.exceptions import RPGConfigError
from rpg_core.spec.search import SearchError, trial_spec
from rpg_core.spec.sweep import check_sweep_size, expand, expand_search, load_sweep, varied_fields

EXAMPLE = Path(__file__).resolve().parents[3] / "experiments" / "search" / "fashion-lr.yaml"


def test_the_example_is_one_study_per_ring_size() -> None:
    sweep = load_sweep(EXAMPLE)
    plans = expand_search(sweep)
    assert [p.base["rpg"]["ring_size"] for p in plans] == [1000, 4000]
    assert check_sweep_size(sweep) == 2 * 8  # studies x trials
    assert set(varied_fields(sweep)) == {"rpg.ring_size", "train.lr", "train.weight_decay"}
    spec = trial_spec(plans[0].base, {"train.lr": 0.01, "train.weight_decay": 0.0}, 5)
    assert spec["train"]["lr"] == 0.01 and spec["name"] == "fashion-lr-ring_size_1000-t5"


def test_a_search_is_refused_where_trials_cannot_be_chosen(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(RPGConfigError, match="submit it with rpg submit-sweep"):
        expand(load_sweep(EXAMPLE))
    assert main(["sweep", str(EXAMPLE), "--dry-run"]) != 0
    assert "rpg submit-sweep" in capsys.readouterr().err


def test_a_trial_budget_over_the_limit_names_the_trials() -> None:
    sweep = load_sweep(EXAMPLE).model_copy(deep=True)
    with pytest.raises(RPGConfigError, match="8 trials"):
        check_sweep_size(sweep, limit=10)


def test_a_searched_value_the_spec_refuses_names_the_field() -> None:
    data = load_sweep(EXAMPLE).model_dump(mode="json")
    data["search"]["space"] = {"train.epochs": {"int": [0, 3]}}
    with pytest.raises(SearchError) as err:
        expand_search(data)
    assert err.value.field == "search.space.train.epochs"

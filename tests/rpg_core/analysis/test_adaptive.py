"""The adaptive power law (rpg_core.analysis.adaptive): driven in a loop on points drawn from a
known law, it converges on the law's b and stops where asked, with the reason."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rpg_core.analysis.adaptive import (
    AdaptiveLaw,
    Observation,
    Proposal,
    initial_sizes,
    propose,
    t975,
)
from rpg_core.exceptions import RPGConfigError

A, B = 3.0, 0.3  # the true law: error = A * P^-B
HEAD = 1290  # parameters that do not grow with the knob (the classifier head)


def params_of(knob: float) -> int:
    """A known count of the knob (a ring size plus a fixed head)."""
    return int(round(knob)) + HEAD


def law(p: float) -> float:
    return A * p ** (-B)


def drive(
    rule: AdaptiveLaw, sigma: float = 0.05, seed: int = 0, limit: int = 100
) -> tuple[list[Observation], Proposal]:
    """propose() in a loop until it stops; each trial's error has log-normal noise."""
    rng = np.random.default_rng(seed)
    obs: list[Observation] = []
    for _ in range(limit):
        prop = propose(rule, obs, params_of)
        if prop.knob is None:
            return obs, prop
        assert rule.low <= prop.knob <= rule.high
        p = params_of(prop.knob)
        obs.append(Observation(prop.knob, p, law(p) * math.exp(rng.normal(0.0, sigma))))
    raise AssertionError(f"no stop after {limit} proposals")


def test_it_converges_on_b_and_stops_at_the_asked_width() -> None:
    rule = AdaptiveLaw(low=1000, high=100_000, b_width=0.08, max_trials=40)
    obs, stop = drive(rule, sigma=0.05)
    assert stop.stop == "b_width" and "b_width" in stop.reason and "narrower" in stop.reason
    assert stop.b_interval is not None and stop.b is not None
    lo, hi = stop.b_interval
    assert hi - lo < 0.08  # narrower than asked
    assert lo <= B <= hi  # the true b is inside
    assert abs(stop.b - B) < 0.04
    assert rule.min_points <= len(obs) < rule.max_trials
    # one trial fewer was not enough yet: it proposed a size then
    before = propose(rule, obs[:-1], params_of)
    assert before.knob is not None and before.b_interval is not None
    assert before.b_interval[1] - before.b_interval[0] >= 0.08 or len(obs) - 1 < rule.min_points


def test_a_narrower_ask_takes_more_trials_and_is_met() -> None:
    wide, _ = drive(AdaptiveLaw(low=1000, high=100_000, b_width=0.1, max_trials=60), seed=1)
    narrow, stop = drive(AdaptiveLaw(low=1000, high=100_000, b_width=0.03, max_trials=60), seed=1)
    assert len(narrow) > len(wide)
    assert stop.stop == "b_width" and stop.b_interval is not None
    assert stop.b_interval[1] - stop.b_interval[0] < 0.03
    assert stop.b_interval[0] <= B <= stop.b_interval[1]


def test_it_stops_at_max_trials_when_the_width_is_out_of_reach() -> None:
    rule = AdaptiveLaw(low=1000, high=100_000, b_width=1e-6, max_trials=8)
    obs, stop = drive(rule)
    assert len(obs) == 8
    assert stop.knob is None and stop.stop == "max_trials"
    assert "max_trials=8" in stop.reason and stop.b_interval is not None
    # without any width asked, the trial budget is the only stop
    obs, stop = drive(AdaptiveLaw(low=1000, high=100_000, max_trials=6))
    assert len(obs) == 6 and stop.stop == "max_trials"


def test_target_mode_converges_on_the_size_that_reaches_the_target() -> None:
    p_true = 30_000.0
    rule = AdaptiveLaw(
        low=1000, high=100_000, target_error=law(p_true), target_width=0.08, max_trials=40
    )
    obs, stop = drive(rule, sigma=0.05, seed=2)
    assert stop.stop == "target_width" and "target_width" in stop.reason
    assert stop.target_interval is not None and stop.target_params is not None
    lo, hi = stop.target_interval  # log10 of the parameter count reaching the target
    assert hi - lo < 0.08
    assert lo <= math.log10(p_true) <= hi
    assert abs(math.log10(stop.target_params) - math.log10(p_true)) < 0.05
    assert len(obs) < rule.max_trials


def test_with_both_widths_asked_it_stops_when_both_are_met() -> None:
    rule = AdaptiveLaw(
        low=1000, high=100_000, b_width=0.05, target_error=law(30_000), target_width=0.2,
        max_trials=40,
    )  # fmt: skip
    obs, stop = drive(rule, seed=5)
    assert stop.stop == "b_width+target_width"
    assert "b_width" in stop.reason and "target_width" in stop.reason
    assert stop.b_interval is not None and stop.target_interval is not None
    assert stop.b_interval[1] - stop.b_interval[0] < 0.05
    assert stop.target_interval[1] - stop.target_interval[0] < 0.2


def test_the_target_steers_the_sizes() -> None:
    # the same observations, with and without a target near the small end: the target rule
    # places the next size differently from the b rule, which always takes an end
    obs = [Observation(k, params_of(k), law(params_of(k))) for k in (1000, 10_000, 100_000)]
    obs += [Observation(1000, params_of(1000), law(params_of(1000)) * 1.02)]
    plain = propose(AdaptiveLaw(low=1000, high=100_000), obs, params_of)
    aimed = propose(AdaptiveLaw(low=1000, high=100_000, target_error=law(3000)), obs, params_of)
    assert plain.knob in (1000.0, 100_000.0)
    assert aimed.knob is not None and aimed.knob != plain.knob
    assert aimed.target_interval is not None and "error" in aimed.reason
    assert aimed.knob < 100_000  # towards the crossing at 3K, not the far end


def test_the_initial_spread_comes_first_then_the_ends() -> None:
    rule = AdaptiveLaw(low=1000, high=100_000, initial=3)
    assert initial_sizes(rule) == [1000.0, 10_000.0, 100_000.0]
    obs: list[Observation] = []
    for want in (1000.0, 10_000.0, 100_000.0):
        prop = propose(rule, obs, params_of)
        assert prop.knob == want and prop.phase == "initial" and "Initial spread" in prop.reason
        assert prop.b_interval is None  # no law before three points
        obs.append(Observation(want, params_of(want), law(params_of(want))))
    prop = propose(rule, obs, params_of)
    # the law chooses: b is best narrowed at an end of the range (the farthest from the centre)
    assert prop.phase == "adaptive" and prop.knob in (1000.0, 100_000.0)
    assert prop.b_interval is not None and prop.b is not None and abs(prop.b - B) < 0.01
    # linear and whole: 5 sizes over [1, 9]
    assert initial_sizes(AdaptiveLaw(low=1, high=9, log=False, initial=5, max_trials=5)) == [
        1.0,
        3.0,
        5.0,
        7.0,
        9.0,
    ]


def test_without_repeats_a_trained_size_is_not_proposed_again() -> None:
    rule = AdaptiveLaw(low=1000, high=100_000, repeats=False, candidates=5, max_trials=10)
    obs, stop = drive(rule)
    knobs = [o.knob for o in obs]
    assert len(set(knobs)) == len(knobs) == 5  # the 5 candidates, each once
    assert stop.stop == "candidates" and "every candidate" in stop.reason


def test_pending_trials_count_and_spread_out() -> None:
    rule = AdaptiveLaw(low=1000, high=100_000, max_trials=6)
    obs = [Observation(k, params_of(k), law(params_of(k))) for k in (1000, 10_000, 100_000)]
    first = propose(rule, obs, params_of)
    second = propose(rule, obs, params_of, pending=[first.knob or 0.0])
    assert first.knob is not None and second.knob is not None
    assert second.knob != first.knob  # the running trial is in the design: the other end
    full = propose(rule, obs, params_of, pending=[1000, 100_000, 1000])
    assert full.knob is None and full.stop == "max_trials" and "3 running" in full.reason


def test_the_same_observations_give_the_same_proposal() -> None:
    rule = AdaptiveLaw(low=1000, high=100_000, target_error=law(20_000))
    obs, _ = drive(AdaptiveLaw(low=1000, high=100_000, max_trials=7), seed=3)
    one, two = propose(rule, obs, params_of), propose(rule, list(obs), params_of)
    assert one == two
    boot = AdaptiveLaw(**{**rule.__dict__, "interval": "bootstrap"})
    assert propose(boot, obs, params_of) == propose(boot, obs, params_of)
    other = propose(AdaptiveLaw(**{**boot.__dict__, "seed": 1}), obs, params_of)
    # the seed is the bootstrap's: the same fit, another resampled interval
    assert other.b == one.b and other.b_interval != propose(boot, obs, params_of).b_interval


def test_the_t_interval_is_students_and_wider_than_the_bootstrap_at_few_points() -> None:
    obs, _ = drive(AdaptiveLaw(low=1000, high=100_000, max_trials=5), seed=4)
    x = np.log([o.params for o in obs])
    y = np.log([o.error for o in obs])
    slope, intercept = np.polyfit(x, y, 1)
    s = math.sqrt(((y - intercept - slope * x) ** 2).sum() / (len(x) - 2))
    half = 3.182 * s / math.sqrt(((x - x.mean()) ** 2).sum())  # t(0.975, 3 df)
    t = propose(AdaptiveLaw(low=1000, high=100_000), obs, params_of)
    boot = propose(AdaptiveLaw(low=1000, high=100_000, interval="bootstrap"), obs, params_of)
    assert t.b_interval == pytest.approx((-slope - half, -slope + half), rel=1e-3)
    assert boot.b_interval is not None
    assert boot.b_interval[1] - boot.b_interval[0] < half * 2  # the bootstrap's is narrower
    assert t975(1) == pytest.approx(12.706) and t975(100) == pytest.approx(1.984, abs=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"low": 100, "high": 10}, "low"),
        ({"low": 10, "high": 10}, "low"),
        ({"low": 0, "high": 10}, "low"),  # a log range through zero
        ({"low": -5, "high": 10}, "low"),
        ({"low": float("nan"), "high": 10}, "low"),
        ({"low": 1, "high": float("inf")}, "high"),
        ({"low": 0.2, "high": 0.8}, "high"),  # no whole value inside
        ({"low": 1, "high": 10, "initial": 1}, "initial"),
        ({"low": 1, "high": 10, "initial": 4, "max_trials": 3}, "max_trials"),
        ({"low": 1, "high": 10, "b_width": 0}, "b_width"),
        ({"low": 1, "high": 10, "target_error": -0.1}, "target_error"),
        ({"low": 1, "high": 10, "target_width": 0.1}, "target_width"),  # without target_error
        ({"low": 1, "high": 10, "candidates": 1}, "candidates"),
        ({"low": 1, "high": 10, "bootstrap": 10}, "bootstrap"),
        ({"low": 1, "high": 10, "initial": 2.5}, "initial"),
        ({"low": 1, "high": 10, "interval": "wald"}, "interval"),
    ],
)
def test_bad_rules_name_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: ") as err:
        AdaptiveLaw(**kwargs)  # type: ignore[arg-type]
    assert isinstance(err.value, RPGConfigError)


def test_a_linear_range_may_start_at_zero() -> None:
    rule = AdaptiveLaw(low=0, high=8, log=False, max_trials=4)
    assert initial_sizes(rule) == [0.0, 4.0, 8.0]


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (Observation(10_000, params_of(10_000), 0.0), "observed[1].error"),
        (Observation(10_000, params_of(10_000), float("nan")), "observed[1].error"),
        (Observation(10_000, 0, 0.1), "observed[1].params"),
        (Observation(float("inf"), 5, 0.1), "observed[1].knob"),
    ],
)
def test_bad_observations_name_the_field(bad: Observation, field: str) -> None:
    good = Observation(1000, params_of(1000), 0.2)
    with pytest.raises(RPGConfigError, match=rf"^{re_escape(field)}: "):
        propose(AdaptiveLaw(low=1000, high=100_000), [good, bad], params_of)


def test_a_bad_parameter_count_names_params_of() -> None:
    obs = [Observation(k, params_of(k), law(params_of(k))) for k in (1000, 10_000, 100_000)]
    with pytest.raises(RPGConfigError, match=r"^params_of\(candidate\): "):
        propose(AdaptiveLaw(low=1000, high=100_000), obs, lambda k: 0)


def re_escape(s: str) -> str:
    import re

    return re.escape(s)


def test_as_dict_is_strict_json() -> None:
    # a flat law: the target may never be reached, so the interval is unbounded above
    obs = [
        Observation(k, params_of(k), 0.2 * (1.03 if k == 10_000 else 1.0))
        for k in (1000, 10_000, 100_000)
    ]
    obs += [Observation(1000, params_of(1000), 0.21), Observation(100_000, params_of(100_000), 0.2)]
    prop = propose(AdaptiveLaw(low=1000, high=100_000, target_error=0.1), obs, params_of)
    assert prop.target_interval is not None and prop.target_interval[1] == math.inf
    d = prop.as_dict()
    assert d["target_interval"][1] is None and d["knob"] == prop.knob and d["reason"]
    assert json.loads(json.dumps(d, allow_nan=False)) == d

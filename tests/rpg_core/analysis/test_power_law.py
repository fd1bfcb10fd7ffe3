"""Power-law fits: recovery of known coefficients, inversion, the saturating form, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rpg_core.analysis import fit_power_law
from rpg_core.analysis.power_law import bootstrap_coefficients, power_coefficients
from rpg_core.exceptions import RPGConfigError

PARAMS = np.logspace(3, 7, 10)


def noisy_points(
    a: float, b: float, c: float = 0.0, noise: float = 0.02, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    error = (a * PARAMS ** (-b) + c) * np.exp(rng.normal(0, noise, len(PARAMS)))
    return PARAMS, 1.0 - error


def test_recovers_a_and_b_from_noisy_points() -> None:
    params, acc = noisy_points(a=3.0, b=0.25)
    fit = fit_power_law(params, acc, bootstrap=300, seed=1)
    assert fit.b == pytest.approx(0.25, abs=0.02)
    assert fit.a == pytest.approx(3.0, rel=0.25)
    assert fit.r2 > 0.95
    assert fit.n == len(params)
    assert fit.b_ci is not None
    lo, hi = fit.b_ci
    assert lo < fit.b < hi
    assert lo <= 0.25 <= hi


def test_exact_points_give_exact_fit() -> None:
    params = np.array([1e3, 1e4, 1e5, 1e6])
    acc = 1.0 - 2.0 * params**-0.3
    fit = fit_power_law(params, acc, bootstrap=0)
    assert fit.a == pytest.approx(2.0, rel=1e-9)
    assert fit.b == pytest.approx(0.3, rel=1e-9)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.b_ci is None


def test_bootstrap_is_seeded() -> None:
    params, acc = noisy_points(a=3.0, b=0.25, noise=0.05)
    one = fit_power_law(params, acc, bootstrap=200, seed=7).b_ci
    two = fit_power_law(params, acc, bootstrap=200, seed=7).b_ci
    other = fit_power_law(params, acc, bootstrap=200, seed=8).b_ci
    assert one == two
    assert one != other


@pytest.mark.parametrize("target", [0.3, 0.6, 0.9, 0.97])
def test_params_for_inverts_predict(target: float) -> None:
    fit = fit_power_law(*noisy_points(a=3.0, b=0.25), bootstrap=0)
    p = fit.params_for(target)
    assert fit.predict(p) == pytest.approx(target, abs=1e-9)
    assert fit.params_for(target + 0.01) > p  # more accuracy needs more parameters


def test_predict_accepts_sequences_and_rises_with_params() -> None:
    fit = fit_power_law(*noisy_points(a=3.0, b=0.25), bootstrap=0)
    pred = fit.predict([1e3, 1e4, 1e5])
    assert isinstance(pred, np.ndarray) and pred.shape == (3,)
    assert np.all(np.diff(pred) > 0)
    with pytest.raises(RPGConfigError, match="params"):
        fit.predict(0)


def test_saturating_form_found_when_error_floors() -> None:
    params, acc = noisy_points(a=5.0, b=0.5, c=0.2, noise=0.01)
    fit = fit_power_law(params, acc, bootstrap=0)
    assert fit.saturating is not None
    assert fit.best == "saturating"
    assert fit.saturating.c == pytest.approx(0.2, abs=0.02)
    assert fit.saturating.r2 > fit.r2
    p = fit.params_for(0.75, form="saturating")
    assert fit.predict(p, form="saturating") == pytest.approx(0.75, abs=1e-9)
    with pytest.raises(RPGConfigError, match="ceiling"):
        fit.params_for(0.85, form="saturating")  # above 1 - c


def test_plain_power_law_preferred_without_floor() -> None:
    fit = fit_power_law(*noisy_points(a=3.0, b=0.25, noise=0.02), bootstrap=0)
    assert fit.saturating is not None
    assert fit.best == "power"


def test_few_points_have_no_saturating_fit() -> None:
    fit = fit_power_law([1e3, 1e4, 1e5, 1e6], [0.5, 0.6, 0.7, 0.78], bootstrap=0)
    assert fit.saturating is None
    assert fit.best == "power"
    with pytest.raises(RPGConfigError, match="saturating"):
        fit.predict(1e4, form="saturating")


def test_falling_accuracy_cannot_be_inverted() -> None:
    fit = fit_power_law([1e3, 1e4, 1e5], [0.8, 0.7, 0.6], bootstrap=0)
    assert fit.b < 0
    with pytest.raises(RPGConfigError, match="not positive"):
        fit.params_for(0.9)


def test_as_dict_is_json_ready() -> None:
    fit = fit_power_law(*noisy_points(a=3.0, b=0.25), bootstrap=50)
    d = json.loads(json.dumps(fit.as_dict()))
    assert d["b"] == pytest.approx(fit.b)
    assert d["n"] == len(PARAMS)
    assert len(d["b_ci"]) == 2
    assert d["saturating"]["c"] >= 0
    assert d["best"] in ("power", "saturating")
    assert len(d["params"]) == len(d["accuracy"]) == len(PARAMS)


def test_as_dict_of_three_points_is_strict_json_and_claims_only_what_was_fitted() -> None:
    fit = fit_power_law([1e3, 1e4, 1e5], [0.71, 0.80, 0.86], bootstrap=100)
    assert math.isnan(fit.adj_r2)  # n - k - 1 = 0: undefined
    d = json.loads(json.dumps(fit.as_dict(), allow_nan=False))
    assert d["adj_r2"] is None and d["saturating"] is None
    assert d["best"] is None and d["criterion"].startswith("not compared")
    assert d["b_ci"] is not None and d["ci_note"].startswith("rough")
    five = fit_power_law(*noisy_points(a=3.0, b=0.25), bootstrap=100).as_dict()
    assert five["ci_note"] is None and five["criterion"] == "AICc on log(error) residuals"


@pytest.mark.parametrize(
    ("params", "accuracy", "argument"),
    [
        ([1e3, 1e4], [0.5, 0.6], "params"),  # too few points
        ([1e3, 1e4, 1e5], [0.5, 0.6], "same length"),
        ([1e3, math.nan, 1e5], [0.5, 0.6, 0.7], "params"),
        ([1e3, 1e4, 1e5], [0.5, math.nan, 0.7], "accuracy"),
        ([0, 1e4, 1e5], [0.5, 0.6, 0.7], "params"),
        ([-5, 1e4, 1e5], [0.5, 0.6, 0.7], "params"),
        ([1e3, 1e4, 1e5], [0.0, 0.6, 0.7], "accuracy"),
        ([1e3, 1e4, 1e5], [0.5, 0.6, 1.0], "accuracy"),
        ([1e3, 1e4, 1e5], [50, 60, 70], "accuracy"),  # percentages
        ([1e3, 1e3, 1e3], [0.5, 0.6, 0.7], "distinct"),
        (["a", "b", "c"], [0.5, 0.6, 0.7], "params"),
    ],
)
def test_bad_input_names_the_argument(params: list, accuracy: list, argument: str) -> None:
    with pytest.raises(RPGConfigError, match=argument):
        fit_power_law(params, accuracy, bootstrap=0)


@pytest.mark.parametrize("kwargs", [{"bootstrap": -1}, {"bootstrap": 1.5}, {"seed": -1}])
def test_bad_options(kwargs: dict) -> None:
    with pytest.raises(RPGConfigError, match=next(iter(kwargs))):
        fit_power_law([1e3, 1e4, 1e5], [0.5, 0.6, 0.7], **kwargs)


def test_bad_target_accuracy() -> None:
    fit = fit_power_law([1e3, 1e4, 1e5], [0.5, 0.6, 0.7], bootstrap=0)
    for bad in (0.0, 1.0, 1.5, "0.9"):
        with pytest.raises(RPGConfigError, match="target_accuracy"):
            fit.params_for(bad)  # type: ignore[arg-type]


def test_bootstrap_coefficients_resample_as_one_resample_at_a_time() -> None:
    # the vectorized bootstrap draws what one resample at a time drew (the interval is unchanged)
    p = np.array([1e3, 3e3, 1e4, 3e4, 1e5, 1e5])
    err = 2.0 * p**-0.2 * np.exp(np.random.default_rng(5).normal(0, 0.05, len(p)))
    rng = np.random.default_rng(7)
    rows = []
    for _ in range(200):
        idx = rng.integers(0, len(p), len(p))
        if len(np.unique(p[idx])) > 1:
            x, y = np.log(p[idx]), np.log(err[idx])
            slope, intercept = np.polyfit(x, y, 1)
            rows.append((math.exp(intercept), -slope))
    got = bootstrap_coefficients(p, err, 200, 7)
    np.testing.assert_allclose(got, np.array(rows), rtol=1e-9)
    a, b = power_coefficients(p, err)
    fit = fit_power_law(p, 1 - err, bootstrap=200, seed=7)
    assert (a, b) == pytest.approx((fit.a, fit.b))
    assert fit.b_ci == pytest.approx(tuple(np.percentile(got[:, 1], [2.5, 97.5])))


def test_saturating_false_fits_the_power_form_alone() -> None:
    # what a caller of the power form reads is the same; the saturating form is not searched
    params, acc = noisy_points(a=3.0, b=0.25, c=0.02, noise=0.03)
    both = fit_power_law(params, acc, bootstrap=100, seed=3)
    power = fit_power_law(params, acc, bootstrap=100, seed=3, saturating=False)
    assert both.saturating is not None and power.saturating is None
    assert (power.a, power.b, power.r2, power.aicc, power.b_ci) == (
        both.a, both.b, both.r2, both.aicc, both.b_ci,
    )  # fmt: skip
    assert power.best == "power" and power.as_dict()["best"] is None
    assert "not fitted" in power.criterion
    assert power.params_for(0.9) == both.params_for(0.9)
    with pytest.raises(RPGConfigError, match="no saturating fit"):
        power.predict(1e5, form="saturating")


@pytest.mark.parametrize(
    "p",
    [
        np.array([1e3, 1e3, 1e3, 1e4]),  # about a third of the resamples have no slope
        np.array([1e3, 3e3, 1e4, 3e4, 1e5, 1e5, 2e5]),
    ],
)
def test_bootstrap_coefficients_are_each_resample_fitted_alone(p: np.ndarray) -> None:
    # every kept row is the least-squares fit of its own resample; degenerate ones are dropped
    err = 2.0 * p**-0.2 * np.exp(np.random.default_rng(1).normal(0, 0.05, len(p)))
    idx = np.random.default_rng(11).integers(0, len(p), (300, len(p)))
    kept = [i for i in idx if len(np.unique(p[i])) > 1]
    got = bootstrap_coefficients(p, err, 300, 11)
    assert len(got) == len(kept) and 0 < len(kept) <= 300
    for (a, b), i in zip(got, kept, strict=True):
        assert (a, b) == pytest.approx(power_coefficients(p[i], err[i]), rel=1e-9)

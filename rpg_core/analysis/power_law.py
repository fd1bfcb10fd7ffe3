"""Power laws of accuracy versus parameters (paper Sec. 5.2: "accuracy and number of parameters
follow a power law"; the law "may be useful for estimating the network performance without
training").

The error ``1 - accuracy`` is fitted as ``error = a * P^(-b)`` by least squares in log-log space.
With five or more points the saturating form ``error = a * P^(-b) + c`` (an irreducible error
``c``) is fitted too, and the two are compared by AICc on the residuals of ``log(error)``.

The saturating fit needs no scipy: ``c`` is searched on a grid over ``[0, min(error))`` (refined
twice around the best value) with the exact log-log fit inside; ``c = 0`` is the plain power law,
so the saturating fit is never worse than it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..exceptions import RPGConfigError

log = logging.getLogger(__name__)

Form = Literal["power", "saturating"]
MIN_POINTS = 3
MIN_POINTS_SATURATING = 5
CI_MIN_POINTS = 5  # below this the bootstrap interval of b is rough (few distinct resamples)
_GRID = 64


@dataclass(frozen=True)
class SaturatingFit:
    """``error = a * P^(-b) + c``, fitted on ``log(error)``."""

    a: float
    b: float
    c: float
    r2: float
    adj_r2: float
    aicc: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "form": "error = a * P^(-b) + c",
            "a": self.a,
            "b": self.b,
            "c": self.c,
            "r2": self.r2,
            "adj_r2": _finite_or_none(self.adj_r2),
            "aicc": _finite_or_none(self.aicc),
        }


@dataclass(frozen=True)
class PowerLawFit:
    """``error = a * P^(-b)`` with ``error = 1 - accuracy`` and ``P`` the parameter count.

    ``r2`` is the coefficient of determination of the log-log fit; ``b_ci`` the 95% bootstrap
    interval of ``b`` (``None`` when ``bootstrap=0``); ``saturating`` the fit with an irreducible
    error (``None`` with fewer than 5 points); ``best`` the form with the lower AICc (``as_dict``
    writes ``None`` when only one form was fitted).
    """

    a: float
    b: float
    r2: float
    adj_r2: float
    aicc: float
    b_ci: tuple[float, float] | None
    n: int
    bootstrap: int
    params: tuple[float, ...]
    accuracy: tuple[float, ...]
    saturating: SaturatingFit | None = None
    best: Form = "power"

    def _coefficients(self, form: Form) -> tuple[float, float, float]:
        if form == "power":
            return self.a, self.b, 0.0
        if form == "saturating":
            if self.saturating is None:
                raise RPGConfigError(
                    f"form: no saturating fit (needs at least {MIN_POINTS_SATURATING} points, "
                    f"this fit has {self.n}); use form='power'"
                )
            s = self.saturating
            return s.a, s.b, s.c
        raise RPGConfigError(f"form must be 'power' or 'saturating', got {form!r}")

    def predict(self, params: float | Sequence[float] | np.ndarray, form: Form = "power") -> Any:
        """Predicted accuracy at ``params`` parameters (a float, or an array for a sequence)."""
        a, b, c = self._coefficients(form)
        p = np.asarray(params, dtype=np.float64)
        if not np.all(np.isfinite(p)) or np.any(p <= 0):
            raise RPGConfigError("params: parameter counts must be finite and > 0")
        acc = 1.0 - (a * p ** (-b) + c)
        return float(acc) if acc.ndim == 0 else acc

    def params_for(self, target_accuracy: float, form: Form = "power") -> float:
        """The parameter count at which the law reaches ``target_accuracy`` (inverts predict)."""
        a, b, c = self._coefficients(form)
        if not isinstance(target_accuracy, int | float) or not 0.0 < target_accuracy < 1.0:
            raise RPGConfigError(
                f"target_accuracy must be a number in (0, 1), got {target_accuracy!r}"
            )
        if b <= 0:
            raise RPGConfigError(
                f"the fitted exponent b={b:.4g} is not positive: error does not fall with the "
                f"parameter count, so no count reaches a target accuracy"
            )
        error = 1.0 - float(target_accuracy)
        if error <= c:
            raise RPGConfigError(
                f"target_accuracy {target_accuracy} is above the saturating fit's ceiling "
                f"{1.0 - c:.4f} (1 - c); no parameter count reaches it"
            )
        return float((a / (error - c)) ** (1.0 / b))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: coefficients, quality, interval, the points and the saturating fit."""
        return {
            "form": "error = a * P^(-b)",
            "a": self.a,
            "b": self.b,
            "r2": self.r2,
            "adj_r2": _finite_or_none(self.adj_r2),  # None: 3 points leave no degree of freedom
            "aicc": _finite_or_none(self.aicc),
            "b_ci": list(self.b_ci) if self.b_ci is not None else None,
            "ci_level": 0.95,
            "ci_note": self.ci_note,
            "n": self.n,
            "bootstrap": self.bootstrap,
            "params": list(self.params),
            "accuracy": list(self.accuracy),
            "saturating": self.saturating.as_dict() if self.saturating else None,
            # the forms were compared only when the saturating one was fitted (5 points)
            "best": self.best if self.saturating is not None else None,
            "criterion": self.criterion,
        }

    @property
    def criterion(self) -> str:
        """How ``best`` was chosen, or why no form was compared."""
        if self.saturating is not None:
            return "AICc on log(error) residuals"
        if self.n >= MIN_POINTS_SATURATING:
            return "not compared: the saturating form was not fitted (saturating=False)"
        return (
            f"not compared: the saturating form needs {MIN_POINTS_SATURATING} points, "
            f"this fit has {self.n}"
        )

    @property
    def ci_note(self) -> str | None:
        """A caveat on ``b_ci`` when it rests on few points (None when it needs none)."""
        if self.b_ci is None or self.n >= CI_MIN_POINTS:
            return None
        return (
            f"rough: a bootstrap of only {self.n} points has few distinct resamples; "
            f"{CI_MIN_POINTS} or more points give a usable interval"
        )


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


# --- validation --------------------------------------------------------------------------------
def _as_array(values: Any, arg: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise RPGConfigError(f"{arg} must be a sequence of numbers") from None
    if arr.ndim != 1:
        raise RPGConfigError(f"{arg} must be a flat sequence of numbers, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise RPGConfigError(f"{arg} contains NaN or infinite values; remove those points")
    return arr


def _check_points(params: Any, accuracy: Any) -> tuple[np.ndarray, np.ndarray]:
    p = _as_array(params, "params")
    acc = _as_array(accuracy, "accuracy")
    if len(p) != len(acc):
        raise RPGConfigError(
            f"params and accuracy must have the same length, got {len(p)} and {len(acc)}"
        )
    if len(p) < MIN_POINTS:
        raise RPGConfigError(f"params: need at least {MIN_POINTS} points to fit, got {len(p)}")
    if np.any(p <= 0):
        raise RPGConfigError("params: every parameter count must be > 0")
    if np.any((acc <= 0) | (acc >= 1)):
        raise RPGConfigError(
            "accuracy: every value must be a fraction in (0, 1) (divide percentages by 100)"
        )
    if len(np.unique(p)) < 2:
        raise RPGConfigError("params: need at least two distinct parameter counts")
    return p, acc


# --- fitting -----------------------------------------------------------------------------------
def _loglog(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least squares ``y = intercept + slope * x``; returns (intercept, slope)."""
    xm, ym = x.mean(), y.mean()
    slope = float(((x - xm) * (y - ym)).sum() / ((x - xm) ** 2).sum())
    return float(ym - slope * xm), slope


def _quality(y: np.ndarray, pred: np.ndarray, k: int) -> tuple[float, float, float]:
    """(r2, adjusted r2, AICc) of ``pred`` against ``y`` with ``k`` fitted coefficients."""
    n = len(y)
    rss = float(((y - pred) ** 2).sum())
    tss = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - rss / tss if tss > 0 else 1.0
    adj = 1.0 - (1.0 - r2) * (n - 1) / (n - k - 1) if n - k - 1 > 0 else float("nan")
    aic = n * math.log(max(rss, 1e-300) / n) + 2 * k
    aicc = aic + 2 * k * (k + 1) / (n - k - 1) if n - k - 1 > 0 else float("inf")
    return r2, adj, aicc


def _fit_power(p: np.ndarray, err: np.ndarray) -> tuple[float, float]:
    intercept, slope = _loglog(np.log(p), np.log(err))
    return math.exp(intercept), -slope


def _saturating_rss(p: np.ndarray, err: np.ndarray, c: float) -> tuple[float, float, float]:
    a, b = _fit_power(p, err - c)
    pred = np.log(a * p ** (-b) + c)
    return float(((np.log(err) - pred) ** 2).sum()), a, b


def _fit_saturating(p: np.ndarray, err: np.ndarray) -> SaturatingFit:
    lo, hi = 0.0, float(err.min())
    best = (math.inf, 0.0, 0.0, 0.0)  # rss, a, b, c
    for _ in range(3):
        for c in np.linspace(lo, hi, _GRID, endpoint=False):
            rss, a, b = _saturating_rss(p, err, float(c))
            if rss < best[0]:
                best = (rss, a, b, float(c))
        step = (hi - lo) / _GRID
        lo, hi = max(0.0, best[3] - step), min(float(err.min()), best[3] + step)
    _, a, b, c = best
    r2, adj, aicc = _quality(np.log(err), np.log(a * p ** (-b) + c), k=3)
    return SaturatingFit(a=a, b=b, c=c, r2=r2, adj_r2=adj, aicc=aicc)


def bootstrap_coefficients(
    params: Sequence[float] | np.ndarray,
    error: Sequence[float] | np.ndarray,
    rounds: int,
    seed: int,
) -> np.ndarray:
    """The pairs bootstrap of ``error = a * P^(-b)``: ``rounds`` resamples of the points (with
    replacement, seeded), each fitted in log-log space; returns an array of rows ``(a, b)``.

    A resample of a single distinct count has no slope and is left out, so fewer than
    ``rounds`` rows may come back (none when every resample is degenerate). ``error`` is in the
    law's own terms (``1 - accuracy``, a loss...), each value > 0.
    """
    p = np.asarray(params, dtype=np.float64)
    err = np.asarray(error, dtype=np.float64)
    if rounds == 0 or len(p) == 0:
        return np.empty((0, 2))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(p), (rounds, len(p)))  # the same draws as one resample at a time
    # one gather of both logs (a third of two fancy indexings' time at 200 x 2,500), and the
    # arithmetic in place: the same operations in the same order, so the same numbers
    x, y = np.take(np.stack([np.log(p), np.log(err)]), idx, axis=1)
    keep = x.max(axis=1) > x.min(axis=1)  # a resample of one distinct count has no slope
    if not keep.all():  # (a copy of every resample otherwise)
        x, y = x[keep], y[keep]
    xm = x.mean(axis=1)
    xc = x - xm[:, None]
    ym = y.mean(axis=1)
    y -= ym[:, None]
    num = (xc * y).sum(axis=1)
    slope = num / np.square(xc, out=xc).sum(axis=1)
    intercept = ym - slope * xm
    return np.column_stack([np.exp(intercept), -slope])


def _bootstrap_b(
    p: np.ndarray, err: np.ndarray, rounds: int, seed: int
) -> tuple[float, float] | None:
    if rounds == 0:
        return None
    bs = bootstrap_coefficients(p, err, rounds, seed)[:, 1]
    if not len(bs):
        return None
    lo, hi = np.percentile(bs, [2.5, 97.5])
    return float(lo), float(hi)


def power_coefficients(
    params: Sequence[float] | np.ndarray, error: Sequence[float] | np.ndarray
) -> tuple[float, float]:
    """``(a, b)`` of ``error = a * P^(-b)`` by least squares in log-log space (no checks: the
    caller passes counts > 0, errors > 0 and at least two distinct counts)."""
    return _fit_power(np.asarray(params, dtype=np.float64), np.asarray(error, dtype=np.float64))


def fit_power_law(
    params: Sequence[float] | np.ndarray,
    accuracy: Sequence[float] | np.ndarray,
    *,
    bootstrap: int = 1000,
    seed: int = 0,
    saturating: bool = True,
) -> PowerLawFit:
    """Fit ``1 - accuracy = a * params^(-b)`` (and the saturating form with >= 5 points).

    Args:
        params: parameter counts (e.g. backbone parameters), each > 0.
        accuracy: accuracies as fractions in (0, 1), one per count.
        bootstrap: resampling rounds for the 95% interval of ``b`` (0: no interval).
        seed: seed of the resampling.
        saturating: also fit the saturating form (with >= 5 points) and choose ``best``;
            False for a caller that reads only the power form (the fit's ``saturating`` is then
            None and ``best`` "power", as with fewer points).

    Raises:
        RPGConfigError: fewer than 3 points, mismatched lengths, NaN, counts <= 0 or accuracies
            outside (0, 1); the message names the argument.
    """
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 0:
        raise RPGConfigError(f"bootstrap must be an int >= 0, got {bootstrap!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise RPGConfigError(f"seed must be an int >= 0, got {seed!r}")
    p, acc = _check_points(params, accuracy)
    err = 1.0 - acc
    a, b = _fit_power(p, err)
    r2, adj, aicc = _quality(np.log(err), np.log(a * p ** (-b)), k=2)
    sat = _fit_saturating(p, err) if saturating and len(p) >= MIN_POINTS_SATURATING else None
    best: Form = "saturating" if sat is not None and sat.aicc < aicc else "power"
    fit = PowerLawFit(
        a=a,
        b=b,
        r2=r2,
        adj_r2=adj,
        aicc=aicc,
        b_ci=_bootstrap_b(p, err, bootstrap, seed),
        n=len(p),
        bootstrap=bootstrap,
        params=tuple(float(x) for x in p),
        accuracy=tuple(float(x) for x in acc),
        saturating=sat,
        best=best,
    )
    log.info("power law: a=%.4g b=%.4g r2=%.4f n=%d best=%s", a, b, r2, len(p), best)
    return fit

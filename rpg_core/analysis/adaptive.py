"""Power laws that choose their next sizes (issue 25): where to train next on a size knob.

:func:`propose` looks at the finished trials of a scaling study (each a knob value, its
parameter count and its error) and returns the next knob value to train, or ``None`` with the
reason to stop. The rule (docs/ADAPTIVE.md has the maths in plain words):

1. the first ``initial`` sizes are spread (log-)uniformly over ``[low, high]``;
2. then the law ``error = a * P^(-b)`` is fitted after every finished trial, by least squares in
   log-log space (:mod:`rpg_core.analysis.power_law`), with 95% intervals from Student's t (or
   power_law's pairs bootstrap, ``interval="bootstrap"``; the bootstrap is seeded, so the same
   observations give the same proposal), and the next size is the candidate that most
   narrows the interval we stop on: ``b``'s, or with a target the interval of the parameter
   count that reaches it. For the log-log regression that is a c-optimal design step: the
   variance left after one more point at ``x = log P`` follows from the design alone
   (Sherman-Morrison), so the choice does not depend on the noise level;
3. stop when every asked interval is narrower than asked (``b_width``, ``target_width``), or at
   ``max_trials``.

numpy only (no torch): the API imports it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..exceptions import RPGConfigError
from .power_law import CI_MIN_POINTS, bootstrap_coefficients, power_coefficients

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdaptiveLaw:
    """The rule of an adaptive power-law study on one size knob.

    ``target_error`` is in the law's own terms: ``1 - acc`` for a metric where higher is better
    (``MetricInfo.as_error``), the metric itself where lower is better. ``target_width`` and the
    proposal's ``target_interval`` are in decades: ``log10`` of the parameter count that reaches
    the target.
    """

    low: float  # the knob's range (ring size, width or budget), low < high
    high: float
    integer: bool = True  # the knob takes whole values (ring sizes, budgets)
    log: bool = True  # spread and candidates log-uniform (low must be > 0)
    initial: int = 3  # sizes spread over the range before the law chooses
    max_trials: int = 12  # the trial budget, initial ones included
    b_width: float | None = None  # stop when the 95% interval of b is narrower than this
    target_error: float | None = None  # a target in the law's error terms (> 0)
    target_width: float | None = None  # stop when the target size's interval (decades) is narrower
    candidates: int = 64  # knob values the next size is chosen among (over [low, high])
    repeats: bool = True  # a size may be trained again (another seed): the law's best design
    bootstrap: int = 1000  # resamples of the interval (rpg_core.analysis.power_law)
    seed: int = 0  # seed of the bootstrap: the same observations give the same proposal
    min_points: int = CI_MIN_POINTS  # no interval stops the study before this many trials
    # the 95% intervals (b's, the target size's): "t", Student's t on the log-log regression
    # (the delta method for the target), or "bootstrap", power_law's pairs bootstrap, which is
    # too narrow at a few points (docs/ADAPTIVE.md, "Which interval")
    interval: str = "t"

    def __post_init__(self) -> None:
        for name in ("low", "high"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise RPGConfigError(f"{name}: must be a finite number, got {v!r}")
        if not self.low < self.high:
            raise RPGConfigError(
                f"low: must be below high, got low={self.low!r} >= high={self.high!r}; "
                f"give the range as [smaller, larger]"
            )
        if self.log and self.low <= 0:
            raise RPGConfigError(
                f"low: a log range must be > 0, got {self.low!r}; raise low or set log: false"
            )
        if self.integer and math.floor(self.high) < math.ceil(self.low):
            raise RPGConfigError(
                f"high: no whole value lies in [{self.low!r}, {self.high!r}]; widen the range "
                f"or set integer: false"
            )
        for name, least in (("initial", 2), ("candidates", 2), ("bootstrap", 100)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < least:
                raise RPGConfigError(f"{name}: must be an integer >= {least}, got {v!r}")
        for name in ("max_trials", "seed", "min_points"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise RPGConfigError(f"{name}: must be an integer >= 0, got {v!r}")
        if self.interval not in ("t", "bootstrap"):
            raise RPGConfigError(f"interval: must be 't' or 'bootstrap', got {self.interval!r}")
        if self.max_trials < self.initial:
            raise RPGConfigError(
                f"max_trials: must be at least initial ({self.initial}), got {self.max_trials}"
            )
        for name in ("b_width", "target_error", "target_width"):
            v = getattr(self, name)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int | float) or not v > 0:
                raise RPGConfigError(f"{name}: must be a number > 0, got {v!r}")
            if not math.isfinite(v):
                raise RPGConfigError(f"{name}: must be finite, got {v!r}")
        if self.target_width is not None and self.target_error is None:
            raise RPGConfigError(
                "target_width: needs target_error (the error whose parameter count it bounds)"
            )


@dataclass(frozen=True)
class Observation:
    """A finished trial: its knob value, its parameter count (what the law's P is) and error."""

    knob: float
    params: int
    error: float  # in the law's terms (1 - acc for higher-better metrics), > 0


@dataclass(frozen=True)
class Proposal:
    """The next knob value to train (``None``: stop) and why.

    ``b_interval``: the 95% bootstrap interval of ``b`` (None before the law can be fitted:
    fewer than 3 trials or 2 distinct counts). ``target_interval``: the 95% interval of
    ``log10`` of the parameter count reaching ``target_error`` (None without a target or a
    fit); its upper end is ``inf`` when more than 2.5% of the resamples never reach it.
    """

    knob: float | None  # None: stop
    reason: str  # a sentence for people: why this size, or why stopping
    b_interval: tuple[float, float] | None
    target_interval: tuple[float, float] | None
    b: float | None = None  # the fitted exponent (None before a fit)
    a: float | None = None  # the fitted coefficient
    target_params: float | None = None  # the fit's parameter count reaching the target
    # why it stopped: b_width, target_width (b_width+target_width when both were asked and
    # met), max_trials, candidates (repeats: false and every candidate trained)
    stop: str | None = None
    phase: str = "adaptive"  # initial (the spread), adaptive (the law chose) or stop

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (strict JSON: an unbounded end of an interval is ``None``)."""

        def finite(v: float | None) -> float | None:
            return v if v is not None and math.isfinite(v) else None

        def pair(iv: tuple[float, float] | None) -> list[float | None] | None:
            return None if iv is None else [finite(iv[0]), finite(iv[1])]

        return {
            "knob": self.knob,
            "reason": self.reason,
            "b_interval": pair(self.b_interval),
            "target_interval": pair(self.target_interval),
            "b": finite(self.b),
            "a": finite(self.a),
            "target_params": finite(self.target_params),
            "stop": self.stop,
            "phase": self.phase,
        }


# --- helpers ------------------------------------------------------------------------------------
def _spread(rule: AdaptiveLaw, count: int) -> list[float]:
    """``count`` knob values spread (log-)uniformly over the range, whole when integer."""
    if rule.log:
        raw = np.exp(np.linspace(math.log(rule.low), math.log(rule.high), count))
    else:
        raw = np.linspace(rule.low, rule.high, count)
    values: list[float] = []
    for v in raw:
        if rule.integer:
            v = float(min(max(round(float(v)), math.ceil(rule.low)), math.floor(rule.high)))
        if not any(math.isclose(v, w, rel_tol=1e-9) for w in values):
            values.append(float(v))
    return values


def initial_sizes(rule: AdaptiveLaw) -> list[float]:
    """The spread the study starts with (fewer than ``initial`` when whole values collide)."""
    return _spread(rule, rule.initial)


def _check_observed(observed: Sequence[Observation]) -> None:
    for i, o in enumerate(observed):
        if not isinstance(o, Observation):
            raise RPGConfigError(f"observed[{i}]: must be an Observation, got {type(o).__name__}")
        if not isinstance(o.knob, int | float) or not math.isfinite(o.knob):
            raise RPGConfigError(f"observed[{i}].knob: must be a finite number, got {o.knob!r}")
        if isinstance(o.params, bool) or not isinstance(o.params, int | float) or o.params <= 0:
            raise RPGConfigError(f"observed[{i}].params: must be a count > 0, got {o.params!r}")
        if not isinstance(o.error, int | float) or not math.isfinite(o.error) or o.error <= 0:
            raise RPGConfigError(
                f"observed[{i}].error: must be a finite number > 0 (the law fits log(error)), "
                f"got {o.error!r}"
            )


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _fmt(v: float) -> str:
    return f"{v:.0f}" if float(v).is_integer() and abs(v) < 1e15 else f"{v:.4g}"


def _interval(values: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


# two-sided 95% quantiles of Student's t for 1..30 degrees of freedom
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (table to 30, then the
    Cornish-Fisher expansion, within 1e-3)."""
    if df <= len(_T975):
        return _T975[max(df, 1) - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass(frozen=True)
class _Fit:
    a: float
    b: float
    boot: np.ndarray  # rows (a, b)
    b_interval: tuple[float, float]
    # the regression of log(error) on x = log(P): centre, spread, residual standard deviation
    n: int
    x_mean: float
    sxx: float
    s: float


def _fit(rule: AdaptiveLaw, p: np.ndarray, err: np.ndarray) -> _Fit | None:
    if len(p) < 3 or len(np.unique(p)) < 2:
        return None
    a, b = power_coefficients(p, err)
    boot = bootstrap_coefficients(p, err, rule.bootstrap, rule.seed)
    if len(boot) < 10:
        return None
    x, y = np.log(p), np.log(err)
    n = len(x)
    sxx = float(((x - x.mean()) ** 2).sum())
    resid = y - (math.log(a) - b * x)
    s = math.sqrt(float((resid**2).sum()) / (n - 2))
    if rule.interval == "t":
        half = t975(n - 2) * s / math.sqrt(sxx)
        b_interval = (b - half, b + half)
    else:
        b_interval = _interval(boot[:, 1])
    return _Fit(
        a=a, b=b, boot=boot, b_interval=b_interval, n=n, x_mean=float(x.mean()), sxx=sxx, s=s
    )


def _target(
    rule: AdaptiveLaw, fit: _Fit, error: float
) -> tuple[float | None, tuple[float, float], np.ndarray]:
    """The fit's log10 count reaching ``error``, its interval and the resamples' log counts
    (``inf`` where a resample's law does not fall)."""
    a, b = fit.boot[:, 0], fit.boot[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(b > 0, np.log(a / error) / np.where(b > 0, b, 1.0), np.inf)
    point = math.log(fit.a / error) / fit.b if fit.b > 0 else None
    ln10 = math.log(10)
    if rule.interval == "t":
        # delta method: x* = (log a - log e*) / b, Var(x*) = Var(y_hat(x*)) / b^2; unbounded
        # above when b's own interval reaches 0 (the law may not fall at all)
        t = t975(fit.n - 2)
        if point is None:
            return None, (-math.inf, math.inf), x
        se = fit.s * math.sqrt(1 / fit.n + (point - fit.x_mean) ** 2 / fit.sxx) / fit.b
        falls = fit.b - t * fit.s / math.sqrt(fit.sxx) > 0
        hi_x = (point + t * se) / ln10 if falls else math.inf
        return point / ln10, ((point - t * se) / ln10, hi_x), x
    big = 1e300
    lo, hi = np.percentile(np.where(np.isfinite(x), x, big), [2.5, 97.5])
    interval = tuple(float(v) / ln10 if v < big / 10 else math.inf for v in (lo, hi))
    return (point / ln10 if point is not None else None), (interval[0], interval[1]), x


def _gain(
    design: np.ndarray,
    cand: np.ndarray,
    targets: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """The variance one more trial at each candidate takes away (in units of the noise
    variance, which cancels from the choice).

    ``design``: the log counts of the trials so far (and pending); ``cand``: the candidates'
    log counts. The fitted line is ``y = alpha + slope * x`` with ``M = sum f f'``, ``f = (1, x)``;
    a quantity ``g' theta`` has variance ``g' M^-1 g`` and one more point ``f_c`` removes
    ``(g' M^-1 f_c)^2 / (1 + f_c' M^-1 f_c)`` of it (Sherman-Morrison). Without ``targets``,
    ``g = (0, 1)``: the slope ``b``. With them, ``g = (1, x*)`` for each resample's crossing
    ``x*`` (the fitted log error at the crossing; delta method: Var(x*) = Var(y_hat(x*)) / b^2),
    averaged with ``weights`` (1 / b^2 per resample).
    """
    F = np.column_stack([np.ones_like(design), design])
    Minv = np.linalg.inv(F.T @ F)
    fc = np.column_stack([np.ones_like(cand), cand])  # (C, 2)
    q = np.einsum("ci,ij,cj->c", fc, Minv, fc)  # f_c' M^-1 f_c
    if targets is None:
        g = np.array([[0.0, 1.0]])
        w = np.ones(1)
    else:
        g = np.column_stack([np.ones_like(targets), targets])  # (K, 2)
        w = np.ones(len(targets)) if weights is None else weights
    cross = g @ Minv @ fc.T  # (K, C): g' M^-1 f_c
    return np.asarray((w[:, None] * cross**2).sum(axis=0) / w.sum() / (1.0 + q))


def _choose(cand: list[float], score: np.ndarray) -> int:
    """The best candidate; ties (within 1e-9) go to the smaller knob, the cheaper training."""
    best = float(score.max())
    for i in range(len(cand)):
        if score[i] >= best - 1e-9 * max(abs(best), 1e-300):
            return i
    return int(np.argmax(score))


# --- the rule -----------------------------------------------------------------------------------
def propose(
    rule: AdaptiveLaw,
    observed: Sequence[Observation],
    params_of: Callable[[float], int],
    *,
    pending: Sequence[float] = (),
) -> Proposal:
    """The next knob value to train, or ``None`` and why to stop.

    ``observed``: the finished trials (several seeds at one size are several observations).
    ``params_of``: the parameter count of a knob value (called for each candidate).
    ``pending``: knob values started but not finished; they count towards ``max_trials`` and
    the design (which needs only their sizes), so trials run at once spread out.

    Raises:
        RPGConfigError: an observation with a count <= 0 or an error <= 0 or not finite (the
            message names ``observed[i].field``), or a ``params_of`` that returns one.
    """
    if not isinstance(rule, AdaptiveLaw):
        raise RPGConfigError(f"rule: must be an AdaptiveLaw, got {type(rule).__name__}")
    _check_observed(observed)
    n_obs, n_pending = len(observed), len(pending)
    p = np.array([float(o.params) for o in observed], dtype=np.float64)
    err = np.array([float(o.error) for o in observed], dtype=np.float64)
    fit = _fit(rule, p, err)
    b_int = fit.b_interval if fit is not None else None
    t_point: float | None = None
    t_int: tuple[float, float] | None = None
    t_x: np.ndarray | None = None
    if fit is not None and rule.target_error is not None:
        t_point, t_int, t_x = _target(rule, fit, rule.target_error)

    def done(stop: str, reason: str) -> Proposal:
        log.info("adaptive law: stop (%s) after %d trials: %s", stop, n_obs, reason)
        return Proposal(
            knob=None,
            reason=reason,
            b_interval=b_int,
            target_interval=t_int,
            b=fit.b if fit else None,
            a=fit.a if fit else None,
            target_params=10**t_point if t_point is not None else None,
            stop=stop,
            phase="stop",
        )

    def go(knob: float, phase: str, reason: str) -> Proposal:
        log.info("adaptive law: next %s (%s): %s", _fmt(knob), phase, reason)
        return Proposal(
            knob=float(knob),
            reason=reason,
            b_interval=b_int,
            target_interval=t_int,
            b=fit.b if fit else None,
            a=fit.a if fit else None,
            target_params=10**t_point if t_point is not None else None,
            phase=phase,
        )

    state = _state(rule, fit, t_point, t_int, n_obs)
    # 1. every asked interval narrower than asked
    asked = [
        (w, name)
        for w, name in ((rule.b_width, "b_width"), (rule.target_width, "target_width"))
        if w is not None
    ]
    if asked and fit is not None and n_obs >= rule.min_points:
        widths = {
            "b_width": b_int[1] - b_int[0] if b_int else math.inf,
            "target_width": t_int[1] - t_int[0] if t_int else math.inf,
        }
        if all(widths[name] < w for w, name in asked):
            met = " and ".join(
                f"{'b' if name == 'b_width' else 'the target size'}'s interval is "
                f"{widths[name]:.3g} wide{'' if name == 'b_width' else ' (decades)'}, "
                f"narrower than the asked {w:g} ({name})"
                for w, name in asked
            )
            names = "+".join(name for _, name in asked)
            return done(names, f"Stop after {n_obs} trials: {met}. {state}")
    # 2. the trial budget
    if n_obs + n_pending >= rule.max_trials:
        why = f"Stop: the trial budget is spent ({n_obs} finished"
        why += f", {n_pending} running" if n_pending else ""
        return done("max_trials", f"{why} of max_trials={rule.max_trials}). {state}")
    # 3. the initial spread
    taken = [float(o.knob) for o in observed] + [float(k) for k in pending]
    spread = initial_sizes(rule)
    for i, k in enumerate(spread):
        if not any(_same(k, t) for t in taken):
            return go(
                k,
                "initial",
                f"Initial spread: size {i + 1} of {len(spread)}, "
                f"{'log-' if rule.log else ''}uniform over [{_fmt(rule.low)}, {_fmt(rule.high)}].",
            )
    # 4. the candidate that most narrows the interval we stop on
    cand = _spread(rule, rule.candidates)
    if not rule.repeats:
        cand = [c for c in cand if not any(_same(c, t) for t in taken)]
        if not cand:
            return done("candidates", f"Stop: every candidate size has been trained. {state}")
    counts = np.array([_count(params_of, c, "params_of(candidate)") for c in cand])
    x_cand = np.log(counts)
    x_design = np.concatenate(
        [np.log(p), [math.log(_count(params_of, k, "params_of(pending)")) for k in pending]]
    )
    if len(np.unique(x_design)) < 2:  # no slope yet: the farthest size from those so far
        dist = np.array([np.abs(x_design - x).min() if len(x_design) else 0.0 for x in x_cand])
        i = _choose(cand, dist)
        return go(cand[i], "adaptive", f"The farthest size from those so far. {state}")
    aim = "b"
    if rule.target_error is not None and t_x is not None and fit is not None and fit.b > 0:
        target_done = (
            rule.target_width is not None
            and t_int is not None
            and t_int[1] - t_int[0] < rule.target_width
        )
        if not target_done:
            aim = "target"
    if aim == "target" and t_x is not None and fit is not None:
        lo, hi = float(x_cand.min()), float(x_cand.max())
        span = max(hi - lo, 1e-9)
        keep = np.isfinite(t_x)
        xt = np.clip(t_x[keep], lo - span, hi + span)  # crossings far beyond count as the edge
        w = 1.0 / fit.boot[keep, 1] ** 2  # delta method: Var(x*) = Var(y_hat(x*)) / b^2
        score = _gain(x_design, x_cand, xt, w) if len(xt) else np.zeros(len(cand))
        i = _choose(cand, score)
        where = "within" if t_point is not None and lo <= t_point * math.log(10) <= hi else "beyond"
        return go(
            cand[i],
            "adaptive",
            f"Next {_fmt(cand[i])} ({int(counts[i])} parameters): the size that most narrows "
            f"the interval of the count reaching error {rule.target_error:g} (the predicted "
            f"crossing is {where} the range). {state}",
        )
    score = _gain(x_design, x_cand, None)
    i = _choose(cand, score)
    note = ""
    if rule.target_error is not None and (fit is None or fit.b <= 0):
        note = " (no falling law yet to aim at the target)"
    return go(
        cand[i],
        "adaptive",
        f"Next {_fmt(cand[i])} ({int(counts[i])} parameters): the size that most narrows b's "
        f"interval{note}, the farthest in log-parameters from the trials' centre. {state}",
    )


def _count(params_of: Callable[[float], int], knob: float, what: str) -> float:
    v = params_of(knob)
    if (
        isinstance(v, bool)
        or not isinstance(v, int | float | np.integer | np.floating)
        or not v > 0
    ):
        raise RPGConfigError(f"{what}: must return a parameter count > 0, got {v!r} for {knob!r}")
    return float(v)


def _state(
    rule: AdaptiveLaw,
    fit: _Fit | None,
    t_point: float | None,
    t_int: tuple[float, float] | None,
    n: int,
) -> str:
    if fit is None:
        return f"No law yet ({n} trials; the fit needs 3 with 2 distinct sizes)."
    lo, hi = fit.b_interval
    s = f"After {n} trials b = {fit.b:.3f}, 95% interval [{lo:.3f}, {hi:.3f}] (width {hi - lo:.3f})"
    if rule.target_error is not None and t_int is not None:
        if t_point is None:
            s += f"; the law does not fall, so no size reaches error {rule.target_error:g}"
        else:
            hi_t = "inf" if not math.isfinite(t_int[1]) else f"{t_int[1]:.2f}"
            s += (
                f"; error {rule.target_error:g} at 10^{t_point:.2f} parameters, "
                f"interval 10^[{t_int[0]:.2f}, {hi_t}]"
            )
    return s + "."

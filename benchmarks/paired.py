"""Paired, interleaved timing that a busy machine cannot bias: the shared helpers of
``bench_load.py`` and ``bench_ring.py``.

Each pair runs both variants back to back, in alternating order (AB, BA, AB, ...), so a load
that changes over seconds slows both halves of a pair alike and neither variant is always first.
The statistic is the median of the per-pair ratios with a bootstrap 95% interval (resampling the
pairs), which one slow outlier cannot move; wall time and the process's CPU time are both kept.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sample:
    wall: float  # seconds on the wall clock
    cpu: float  # seconds of CPU time of this process (all its threads)


def timed(fn: Callable[[], object]) -> Sample:
    """One call of ``fn``, its wall and process CPU time."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return Sample(time.perf_counter() - w0, time.process_time() - c0)


def pairs(
    a: Callable[[], object], b: Callable[[], object], count: int, warmup: int = 1
) -> tuple[list[Sample], list[Sample]]:
    """``count`` interleaved pairs of ``a`` and ``b`` (after ``warmup`` unrecorded pairs), the
    order alternating from pair to pair."""
    out_a: list[Sample] = []
    out_b: list[Sample] = []
    for i in range(warmup + count):
        if i % 2 == 0:
            sa, sb = timed(a), timed(b)
        else:
            sb, sa = timed(b), timed(a)
        if i >= warmup:
            out_a.append(sa)
            out_b.append(sb)
    return out_a, out_b


@dataclass(frozen=True)
class Ratio:
    median: float  # median of the per-pair ratios
    low: float  # bootstrap 95% interval of that median
    high: float
    q1: float  # interquartile range of the per-pair ratios
    q3: float
    n: int

    def text(self) -> str:
        return f"{self.median:.3f} [95% CI {self.low:.3f}-{self.high:.3f}, n={self.n}]"


def ratio(num: list[float], den: list[float], resamples: int = 4000, seed: int = 0) -> Ratio:
    """The per-pair ratios ``num[i] / den[i]``: their median and its bootstrap 95% interval."""
    r = np.asarray(num, dtype=float) / np.asarray(den, dtype=float)
    rng = np.random.default_rng(seed)
    boot = np.median(rng.choice(r, size=(resamples, len(r)), replace=True), axis=1)
    low, high = np.percentile(boot, [2.5, 97.5])
    q1, q3 = np.percentile(r, [25, 75])
    return Ratio(float(np.median(r)), float(low), float(high), float(q1), float(q3), len(r))


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def load_text() -> str:
    """The 1, 5 and 15 minute load averages, as ``uptime`` prints them."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"

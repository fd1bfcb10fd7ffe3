"""Per-client limits (in process): ``RateLimit(rate, burst).check(key)``, a token bucket, and
``FailureThrottle(max_failures, window_s)``, which locks a client out after repeated failures
(token guesses); both raise 429 with Retry-After."""

from __future__ import annotations

import math
import threading
import time
from collections import deque

from fastapi import HTTPException

MAX_KEYS = 10_000


class RateLimit:
    """``rate`` requests per second per key, bursts of up to ``burst``; 429 + Retry-After."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                wait = max(1, math.ceil((1.0 - tokens) / self.rate))
                raise HTTPException(
                    429,
                    detail=f"too many requests; at most {self.rate:g} per second, retry later",
                    headers={"Retry-After": str(wait)},
                )
            if len(self._buckets) >= MAX_KEYS and key not in self._buckets:
                self._buckets.clear()  # bounded memory; an attacker only resets others' buckets
            self._buckets[key] = (tokens - 1.0, now)


class FailureThrottle:
    """At most ``max_failures`` failed attempts per key in ``window_s`` seconds: past that,
    :meth:`check` raises 429 with Retry-After (the seconds until the oldest failure leaves the
    window) for every attempt of the key, right or wrong, so guessing learns nothing while
    locked out."""

    def __init__(self, max_failures: int, window_s: float) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        while times and now - times[0] >= self.window_s:
            times.popleft()
        if times is not None and not times:
            del self._failures[key]
            return None
        return times

    def check(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            times = self._recent(key, now)
            if times is not None and len(times) >= self.max_failures:
                wait = max(1, math.ceil(self.window_s - (now - times[0])))
                raise HTTPException(
                    429,
                    detail=f"too many failed token attempts from this client ({len(times)} in "
                    f"{self.window_s:g} s); retry in {wait} s with a valid token",
                    headers={"Retry-After": str(wait)},
                )

    def failed(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            times = self._recent(key, now)
            if times is None:
                if len(self._failures) >= MAX_KEYS:
                    self._failures.clear()  # bounded memory, as RateLimit's buckets
                times = self._failures[key] = deque(maxlen=self.max_failures)
            times.append(now)

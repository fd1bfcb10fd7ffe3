"""A per-client token bucket (in process): ``RateLimit(rate, burst).check(key)`` raises 429."""

from __future__ import annotations

import math
import threading
import time

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

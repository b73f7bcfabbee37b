"""Requests per caller per minute: one token bucket per bearer token, client
certificate or (unauthenticated) peer address.

Buckets live in the process: N gateway processes behind a balancer allow up
to N × the limit. The table is bounded; the least recently used bucket is
dropped first (a dropped bucket restarts full, which only ever errs towards
letting a caller in).
"""
from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict

MAX_BUCKETS = 10_000


class RateLimiter:
    """``check(key)`` → 0 if allowed now, else the seconds until the next request may pass."""

    def __init__(self, per_minute: int, *, burst: int | None = None, clock=time.monotonic):
        self.per_minute = per_minute
        self.capacity = float(burst if burst is not None else per_minute)
        self.rate = per_minute / 60.0
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0

    def check(self, key: str) -> float:
        if not self.enabled:
            return 0.0
        now = self._clock()
        tokens, last = self._buckets.pop(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            wait = 0.0
        else:
            self._buckets[key] = (tokens, now)
            wait = (1.0 - tokens) / self.rate
        while len(self._buckets) > MAX_BUCKETS:
            self._buckets.popitem(last=False)
        return wait


def caller_key(request, cert_fingerprint: str | None = None) -> str:
    """The bucket a request draws from: its bearer token (hashed), client
    certificate, else its peer address."""
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        return "token:" + hashlib.sha256(auth[7:].strip().encode()).hexdigest()[:32]
    if cert_fingerprint:
        return "cert:" + cert_fingerprint
    return "peer:" + str(request.remote)


def retry_after(wait: float) -> str:
    return str(max(1, math.ceil(wait)))

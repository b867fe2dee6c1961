"""Per-owner token buckets for the routes that store things."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import RateLimited

# Past this many owners, buckets that have refilled (idle owners) are forgotten.
_PRUNE_AT = 10_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """``per_minute`` requests per owner, in bursts of up to a minute's worth. State is in
    this process: behind several replicas each enforces the limit on its own share."""

    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        what: str = "ingest requests",
    ) -> None:
        self.what = what
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    def check(self, owner: str, cost: int = 1) -> None:
        """Take ``cost`` tokens or raise RateLimited with the seconds until they exist."""
        if not self.enabled:
            return
        now = self._clock()
        # A request bigger than the bucket waits for a full one instead of never passing.
        need = min(float(cost), self.capacity)
        bucket = self._buckets.get(owner)
        if bucket is None:
            if len(self._buckets) >= _PRUNE_AT:
                self._prune(now)
            bucket = self._buckets[owner] = _Bucket(self.capacity, now)
        bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= need:
            bucket.tokens -= need
            return
        wait = math.ceil((need - bucket.tokens) / self.rate)
        raise RateLimited(f"too many {self.what}; try again in {wait} s", retry_after=max(1, wait))

    def _prune(self, now: float) -> None:
        for owner, b in list(self._buckets.items()):
            if b.tokens + (now - b.updated) * self.rate >= self.capacity:
                del self._buckets[owner]

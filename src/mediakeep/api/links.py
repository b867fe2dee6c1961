"""Signed URLs for permanent links, stable within a time window.

A URL signed at 10:17 and one signed at 10:41 differ, so every fresh signature would be a
cache miss for browsers and CDNs. Instead, each URL is signed to expire one window after
the end of the current window and kept until that window ends: within a window every
request gets the same URL, and each URL still has at least a window to live when handed out.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from ..keep import MAX_EXPIRES
from ..stores.base import ObjectStore


@dataclass(frozen=True)
class WindowedUrl:
    url: str
    window_end: int  # when callers should stop reusing it
    expires_at: int  # when it stops working


class WindowedLinks:
    def __init__(self, window: int, max_entries: int = 50_000) -> None:
        if not 1 <= window <= MAX_EXPIRES // 2:
            raise ValueError(f"the content URL window must be 1..{MAX_EXPIRES // 2} seconds")
        self.window = window
        self._max = max_entries
        self._cache: OrderedDict[tuple[str, str], WindowedUrl] = OrderedDict()

    async def signed(
        self, store: ObjectStore, bucket: str, key: str, now: float | None = None
    ) -> WindowedUrl:
        t = time.time() if now is None else now
        window_end = (int(t) // self.window + 1) * self.window
        cached = self._cache.get((bucket, key))
        if cached is not None and cached.window_end == window_end:
            self._cache.move_to_end((bucket, key))
            return cached
        expires_at = window_end + self.window
        url = (await store.sign_get_async(bucket, [key], expires_at - int(t)))[0]
        entry = WindowedUrl(url, window_end, expires_at)
        self._cache[(bucket, key)] = entry
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return entry

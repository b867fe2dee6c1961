"""A local directory cache of extracted bundles, evicted by age of last use."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from .archive import safe_extract, temp_archive


class BundleCache:
    def __init__(self, root: Path, ttl: float) -> None:
        self.root = root
        self.ttl = ttl

    def path_for(self, bundle_id: str) -> Path:
        return self.root / bundle_id

    async def open(self, bundle_id: str, download: Callable[[Path], Awaitable[None]]) -> Path:
        """The extracted directory, downloading and extracting on a miss."""
        self.evict()
        final = self.path_for(bundle_id)
        if final.is_dir():
            os.utime(final)  # last use, for eviction
            return final
        self.root.mkdir(parents=True, exist_ok=True)
        archive = temp_archive(self.root)
        staging = self.root / f".{bundle_id}.{uuid.uuid4().hex}"
        try:
            await download(archive)
            # Off the event loop: the service serves bundle files while it extracts.
            await asyncio.to_thread(safe_extract, archive, staging)
            try:
                # Atomic: readers see no directory or a complete one.
                staging.rename(final)
            except OSError:
                if not final.is_dir():
                    raise
        finally:
            archive.unlink(missing_ok=True)
            shutil.rmtree(staging, ignore_errors=True)
        return final

    def evict(self, now: float | None = None) -> int:
        if not self.root.is_dir():
            return 0
        cutoff = (now or time.time()) - self.ttl
        removed = 0
        for entry in self.root.iterdir():
            if entry.is_dir() and not entry.name.startswith(".") and entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        return removed

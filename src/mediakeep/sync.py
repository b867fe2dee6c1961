"""Blocking facade over ``MediaKeep`` for scripts and sync frameworks.

It runs one private event loop in a background thread, so it also works when called
from code that is itself inside a running loop's thread pool."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from .keep import MediaKeep
from .models import AssetInfo, IngestResult, Page, SweepReport
from .settings import Settings

T = TypeVar("T")


class SyncMediaKeep:
    def __init__(self, settings: Settings | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._keep = self._call(_build(settings))

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __enter__(self) -> SyncMediaKeep:
        self._call(self._keep.start())
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def aio(self) -> MediaKeep:
        return self._keep

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._call(self._keep.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def ingest_url(self, url: str, *, owner: str, **kw: Any) -> IngestResult:
        return self._call(self._keep.ingest_url(url, owner=owner, **kw))

    def ingest_urls(self, urls: Sequence[str], *, owner: str, **kw: Any) -> list[IngestResult]:
        return self._call(self._keep.ingest_urls(urls, owner=owner, **kw))

    def put_file(self, path: str | Path, *, owner: str, **kw: Any) -> IngestResult:
        return self._call(self._keep.put_file(path, owner=owner, **kw))

    def put_bytes(self, data: bytes, *, owner: str, **kw: Any) -> IngestResult:
        return self._call(self._keep.put_bytes(data, owner=owner, **kw))

    def get(self, asset_id: str, *, owner: str | None = None) -> AssetInfo:
        return self._call(self._keep.get(asset_id, owner=owner))

    def list(self, *, owner: str, **filters: Any) -> Page:
        return self._call(self._keep.list(owner=owner, **filters))

    def url(self, asset_id: str, *, owner: str | None = None, expires_in: int | None = None) -> str:
        return self._call(self._keep.url(asset_id, owner=owner, expires_in=expires_in))

    def urls(
        self, asset_ids: Sequence[str], *, owner: str | None = None, expires_in: int | None = None
    ) -> dict[str, str]:
        return self._call(self._keep.urls(asset_ids, owner=owner, expires_in=expires_in))

    def delete(self, asset_id: str, *, owner: str | None = None) -> None:
        self._call(self._keep.delete(asset_id, owner=owner))

    def set_visibility(self, asset_id: str, public: bool, *, owner: str | None = None) -> AssetInfo:
        return self._call(self._keep.set_visibility(asset_id, public, owner=owner))

    def sweep(self, **kw: Any) -> SweepReport:
        return self._call(self._keep.sweep(**kw))


async def _build(settings: Settings | None) -> MediaKeep:
    # Built inside the private loop so its engine and sessions belong to that loop.
    return MediaKeep(settings)

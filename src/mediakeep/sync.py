"""Blocking facade over ``MediaKeep`` for scripts and sync frameworks.

It runs one private event loop in a background thread, so it also works when called
from code that is itself inside a running loop's thread pool. Every method is the async
method of the same name, run to completion: same arguments, same types, same errors."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

from .keep import MediaKeep
from .settings import Settings

T = TypeVar("T")
P = ParamSpec("P")

# Async methods without a blocking twin, and why (tests/core/test_sync.py holds the list).
NOT_BLOCKING = {
    "start": "the context manager starts the facade",
    "close": "SyncMediaKeep.close()",
    "put_stream": "takes an async iterator, which has no meaning outside the loop",
    "put_stream_or_raise": "takes an async iterator",
    "store_source": "pipeline-level: takes a Source bound to the loop",
    "store_many": "pipeline-level: takes Sources bound to the loop",
    "store_or_raise": "pipeline-level: takes a Source bound to the loop",
    "receive_fal_webhook": "the HTTP service's entry point for fal's requests",
}


def _blocking(
    method: Callable[Concatenate[MediaKeep, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[SyncMediaKeep, P], T]:
    # Methods taking **kw declare ``self, /``: without it ParamSpec cannot rule out a
    # ``self`` keyword, and mypy refuses the wrapper.
    @functools.wraps(method)
    def call(self: SyncMediaKeep, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._call(method(self._keep, *args, **kwargs))

    return call


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

    # Assets
    ingest_url = _blocking(MediaKeep.ingest_url)
    ingest_urls = _blocking(MediaKeep.ingest_urls)
    put_file = _blocking(MediaKeep.put_file)
    put_bytes = _blocking(MediaKeep.put_bytes)
    presign_upload = _blocking(MediaKeep.presign_upload)
    complete_upload = _blocking(MediaKeep.complete_upload)
    get = _blocking(MediaKeep.get)
    list = _blocking(MediaKeep.list)
    locate = _blocking(MediaKeep.locate)
    url = _blocking(MediaKeep.url)
    urls = _blocking(MediaKeep.urls)
    delete = _blocking(MediaKeep.delete)
    set_visibility = _blocking(MediaKeep.set_visibility)
    storage_stats = _blocking(MediaKeep.storage_stats)
    # Collections, slots and versions
    collections = _blocking(MediaKeep.collections)
    delete_collection = _blocking(MediaKeep.delete_collection)
    slots = _blocking(MediaKeep.slots)
    slot = _blocking(MediaKeep.slot)
    versions = _blocking(MediaKeep.versions)
    set_current = _blocking(MediaKeep.set_current)
    apply_retention = _blocking(MediaKeep.apply_retention)
    # Durable jobs
    submit_ingest = _blocking(MediaKeep.submit_ingest)
    get_job = _blocking(MediaKeep.get_job)
    list_jobs = _blocking(MediaKeep.list_jobs)
    job_events = _blocking(MediaKeep.job_events)
    wait_for_job = _blocking(MediaKeep.wait_for_job)
    # Generations, fal.ai results, JSON rewriting
    store_generation = _blocking(MediaKeep.store_generation)
    submit_generation = _blocking(MediaKeep.submit_generation)
    store_fal_result = _blocking(MediaKeep.store_fal_result)
    submit_fal_result = _blocking(MediaKeep.submit_fal_result)
    register_generation = _blocking(MediaKeep.register_generation)
    get_generation = _blocking(MediaKeep.get_generation)
    list_generations = _blocking(MediaKeep.list_generations)
    generation_media_urls = _blocking(MediaKeep.generation_media_urls)
    validate_generation = _blocking(MediaKeep.validate_generation)
    cleanup_generation = _blocking(MediaKeep.cleanup_generation)
    persist_json = _blocking(MediaKeep.persist_json)
    # Bundles
    save_bundle = _blocking(MediaKeep.save_bundle)
    list_bundles = _blocking(MediaKeep.list_bundles)
    get_bundle = _blocking(MediaKeep.get_bundle)
    bundle_url = _blocking(MediaKeep.bundle_url)
    open_bundle = _blocking(MediaKeep.open_bundle)
    bundle_file = _blocking(MediaKeep.bundle_file)
    # Maintenance
    sweep = _blocking(MediaKeep.sweep)
    sweep_uploads = _blocking(MediaKeep.sweep_uploads)
    maintenance_tick = _blocking(MediaKeep.maintenance_tick)
    ping = _blocking(MediaKeep.ping)


async def _build(settings: Settings | None) -> MediaKeep:
    # Built inside the private loop so its engine and sessions belong to that loop.
    return MediaKeep(settings)

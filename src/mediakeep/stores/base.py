"""The object-store interface every backend implements (local, S3, and later Supabase and
hybrid). The pipeline only ever talks to this."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

Body = bytes | AsyncIterable[bytes]


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str | None = None
    content_type: str | None = None
    # When the store last wrote the object, where it says (gc spares young objects).
    last_modified: datetime | None = None
    # The store's answer confirms it took exactly the bytes sent: it checked our checksum,
    # or it acknowledged a single PUT of a body of known length. Otherwise the pipeline
    # asks it what it holds (HEAD).
    confirmed: bool = False


@dataclass(frozen=True)
class SignedRequest:
    url: str
    method: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive


@runtime_checkable
class ObjectStore(Protocol):
    name: str

    async def start(self, buckets: Sequence[str]) -> None:
        """Prepare the store (create buckets idempotently)."""

    async def close(self) -> None: ...

    async def put(
        self, bucket: str, key: str, body: Body, *, content_type: str, cache_control: str
    ) -> ObjectInfo:
        """Write an object. Keys are written once; the pipeline never reuses one."""

    def get(
        self, bucket: str, key: str, byte_range: ByteRange | None = None
    ) -> AsyncIterator[bytes]:
        """Stream an object's bytes (NotFound if missing)."""

    async def head(self, bucket: str, key: str) -> ObjectInfo | None: ...

    async def delete(self, bucket: str, key: str) -> None:
        """Delete; deleting a missing object is not an error."""

    def list_objects(self, bucket: str, prefix: str = "") -> AsyncIterator[ObjectInfo]: ...

    async def copy(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        *,
        cache_control: str | None = None,
    ) -> None:
        """Copy an object (idempotent when the destination already holds it).
        ``cache_control`` replaces the source's where the store can set it."""

    def sign_get(self, bucket: str, keys: Sequence[str], expires_in: int) -> list[str]:
        """Signed GET URLs for many keys at once, computed locally (no network calls).
        Stores whose URLs only their server can sign raise UnsupportedOperation."""

    def sign_put(
        self, bucket: str, key: str, expires_in: int, content_type: str
    ) -> SignedRequest: ...

    async def sign_get_async(self, bucket: str, keys: Sequence[str], expires_in: int) -> list[str]:
        """``sign_get`` for every store: local signing where possible, otherwise one
        server call per batch (never one per URL)."""

    async def sign_put_async(
        self, bucket: str, key: str, expires_in: int, content_type: str
    ) -> SignedRequest:
        """``sign_put`` for every store, including those that sign on their server."""

    def public_url(self, bucket: str, key: str) -> str: ...


def cache_control(public: bool) -> str:
    # A key's bytes never change, so caches may keep them for a year without revalidating.
    scope = "public" if public else "private"
    return f"{scope}, max-age=31536000, immutable"

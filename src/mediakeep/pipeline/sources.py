"""What can be stored: a URL, a local file, bytes, or an async byte stream. Each opens to
the same thing, a stream of chunks plus what the source claims about itself."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidInput, NotFound
from ..stores.base import ObjectStore
from .fetch import Download, Fetcher

FILE_CHUNK = 1024 * 1024


@dataclass
class Opened:
    chunks: AsyncIterator[bytes]
    declared_length: int | None
    source_url: str | None
    close: Callable[[], None]


class Source:
    """Base class; ``describe()`` is what results echo back as ``source``."""

    async def open(self, fetcher: Fetcher) -> Opened:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    @property
    def reopenable(self) -> bool:
        """Whether a failed transfer may be retried from the start."""
        return True


@dataclass
class UrlSource(Source):
    url: str

    async def open(self, fetcher: Fetcher) -> Opened:
        download: Download = await fetcher.open(self.url)
        return Opened(download.chunks(), download.declared_length, self.url, download.close)

    def describe(self) -> str:
        return self.url


@dataclass
class FileSource(Source):
    path: Path

    async def open(self, fetcher: Fetcher) -> Opened:
        try:
            fh = await asyncio.to_thread(self.path.open, "rb")
        except FileNotFoundError as exc:
            raise NotFound(f"no such file: {self.path}") from exc
        except (IsADirectoryError, PermissionError) as exc:
            raise InvalidInput(f"cannot read {self.path}: {exc.strerror}") from exc
        size = self.path.stat().st_size

        async def chunks() -> AsyncIterator[bytes]:
            while chunk := await asyncio.to_thread(fh.read, FILE_CHUNK):
                yield chunk

        return Opened(chunks(), size, None, fh.close)

    def describe(self) -> str:
        return str(self.path)


@dataclass
class BytesSource(Source):
    data: bytes
    name: str = "<bytes>"

    async def open(self, fetcher: Fetcher) -> Opened:
        view = memoryview(self.data)

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(view), FILE_CHUNK):
                yield bytes(view[i : i + FILE_CHUNK])

        return Opened(chunks(), len(self.data), None, lambda: None)

    def describe(self) -> str:
        return self.name


@dataclass
class StreamSource(Source):
    stream: AsyncIterable[bytes]
    name: str = "<stream>"
    length: int | None = None

    async def open(self, fetcher: Fetcher) -> Opened:
        return Opened(_immutable(self.stream), self.length, None, lambda: None)

    def describe(self) -> str:
        return self.name

    @property
    def reopenable(self) -> bool:
        return False


async def _immutable(stream: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """The caller's chunks as bytes. A chunk is hashed, uploaded and checked after it was
    handed on, so a caller that refills one buffer (a bytearray) for every chunk must not
    change what was already taken."""
    async for chunk in stream:
        yield chunk if type(chunk) is bytes else bytes(chunk)


@dataclass
class StoredObjectSource(Source):
    """An object already in the store (a presigned upload's staging copy, or a migration
    source): it goes through the pipeline like any download."""

    store: ObjectStore
    bucket: str
    key: str

    async def open(self, fetcher: Fetcher) -> Opened:
        info = await self.store.head(self.bucket, self.key)
        if info is None:
            raise NotFound("the uploaded object is not in the store")
        return Opened(aiter(self.store.get(self.bucket, self.key)), info.size, None, lambda: None)

    def describe(self) -> str:
        return f"{self.bucket}/{self.key}"


SourceLike = Source | str | Path | bytes | AsyncIterable[bytes]


def as_source(value: SourceLike) -> Source:
    if isinstance(value, Source):
        return value
    if isinstance(value, bytes | bytearray):
        return BytesSource(bytes(value))
    if isinstance(value, Path):
        return FileSource(value)
    if isinstance(value, str):
        if "://" in value or value.lower().startswith(("data:", "javascript:", "file:")):
            return UrlSource(value)
        return FileSource(Path(value))
    if isinstance(value, AsyncIterable):
        return StreamSource(value)
    raise InvalidInput(f"cannot store a {type(value).__name__}")

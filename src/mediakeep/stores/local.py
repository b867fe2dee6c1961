"""Objects as files under one root directory: the embedded default.

Writes go to a temporary file that is linked into place only when complete, so a reader
never sees half an object and an existing key is never replaced.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from ..errors import NotFound, ObjectExists, StoreError
from ..signing import UrlSigner, quote_key
from .base import Body, ByteRange, ObjectInfo, SignedRequest

_READ_CHUNK = 1024 * 1024
FILES_ROUTE = "/v1/files"


class LocalStore:
    name = "local"

    def __init__(self, root: Path, base_url: str, signer: UrlSigner) -> None:
        self.root = root.resolve()
        self.base_url = base_url.rstrip("/")
        self.signer = signer
        self._tmp = self.root / ".tmp"

    def path_for(self, bucket: str, key: str) -> Path:
        """The file for ``bucket/key``; refuses anything that would land outside the root."""
        candidate = (self.root / bucket / key).resolve()
        bucket_root = (self.root / bucket).resolve()
        if bucket_root.parent != self.root or not candidate.is_relative_to(bucket_root):
            raise NotFound("no such object")
        if candidate == bucket_root:
            raise NotFound("no such object")
        return candidate

    async def start(self, buckets: Sequence[str]) -> None:
        def mk() -> None:
            self._tmp.mkdir(parents=True, exist_ok=True)
            for b in buckets:
                (self.root / b).mkdir(parents=True, exist_ok=True)

        await asyncio.to_thread(mk)

    async def close(self) -> None:
        return None

    async def put(
        self, bucket: str, key: str, body: Body, *, content_type: str, cache_control: str
    ) -> ObjectInfo:
        dest = self.path_for(bucket, key)
        tmp = self._tmp / f"{uuid.uuid4().hex}.part"
        try:
            fh = await asyncio.to_thread(tmp.open, "wb")
            try:
                size = 0
                if isinstance(body, bytes | bytearray | memoryview):
                    size = await asyncio.to_thread(fh.write, body)
                else:
                    async for chunk in body:
                        size += await asyncio.to_thread(fh.write, chunk)
            finally:
                await asyncio.to_thread(fh.close)
            await asyncio.to_thread(self._publish, tmp, dest)
        except FileExistsError as exc:
            raise ObjectExists(f"object {bucket}/{key} already exists") from exc
        except OSError as exc:
            raise StoreError(f"local store write failed: {exc.strerror or exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        return ObjectInfo(key=key, size=size, content_type=content_type)

    @staticmethod
    def _publish(tmp: Path, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        # link() fails if the destination exists: create-only, atomic.
        os.link(tmp, dest)

    async def get(
        self, bucket: str, key: str, byte_range: ByteRange | None = None
    ) -> AsyncIterator[bytes]:
        path = self.path_for(bucket, key)
        try:
            fh = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError as exc:
            raise NotFound("no such object") from exc
        try:
            remaining = None
            if byte_range is not None:
                await asyncio.to_thread(fh.seek, byte_range.start)
                remaining = byte_range.end - byte_range.start + 1
            while remaining is None or remaining > 0:
                n = _READ_CHUNK if remaining is None else min(_READ_CHUNK, remaining)
                chunk = await asyncio.to_thread(fh.read, n)
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            fh.close()

    async def head(self, bucket: str, key: str) -> ObjectInfo | None:
        try:
            st = await asyncio.to_thread(os.stat, self.path_for(bucket, key))
        except (FileNotFoundError, NotFound):
            return None
        return ObjectInfo(
            key=key,
            size=st.st_size,
            etag=f"{st.st_ino:x}-{st.st_size:x}",
            last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
        )

    async def delete(self, bucket: str, key: str) -> None:
        try:
            await asyncio.to_thread(self.path_for(bucket, key).unlink, True)
        except NotFound:
            return
        except OSError as exc:
            raise StoreError(f"local store delete failed: {exc.strerror or exc}") from exc

    async def list_objects(self, bucket: str, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        base = (self.root / bucket).resolve()
        # Only the prefix's own folder can hold its keys: listing one object's renditions
        # must not walk the whole bucket.
        start = (base / prefix.rpartition("/")[0]).resolve()
        if not start.is_relative_to(base):
            start = base

        def walk() -> list[ObjectInfo]:
            out = []
            for dirpath, _dirs, files in os.walk(start):
                for f in files:
                    p = Path(dirpath) / f
                    key = p.relative_to(base).as_posix()
                    if key.startswith(prefix):
                        st = p.stat()
                        modified = datetime.fromtimestamp(st.st_mtime, UTC)
                        out.append(ObjectInfo(key=key, size=st.st_size, last_modified=modified))
            return sorted(out, key=lambda o: o.key)

        for info in await asyncio.to_thread(walk):
            yield info

    async def copy(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        *,
        cache_control: str | None = None,
    ) -> None:
        src = self.path_for(src_bucket, src_key)
        dst = self.path_for(dst_bucket, dst_key)
        tmp = self._tmp / f"{uuid.uuid4().hex}.part"
        try:
            await asyncio.to_thread(shutil.copyfile, src, tmp)
            await asyncio.to_thread(self._publish, tmp, dst)
        except FileNotFoundError as exc:
            raise NotFound("no such object") from exc
        except FileExistsError:
            return  # the same bytes are already there; copy is idempotent
        finally:
            tmp.unlink(missing_ok=True)

    def _url(self, bucket: str, key: str) -> tuple[str, str]:
        path = f"{FILES_ROUTE}/{bucket}/{quote_key(key)}"
        return path, f"{self.base_url}{path}"

    def sign_get(self, bucket: str, keys: Sequence[str], expires_in: int) -> list[str]:
        expires = int(time.time()) + expires_in
        out = []
        for key in keys:
            path, url = self._url(bucket, key)
            out.append(f"{url}?{self.signer.sign('GET', path, expires)}")
        return out

    def sign_put(self, bucket: str, key: str, expires_in: int, content_type: str) -> SignedRequest:
        path, url = self._url(bucket, key)
        qs = self.signer.sign("PUT", path, int(time.time()) + expires_in)
        return SignedRequest(
            url=f"{url}?{qs}", method="PUT", headers={"Content-Type": content_type}
        )

    async def sign_get_async(self, bucket: str, keys: Sequence[str], expires_in: int) -> list[str]:
        return self.sign_get(bucket, keys, expires_in)

    async def sign_put_async(
        self, bucket: str, key: str, expires_in: int, content_type: str
    ) -> SignedRequest:
        return self.sign_put(bucket, key, expires_in, content_type)

    def public_url(self, bucket: str, key: str) -> str:
        return self._url(bucket, key)[1]

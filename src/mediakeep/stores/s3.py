"""Any S3-compatible store (AWS S3, MinIO, SeaweedFS, R2, Supabase's S3 endpoint), via
obstore: SigV4 signing and transfers run in Rust, off the Python interpreter."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import aiohttp
import obstore
from obstore.exceptions import AlreadyExistsError, NotFoundError
from obstore.store import S3Store as _ObS3Store

from ..errors import BucketNotFound, IntegrityError, NotFound, ObjectExists, StoreError
from .base import Body, ByteRange, ObjectInfo, SignedRequest

if TYPE_CHECKING:
    from obstore.store import ClientConfig

# obstore maps "not found" to the builtin FileNotFoundError (its own class in some paths).
_MISSING = (NotFoundError, FileNotFoundError)
_MD5_HEX = re.compile(r"[0-9a-fA-F]{32}")

# Objects up to this size go up in one PUT; larger ones stream as multipart uploads whose
# parts are this size. Bounded memory per transfer: about 2 parts in flight.
SINGLE_PUT_LIMIT = 8 * 1024 * 1024
MULTIPART_CONCURRENCY = 2


class S3Store:
    name = "s3"

    def __init__(
        self,
        *,
        endpoint: str | None,
        region: str,
        access_key_id: str | None,
        secret_access_key: str | None,
        public_base_url: str | None = None,
        create_buckets: bool = True,
        conditional_put: bool = True,
        unsigned_payload: bool = True,
        checksum: Literal["sha256", "md5", "none"] = "sha256",
    ) -> None:
        self.endpoint = endpoint.rstrip("/") if endpoint else None
        self._checksum = checksum
        self._conditional_put = conditional_put
        self._unsigned_payload = unsigned_payload
        self.region = region
        self._access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        self._create_buckets = create_buckets
        self._public_base = (public_base_url or self._default_public_base()).rstrip("/")
        self._stores: dict[str, _ObS3Store] = {}

    def _default_public_base(self) -> str:
        if self.endpoint:
            return self.endpoint
        return f"https://s3.{self.region}.amazonaws.com"

    def _store(self, bucket: str) -> _ObS3Store:
        store = self._stores.get(bucket)
        if store is None:
            config: dict[str, Any] = {"region": self.region}
            if self._unsigned_payload:
                # The signed payload hash (x-amz-content-sha256) buys nothing where the
                # store does not check it: SeaweedFS accepted a tampered body here.
                config["unsigned_payload"] = True
            if self._checksum == "sha256":
                # x-amz-checksum-sha256, which the store does check (BadDigest on a
                # mismatch): end-to-end integrity, hashed in obstore's Rust threads rather
                # than by an MD5 of the body on the Python main thread.
                config["checksum_algorithm"] = "SHA256"
            if self.endpoint:
                config["endpoint"] = self.endpoint
                config["virtual_hosted_style_request"] = False
            if self._access_key_id:
                config["access_key_id"] = self._access_key_id
                config["secret_access_key"] = self._secret_access_key or ""
            client: ClientConfig = {
                "allow_http": bool(self.endpoint and self.endpoint.startswith("http:"))
            }
            store = _ObS3Store(bucket, config=config, client_options=client)  # type: ignore[arg-type]
            self._stores[bucket] = store
        return store

    async def start(self, buckets: Sequence[str]) -> None:
        if not self._create_buckets:
            return
        async with aiohttp.ClientSession() as session:
            for bucket in buckets:
                await self._create_bucket(session, bucket)

    async def _create_bucket(self, session: aiohttp.ClientSession, bucket: str) -> None:
        # obstore has no CreateBucket; a presigned PUT on the bucket's root is one (SigV4 query
        # auth signs any operation), and saves a second S3 SDK just for start-up.
        url = obstore.sign(self._store(bucket), "PUT", "", timedelta(minutes=5))
        async with session.put(url) as resp:
            if resp.status in (200, 204):
                return
            text = await resp.text()
            if resp.status == 409 and (
                "BucketAlreadyOwnedByYou" in text or "BucketAlreadyExists" in text
            ):
                return
            raise StoreError(f"cannot create bucket {bucket!r}: HTTP {resp.status} {text[:200]}")

    async def close(self) -> None:
        self._stores.clear()

    async def put(
        self, bucket: str, key: str, body: Body, *, content_type: str, cache_control: str
    ) -> ObjectInfo:
        store = self._store(bucket)
        attrs: dict[str, str] = {"Content-Type": content_type, "Cache-Control": cache_control}
        try:
            if isinstance(body, bytes | bytearray | memoryview):
                return await self._put_single(store, key, bytes(body), attrs)
            it = aiter(body)
            head: list[bytes] = []
            size = 0
            exhausted = False
            while size < SINGLE_PUT_LIMIT:
                try:
                    chunk = await anext(it)
                except StopAsyncIteration:
                    exhausted = True
                    break
                head.append(chunk)
                size += len(chunk)
            if exhausted:
                return await self._put_single(store, key, b"".join(head), attrs)
            counted = _Counting(head, it)
            res = await obstore.put_async(
                store,
                key,
                counted,
                attributes=attrs,
                use_multipart=True,
                chunk_size=SINGLE_PUT_LIMIT,
                max_concurrency=MULTIPART_CONCURRENCY,
            )
            return ObjectInfo(key=key, size=counted.size, etag=res["e_tag"])
        except (OSError, obstore.exceptions.BaseError) as exc:  # type: ignore[attr-defined]
            raise StoreError(f"S3 upload failed: {_short(exc)}") from exc

    async def _put_single(
        self, store: _ObS3Store, key: str, data: bytes, attrs: dict[str, str]
    ) -> ObjectInfo:
        try:
            # If-None-Match: * makes the write create-only on stores that support it (AWS,
            # R2, MinIO, SeaweedFS). Multipart bodies rely on fresh UUID keys instead: a
            # conditional multipart put would make obstore buffer the whole body.
            res = await obstore.put_async(
                store,
                key,
                data,
                attributes=attrs,
                use_multipart=False,
                mode="create" if self._conditional_put else "overwrite",
            )
        except AlreadyExistsError as exc:
            raise ObjectExists(f"object {key} already exists") from exc
        # A 200 to a single PUT acknowledges a body of exactly its Content-Length; the
        # checksum (sent, or the ETag compared) covers what those bytes are.
        info = ObjectInfo(key=key, size=len(data), etag=res["e_tag"], confirmed=True)
        if self._checksum != "md5":
            return info
        etag = (res["e_tag"] or "").strip('"')
        # Stores without flexible checksums: a single-part PUT's ETag is the MD5 of the
        # body on S3 and its clones, an end-to-end check that the store holds what we sent.
        if _MD5_HEX.fullmatch(etag):
            local = hashlib.md5(data, usedforsecurity=False).hexdigest()
            if etag.lower() != local:
                raise IntegrityError(f"the store's checksum {etag} does not match ours {local}")
        return info

    async def get(
        self, bucket: str, key: str, byte_range: ByteRange | None = None
    ) -> AsyncIterator[bytes]:
        options: dict[str, Any] = {}
        if byte_range is not None:
            options["range"] = (byte_range.start, byte_range.end + 1)
        try:
            res = await obstore.get_async(self._store(bucket), key, options=options or None)  # type: ignore[arg-type]
        except _MISSING as exc:
            raise NotFound("no such object") from exc
        except Exception as exc:
            raise StoreError(f"S3 download failed: {_short(exc)}") from exc
        async for chunk in res.stream(min_chunk_size=256 * 1024):
            yield bytes(chunk)

    async def head(self, bucket: str, key: str) -> ObjectInfo | None:
        try:
            meta = await obstore.head_async(self._store(bucket), key)
        except _MISSING:
            return None
        except Exception as exc:
            raise StoreError(f"S3 head failed: {_short(exc)}") from exc
        return ObjectInfo(
            key=key, size=meta["size"], etag=meta["e_tag"], last_modified=meta["last_modified"]
        )

    async def delete(self, bucket: str, key: str) -> None:
        try:
            await obstore.delete_async(self._store(bucket), key)
        except _MISSING:
            return
        except Exception as exc:
            raise StoreError(f"S3 delete failed: {_short(exc)}") from exc

    async def list_objects(self, bucket: str, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        # obstore matches prefixes at "/" boundaries ("a/b" lists "a/b/…" only); the
        # interface means a plain string prefix, as S3 itself does, so list the enclosing
        # folder and filter.
        folder = prefix if prefix.endswith("/") else prefix.rpartition("/")[0]
        stream = obstore.list(self._store(bucket), folder or None, chunk_size=1000)
        while True:
            # Failures surface as typed store errors, as for every other call: gc and the
            # hybrid store must be able to tell "the store is down" from a bug.
            try:
                batch = await anext(stream)
            except StopAsyncIteration:
                return
            except Exception as exc:
                if "NoSuchBucket" in str(exc):
                    raise BucketNotFound(f"bucket {bucket!r} does not exist") from exc
                raise StoreError(f"S3 list failed: {_short(exc)}") from exc
            for meta in batch:
                if meta["path"].startswith(prefix):
                    yield ObjectInfo(
                        key=meta["path"],
                        size=meta["size"],
                        etag=meta["e_tag"],
                        last_modified=meta["last_modified"],
                    )

    async def copy(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        *,
        cache_control: str | None = None,
    ) -> None:
        if src_bucket == dst_bucket and cache_control is None:
            try:
                await obstore.copy_async(self._store(src_bucket), src_key, dst_key)
            except _MISSING as exc:
                raise NotFound("no such object") from exc
            return
        # obstore exposes no cross-bucket (or metadata-replacing) server-side copy:
        # stream it through, keeping the source's Content-Type.
        try:
            res = await obstore.get_async(self._store(src_bucket), src_key)
        except _MISSING as exc:
            raise NotFound("no such object") from exc
        attrs = res.attributes
        content_type = str(attrs.get("Content-Type") or "application/octet-stream")
        source_cc = str(attrs.get("Cache-Control") or "private, max-age=31536000, immutable")

        async def body() -> AsyncIterator[bytes]:
            async for chunk in res.stream(min_chunk_size=256 * 1024):
                yield bytes(chunk)

        try:
            await self.put(
                dst_bucket,
                dst_key,
                body(),
                content_type=content_type,
                cache_control=cache_control or source_cc,
            )
        except ObjectExists:
            return  # the destination already holds the copy

    def sign_get(self, bucket: str, keys: Sequence[str], expires_in: int) -> list[str]:
        if not keys:
            return []
        return list(
            obstore.sign(self._store(bucket), "GET", list(keys), timedelta(seconds=expires_in))
        )

    def sign_put(self, bucket: str, key: str, expires_in: int, content_type: str) -> SignedRequest:
        url = obstore.sign(self._store(bucket), "PUT", key, timedelta(seconds=expires_in))
        return SignedRequest(url=url, method="PUT", headers={"Content-Type": content_type})

    async def sign_get_async(self, bucket: str, keys: Sequence[str], expires_in: int) -> list[str]:
        return self.sign_get(bucket, keys, expires_in)

    async def sign_put_async(
        self, bucket: str, key: str, expires_in: int, content_type: str
    ) -> SignedRequest:
        return self.sign_put(bucket, key, expires_in, content_type)

    def public_url(self, bucket: str, key: str) -> str:
        return f"{self._public_base}/{bucket}/{quote(key, safe='/')}"


class _Counting:
    """Replays the buffered head, then the rest of the stream, counting bytes as they go."""

    def __init__(self, head: list[bytes], rest: AsyncIterator[bytes]) -> None:
        self._head = head
        self._rest = rest
        self.size = 0

    def __aiter__(self) -> _Counting:
        return self

    async def __anext__(self) -> bytes:
        if self._head:
            chunk = self._head.pop(0)
        else:
            chunk = await anext(self._rest)
        self.size += len(chunk)
        return chunk


def _short(exc: BaseException) -> str:
    # obstore errors embed the whole request debug dump (including URLs); keep the first line.
    return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__

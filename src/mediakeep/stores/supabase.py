"""Supabase Storage through its own REST API (``{project}/storage/v1``), with the
service-role key.

What the API does not give us directly, and how it is bridged:

- Signing is done by the server, so URLs come from ``sign_get_async``/``sign_put_async``,
  one request per batch; the synchronous ``sign_get``/``sign_put`` raise.
- Listing is one folder level per request with offset paging; the recursive listing our
  interface promises walks the folders.
- Most error responses arrive as HTTP 400 with the real status in the JSON body's
  ``statusCode`` (newer servers may send the real status); both are understood.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, NoReturn
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
from yarl import URL

from ..errors import (
    BucketNotFound,
    InvalidInput,
    MediaKeepError,
    NotFound,
    ObjectExists,
    ObjectTooLarge,
    StoreAuthError,
    StoreError,
    StoreRejectedType,
    UnsupportedOperation,
)
from .base import Body, ByteRange, ObjectInfo, SignedRequest, cache_control

DEFAULT_STORAGE_PATH = "/storage/v1"
LIST_PAGE_SIZE = 1000
SIGN_BATCH = 1000  # paths per signing request: one call per batch, bounded request bodies
_READ_CHUNK = 256 * 1024
_DUPLICATE_CODES = {"Duplicate", "KeyAlreadyExists", "ResourceAlreadyExists", "BucketAlreadyExists"}
_AUTH_CODES = {"InvalidJWT", "AccessDenied", "Unauthorized", "InvalidSignature", "ExpiredToken"}


def storage_url(url: str, storage_path: str | None = None) -> str:
    """The Storage API base URL for a configured URL.

    - no scheme: ``https://`` is assumed (never doubled);
    - a URL without a path is a project URL: ``/storage/v1`` is appended;
    - a URL with a path (``…/storage/v1``, a proxy prefix) is used as is;
    - ``storage_path``, when given, replaces that rule: it is appended unless the path
      already ends with it, and ``""`` or ``"/"`` means the server answers at the root.
    """
    raw = url.strip()
    if "://" not in raw:
        raw = "https://" + raw.lstrip("/")
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput(f"not an http(s) URL: {url!r}")
    path = re.sub("/{2,}", "/", parts.path).rstrip("/")
    if path.endswith("/storage/v1/s3"):
        raise InvalidInput(
            "that is Supabase's S3 endpoint: use it with MEDIAKEEP_STORE=s3, or give the "
            "project URL here"
        )
    if storage_path is not None:
        extra = storage_path.strip().strip("/")
        if extra and not path.endswith("/" + extra):
            path = f"{path}/{extra}"
    elif not path:
        path = DEFAULT_STORAGE_PATH
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _q(key: str) -> str:
    return quote(key, safe="/")


def _info(key: str, headers: Mapping[str, str], size: int) -> ObjectInfo:
    return ObjectInfo(
        key=key,
        size=size,
        etag=(headers.get("ETag") or "").strip('"') or None,
        content_type=headers.get("Content-Type"),
        last_modified=_http_date(headers.get("Last-Modified")),
    )


def _http_date(value: str | None) -> datetime | None:
    try:
        return parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError):
        return None


def _iso_date(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


@dataclass(frozen=True)
class _ApiError:
    status: int
    code: str
    message: str
    from_storage: bool  # a JSON error from the Storage API itself, not a proxy's page


def _parse_error(http_status: int, text: str) -> _ApiError:
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return _ApiError(http_status, "", text.strip()[:300], False)
    status = http_status
    raw = body.get("statusCode")
    if isinstance(raw, int | str) and str(raw).isdigit():
        status = int(raw)
    code = str(body.get("code") or body.get("error") or "")
    message = str(body.get("message") or body.get("error") or "")[:300]
    # The server's router answers "Route GET:/x not found" for paths it does not serve:
    # that is a wrong URL, not a missing object.
    routed = not (message.startswith("Route ") and message.endswith(" not found"))
    return _ApiError(status, code, message, routed)


def map_error(http_status: int, text: str, what: str) -> MediaKeepError:
    """The typed error for a Storage API error response."""
    err = _parse_error(http_status, text)
    detail = {"http_status": http_status, "status": err.status, "store_code": err.code}
    msg = f"Supabase Storage: {what}: {err.message}"
    lowered = f"{err.code} {err.message}".lower()
    if err.from_storage and (
        err.code == "NoSuchBucket" or "bucket not found" in (err.code.lower(), err.message.lower())
    ):
        return BucketNotFound(msg, **detail)
    if err.from_storage and (err.status == 404 or err.code in ("NoSuchKey", "not_found")):
        return NotFound(msg, **detail)
    if err.status == 404:
        error = StoreError(f"{msg} (is this the Storage API's URL?)", **detail)
        error.retryable = False
        return error
    if err.status == 409 or err.code in _DUPLICATE_CODES:
        return ObjectExists(msg, **detail)
    if err.status == 413 or err.code == "EntityTooLarge":
        return ObjectTooLarge(msg, **detail)
    if err.status == 415 or err.code in ("InvalidMimeType", "invalid_mime_type"):
        return StoreRejectedType(msg, **detail)
    if err.status in (401, 403) or err.code in _AUTH_CODES or "jwt" in lowered:
        return StoreAuthError(msg, **detail)
    error = StoreError(msg, **detail)
    # Server trouble and throttling pass; anything else is a request we got wrong.
    error.retryable = err.status >= 500 or err.status in (408, 429)
    return error


class SupabaseStore:
    name = "supabase"

    def __init__(
        self,
        *,
        url: str,
        service_key: str,
        storage_path: str | None = None,
        public_buckets: Sequence[str] = (),
        public_base_url: str | None = None,
        bucket_file_size_limit: int | None = None,
        bucket_allowed_mime_types: Sequence[str] | None = None,
        list_page_size: int = LIST_PAGE_SIZE,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ) -> None:
        if not service_key:
            raise InvalidInput("the Supabase store needs a service key")
        self.storage_url = storage_url(url, storage_path)
        self._key = service_key
        self.public_buckets = frozenset(public_buckets)
        self._public_base = (public_base_url or f"{self.storage_url}/object/public").rstrip("/")
        self._file_size_limit = bucket_file_size_limit
        self._allowed_types = list(bucket_allowed_mime_types) if bucket_allowed_mime_types else None
        self.list_page_size = list_page_size
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_read=read_timeout
        )
        self._session: aiohttp.ClientSession | None = None
        # Servers older than cross-bucket copy drop ``destinationBucket`` silently; once
        # seen, cross-bucket copies are streamed instead.
        self._server_cross_bucket_copy = True

    def __repr__(self) -> str:
        return f"SupabaseStore({self.storage_url!r})"  # never the key

    # -- plumbing ------------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"apikey": self._key}
            if not self._key.startswith("sb_"):
                # A legacy service_role JWT goes in both headers. The newer sb_secret_ keys
                # are not JWTs: the gateway takes them from apikey alone.
                headers["Authorization"] = f"Bearer {self._key}"
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=headers)
        return self._session

    def _url(self, path: str) -> URL:
        # Paths are quoted here once; yarl must not quote them again.
        return URL(f"{self.storage_url}{path}", encoded=True)

    async def _call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        try:
            async with self._http().request(
                method, self._url(path), json=json_body, headers=headers
            ) as resp:
                text = await resp.text()
                if resp.status >= 400:
                    raise map_error(resp.status, text, what)
        except aiohttp.ClientError as exc:
            raise StoreError(f"Supabase Storage unreachable ({what}): {exc}") from exc
        except TimeoutError as exc:
            raise StoreError(f"Supabase Storage timed out ({what})") from exc
        try:
            return json.loads(text) if text else None
        except ValueError as exc:
            raise StoreError(
                f"Supabase Storage: {what}: the answer is not JSON (is this the Storage API's URL?)"
            ) from exc

    @staticmethod
    async def _raise(resp: aiohttp.ClientResponse, what: str) -> NoReturn:
        raise map_error(resp.status, await resp.text(), what)

    # -- buckets -------------------------------------------------------------------------

    async def start(self, buckets: Sequence[str]) -> None:
        for bucket in buckets:
            await self.create_bucket(
                bucket,
                public=bucket in self.public_buckets,
                file_size_limit=self._file_size_limit,
                allowed_mime_types=self._allowed_types,
            )

    async def create_bucket(
        self,
        bucket: str,
        *,
        public: bool = False,
        file_size_limit: int | None = None,
        allowed_mime_types: Sequence[str] | None = None,
    ) -> bool:
        """Create the bucket; False if it already existed (its settings are left alone)."""
        body: dict[str, Any] = {"id": bucket, "name": bucket, "public": public}
        if file_size_limit is not None:
            body["file_size_limit"] = file_size_limit
        if allowed_mime_types:
            body["allowed_mime_types"] = list(allowed_mime_types)
        try:
            await self._call("POST", "/bucket", f"create bucket {bucket!r}", json_body=body)
        except ObjectExists:
            return False
        return True

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- objects -------------------------------------------------------------------------

    async def put(
        self,
        bucket: str,
        key: str,
        body: Body,
        *,
        content_type: str,
        cache_control: str,
        upsert: bool = False,
    ) -> ObjectInfo:
        size = 0
        data: bytes | AsyncIterator[bytes]
        if isinstance(body, bytes | bytearray | memoryview):
            data = bytes(body)
            size = len(data)
        else:
            source = body

            async def counted() -> AsyncIterator[bytes]:
                # Streamed as the request body (chunked): never held whole in memory.
                nonlocal size
                async for chunk in source:
                    size += len(chunk)
                    yield chunk

            data = counted()
        headers = {
            "Content-Type": content_type,
            "cache-control": cache_control,
            "x-upsert": "true" if upsert else "false",
        }
        what = f"upload {bucket}/{key}"
        try:
            async with self._http().post(
                self._url(f"/object/{quote(bucket, safe='')}/{_q(key)}"),
                data=data,
                headers=headers,
            ) as resp:
                if resp.status >= 400:
                    await self._raise(resp, what)
                await resp.read()
        except aiohttp.ClientError as exc:
            raise StoreError(f"Supabase Storage upload failed: {exc}") from exc
        except TimeoutError as exc:
            raise StoreError("Supabase Storage upload timed out") from exc
        return ObjectInfo(key=key, size=size, content_type=content_type)

    def _object_path(self, bucket: str, key: str) -> str:
        return f"/object/authenticated/{quote(bucket, safe='')}/{_q(key)}"

    async def get(
        self, bucket: str, key: str, byte_range: ByteRange | None = None
    ) -> AsyncIterator[bytes]:
        headers = {}
        if byte_range is not None:
            headers["Range"] = f"bytes={byte_range.start}-{byte_range.end}"
        what = f"download {bucket}/{key}"
        try:
            async with self._http().get(
                self._url(self._object_path(bucket, key)), headers=headers
            ) as resp:
                if resp.status >= 400:
                    await self._raise(resp, what)
                skip, remaining = 0, None
                if byte_range is not None and resp.status == 200:
                    # The server ignored the range: cut it out of the full body ourselves.
                    skip = byte_range.start
                    remaining = byte_range.end - byte_range.start + 1
                async for chunk in resp.content.iter_chunked(_READ_CHUNK):
                    if skip:
                        if len(chunk) <= skip:
                            skip -= len(chunk)
                            continue
                        chunk, skip = chunk[skip:], 0
                    if remaining is not None:
                        chunk = chunk[:remaining]
                        remaining -= len(chunk)
                    if chunk:
                        yield chunk
                    if remaining == 0:
                        break
        except aiohttp.ClientError as exc:
            raise StoreError(f"Supabase Storage download failed: {exc}") from exc
        except TimeoutError as exc:
            raise StoreError("Supabase Storage download timed out") from exc

    async def head(self, bucket: str, key: str) -> ObjectInfo | None:
        url = self._url(self._object_path(bucket, key))
        try:
            async with self._http().head(url) as resp:
                if resp.status < 300 and "Content-Length" in resp.headers:
                    return _info(key, resp.headers, int(resp.headers["Content-Length"]))
            # Either HEAD failed (a bodiless 400 means "missing" as well as "bad key") or a
            # proxy dropped the size: a one-byte GET answers both.
            async with self._http().get(url, headers={"Range": "bytes=0-0"}) as resp:
                if resp.status < 300:
                    total = resp.headers.get("Content-Range", "").rpartition("/")[2]
                    if resp.status == 200 or not total.isdigit():
                        total = resp.headers.get("Content-Length", "")
                    if not total.isdigit():
                        raise StoreError(f"Supabase Storage: no size for {bucket}/{key}")
                    return _info(key, resp.headers, int(total))
                error = map_error(resp.status, await resp.text(), f"head {bucket}/{key}")
        except aiohttp.ClientError as exc:
            raise StoreError(f"Supabase Storage unreachable (head): {exc}") from exc
        except TimeoutError as exc:
            raise StoreError("Supabase Storage timed out (head)") from exc
        if type(error) is NotFound:
            return None
        raise error

    async def delete(self, bucket: str, key: str) -> None:
        # The batch route answers 200 with what it removed, also when that is nothing:
        # idempotent in one request, where the single-object route answers 404.
        await self._call(
            "DELETE",
            f"/object/{quote(bucket, safe='')}",
            f"delete {bucket}/{key}",
            json_body={"prefixes": [key]},
        )

    async def list_objects(self, bucket: str, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        folder, _, _ = prefix.rpartition("/")
        folder = f"{folder}/" if folder else ""
        verify = await self._other_casings(bucket, folder)
        async for info in self._walk(bucket, folder, prefix[len(folder) :], prefix, verify):
            yield info

    async def _list_level(self, bucket: str, folder: str, search: str) -> list[dict[str, Any]]:
        # A whole folder level is read before anything is yielded: offset paging would skip
        # entries if the caller deleted some while iterating (the orphan sweep does).
        entries: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = await self._call(
                "POST",
                f"/object/list/{quote(bucket, safe='')}",
                f"list {bucket}/{folder}",
                json_body={
                    "prefix": folder,
                    "search": search,
                    "limit": self.list_page_size,
                    "offset": offset,
                    "sortBy": {"column": "name", "order": "asc"},
                },
            )
            if not isinstance(page, list):
                raise StoreError("Supabase Storage: unexpected list response")
            entries.extend(e for e in page if isinstance(e, dict) and e.get("name"))
            if len(page) < self.list_page_size:
                return entries
            offset += len(page)

    async def _other_casings(self, bucket: str, folder: str) -> bool:
        """Whether a folder on the way to ``folder`` also exists spelled in another case.

        The server matches folders case-insensitively (ILIKE) and answers with bare names,
        so rows under ``A/`` come back when ``a/`` is listed, and the key we rebuild for
        them would be wrong: such listings confirm each key before yielding it."""
        parent = ""
        for token in folder.split("/")[:-1]:
            for entry in await self._list_level(bucket, parent, token):
                name = str(entry["name"])
                if entry.get("id") is None and name.lower() == token.lower() and name != token:
                    return True
            parent += token + "/"
        return False

    async def _walk(
        self, bucket: str, folder: str, search: str, prefix: str, verify: bool
    ) -> AsyncIterator[ObjectInfo]:
        entries = await self._list_level(bucket, folder, search)
        folders = [str(e["name"]) for e in entries if e.get("id") is None]
        spellings: dict[str, int] = {}
        for name in folders:
            spellings[name.lower()] = spellings.get(name.lower(), 0) + 1
        seen: set[str] = set()
        for entry in sorted(entries, key=lambda e: str(e["name"])):
            name = str(entry["name"])
            key = folder + name
            if entry.get("id") is None:
                sub = key + "/"
                if sub.startswith(prefix) or prefix.startswith(sub):
                    ambiguous = verify or spellings[name.lower()] > 1
                    async for info in self._walk(bucket, sub, "", prefix, ambiguous):
                        yield info
                continue
            if not key.startswith(prefix) or key in seen:
                continue
            seen.add(key)
            if verify and await self.head(bucket, key) is None:
                continue  # a row from the same folder spelled in another case
            meta = entry.get("metadata") or {}
            yield ObjectInfo(
                key=key,
                size=int(meta.get("size") or meta.get("contentLength") or 0),
                etag=(str(meta.get("eTag") or "").strip('"')) or None,
                content_type=meta.get("mimetype"),
                last_modified=_iso_date(
                    entry.get("updated_at") or entry.get("created_at") or meta.get("lastModified")
                ),
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
        if src_bucket != dst_bucket and not self._server_cross_bucket_copy:
            await self._stream_copy(src_bucket, src_key, dst_bucket, dst_key)
            return
        body = {"bucketId": src_bucket, "sourceKey": src_key, "destinationKey": dst_key}
        if src_bucket != dst_bucket:
            body["destinationBucket"] = dst_bucket
        what = f"copy {src_bucket}/{src_key} to {dst_bucket}/{dst_key}"
        try:
            await self._call("POST", "/object/copy", what, json_body=body)
        except ObjectExists:
            if await self.head(dst_bucket, dst_key) is not None:
                return  # already there: copy is idempotent, like the other stores
            if src_bucket == dst_bucket:
                raise
            # An old server copied within the source bucket, onto an existing key.
            self._server_cross_bucket_copy = False
            await self._stream_copy(src_bucket, src_key, dst_bucket, dst_key)
            return
        if src_bucket != dst_bucket and await self.head(dst_bucket, dst_key) is None:
            # An old server ignored destinationBucket and made the copy in the source
            # bucket. That key was free (no upsert), so the stray copy is ours to remove.
            self._server_cross_bucket_copy = False
            await self.delete(src_bucket, dst_key)
            await self._stream_copy(src_bucket, src_key, dst_bucket, dst_key)

    async def _stream_copy(
        self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str
    ) -> None:
        info = await self.head(src_bucket, src_key)
        if info is None:
            raise NotFound("no such object")
        try:
            await self.put(
                dst_bucket,
                dst_key,
                self.get(src_bucket, src_key),
                content_type=info.content_type or "application/octet-stream",
                cache_control=cache_control(dst_bucket in self.public_buckets),
            )
        except ObjectExists:
            return

    # -- URLs ----------------------------------------------------------------------------

    def sign_get(self, bucket: str, keys: Sequence[str], expires_in: int) -> list[str]:
        raise UnsupportedOperation(
            "Supabase signs URLs on its server: use sign_get_async (one call per batch)"
        )

    def sign_put(self, bucket: str, key: str, expires_in: int, content_type: str) -> SignedRequest:
        raise UnsupportedOperation("Supabase signs upload URLs on its server: use sign_put_async")

    def _absolute(self, url: str) -> str:
        if url.startswith(("http://", "https://")):
            return url
        # Answers are relative to the Storage URL; keep escapes, quote anything raw.
        return self.storage_url + quote("/" + url.lstrip("/"), safe="/?&=%:+,;@!$'()*~")

    async def sign_get_async(self, bucket: str, keys: Sequence[str], expires_in: int) -> list[str]:
        signed: dict[str, str] = {}
        missing: list[str] = []
        unique = list(dict.fromkeys(keys))
        for i in range(0, len(unique), SIGN_BATCH):
            batch = unique[i : i + SIGN_BATCH]
            answer = await self._call(
                "POST",
                f"/object/sign/{quote(bucket, safe='')}",
                f"sign {len(batch)} URLs in {bucket}",
                json_body={"expiresIn": expires_in, "paths": batch},
            )
            if not isinstance(answer, list):
                raise StoreError("Supabase Storage: unexpected signing response")
            for entry in answer:
                path, url = entry.get("path"), entry.get("signedURL")
                if isinstance(path, str) and isinstance(url, str) and not entry.get("error"):
                    signed[path] = self._absolute(url)
        missing = [k for k in unique if k not in signed]
        if missing:
            raise NotFound(
                f"cannot sign {len(missing)} missing object(s) in {bucket}",
                keys=missing[:20],
            )
        return [signed[k] for k in keys]

    async def sign_put_async(
        self, bucket: str, key: str, expires_in: int, content_type: str, *, upsert: bool = False
    ) -> SignedRequest:
        """A signed upload URL. Supabase fixes its lifetime on the server (two hours by
        default), so ``expires_in`` is not sent."""
        answer = await self._call(
            "POST",
            f"/object/upload/sign/{quote(bucket, safe='')}/{_q(key)}",
            f"sign upload {bucket}/{key}",
            headers={"x-upsert": "true" if upsert else "false"},
        )
        url = answer.get("url") if isinstance(answer, dict) else None
        if not isinstance(url, str):
            raise StoreError("Supabase Storage: unexpected upload-signing response")
        return SignedRequest(
            url=self._absolute(url),
            method="PUT",
            headers={
                "Content-Type": content_type,
                "cache-control": cache_control(bucket in self.public_buckets),
            },
        )

    def public_url(self, bucket: str, key: str) -> str:
        return f"{self._public_base}/{quote(bucket, safe='')}/{_q(key)}"

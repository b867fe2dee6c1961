"""Serves the local store's objects: signed URLs for private ones, plain URLs for public ones.
Byte ranges, ETags and immutable caching, like an object store would. Also takes presigned
uploads for the local store (S3 clients upload to S3 itself)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from ..errors import InvalidInput, NotFound, UploadNotPending, UploadSizeMismatch
from ..keep import STAGING_PREFIX
from ..settings import Settings
from ..signing import quote_key
from ..stores.base import ByteRange, ObjectStore, cache_control
from ..stores.local import FILES_ROUTE, LocalStore
from .deps import keep_of
from .problems import problem

_RANGE_SPEC = re.compile(r"([0-9]*)-([0-9]*)")


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """One ``bytes=`` range (start-end, start-, or -suffix). None means the whole body."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None  # multipart ranges are optional (RFC 9110); serve the whole body
    # ASCII digits only: int() would also take "+1", "1_0" and other scripts' digits.
    m = _RANGE_SPEC.fullmatch(spec.strip())
    if m is None:
        raise InvalidInput("malformed Range header")
    first, last = m.groups()
    try:
        if first == "":
            n = int(last)
            if n <= 0 or size == 0:  # no suffix of an empty body exists
                raise InvalidInput("unsatisfiable range")
            return ByteRange(max(0, size - n), size - 1)
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError as exc:
        raise InvalidInput("malformed Range header") from exc
    if start < 0 or start >= size or end < start:
        raise InvalidInput("unsatisfiable range")
    return ByteRange(start, min(end, size - 1))


async def send_object(
    request: Request,
    store: ObjectStore,
    bucket: str,
    key: str,
    *,
    content_type: str,
    etag: str | None,
    cache: str,
    extra_headers: dict[str, str] | None = None,
) -> Response:
    """The object's bytes (or a range of them) with validators and caching headers."""
    info = await store.head(bucket, key)
    if info is None:
        raise NotFound("no such object")
    tag = f'"{etag or info.etag}"'
    headers = {
        "ETag": tag,
        "Accept-Ranges": "bytes",
        "Cache-Control": cache,
        "X-Content-Type-Options": "nosniff",
        **(extra_headers or {}),
    }
    if request.headers.get("if-none-match") in (tag, f"W/{tag}", "*"):
        return Response(status_code=304, headers=headers)
    try:
        byte_range = parse_range(request.headers.get("range"), info.size)
    except InvalidInput:
        return problem(
            416,
            "range_not_satisfiable",
            "the range is not satisfiable",
            headers={"Content-Range": f"bytes */{info.size}"},
        )
    status = 200
    length = info.size
    if byte_range is not None:
        status = 206
        length = byte_range.end - byte_range.start + 1
        headers["Content-Range"] = f"bytes {byte_range.start}-{byte_range.end}/{info.size}"
    headers["Content-Length"] = str(length)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=content_type)

    async def body() -> AsyncIterator[bytes]:
        async for chunk in store.get(bucket, key, byte_range):
            yield chunk

    return StreamingResponse(body(), status_code=status, headers=headers, media_type=content_type)


async def get_file(bucket: str, key: str, request: Request) -> Response:
    keep = keep_of(request)
    store = keep.store
    if not isinstance(store, LocalStore):
        return problem(404, "not_found", "this service does not serve files for this store")
    s = keep.settings
    if bucket not in (s.private_bucket, s.public_bucket):
        return problem(404, "not_found", "no such object")
    if bucket == s.private_bucket:
        path = f"{FILES_ROUTE}/{bucket}/{quote_key(key)}"
        store.signer.verify(
            "GET", path, request.query_params.get("exp"), request.query_params.get("sig")
        )
    content_type = await keep.repo.content_type_of(bucket, key) or "application/octet-stream"
    return await send_object(
        request,
        store,
        bucket,
        key,
        content_type=content_type,
        etag=None,
        cache=cache_control(bucket == s.public_bucket),
    )


async def put_file(bucket: str, key: str, request: Request) -> Response:
    """The local store's end of a presigned upload: verify the signature, then stream the
    body to the staging key, refusing more bytes than were presigned."""
    keep = keep_of(request)
    store = keep.store
    s = keep.settings
    if (
        not isinstance(store, LocalStore)
        or bucket != s.private_bucket
        or not key.startswith(STAGING_PREFIX)
    ):
        return problem(404, "not_found", "no upload is expected here")
    path = f"{FILES_ROUTE}/{bucket}/{quote_key(key)}"
    store.signer.verify(
        "PUT", path, request.query_params.get("exp"), request.query_params.get("sig")
    )
    upload = await keep.repo.pending_upload_at(bucket, key)
    if upload is None:
        raise UploadNotPending("no pending upload at this URL")
    limit = min(upload.size, s.max_file_size)

    async def body() -> AsyncIterator[bytes]:
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise UploadSizeMismatch(f"the upload is larger than the {upload.size} presigned")
            yield chunk

    # A retried upload replaces the previous attempt, as a PUT to S3 would.
    await store.delete(bucket, key)
    info = await store.put(
        bucket,
        key,
        body(),
        content_type=upload.content_type,
        cache_control="private, no-store",
    )
    head = await store.head(bucket, key)
    etag = head.etag if head is not None else f"{info.size:x}"
    return Response(status_code=200, headers={"ETag": f'"{etag}"'})


def router(settings: Settings) -> APIRouter:
    r = APIRouter(include_in_schema=False)
    r.add_api_route(FILES_ROUTE + "/{bucket}/{key:path}", get_file, methods=["GET", "HEAD"])
    r.add_api_route(FILES_ROUTE + "/{bucket}/{key:path}", put_file, methods=["PUT"])
    return r

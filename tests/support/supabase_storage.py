"""A local Supabase Storage server: the subset of the Storage REST API that mediakeep's
Supabase store uses, written from Supabase's public API documentation.

Usage::

    with FakeSupabaseStorage() as fake:
        fake.url            # the "project URL"; the API answers under /storage/v1
        fake.service_key    # a service_role JWT; fake.anon_key is an anon one;
        fake.secret_key     # a new-style sb_secret_ key (accepted as apikey alone)

What it checks, like the real service:

- every authenticated route needs ``Authorization: Bearer <JWT>`` (or ``apikey``) signed
  with the project's JWT secret; an ``apikey`` header, when sent, must be a valid key too;
  only ``service_role`` may write or read private buckets;
- signed URLs carry a JWT (HS256, the same secret) naming ``bucket/key``, with an expiry;
  download and upload tokens are not interchangeable;
- uploads stream to disk; an existing key answers 409 unless ``x-upsert: true``; a body
  over the bucket's ``file_size_limit`` answers 413; a type outside the bucket's
  ``allowed_mime_types`` (``image/*`` wildcards allowed) answers 415;
- ``/object/public/...`` serves public buckets without auth and nothing else;
- errors have the service's JSON shape ``{statusCode, code, error, message}``; by default
  (``legacy_status=True``) the HTTP status of a 4xx error is 400 and the real one is only
  in ``statusCode``, as the hosted service answers; ``legacy_status=False`` sends it as
  the HTTP status too.

``legacy_copy=True`` makes ``/object/copy`` ignore ``destinationBucket``, as servers
from before cross-bucket copy did; ``drop_head_length=True`` answers HEAD without a
Content-Length, as some proxies do. ``bytes_received(bucket, key)`` tells how much of an
upload has arrived so far (tests use it to prove a body is streamed, not buffered), and
``calls(route)`` counts requests per route.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.error import URLError
from urllib.parse import quote
from urllib.request import Request

import jwt
from aiohttp import web

from mediakeep.stores.supabase import storage_url

from .netutil import direct_opener
from .threaded import ThreadedApp

MIB = 1024 * 1024
CHUNK = 64 * 1024
DRAIN_LIMIT = 256 * MIB  # past this an oversized body is cut off instead of read
NOT_SIGNABLE = "Either the object does not exist or you do not have access to it"
_BUCKET_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
_SIZE_UNITS = {"B": 1, "KB": 1024, "MB": MIB, "GB": 1024 * MIB}


class ApiError(Exception):
    def __init__(self, status: int, code: str, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.error = error
        self.message = message


def no_such_bucket() -> ApiError:
    return ApiError(404, "NoSuchBucket", "Bucket not found", "Bucket not found")


def no_such_key() -> ApiError:
    return ApiError(404, "NoSuchKey", "not_found", "Object not found")


def duplicate() -> ApiError:
    return ApiError(409, "KeyAlreadyExists", "Duplicate", "The resource already exists")


def invalid_jwt(message: str) -> ApiError:
    return ApiError(403, "InvalidJWT", "Unauthorized", message)


def access_denied(message: str) -> ApiError:
    return ApiError(403, "AccessDenied", "Unauthorized", message)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "InvalidRequest", "Bad Request", message)


@dataclass
class Bucket:
    id: str
    public: bool
    file_size_limit: int | None
    allowed_mime_types: list[str] | None
    created_at: str

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.id,
            "owner": "",
            "public": self.public,
            "file_size_limit": self.file_size_limit,
            "allowed_mime_types": self.allowed_mime_types,
            "created_at": self.created_at,
            "updated_at": self.created_at,
        }


@dataclass
class Obj:
    name: str
    blob: Path
    size: int
    mimetype: str
    cache_control: str
    etag: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created: float = field(default_factory=time.time)

    def metadata(self) -> dict[str, Any]:
        return {
            "eTag": f'"{self.etag}"',
            "size": self.size,
            "mimetype": self.mimetype,
            "cacheControl": self.cache_control,
            "lastModified": _iso(self.created),
            "contentLength": self.size,
            "httpStatusCode": 200,
        }


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def parse_size(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]?B)\s*", str(value).upper())
    if not m:
        raise bad_request("Invalid file size format, hint: use 20GB / 20MB / 30KB / 3B")
    return int(m.group(1)) * _SIZE_UNITS[m.group(2)]


def ilike(pattern: str) -> re.Pattern[str]:
    """PostgreSQL ILIKE as a regex: % is any run, _ any one character, case ignored."""
    out = []
    for ch in pattern:
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def mime_allowed(mimetype: str, allowed: list[str] | None) -> bool:
    if not allowed:
        return True
    base = mimetype.split(";")[0].strip().lower()
    for rule in allowed:
        rule = rule.strip().lower()
        if rule == base or (rule.endswith("/*") and base.startswith(rule[:-1])):
            return True
    return False


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    m = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    if not m.group(1):
        n = int(m.group(2))
        return (max(0, size - n), size - 1) if n > 0 and size else None
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) else size - 1
    if start >= size or end < start:
        return None
    return start, min(end, size - 1)


class FakeSupabaseStorage:
    def __init__(
        self,
        *,
        base_path: str = "/storage/v1",
        legacy_status: bool = True,
        legacy_copy: bool = False,
        drop_head_length: bool = False,
        global_file_size_limit: int = 5 * 1024 * MIB,
        upload_url_expires: int = 7200,
        root: Path | None = None,
    ) -> None:
        self.base_path = "/" + base_path.strip("/") if base_path.strip("/") else ""
        self.legacy_status = legacy_status
        self.legacy_copy = legacy_copy
        self.drop_head_length = drop_head_length
        self.global_file_size_limit = global_file_size_limit
        self.upload_url_expires = upload_url_expires
        self.jwt_secret = secrets.token_urlsafe(32)
        now = int(time.time())
        claims = {"iss": "supabase-fake", "iat": now, "exp": now + 10 * 365 * 86400}
        self.service_key = jwt.encode({**claims, "role": "service_role"}, self.jwt_secret)
        self.anon_key = jwt.encode({**claims, "role": "anon"}, self.jwt_secret)
        self.secret_key = "sb_secret_" + secrets.token_urlsafe(24)
        self._owns_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="mk-supabase-"))
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        self.buckets: dict[str, Bucket] = {}
        self.objects: dict[tuple[str, str], Obj] = {}
        self._lock = threading.Lock()
        self._received: dict[str, int] = {}
        self._calls: Counter[str] = Counter()
        self._server = ThreadedApp(self._app, "mk-test-supabase")

    # -- public API ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The project URL (what MEDIAKEEP_SUPABASE_URL takes)."""
        return self._server.base_url

    @property
    def storage_url(self) -> str:
        return self._server.base_url + self.base_path

    def bytes_received(self, bucket: str, key: str) -> int:
        with self._lock:
            return self._received.get(f"{bucket}/{key}", 0)

    def calls(self, route: str) -> int:
        with self._lock:
            return self._calls[route]

    def sign_token(self, claims: dict[str, Any]) -> str:
        """A token signed with the project secret (tests forge expired ones with it)."""
        return jwt.encode(claims, self.jwt_secret)

    def start(self) -> Self:
        self._server.start()
        return self

    def close(self) -> None:
        self._server.stop()
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- app -----------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors])
        p = self.base_path
        o = f"{p}/object"
        key = "{bucket}/{name:.+}"
        r = app.router
        r.add_post(f"{p}/bucket", self.create_bucket)
        r.add_get(f"{p}/bucket", self.list_buckets)
        r.add_get(f"{p}/bucket/{{bucket}}", self.get_bucket)
        r.add_post(f"{p}/bucket/{{bucket}}/empty", self.empty_bucket)
        r.add_delete(f"{p}/bucket/{{bucket}}", self.delete_bucket)
        # Specific object routes first: the generic /object/{bucket}/{name} matches them all.
        r.add_post(f"{o}/list/{{bucket}}", self.list_objects)
        r.add_post(f"{o}/copy", self.copy_object)
        r.add_post(f"{o}/move", self.move_object)
        r.add_post(f"{o}/sign/{{bucket}}", self.sign_many)
        r.add_post(f"{o}/sign/{key}", self.sign_one)
        r.add_get(f"{o}/sign/{key}", self.get_signed)  # also answers HEAD
        r.add_post(f"{o}/upload/sign/{key}", self.sign_upload)
        r.add_put(f"{o}/upload/sign/{key}", self.put_signed)
        r.add_get(f"{o}/public/{key}", self.get_public)
        r.add_get(f"{o}/authenticated/{key}", self.get_object)
        r.add_get(f"{o}/info/authenticated/{key}", self.object_info)
        r.add_get(f"{o}/info/{key}", self.object_info)
        r.add_delete(f"{o}/{{bucket}}", self.delete_many)
        r.add_post(f"{o}/{key}", self.upload)
        r.add_put(f"{o}/{key}", self.update)
        r.add_get(f"{o}/{key}", self.get_object)
        r.add_delete(f"{o}/{key}", self.delete_one)
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        route = getattr(handler, "__name__", "?")
        with self._lock:
            self._calls[route] += 1
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except ApiError as err:
            status = err.status if not self.legacy_status or err.status >= 500 else 400
            if request.method == "HEAD":
                return web.Response(status=status)
            body = {
                "statusCode": str(err.status),
                "code": err.code,
                "error": err.error,
                "message": err.message,
            }
            return web.json_response(body, status=status)

    # -- auth ----------------------------------------------------------------------------

    def _role(self, request: web.Request) -> str:
        apikey = request.headers.get("apikey")
        auth = request.headers.get("Authorization", "")
        if apikey is not None and apikey.startswith("sb_"):
            # New-style keys are not JWTs: the gateway takes them from apikey alone.
            if auth or not hmac.compare_digest(apikey, self.secret_key):
                raise ApiError(401, "InvalidJWT", "Unauthorized", "Invalid API key")
            return "service_role"
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else apikey
        if not token:
            raise access_denied("headers must have required property 'authorization'")
        if apikey and apikey != token:
            self._claims(apikey)  # the gateway checks the apikey on its own
        return str(self._claims(token).get("role", ""))

    def _claims(self, token: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(token, self.jwt_secret, algorithms=["HS256"])
        except jwt.ExpiredSignatureError as exc:
            raise invalid_jwt("jwt expired") from exc
        except jwt.InvalidTokenError as exc:
            raise invalid_jwt("invalid signature") from exc
        return claims

    def _service(self, request: web.Request) -> None:
        if self._role(request) != "service_role":
            raise access_denied("new row violates row-level security policy")

    def _bucket(self, bucket: str) -> Bucket:
        found = self.buckets.get(bucket)
        if found is None:
            raise no_such_bucket()
        return found

    def _object(self, bucket: str, name: str) -> Obj:
        self._bucket(bucket)
        obj = self.objects.get((bucket, name))
        if obj is None:
            raise no_such_key()
        return obj

    async def _json(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError as exc:
            raise bad_request("body must be JSON") from exc
        if not isinstance(body, dict):
            raise bad_request("body must be a JSON object")
        return body

    # -- buckets -------------------------------------------------------------------------

    async def create_bucket(self, request: web.Request) -> web.Response:
        self._service(request)
        body = await self._json(request)
        name = body.get("name")
        bucket_id = body.get("id") or name
        if not isinstance(name, str) or not isinstance(bucket_id, str):
            raise bad_request("body must have required property 'name'")
        if not _BUCKET_NAME.match(bucket_id):
            raise ApiError(400, "InvalidBucketName", "Invalid Input", "Bucket name invalid")
        if bucket_id in self.buckets:
            raise ApiError(409, "BucketAlreadyExists", "Duplicate", "The resource already exists")
        types = body.get("allowed_mime_types")
        self.buckets[bucket_id] = Bucket(
            id=bucket_id,
            public=bool(body.get("public", False)),
            file_size_limit=parse_size(body.get("file_size_limit")),
            allowed_mime_types=[t for t in types if t] if isinstance(types, list) else None,
            created_at=_iso(time.time()),
        )
        return web.json_response({"name": bucket_id})

    async def list_buckets(self, request: web.Request) -> web.Response:
        self._service(request)
        return web.json_response([b.as_json() for b in self.buckets.values()])

    async def get_bucket(self, request: web.Request) -> web.Response:
        self._service(request)
        return web.json_response(self._bucket(request.match_info["bucket"]).as_json())

    async def empty_bucket(self, request: web.Request) -> web.Response:
        self._service(request)
        bucket = self._bucket(request.match_info["bucket"]).id
        for k in [k for k in self.objects if k[0] == bucket]:
            self._drop(k)
        return web.json_response({"message": "Successfully emptied"})

    async def delete_bucket(self, request: web.Request) -> web.Response:
        self._service(request)
        bucket = self._bucket(request.match_info["bucket"]).id
        if any(k[0] == bucket for k in self.objects):
            raise ApiError(
                409, "InvalidRequest", "Conflict", "The bucket you tried to delete is not empty"
            )
        del self.buckets[bucket]
        return web.json_response({"message": "Successfully deleted"})

    # -- writing -------------------------------------------------------------------------

    async def upload(self, request: web.Request) -> web.Response:
        self._service(request)
        bucket, name = request.match_info["bucket"], request.match_info["name"]
        upsert = request.headers.get("x-upsert") == "true"
        obj = await self._receive(request, bucket, name, upsert=upsert)
        return web.json_response({"Key": f"{bucket}/{name}", "Id": obj.id})

    async def update(self, request: web.Request) -> web.Response:
        self._service(request)
        bucket, name = request.match_info["bucket"], request.match_info["name"]
        self._object(bucket, name)
        obj = await self._receive(request, bucket, name, upsert=True)
        return web.json_response({"Key": f"{bucket}/{name}", "Id": obj.id})

    async def _receive(self, request: web.Request, bucket: str, name: str, *, upsert: bool) -> Obj:
        b = self._bucket(bucket)
        if not name or name.startswith("/") or "//" in name:
            raise ApiError(400, "InvalidKey", "Invalid Input", f"Invalid key: {name}")
        mimetype = request.headers.get("Content-Type") or "application/octet-stream"
        if mimetype.startswith("multipart/form-data"):
            raise bad_request("this fake takes raw bodies only")
        if not mime_allowed(mimetype, b.allowed_mime_types):
            raise ApiError(
                415,
                "InvalidMimeType",
                "invalid_mime_type",
                f"mime type {mimetype} is not supported",
            )
        if not upsert and (bucket, name) in self.objects:
            await self._drain(request)
            raise duplicate()
        limit = self.global_file_size_limit
        if b.file_size_limit is not None:
            limit = min(limit, b.file_size_limit)
        too_large = ApiError(
            413,
            "EntityTooLarge",
            "Payload too large",
            "The object exceeded the maximum allowed size",
        )
        if request.content_length is not None and request.content_length > limit:
            await self._drain(request)
            raise too_large
        tmp = self.root / "tmp" / uuid.uuid4().hex
        md5 = hashlib.md5()  # noqa: S324 - an ETag, like S3's, not security
        size = 0
        progress = f"{bucket}/{name}"
        with self._lock:
            self._received[progress] = 0
        try:
            with tmp.open("wb") as fh:
                async for chunk in request.content.iter_chunked(CHUNK):
                    size += len(chunk)
                    if size > limit:
                        break
                    fh.write(chunk)
                    md5.update(chunk)
                    with self._lock:
                        self._received[progress] = size
            if size > limit:
                await self._drain(request)
                raise too_large
            if not upsert and (bucket, name) in self.objects:
                raise duplicate()  # someone else finished first
            blob = self.root / "blobs" / uuid.uuid4().hex
            os.replace(tmp, blob)
        finally:
            tmp.unlink(missing_ok=True)
        old = self.objects.get((bucket, name))
        obj = Obj(
            name=name,
            blob=blob,
            size=size,
            mimetype=mimetype,
            cache_control=request.headers.get("cache-control") or "no-cache",
            etag=md5.hexdigest(),
        )
        self.objects[(bucket, name)] = obj
        if old is not None:
            old.blob.unlink(missing_ok=True)
        return obj

    @staticmethod
    async def _drain(request: web.Request) -> None:
        # Read what the client still sends, so it sees our answer instead of a reset.
        seen = 0
        with contextlib.suppress(Exception):
            async for chunk in request.content.iter_chunked(CHUNK):
                seen += len(chunk)
                if seen > DRAIN_LIMIT:
                    break

    def _drop(self, k: tuple[str, str]) -> Obj | None:
        obj = self.objects.pop(k, None)
        if obj is not None:
            obj.blob.unlink(missing_ok=True)
        return obj

    async def delete_one(self, request: web.Request) -> web.Response:
        self._service(request)
        bucket, name = request.match_info["bucket"], request.match_info["name"]
        self._object(bucket, name)
        self._drop((bucket, name))
        return web.json_response({"message": "Successfully deleted"})

    async def delete_many(self, request: web.Request) -> web.Response:
        self._service(request)
        bucket = self._bucket(request.match_info["bucket"]).id
        prefixes = (await self._json(request)).get("prefixes")
        if not isinstance(prefixes, list) or not prefixes:
            raise bad_request("body must have required property 'prefixes'")
        removed = []
        for name in prefixes:
            obj = self._drop((bucket, str(name)))
            if obj is not None:
                removed.append(
                    {
                        "name": obj.name,
                        "id": obj.id,
                        "bucket_id": bucket,
                        "metadata": obj.metadata(),
                    }
                )
        return web.json_response(removed)

    async def copy_object(self, request: web.Request) -> web.Response:
        return await self._transfer(request, move=False)

    async def move_object(self, request: web.Request) -> web.Response:
        return await self._transfer(request, move=True)

    async def _transfer(self, request: web.Request, *, move: bool) -> web.Response:
        self._service(request)
        body = await self._json(request)
        src_bucket, src, dst = (
            body.get("bucketId"),
            body.get("sourceKey"),
            body.get("destinationKey"),
        )
        if not all(isinstance(v, str) and v for v in (src_bucket, src, dst)):
            raise bad_request("body must have bucketId, sourceKey and destinationKey")
        assert isinstance(src_bucket, str) and isinstance(src, str) and isinstance(dst, str)
        dst_bucket = body.get("destinationBucket") or src_bucket
        if self.legacy_copy:
            dst_bucket = src_bucket
        source = self._object(src_bucket, src)
        target = self._bucket(str(dst_bucket))
        if (target.id, dst) in self.objects and request.headers.get("x-upsert") != "true":
            raise duplicate()
        if not mime_allowed(source.mimetype, target.allowed_mime_types):
            raise ApiError(
                415,
                "InvalidMimeType",
                "invalid_mime_type",
                f"mime type {source.mimetype} is not supported",
            )
        blob = self.root / "blobs" / uuid.uuid4().hex
        shutil.copyfile(source.blob, blob)
        old = self.objects.get((target.id, dst))
        copied = Obj(
            name=dst,
            blob=blob,
            size=source.size,
            mimetype=source.mimetype,
            cache_control=source.cache_control,
            etag=source.etag,
        )
        self.objects[(target.id, dst)] = copied
        if old is not None:
            old.blob.unlink(missing_ok=True)
        if move:
            self._drop((src_bucket, src))
            return web.json_response({"message": "Successfully moved"})
        return web.json_response({"Id": copied.id, "Key": f"{target.id}/{dst}"})

    # -- listing -------------------------------------------------------------------------

    async def list_objects(self, request: web.Request) -> web.Response:
        self._service(request)
        bucket = self._bucket(request.match_info["bucket"]).id
        body = await self._json(request)
        prefix = body.get("prefix")
        if not isinstance(prefix, str):
            raise bad_request("body must have required property 'prefix'")
        if prefix and not prefix.endswith("/"):
            prefix += "/"  # the service treats the prefix as a folder
        search = str(body.get("search") or "")
        limit = int(body.get("limit") or 100)
        offset = int(body.get("offset") or 0)
        sort = body.get("sortBy") or {}
        descending = isinstance(sort, dict) and sort.get("order") == "desc"
        level = len(prefix.split("/"))
        pattern = ilike(prefix + search + "%")
        folders: set[str] = set()
        files: list[tuple[str, Obj]] = []
        for (b, name), obj in self.objects.items():
            if b != bucket or not pattern.fullmatch(name):
                continue
            tokens = name.split("/")
            if len(tokens) > level:
                folders.add(tokens[level - 1])
            elif len(tokens) == level:
                files.append((tokens[-1], obj))
        rows: list[dict[str, Any]] = [
            {
                "name": f,
                "id": None,
                "updated_at": None,
                "created_at": None,
                "last_accessed_at": None,
                "metadata": None,
            }
            for f in sorted(folders, reverse=descending)
        ]
        for leaf, obj in sorted(files, key=lambda t: t[0], reverse=descending):
            rows.append(
                {
                    "name": leaf,
                    "id": obj.id,
                    "updated_at": _iso(obj.created),
                    "created_at": _iso(obj.created),
                    "last_accessed_at": _iso(obj.created),
                    "metadata": obj.metadata(),
                }
            )
        return web.json_response(rows[offset : offset + limit])

    # -- reading -------------------------------------------------------------------------

    async def get_object(self, request: web.Request) -> web.StreamResponse:
        self._service(request)
        obj = self._object(request.match_info["bucket"], request.match_info["name"])
        return await self._send(request, obj)

    async def object_info(self, request: web.Request) -> web.Response:
        self._service(request)
        bucket = request.match_info["bucket"]
        obj = self._object(bucket, request.match_info["name"])
        return web.json_response(
            {
                "id": obj.id,
                "name": obj.name,
                "bucket_id": bucket,
                "size": obj.size,
                "content_type": obj.mimetype,
                "cache_control": obj.cache_control,
                "etag": f'"{obj.etag}"',
                "last_modified": _iso(obj.created),
                "created_at": _iso(obj.created),
            }
        )

    async def get_public(self, request: web.Request) -> web.StreamResponse:
        bucket = self.buckets.get(request.match_info["bucket"])
        if bucket is None or not bucket.public:
            raise no_such_bucket()
        obj = self._object(bucket.id, request.match_info["name"])
        return await self._send(request, obj)

    async def _send(self, request: web.Request, obj: Obj) -> web.StreamResponse:
        headers = {
            "Content-Type": obj.mimetype,
            "Cache-Control": obj.cache_control,
            "ETag": f'"{obj.etag}"',
            "Last-Modified": format_datetime(datetime.fromtimestamp(obj.created, UTC), usegmt=True),
            "Accept-Ranges": "bytes",
        }
        start, end, status = 0, obj.size - 1, 200
        if "Range" in request.headers:
            span = parse_range(request.headers["Range"], obj.size)
            if span is None:
                return web.Response(status=416, headers={"Content-Range": f"bytes */{obj.size}"})
            start, end = span
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{obj.size}"
        length = max(0, end - start + 1)
        response = web.StreamResponse(status=status, headers=headers)
        if request.method == "HEAD" and self.drop_head_length:
            response.enable_chunked_encoding()
        else:
            response.content_length = length
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        with obj.blob.open("rb") as fh:
            fh.seek(start)
            remaining = length
            while remaining > 0:
                chunk = fh.read(min(CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                await response.write(chunk)
        await response.write_eof()
        return response

    # -- signed URLs ---------------------------------------------------------------------

    def _token(self, bucket: str, name: str, expires_in: int, kind: str, **extra: Any) -> str:
        now = int(time.time())
        claims = {"url": f"{bucket}/{name}", "kind": kind, "iat": now, "exp": now + expires_in}
        return jwt.encode({**claims, **extra}, self.jwt_secret)

    def _verify(self, request: web.Request, bucket: str, name: str, kind: str) -> dict[str, Any]:
        token = request.query.get("token")
        if not token:
            raise ApiError(
                400, "InvalidSignature", "InvalidSignature", "querystring must have token"
            )
        try:
            claims: dict[str, Any] = jwt.decode(token, self.jwt_secret, algorithms=["HS256"])
        except jwt.ExpiredSignatureError as exc:
            raise ApiError(400, "ExpiredToken", "InvalidJWT", "jwt expired") from exc
        except jwt.InvalidTokenError as exc:
            raise ApiError(400, "InvalidSignature", "InvalidJWT", "invalid signature") from exc
        if claims.get("url") != f"{bucket}/{name}" or claims.get("kind") != kind:
            raise ApiError(400, "InvalidSignature", "InvalidSignature", "url mismatch")
        return claims

    def _expires(self, body: dict[str, Any]) -> int:
        value = body.get("expiresIn")
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise bad_request("body/expiresIn must be >= 1")
        return value

    def _signed_path(self, bucket: str, name: str, token: str) -> str:
        return f"/object/sign/{quote(bucket, safe='')}/{quote(name)}?token={token}"

    async def sign_one(self, request: web.Request) -> web.Response:
        self._service(request)
        bucket, name = request.match_info["bucket"], request.match_info["name"]
        expires = self._expires(await self._json(request))
        self._object(bucket, name)
        token = self._token(bucket, name, expires, "download")
        return web.json_response({"signedURL": self._signed_path(bucket, name, token)})

    async def sign_many(self, request: web.Request) -> web.Response:
        self._service(request)
        bucket = self._bucket(request.match_info["bucket"]).id
        body = await self._json(request)
        expires = self._expires(body)
        paths = body.get("paths")
        if not isinstance(paths, list) or not paths:
            raise bad_request("body/paths must NOT have fewer than 1 items")
        out = []
        for path in paths:
            name = str(path)
            if (bucket, name) in self.objects:
                token = self._token(bucket, name, expires, "download")
                out.append(
                    {
                        "error": None,
                        "path": name,
                        "signedURL": self._signed_path(bucket, name, token),
                    }
                )
            else:
                out.append({"error": NOT_SIGNABLE, "path": name, "signedURL": None})
        return web.json_response(out)

    async def get_signed(self, request: web.Request) -> web.StreamResponse:
        bucket, name = request.match_info["bucket"], request.match_info["name"]
        self._verify(request, bucket, name, "download")
        return await self._send(request, self._object(bucket, name))

    async def sign_upload(self, request: web.Request) -> web.Response:
        self._service(request)
        bucket, name = request.match_info["bucket"], request.match_info["name"]
        self._bucket(bucket)
        upsert = request.headers.get("x-upsert") == "true"
        token = self._token(bucket, name, self.upload_url_expires, "upload", upsert=upsert)
        path = f"/object/upload/sign/{quote(bucket, safe='')}/{quote(name)}?token={token}"
        return web.json_response({"url": path, "token": token})

    async def put_signed(self, request: web.Request) -> web.Response:
        bucket, name = request.match_info["bucket"], request.match_info["name"]
        claims = self._verify(request, bucket, name, "upload")
        await self._receive(request, bucket, name, upsert=bool(claims.get("upsert")))
        return web.json_response({"Key": f"{bucket}/{name}"})


# -- the project the suite runs against ------------------------------------------------

TEST_URL_ENV = "MEDIAKEEP_TEST_SUPABASE_URL"
TEST_KEY_ENV = "MEDIAKEEP_TEST_SUPABASE_KEY"


@dataclass
class SupabaseTarget:
    """The fake, or a real project when MEDIAKEEP_TEST_SUPABASE_URL/_KEY are set."""

    url: str
    service_key: str
    fake: FakeSupabaseStorage | None = None
    buckets: list[str] = field(default_factory=list)

    @classmethod
    def from_env(cls) -> SupabaseTarget:
        url, key = os.environ.get(TEST_URL_ENV), os.environ.get(TEST_KEY_ENV)
        if url and key:
            return cls(url=url, service_key=key)
        fake = FakeSupabaseStorage().start()
        return cls(url=fake.url, service_key=fake.service_key, fake=fake)

    def uses(self, bucket: str) -> str:
        """Note a bucket the tests create, so a real project gets it removed at the end."""
        if bucket not in self.buckets:
            self.buckets.append(bucket)
        return bucket

    def close(self) -> None:
        if self.fake is not None:
            self.fake.close()
            return
        self._remove_buckets()

    def _remove_buckets(self) -> None:
        base = storage_url(self.url)
        headers = {"Authorization": f"Bearer {self.service_key}", "apikey": self.service_key}
        for bucket in self.buckets:
            # Best effort: a bucket that outlives the run is named mk-… and holds test bytes.
            for method, path in (
                ("POST", f"/bucket/{bucket}/empty"),
                ("DELETE", f"/bucket/{bucket}"),
            ):
                req = Request(base + path, method=method, headers=headers, data=b"")
                with contextlib.suppress(URLError, OSError):
                    direct_opener.open(req, timeout=30).close()

"""Settings from the environment (prefix ``MEDIAKEEP_``) and ``.env``.

The names here are a contract with other tools: see ``.env.example``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATA_DIR = Path("./mediakeep-data")

DEFAULT_ALLOWED_TYPES: tuple[str, ...] = (
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/avif",
    "image/heic",
    "image/bmp",
    "image/tiff",
    "video/mp4",
    "video/quicktime",
    "video/webm",
    "video/x-matroska",
    "audio/mpeg",
    "audio/wav",
    "audio/ogg",
    "audio/flac",
    "audio/mp4",
    "audio/webm",
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MEDIAKEEP_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str | None = None
    auto_migrate: bool = True
    # Connections per process (PostgreSQL; on SQLite, the readers' pool): pool_size kept
    # open, up to db_pool_overflow more under bursts; a request that waits
    # db_pool_timeout seconds for one gets a 503
    # database_unavailable with Retry-After instead of queueing without end.
    db_pool_size: int = 10
    db_pool_overflow: int = 10
    db_pool_timeout: float = 30.0

    store: Literal["local", "s3", "supabase", "hybrid"] = "local"
    local_root: Path | None = None
    s3_endpoint: str | None = None
    s3_region: str = Field(
        default="us-east-1",
        validation_alias=AliasChoices("MEDIAKEEP_S3_REGION", "AWS_REGION", "s3_region"),
    )
    s3_access_key_id: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "MEDIAKEEP_S3_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID", "s3_access_key_id"
        ),
    )
    s3_secret_access_key: str | None = Field(
        default=None,
        repr=False,
        validation_alias=AliasChoices(
            "MEDIAKEEP_S3_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "s3_secret_access_key"
        ),
    )
    s3_create_buckets: bool = True
    # Create-only single-part writes (If-None-Match: *); turn off for stores without it.
    s3_conditional_put: bool = True
    # How writes are checked end to end: "sha256" sends x-amz-checksum-sha256, which the
    # store verifies (AWS, MinIO, SeaweedFS, R2); "md5" compares a single-part PUT's ETag
    # with an MD5 of the body, for stores without flexible checksums; "none" relies on
    # the transport. "auto": sha256, except for a plain-http endpoint on this machine
    # (localhost, 127.0.0.0/8, ::1), where no wire or proxy lies between us and the store
    # and the check costs both ~10% of ingest throughput for nothing it could catch.
    s3_checksum: Literal["auto", "sha256", "md5", "none"] = "auto"
    # Supabase Storage's own REST API. The URL is the project URL (``/storage/v1`` is
    # appended) or a storage URL given directly (any URL with a path is used as is);
    # ``supabase_storage_path`` overrides the appended path ("" for a server at the root).
    supabase_url: str | None = None
    supabase_service_key: str | None = Field(default=None, repr=False)
    supabase_storage_path: str | None = None
    # Create buckets with file_size_limit=max_file_size and allowed_mime_types=allowed_types,
    # so Supabase enforces them too. Off by default: a bucket limit above the project's
    # global upload limit is refused by Supabase.
    supabase_bucket_limits: bool = False
    private_bucket: str = "assets"
    public_bucket: str = "public-assets"
    public_base_url: str | None = None
    # Hybrid (MEDIAKEEP_STORE=hybrid): objects land in the local store at once and are
    # replicated to this remote store, configured by its own settings above. "none" is
    # local-only mode: writes queue up and replicate once a remote is configured again.
    hybrid_remote: Literal["s3", "supabase", "none"] = "none"
    # The local copies of replicated objects are a cache: evicted least recently used
    # first when over the size cap, and when unused for the TTL (0 turns either off).
    hybrid_cache_max_bytes: int = 10 * 1024**3
    hybrid_cache_ttl: float = 7 * 24 * 3600
    hybrid_replication_concurrency: int = 4
    # Longest wait between replication attempts while the remote is failing, seconds.
    hybrid_retry_max: float = 60.0

    # For ids reserved before the write (job items, presigned uploads) {asset_id} is
    # "<id>-<8 hex>": a key per write (docs/JOBS.md, "One key per write").
    key_template: str = "{owner}/{collection}/{asset_id}{suffix}.{ext}"
    default_collection: str = "default"
    max_file_size: int = 5 * 1024**3
    allowed_types: Annotated[tuple[str, ...], NoDecode] = DEFAULT_ALLOWED_TYPES
    # Narrower lists for public assets and for named collections (JSON object of
    # collection -> list of types); the most specific one applies.
    public_allowed_types: Annotated[tuple[str, ...] | None, NoDecode] = None
    collection_allowed_types: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    signed_url_expires: int = 3600
    # Seconds a permanent link may reuse an asset's looked-up location (0: always look up).
    location_cache_ttl: float = 2.0
    max_image_pixels: int = 100_000_000

    download_timeout: float = 300.0
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    max_retries: int = 3
    retry_backoff: float = 0.5
    retry_max_backoff: float = 20.0
    max_redirects: int = 5
    allow_private_networks: bool = False
    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = ()
    trusted_networks: Annotated[tuple[str, ...], NoDecode] = ()
    ingest_concurrency: int = 8

    # Keep only the newest N versions of each slot (0 keeps all); the sweep removes older.
    slot_keep_versions: int = 0

    # Where open_bundle() extracts bundles, and how long an unused one stays (seconds).
    bundle_cache_dir: Path | None = None
    bundle_cache_ttl: float = 24 * 3600

    # Media processing (probing, decode check, variants, placeholders, metadata stripping).
    media_processing: bool = True
    variants_enabled: bool = True
    variant_presets: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {
            "thumb": {"width": 256, "height": 256, "fit": "fit"},
            "small": {"width": 112, "height": 112, "fit": "cover"},
            "tiny": {"width": 56, "height": 56, "fit": "cover"},
        }
    )
    variant_format: Literal["webp", "jpeg", "png", "avif"] = "webp"
    variant_quality: int = 80
    placeholders: bool = True
    # What an image is checked for when no variant needs its pixels: "structure" (every
    # PNG chunk's CRC, every JPEG segment and table, through to the end marker) or
    # "decode" (the pixels are decoded too, which also finds damage inside the
    # compressed data, at ~20x the CPU for a JPEG).
    image_check: Literal["structure", "decode"] = "structure"
    strip_metadata: bool = True
    keep_metadata_collections: Annotated[tuple[str, ...], NoDecode] = ()
    video_posters: bool = True
    media_workers: int = 0  # 0: one per core

    signing_secret: str | None = Field(default=None, repr=False)
    base_url: str = "http://127.0.0.1:8787"

    # -- the HTTP service (``mediakeep serve``) --------------------------------------------
    # HS256 secret for bearer tokens (a Supabase project's JWT secret works as is). On the
    # embedded default (local store + SQLite) one is generated into the data dir when unset.
    jwt_secret: str | None = Field(default=None, repr=False)
    # Accepted ``aud`` values; a token without ``aud`` passes (Supabase's service-role key
    # has none). Empty: the audience is not checked.
    jwt_audience: Annotated[tuple[str, ...], NoDecode] = ("authenticated",)
    # API keys as ``owner:sha256hex`` entries: only the SHA-256 of each key is configured.
    # ``mediakeep token --api-key --owner NAME`` makes a key and prints its entry.
    api_keys: Annotated[tuple[str, ...], NoDecode] = Field(default=(), repr=False)
    # The console's "mint a token" button (loopback clients only) works by default only on
    # the embedded default's generated secret; this allows it with a configured secret too.
    console_token_mint: bool = False
    # Ingest requests (ingest, uploads, presign) per owner per minute; 0 turns it off.
    ingest_rate_limit: int = 120
    # New renditions (GET /render cache misses: a decode and an encode each) per owner per
    # minute; renditions already made are served without limit. 0 turns it off.
    render_rate_limit: int = 60
    # Largest JSON request body; uploads are bounded by max_file_size instead.
    max_request_body: int = 1024 * 1024
    max_ingest_urls: int = 100
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    # How long a presigned upload URL stays valid, seconds.
    upload_url_expires: int = 900
    # Permanent links sign URLs that expire on a multiple of this many seconds (plus one
    # window), so the redirect target stays the same within a window and caches hit.
    content_url_window: int = 3600
    # Seconds between sweeps of expired presigned uploads by the service; 0: never.
    sweep_interval: float = 600.0
    log_level: str = "info"

    # -- maintenance (``MediaKeep.maintenance_tick``, run by the worker) ------------------
    # Off: the worker never runs gc or cache clean-up by itself (``mediakeep gc`` still does).
    auto_cleanup: bool = True
    # Seconds between gc runs, and between cache clean-ups (hybrid cache, bundle cache).
    gc_interval: float = 6 * 3600
    cache_cleanup_interval: float = 600.0
    # gc never deletes anything younger than this, seconds.
    gc_grace: float = 24 * 3600

    # -- durable jobs (docs/JOBS.md) ----------------------------------------------------
    # Run one job worker inside ``mediakeep serve`` (on SQLite it is the only worker; on
    # PostgreSQL ``mediakeep worker`` processes may run beside it, or instead of it).
    serve_worker: bool = True
    # Jobs one worker process runs at once, and how often an idle worker looks for work.
    job_concurrency: int = 4
    job_poll_interval: float = 1.0
    # A running job whose worker stopped renewing its lease for this long is taken over.
    job_visibility_timeout: float = 60.0
    # Attempts before a job that keeps failing ends ``failed``; waits between them double
    # from the backoff up to the cap (seconds).
    job_max_attempts: int = 8
    job_retry_backoff: float = 2.0
    job_retry_max_backoff: float = 300.0
    # A half-written item left by a worker that died is cleaned up and redone once it is
    # this old (seconds); unset: the download timeout plus a minute, which no live write
    # can outlast.
    job_stale_write_after: float | None = None
    # How long a stopping worker lets running jobs finish before handing them back.
    job_shutdown_grace: float = 10.0
    # How long an Idempotency-Key keeps returning the same job, seconds.
    idempotency_ttl: float = 24 * 3600
    # Finished jobs (with their items and events) are removed by gc this long after they
    # finish, seconds; 0 keeps them forever. Never before their Idempotency-Key expires,
    # nor while their completion callback is still being delivered.
    job_retention: float = 30 * 24 * 3600
    # Completion callbacks: HMAC-SHA256 key (generated into the data dir when unset), and
    # delivery attempts with their backoff.
    callback_secret: str | None = Field(default=None, repr=False)
    callback_timeout: float = 10.0
    callback_max_attempts: int = 8
    callback_retry_backoff: float = 5.0
    callback_retry_max_backoff: float = 600.0
    # Largest JSON body of the routes that take provider results or documents (fal results
    # in sync mode carry their media inline as data: URIs).
    max_media_json_body: int = 64 * 1024 * 1024

    # -- fal.ai ---------------------------------------------------------------------------
    fal_jwks_url: str = "https://rest.alpha.fal.ai/.well-known/jwks.json"
    fal_jwks_cache_ttl: float = 24 * 3600
    # Accepted distance between a webhook's timestamp and now, seconds.
    fal_webhook_tolerance: int = 300
    # Key for the webhook tickets mediakeep signs; unset: derived from the signing secret.
    webhook_secret: str | None = Field(default=None, repr=False)
    fal_ticket_expires: int = 24 * 3600
    fal_ticket_max_expires: int = 30 * 24 * 3600

    # -- persist_json: which strings in a document are media URLs to keep -----------------
    # Hosts (".example.com" admits subdomains; "host/prefix" also matches the path).
    persist_hosts: Annotated[tuple[str, ...], NoDecode] = (
        "fal.media",
        ".fal.media",
        "fal.run",
        ".fal.run",
        "storage.googleapis.com/falserverless",
    )
    persist_extensions: Annotated[tuple[str, ...], NoDecode] = (
        "png",
        "jpg",
        "jpeg",
        "webp",
        "gif",
        "avif",
        "heic",
        "bmp",
        "tif",
        "tiff",
        "mp4",
        "mov",
        "webm",
        "mkv",
        "mp3",
        "wav",
        "ogg",
        "flac",
        "m4a",
    )

    @field_validator("persist_hosts", "persist_extensions", mode="before")
    @classmethod
    def _split_persist_csv(cls, v: object) -> object:
        if isinstance(v, str):
            if v.strip().startswith("["):
                return tuple(json.loads(v))
            return tuple(p.strip() for p in v.split(",") if p.strip())
        return v

    @field_validator(
        "allowed_types",
        "public_allowed_types",
        "allowed_hosts",
        "trusted_networks",
        "keep_metadata_collections",
        mode="before",
    )
    @classmethod
    def _split_csv(cls, v: object) -> object:
        # Environment variables arrive as one string; accept "a,b,c" as well as JSON lists.
        if isinstance(v, str):
            if v.strip().startswith("["):
                return tuple(json.loads(v))
            return tuple(p.strip() for p in v.split(",") if p.strip())
        return v

    @field_validator("jwt_audience", "api_keys", "cors_origins", mode="before")
    @classmethod
    def _split_service_csv(cls, v: object) -> object:
        if isinstance(v, str):
            if v.strip().startswith("["):
                return tuple(json.loads(v))
            return tuple(p.strip() for p in v.split(",") if p.strip())
        return v

    @property
    def is_embedded(self) -> bool:
        """Local files and SQLite: the setup that needs no other server."""
        url = self.resolved_database_url
        return self.store == "local" and url.startswith("sqlite")

    def resolved_jwt_secret(self) -> str | None:
        """The configured JWT secret; on the embedded default one generated once into the
        data dir. Elsewhere None: bearer tokens are refused until a secret is configured,
        because a per-machine secret would split a fleet of servers."""
        if self.jwt_secret:
            return self.jwt_secret
        if self.is_embedded:
            return _secret_file(self.data_dir / "jwt.secret")
        return None

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'mediakeep.db').resolve()}"

    @property
    def resolved_local_root(self) -> Path:
        return (self.local_root or self.data_dir / "objects").resolve()

    def resolved_signing_secret(self) -> str:
        """The configured secret, or one generated once into the data dir and reused."""
        if self.signing_secret:
            return self.signing_secret
        return _secret_file(self.data_dir / "signing.secret")

    def resolved_callback_secret(self) -> str:
        """The key completion callbacks are signed with; receivers need the same value."""
        if self.callback_secret:
            return self.callback_secret
        return _secret_file(self.data_dir / "callback.secret")

    def resolved_webhook_secret(self) -> str:
        """The key webhook tickets are signed with: configured, or derived from the signing
        secret (so every server of a fleet that shares it accepts the same tickets)."""
        if self.webhook_secret:
            return self.webhook_secret
        base = self.resolved_signing_secret().encode()
        return hmac.new(base, b"mediakeep-webhook-ticket-v1", hashlib.sha256).hexdigest()


def _secret_file(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    # O_EXCL so two processes starting at once agree on one secret.
    try:
        fd = path.open("x")
    except FileExistsError:
        return path.read_text().strip()
    with fd:
        fd.write(value)
    path.chmod(0o600)
    return value

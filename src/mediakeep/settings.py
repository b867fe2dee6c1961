"""Settings from the environment (prefix ``MEDIAKEEP_``) and ``.env``.

The names here are a contract with other tools: see ``.env.example``.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Annotated, Literal

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

    store: Literal["local", "s3"] = "local"
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
    private_bucket: str = "assets"
    public_bucket: str = "public-assets"
    public_base_url: str | None = None

    key_template: str = "{owner}/{collection}/{asset_id}{suffix}.{ext}"
    default_collection: str = "default"
    max_file_size: int = 5 * 1024**3
    allowed_types: Annotated[tuple[str, ...], NoDecode] = DEFAULT_ALLOWED_TYPES
    # Narrower lists for public assets and for named collections (JSON object of
    # collection -> list of types); the most specific one applies.
    public_allowed_types: Annotated[tuple[str, ...] | None, NoDecode] = None
    collection_allowed_types: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    signed_url_expires: int = 3600
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

    signing_secret: str | None = Field(default=None, repr=False)
    base_url: str = "http://127.0.0.1:8787"

    @field_validator(
        "allowed_types", "public_allowed_types", "allowed_hosts", "trusted_networks", mode="before"
    )
    @classmethod
    def _split_csv(cls, v: object) -> object:
        # Environment variables arrive as one string; accept "a,b,c" as well as JSON lists.
        if isinstance(v, str):
            if v.strip().startswith("["):
                return tuple(json.loads(v))
            return tuple(p.strip() for p in v.split(",") if p.strip())
        return v

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

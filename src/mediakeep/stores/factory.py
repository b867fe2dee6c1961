"""Build the configured object store."""

from __future__ import annotations

from ..settings import Settings
from ..signing import UrlSigner
from .base import ObjectStore
from .local import LocalStore
from .s3 import S3Store


def build_store(settings: Settings) -> ObjectStore:
    if settings.store == "s3":
        return S3Store(
            endpoint=settings.s3_endpoint,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
            public_base_url=settings.public_base_url,
            create_buckets=settings.s3_create_buckets,
        )
    return LocalStore(
        settings.resolved_local_root,
        settings.public_base_url or settings.base_url,
        UrlSigner(settings.resolved_signing_secret()),
    )

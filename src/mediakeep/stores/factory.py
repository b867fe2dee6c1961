"""Build the configured object store.

Each remote store's module is imported when that store is built: a process on the local
store never loads obstore (S3: ~4 MB of RSS) or the Supabase and hybrid clients."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import InvalidInput
from ..settings import Settings
from ..signing import UrlSigner
from .base import ObjectStore
from .local import LocalStore

if TYPE_CHECKING:
    from .hybrid import HybridStore
    from .s3 import S3Store
    from .supabase import SupabaseStore


def build_store(settings: Settings) -> ObjectStore:
    if settings.store == "supabase":
        return _supabase(settings)
    if settings.store == "s3":
        return _s3(settings)
    if settings.store == "hybrid":
        return build_hybrid(settings)
    return LocalStore(
        settings.resolved_local_root,
        settings.public_base_url or settings.base_url,
        UrlSigner(settings.resolved_signing_secret()),
    )


def build_hybrid(settings: Settings) -> HybridStore:
    from .hybrid import HybridStore

    remote: ObjectStore | None = None
    if settings.hybrid_remote == "s3":
        remote = _s3(settings)
    elif settings.hybrid_remote == "supabase":
        remote = _supabase(settings)
    return HybridStore(
        settings.resolved_local_root,
        # The remote's own public URLs would bypass the local copy: this service serves
        # the hybrid store's files, as it does the local store's.
        settings.base_url,
        UrlSigner(settings.resolved_signing_secret()),
        remote,
        cache_max_bytes=settings.hybrid_cache_max_bytes,
        cache_ttl=settings.hybrid_cache_ttl,
        concurrency=settings.hybrid_replication_concurrency,
        retry_max=settings.hybrid_retry_max,
    )


def _supabase(settings: Settings) -> SupabaseStore:
    from .supabase import SupabaseStore

    if not settings.supabase_url or not settings.supabase_service_key:
        raise InvalidInput(
            "MEDIAKEEP_STORE=supabase needs MEDIAKEEP_SUPABASE_URL and "
            "MEDIAKEEP_SUPABASE_SERVICE_KEY"
        )
    limits = settings.supabase_bucket_limits
    return SupabaseStore(
        url=settings.supabase_url,
        service_key=settings.supabase_service_key,
        storage_path=settings.supabase_storage_path,
        public_buckets=[settings.public_bucket],
        public_base_url=settings.public_base_url,
        bucket_file_size_limit=settings.max_file_size if limits else None,
        bucket_allowed_mime_types=settings.allowed_types if limits else None,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
    )


def _s3(settings: Settings) -> S3Store:
    from .s3 import S3Store

    return S3Store(
        endpoint=settings.s3_endpoint,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=settings.s3_secret_access_key,
        public_base_url=settings.public_base_url,
        create_buckets=settings.s3_create_buckets,
        conditional_put=settings.s3_conditional_put,
        checksum=settings.s3_checksum,
    )

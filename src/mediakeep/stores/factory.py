"""Build the configured object store.

Each remote store's module is imported when that store is built: a process on the local
store never loads obstore (S3: ~4 MB of RSS) or the Supabase and hybrid clients."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

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
        checksum=resolve_checksum(settings.s3_checksum, settings.s3_endpoint),
    )


def resolve_checksum(
    setting: Literal["auto", "sha256", "md5", "none"], endpoint: str | None
) -> Literal["sha256", "md5", "none"]:
    """``auto``: sha256 wherever bytes cross a wire or a proxy could sit (any remote host,
    and https anywhere: a TLS terminator decrypts and re-sends), none for a plain-http
    store on this machine, where they go from one process's memory to another's through
    the kernel and a checksum guards nothing that the rest of our memory is not."""
    if setting != "auto":
        return setting
    if not endpoint:
        return "sha256"  # AWS itself
    parts = urlsplit(endpoint)
    return "none" if parts.scheme == "http" and _is_loopback(parts.hostname) else "sha256"


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve anywhere

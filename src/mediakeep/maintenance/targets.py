"""Naming another store configuration on the command line (``migrate --to/--from``).

A TARGET is either
- ``current``: this process's own configuration;
- ``local``, ``s3``, ``supabase`` or ``hybrid``: this configuration with MEDIAKEEP_STORE
  set to that, so the other store's own MEDIAKEEP_* settings in the environment apply;
- a path to an env file with that store's settings (``MEDIAKEEP_STORE=s3``,
  ``MEDIAKEEP_S3_ENDPOINT=…``, buckets, …). Only the file counts, not the environment,
  so a variable set for the running service never leaks into the target.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from ..errors import InvalidInput
from ..settings import Settings

STORE_KINDS = ("local", "s3", "supabase", "hybrid")
# The settings that describe where objects live; everything else comes from the running
# configuration (limits, database, ...).
STORE_FIELDS = (
    "store",
    "data_dir",
    "local_root",
    "s3_endpoint",
    "s3_region",
    "s3_access_key_id",
    "s3_secret_access_key",
    "s3_create_buckets",
    "s3_conditional_put",
    "supabase_url",
    "supabase_service_key",
    "supabase_storage_path",
    "supabase_bucket_limits",
    "private_bucket",
    "public_bucket",
    "public_base_url",
    "base_url",
    "signing_secret",
    "hybrid_remote",
    "hybrid_cache_max_bytes",
    "hybrid_cache_ttl",
)
_ALIASES = {
    "AWS_REGION": "s3_region",
    "AWS_ACCESS_KEY_ID": "s3_access_key_id",
    "AWS_SECRET_ACCESS_KEY": "s3_secret_access_key",
}


class _FileOnly(Settings):
    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def load_target(spec: str, current: Settings) -> Settings:
    if spec == "current":
        return current
    if spec in STORE_KINDS:
        return current.model_copy(update={"store": spec})
    path = Path(spec)
    if not path.is_file():
        raise InvalidInput(
            f"{spec!r} is not a store configuration: give current, "
            f"{', '.join(STORE_KINDS)} or the path of an env file"
        )
    values: dict[str, Any] = {}
    for name, value in dotenv_values(path).items():
        if value is None:
            continue
        field = _ALIASES.get(name) or (
            name[len("MEDIAKEEP_") :].lower() if name.upper().startswith("MEDIAKEEP_") else None
        )
        if field in STORE_FIELDS:
            values[field] = value
    if "store" not in values:
        raise InvalidInput(f"{spec} does not set MEDIAKEEP_STORE")
    try:
        parsed = _FileOnly(**values)
    except ValidationError as exc:
        raise InvalidInput(f"{spec}: {exc.errors()[0]['msg']}") from exc
    # Relative paths in the file are relative to the file, not to where we run.
    update: dict[str, Any] = {f: getattr(parsed, f) for f in STORE_FIELDS}
    for f in ("data_dir", "local_root"):
        if f in values and not Path(values[f]).is_absolute():
            update[f] = (path.parent / values[f]).resolve()
    if "data_dir" not in values:
        update["data_dir"] = current.data_dir
    return current.model_copy(update=update)


def describe(settings: Settings) -> str:
    """Where a configuration keeps its objects, without secrets (for reports and names)."""
    if settings.store == "s3":
        where = settings.s3_endpoint or f"aws:{settings.s3_region}"
    elif settings.store == "supabase":
        where = settings.supabase_url or "?"
    else:
        where = str(settings.resolved_local_root)
        if settings.store == "hybrid" and settings.hybrid_remote != "none":
            remote = settings.model_copy(update={"store": settings.hybrid_remote})
            where += f" -> {describe(remote)}"
    return f"{settings.store}:{where} [{settings.private_bucket}, {settings.public_bucket}]"


def fingerprint(*configs: Settings) -> str:
    return hashlib.sha256(json.dumps([describe(c) for c in configs]).encode()).hexdigest()[:16]

"""Shared helpers for the maintenance tests: hybrid settings over a real SeaweedFS, and a
plain S3 client to look at what the remote really holds."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mediakeep import Settings
from mediakeep.signing import UrlSigner
from mediakeep.stores.base import ObjectStore
from mediakeep.stores.hybrid import HybridStore
from mediakeep.stores.s3 import S3Store
from tests.conftest import PRIVATE_BUCKET, PUBLIC_BUCKET, Backend, make_settings
from tests.support.seaweed import SeaweedS3


def s3_of(sw: SeaweedS3) -> S3Store:
    return S3Store(
        endpoint=sw.endpoint,
        region=sw.region,
        access_key_id=sw.access_key,
        secret_access_key=sw.secret_key,
    )


def s3_settings(sw: SeaweedS3) -> dict[str, object]:
    return {
        "s3_endpoint": sw.endpoint,
        "s3_region": sw.region,
        "s3_access_key_id": sw.access_key,
        "s3_secret_access_key": sw.secret_key,
    }


def hybrid_settings(
    tmp: Path, request: pytest.FixtureRequest, sw: SeaweedS3 | None, **overrides: object
) -> Settings:
    values: dict[str, object] = {"store": "hybrid", "hybrid_remote": "none"}
    if sw is not None:
        values.update(hybrid_remote="s3", **s3_settings(sw))
    values.update(overrides)
    return make_settings(Backend("sqlite", "local"), tmp, request, **values)


async def remote_keys(store: ObjectStore, bucket: str, prefix: str) -> set[str]:
    return {info.key async for info in store.list_objects(bucket, prefix)}


async def read_all(it: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in it])


def set_atime(path: Path, atime: float) -> None:
    os.utime(path, (atime, path.stat().st_mtime))


@pytest.fixture
async def hybrid(seaweed: SeaweedS3, tmp_path: Path) -> AsyncIterator[HybridStore]:
    """A hybrid store over the session SeaweedFS that only replicates when told to."""
    store = HybridStore(
        tmp_path / "objects",
        "http://127.0.0.1:9",
        UrlSigner("test-secret"),
        s3_of(seaweed),
        background=False,
    )
    await store.start([PRIVATE_BUCKET, PUBLIC_BUCKET])
    yield store
    await store.close()

"""``save_bundle`` / ``open_bundle`` and friends: the bundle part of ``MediaKeep``.

The archive code (tarfile, gzip) and the extraction cache are imported by the methods that
use them: every ``MediaKeep`` has these methods, few processes make or open a bundle."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select

from ..db.models import Bundle
from ..db.repo import Repository
from ..errors import InvalidInput, MediaKeepError, NotFound
from ..models import AssetInfo
from ..pipeline.keys import validate_name
from ..pipeline.sources import FileSource
from ..pipeline.store import Stored, StoreRequest
from ..settings import Settings

if TYPE_CHECKING:
    from .archive import FileData, ManifestEntry
    from .cache import BundleCache

ARCHIVE_TYPES = ("application/gzip",)


class BundleVersionExists(MediaKeepError):
    code = "bundle_version_exists"
    status = 409


@dataclass
class BundleInfo:
    id: str
    owner: str
    collection: str
    name: str
    version: int
    asset_id: str
    files: list[ManifestEntry]
    total_size: int
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "collection": self.collection,
            "name": self.name,
            "version": self.version,
            "asset_id": self.asset_id,
            "file_count": len(self.files),
            "total_size": self.total_size,
            "files": [f.to_dict() for f in self.files],
            "created_at": self.created_at.isoformat(),
        }


def _info(b: Bundle) -> BundleInfo:
    from .archive import ManifestEntry

    return BundleInfo(
        id=b.id,
        owner=b.owner,
        collection=b.collection,
        name=b.name,
        version=b.version,
        asset_id=b.asset_id,
        files=[ManifestEntry(str(e["path"]), int(e["size"]), str(e["sha256"])) for e in b.manifest],
        total_size=b.total_size,
        created_at=b.created_at,
    )


class BundlesMixin:
    repo: Repository
    settings: Settings

    async def store_or_raise(self, source: Any, req: StoreRequest) -> Stored:
        raise NotImplementedError

    async def delete(self, asset_id: str, *, owner: str | None = None) -> None:
        raise NotImplementedError

    async def url(
        self, asset_id: str, *, owner: str | None = None, expires_in: int | None = None
    ) -> str:
        raise NotImplementedError

    def get_asset_stream(self, asset: AssetInfo) -> Any:
        raise NotImplementedError

    @property
    def bundle_cache(self) -> BundleCache:
        cache: BundleCache | None = getattr(self, "_bundle_cache", None)
        if cache is None:
            from .cache import BundleCache

            root = self.settings.bundle_cache_dir or self.settings.data_dir / "bundle-cache"
            cache = BundleCache(Path(root).resolve(), self.settings.bundle_cache_ttl)
            self._bundle_cache = cache
        return cache

    async def save_bundle(
        self,
        owner: str,
        collection: str,
        files: Mapping[str, FileData],
        *,
        name: str = "bundle",
        version: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> BundleInfo:
        """Store many files as one versioned archive (tar.gz) with a manifest."""
        from .archive import build, temp_archive

        validate_name(owner, "owner")
        validate_name(collection, "collection")
        validate_name(name, "bundle name")
        if version is not None and version < 1:
            raise InvalidInput("bundle versions start at 1")
        archive = temp_archive()
        try:
            manifest = await asyncio.to_thread(build, files, archive)
            stored = await self.store_or_raise(
                FileSource(archive),
                StoreRequest(
                    owner=owner,
                    collection=collection,
                    allowed_types=ARCHIVE_TYPES,
                    metadata={**(metadata or {}), "bundle": name},
                ),
            )
        finally:
            archive.unlink(missing_ok=True)
        try:
            return await self._record_bundle(stored.asset, name, version, manifest)
        except BaseException:
            await self.delete(stored.asset.id, owner=owner)
            raise

    async def _record_bundle(
        self, asset: AssetInfo, name: str, version: int | None, manifest: list[ManifestEntry]
    ) -> BundleInfo:
        for _attempt in range(5):
            try:
                async with self.repo.sessions.begin() as s:
                    number = version
                    if number is None:
                        latest = await s.scalar(
                            select(func.max(Bundle.version)).where(
                                Bundle.owner == asset.owner,
                                Bundle.collection == asset.collection,
                                Bundle.name == name,
                            )
                        )
                        number = int(latest or 0) + 1
                    row = Bundle(
                        owner=asset.owner,
                        collection=asset.collection,
                        name=name,
                        version=number,
                        asset_id=asset.id,
                        manifest=[e.to_dict() for e in manifest],
                        file_count=len(manifest),
                        total_size=sum(e.size for e in manifest),
                    )
                    s.add(row)
                    await s.flush()
                    return _info(row)
            except sa_exc.IntegrityError as exc:
                if version is not None:
                    raise BundleVersionExists(f"{name} version {version} exists") from exc
                continue  # a concurrent save took that number: take the next
        raise BundleVersionExists("could not allocate a bundle version")

    async def list_bundles(
        self, *, owner: str, collection: str, name: str | None = None
    ) -> builtins.list[BundleInfo]:
        """Every version of a collection's bundles, newest first."""
        stmt = select(Bundle).where(Bundle.owner == owner, Bundle.collection == collection)
        if name is not None:
            stmt = stmt.where(Bundle.name == name)
        async with self.repo.reads() as s:
            rows = await s.execute(
                stmt.order_by(Bundle.name, Bundle.version.desc(), Bundle.created_at.desc())
            )
            found = [_info(b) for b in rows.scalars()]
        return sorted(found, key=lambda b: (b.created_at, b.version), reverse=True)

    async def get_bundle(self, bundle_id: str, *, owner: str | None = None) -> BundleInfo:
        stmt = select(Bundle).where(Bundle.id == bundle_id)
        if owner is not None:
            stmt = stmt.where(Bundle.owner == owner)
        async with self.repo.reads() as s:
            row = (await s.execute(stmt)).scalar_one_or_none()
        if row is None:
            raise NotFound("no such bundle")
        return _info(row)

    async def bundle_url(
        self, bundle_id: str, *, owner: str | None = None, expires_in: int | None = None
    ) -> str:
        bundle = await self.get_bundle(bundle_id, owner=owner)
        return await self.url(bundle.asset_id, owner=bundle.owner, expires_in=expires_in)

    async def open_bundle(self, bundle_id: str, *, owner: str | None = None) -> Path:
        """A local directory holding the bundle's files (cached; extracted safely)."""
        bundle = await self.get_bundle(bundle_id, owner=owner)
        asset = await self.repo.get(bundle.asset_id, bundle.owner)

        async def download(dest: Path) -> None:
            with dest.open("wb") as fh:
                async for chunk in self.get_asset_stream(asset):
                    await asyncio.to_thread(fh.write, chunk)

        return await self.bundle_cache.open(bundle.id, download)

    async def bundle_file(self, bundle_id: str, path: str, *, owner: str | None = None) -> Path:
        """One file out of a bundle, as a local path."""
        from .archive import clean_path

        wanted = clean_path(path)
        root = await self.open_bundle(bundle_id, owner=owner)
        target = (root / wanted).resolve()
        if not target.is_relative_to(root.resolve()) or not target.is_file():
            raise NotFound(f"no file {path!r} in the bundle")
        return target

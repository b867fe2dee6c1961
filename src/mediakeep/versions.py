"""Slots, versions and collections: the part of ``MediaKeep`` that answers "what is the
current image of scene 3" and "what is in this collection"."""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from .db import slots
from .db.models import Asset
from .db.repo import Repository
from .errors import NotFound
from .models import AssetInfo
from .pipeline.keys import validate_name
from .settings import Settings


@dataclass
class SlotInfo:
    collection: str
    name: str
    latest_version: int
    current_version: int | None
    current: AssetInfo | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "slot": self.name,
            "latest_version": self.latest_version,
            "current_version": self.current_version,
            "current": self.current.to_dict() if self.current else None,
        }


@dataclass
class CollectionInfo:
    name: str
    assets: int
    bytes: int
    slots: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "collection": self.name,
            "assets": self.assets,
            "bytes": self.bytes,
            "slots": self.slots,
        }


class VersionsMixin:
    repo: Repository
    settings: Settings

    async def delete(self, asset_id: str, *, owner: str | None = None) -> None:
        raise NotImplementedError

    async def slots(self, *, owner: str, collection: str) -> builtins.list[SlotInfo]:
        """Every slot of a collection with its current asset."""
        async with self.repo.reads() as s:
            states = await slots.list_slots(s, owner, collection)
        current = await self.repo.get_many(
            [st.current_asset_id for st in states if st.current_asset_id], owner
        )
        return [
            SlotInfo(
                st.collection,
                st.name,
                st.latest_version,
                st.current_version,
                current.get(st.current_asset_id or ""),
            )
            for st in states
        ]

    async def slot(self, *, owner: str, collection: str, slot: str) -> AssetInfo:
        """The current version of a slot."""
        async with self.repo.reads() as s:
            state = await slots.get_slot(s, owner, collection, slot)
        if state.current_asset_id is None:
            raise NotFound("the slot has no current version")
        return await self.repo.get(state.current_asset_id, owner)

    async def versions(self, *, owner: str, collection: str, slot: str) -> builtins.list[AssetInfo]:
        """A slot's history, newest first."""
        async with self.repo.reads() as s:
            ids = list(
                (
                    await s.execute(
                        select(Asset.id)
                        .where(
                            Asset.owner == owner,
                            Asset.collection == collection,
                            Asset.slot == slot,
                            Asset.status == "stored",
                        )
                        .order_by(Asset.version.desc())
                    )
                ).scalars()
            )
        if not ids:
            raise NotFound("no such slot")
        found = await self.repo.get_many(ids, owner)
        return [found[i] for i in ids if i in found]

    async def set_current(
        self, *, owner: str, collection: str, slot: str, version: int
    ) -> AssetInfo:
        """Roll a slot back (or forward) to ``version``."""
        async with self.repo.sessions.begin() as s:
            asset_id = await slots.set_current(s, owner, collection, slot, version)
        return await self.repo.get(asset_id, owner)

    async def collections(self, *, owner: str) -> builtins.list[CollectionInfo]:
        async with self.repo.reads() as s:
            rows = (
                await s.execute(
                    select(
                        Asset.collection,
                        func.count(),
                        func.coalesce(func.sum(Asset.size), 0),
                        func.count(func.distinct(Asset.slot)),
                    )
                    .where(Asset.owner == owner, Asset.status == "stored")
                    .group_by(Asset.collection)
                    .order_by(Asset.collection)
                )
            ).all()
        return [CollectionInfo(r[0], int(r[1] or 0), int(r[2] or 0), int(r[3] or 0)) for r in rows]

    async def delete_collection(
        self, *, owner: str, collection: str, dry_run: bool = False
    ) -> builtins.list[AssetInfo]:
        """Delete everything in a collection; with ``dry_run`` only list what would go."""
        validate_name(collection, "collection")
        gone: builtins.list[AssetInfo] = []
        cursor = None
        while True:
            page = await self.repo.list_assets(
                owner=owner, collection=collection, limit=500, cursor=cursor
            )
            gone += page.items
            cursor = page.next_cursor
            if cursor is None:
                break
        if not dry_run:
            for asset in gone:
                await self.delete(asset.id, owner=owner)
        return gone

    async def apply_retention(self, keep_last: int) -> int:
        """Delete slot versions older than the newest ``keep_last`` (never the current)."""
        if keep_last <= 0:
            return 0
        async with self.repo.reads() as s:
            victims = await slots.retention_victims(s, keep_last)
        for asset_id, owner in victims:
            try:
                await self.delete(asset_id, owner=owner)
            except NotFound:
                continue  # someone else removed it meanwhile
        return len(victims)

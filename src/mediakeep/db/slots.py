"""Slots: (owner, collection, name) with numbered versions and one current version."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import NotFound
from .models import Asset, Slot, StoredObject, utcnow


@dataclass
class SlotState:
    collection: str
    name: str
    latest_version: int
    current_version: int | None
    current_asset_id: str | None


async def repoint_before_delete(s: AsyncSession, asset: Asset) -> None:
    """When the current version goes, the newest remaining version becomes current."""
    if asset.slot is None:
        return
    slot = (
        await s.execute(
            select(Slot).where(
                Slot.owner == asset.owner,
                Slot.collection == asset.collection,
                Slot.name == asset.slot,
            )
        )
    ).scalar_one_or_none()
    if slot is None or slot.current_asset_id != asset.id:
        return
    successor = await s.scalar(
        select(Asset.id)
        .where(
            Asset.owner == asset.owner,
            Asset.collection == asset.collection,
            Asset.slot == asset.slot,
            Asset.status == "stored",
            Asset.id != asset.id,
        )
        .order_by(Asset.version.desc())
        .limit(1)
    )
    slot.current_asset_id = successor
    slot.updated_at = utcnow()


def _state(slot: Slot, current_version: int | None) -> SlotState:
    return SlotState(
        collection=slot.collection,
        name=slot.name,
        latest_version=slot.latest_version,
        current_version=current_version,
        current_asset_id=slot.current_asset_id,
    )


async def list_slots(s: AsyncSession, owner: str, collection: str) -> list[SlotState]:
    rows = await s.execute(
        select(Slot, Asset.version)
        .outerjoin(Asset, Asset.id == Slot.current_asset_id)
        .where(Slot.owner == owner, Slot.collection == collection)
        .order_by(Slot.name)
    )
    return [_state(slot, version) for slot, version in rows.all()]


async def get_slot(s: AsyncSession, owner: str, collection: str, name: str) -> SlotState:
    row = (
        await s.execute(
            select(Slot, Asset.version)
            .outerjoin(Asset, Asset.id == Slot.current_asset_id)
            .where(Slot.owner == owner, Slot.collection == collection, Slot.name == name)
        )
    ).first()
    if row is None:
        raise NotFound("no such slot")
    return _state(row[0], row[1])


async def set_current(s: AsyncSession, owner: str, collection: str, name: str, version: int) -> str:
    """Point the slot at ``version`` (roll back or forward); returns that asset's id."""
    asset_id = await s.scalar(
        select(Asset.id).where(
            Asset.owner == owner,
            Asset.collection == collection,
            Asset.slot == name,
            Asset.version == version,
            Asset.status == "stored",
        )
    )
    if asset_id is None:
        raise NotFound(f"slot {name!r} has no version {version}")
    result = await s.execute(
        update(Slot)
        .where(Slot.owner == owner, Slot.collection == collection, Slot.name == name)
        .values(current_asset_id=asset_id, updated_at=utcnow())
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise NotFound("no such slot")
    return asset_id


async def retention_victims(s: AsyncSession, keep_last: int) -> list[tuple[str, str]]:
    """(asset id, owner) of versions older than the newest ``keep_last`` of their slot,
    never the current one."""
    newest = (
        select(
            Asset.id,
            Asset.owner,
            func.row_number()
            .over(
                partition_by=(Asset.owner, Asset.collection, Asset.slot),
                order_by=Asset.version.desc(),
            )
            .label("rank"),
        )
        .where(Asset.slot.is_not(None), Asset.version.is_not(None), Asset.status == "stored")
        .subquery()
    )
    current = select(Slot.current_asset_id).where(Slot.current_asset_id.is_not(None))
    rows = await s.execute(
        select(newest.c.id, newest.c.owner).where(
            newest.c.rank > keep_last, newest.c.id.not_in(current)
        )
    )
    return [(r[0], r[1]) for r in rows.all()]


__all__ = [
    "SlotState",
    "StoredObject",
    "get_slot",
    "list_slots",
    "repoint_before_delete",
    "retention_victims",
    "set_current",
]

"""Slots keep history and exactly one current version, whoever writes at once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from mediakeep import MediaKeep
from mediakeep.errors import NotFound
from tests.conftest import KeepFactory
from tests.core.helpers import png_bytes


async def test_storing_into_a_slot_makes_the_next_version_current(
    keep: MediaKeep, owner: str
) -> None:
    first = await keep.put_bytes(png_bytes(1), owner=owner, collection="p42", slot="scene_3")
    second = await keep.put_bytes(png_bytes(2), owner=owner, collection="p42", slot="scene_3")
    assert (first.asset and first.asset.version, second.asset and second.asset.version) == (1, 2)
    current = await keep.slot(owner=owner, collection="p42", slot="scene_3")
    assert current.id == second.id
    history = await keep.versions(owner=owner, collection="p42", slot="scene_3")
    assert [a.version for a in history] == [2, 1]
    slots = await keep.slots(owner=owner, collection="p42")
    assert [(s.name, s.current_version, s.latest_version) for s in slots] == [("scene_3", 2, 2)]


async def test_rollback_and_forward(keep: MediaKeep, owner: str) -> None:
    ids = [
        (await keep.put_bytes(png_bytes(10 + i), owner=owner, collection="c", slot="s")).id
        for i in range(3)
    ]
    back = await keep.set_current(owner=owner, collection="c", slot="s", version=1)
    assert back.id == ids[0]
    assert (await keep.slot(owner=owner, collection="c", slot="s")).id == ids[0]
    # A new write still gets the next number and becomes current.
    new = await keep.put_bytes(png_bytes(20), owner=owner, collection="c", slot="s")
    assert new.asset and new.asset.version == 4
    assert (await keep.slot(owner=owner, collection="c", slot="s")).id == new.id
    with pytest.raises(NotFound):
        await keep.set_current(owner=owner, collection="c", slot="s", version=99)
    with pytest.raises(NotFound):
        await keep.slot(owner=owner + "x", collection="c", slot="s")


async def test_deleting_the_current_version_falls_back(keep: MediaKeep, owner: str) -> None:
    a = await keep.put_bytes(png_bytes(30), owner=owner, collection="c", slot="s")
    b = await keep.put_bytes(png_bytes(31), owner=owner, collection="c", slot="s")
    await keep.delete(b.id or "", owner=owner)
    assert (await keep.slot(owner=owner, collection="c", slot="s")).id == a.id


async def test_concurrent_writers_number_versions_without_gaps(
    keeps: KeepFactory, owner: str
) -> None:
    keep = await keeps.open()
    results = await asyncio.gather(
        *(
            keep.put_bytes(png_bytes(100 + i), owner=owner, collection="race", slot="hot")
            for i in range(20)
        )
    )
    assert all(r.status == "stored" for r in results), [r.error for r in results]
    versions = sorted(r.asset.version for r in results if r.asset)  # type: ignore[misc]
    assert versions == list(range(1, 21))
    current = await keep.slot(owner=owner, collection="race", slot="hot")
    assert current.version == 20
    async with keep.repo.sessions() as s:
        rows = (
            await s.execute(
                __import__("sqlalchemy").text(
                    "SELECT count(*) FROM current_assets WHERE owner = :o AND slot = 'hot'"
                ),
                {"o": owner},
            )
        ).scalar_one()
    assert rows == 1


async def test_retention_keeps_the_newest_versions(keeps: KeepFactory, owner: str) -> None:
    keep = await keeps.open(slot_keep_versions=2)
    for i in range(5):
        await keep.put_bytes(png_bytes(200 + i), owner=owner, collection="c", slot="r")
    await keep.set_current(owner=owner, collection="c", slot="r", version=1)
    report = await keep.sweep(older_than=timedelta(hours=1))
    assert report.versions_removed >= 2
    left = [a.version for a in await keep.versions(owner=owner, collection="c", slot="r")]
    assert left == [5, 4, 1]  # the newest two, and the current one


async def test_collections_list_and_delete(keep: MediaKeep, owner: str) -> None:
    await keep.put_bytes(png_bytes(300), owner=owner, collection="a")
    await keep.put_bytes(png_bytes(301), owner=owner, collection="a", slot="x")
    await keep.put_bytes(png_bytes(302), owner=owner, collection="b")
    cols = {c.name: c for c in await keep.collections(owner=owner)}
    assert set(cols) == {"a", "b"} and cols["a"].assets == 2 and cols["a"].bytes > 0
    planned = await keep.delete_collection(owner=owner, collection="a", dry_run=True)
    assert len(planned) == 2
    assert {c.name for c in await keep.collections(owner=owner)} == {"a", "b"}
    gone = await keep.delete_collection(owner=owner, collection="a")
    assert {a.id for a in gone} == {a.id for a in planned}
    assert {c.name for c in await keep.collections(owner=owner)} == {"b"}

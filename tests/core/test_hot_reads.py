"""The read paths behind permanent links stay fast while other work goes on: reads do not
queue behind writers, a hot link's lookup is shared, and a verified token is not verified
again on every request (but still expires)."""

from __future__ import annotations

import asyncio
from typing import Any

import jwt
import pytest
from sqlalchemy import event, text

from mediakeep import MediaKeep
from mediakeep.auth import TokenVerifier, mint_token
from mediakeep.errors import InvalidToken, NotFound, TokenExpired
from tests.conftest import BACKENDS, Backend, KeepFactory
from tests.core.helpers import png_bytes

SQLITE = [b for b in BACKENDS if b.db == "sqlite" and b.store == "local"]
LOCAL = [b for b in BACKENDS if b.store == "local"]


@pytest.mark.parametrize("backend", SQLITE, ids=lambda b: b.id)
async def test_reads_answer_while_a_writer_holds_the_database(
    backend: Backend, keep: MediaKeep, owner: str
) -> None:
    stored = await keep.put_bytes(png_bytes(1), owner=owner)
    other = await keep.put_bytes(png_bytes(2), owner=owner)
    assert stored.id and other.id
    # A write transaction that has taken SQLite's write lock and not committed yet, as a
    # long ingest batch or a migration would.
    async with keep.repo.engine.begin() as writer:
        await writer.execute(text("UPDATE assets SET provider_metadata = provider_metadata"))
        # Before, every read began with BEGIN IMMEDIATE and waited for this lock (up to
        # the 30 s busy timeout): a permanent link hung behind any write.
        located = await asyncio.wait_for(keep.repo.locate(stored.id, owner), 10)
        asset = await asyncio.wait_for(keep.get(other.id, owner=owner), 10)
        page = await asyncio.wait_for(keep.list(owner=owner), 10)
    assert located.key and asset.id == other.id
    assert {a.id for a in page.items} >= {stored.id, other.id}


@pytest.mark.parametrize("backend", LOCAL, ids=lambda b: b.id)
async def test_concurrent_lookups_of_one_link_share_one_query(
    backend: Backend, keeps: KeepFactory, owner: str
) -> None:
    keep = await keeps.open(location_cache_ttl=0.0)
    stored = await keep.put_bytes(png_bytes(3), owner=owner)
    assert stored.id
    queries: list[str] = []

    def count(_conn: Any, _cur: Any, statement: str, *_args: Any) -> None:
        if "FROM assets JOIN" in statement:
            queries.append(statement)

    event.listen(keep.repo.engine.sync_engine, "before_cursor_execute", count)
    try:
        found = await asyncio.gather(*(keep.locate(stored.id, owner=owner) for _ in range(20)))
        assert len(queries) == 1
        assert {f.key for f in found} == {found[0].key}
        # Nothing is kept past the lookup (ttl 0): the next request reads again.
        await keep.locate(stored.id, owner=owner)
        assert len(queries) == 2
    finally:
        event.remove(keep.repo.engine.sync_engine, "before_cursor_execute", count)


@pytest.mark.parametrize("backend", LOCAL[:1], ids=lambda b: b.id)
async def test_a_caller_giving_up_does_not_fail_the_others(
    backend: Backend, keeps: KeepFactory, owner: str
) -> None:
    keep = await keeps.open(location_cache_ttl=0.0)
    stored = await keep.put_bytes(png_bytes(4), owner=owner)
    assert stored.id
    first = asyncio.ensure_future(keep.locate(stored.id, owner=owner))
    second = asyncio.ensure_future(keep.locate(stored.id, owner=owner))
    await asyncio.sleep(0)
    first.cancel()
    assert (await second).asset_id == stored.id
    with pytest.raises(asyncio.CancelledError):
        await first


def test_a_verified_token_is_reused_until_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    from mediakeep import auth

    secret = "s" * 40
    verifier = TokenVerifier(secret)
    clock = [1_900_000_000.0]
    monkeypatch.setattr(auth.time, "time", lambda: clock[0])
    monkeypatch.setattr(jwt.api_jwt, "datetime", _FrozenDatetime(clock))
    token = mint_token(secret, "alice", expires_in=60, now=clock[0])
    calls: list[str] = []
    real = verifier._decode

    def counted(tok: str, key: str) -> Any:
        calls.append(tok)
        return real(tok, key)

    monkeypatch.setattr(verifier, "_decode", counted)
    assert verifier.verify(token).owner == "alice"
    assert verifier.verify(token).owner == "alice"
    assert len(calls) == 1  # the second request did not verify again
    # One byte changed is another string: checked in full, and refused.
    forged = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(InvalidToken):
        verifier.verify(forged)
    # Past its exp the cached verdict is not used: the token is refused as expired.
    clock[0] += 61
    with pytest.raises(TokenExpired):
        verifier.verify(token)


class _FrozenDatetime:
    """PyJWT reads the clock through datetime.now(tz=utc); pinned to the test's clock."""

    def __init__(self, clock: list[float]) -> None:
        self._clock = clock

    def now(self, tz: Any = None) -> Any:
        from datetime import datetime

        return datetime.fromtimestamp(self._clock[0], tz)

    def __getattr__(self, name: str) -> Any:
        from datetime import datetime

        return getattr(datetime, name)


@pytest.mark.parametrize("backend", LOCAL[:1], ids=lambda b: b.id)
async def test_a_lookup_that_read_before_a_delete_is_not_cached(
    backend: Backend, keeps: KeepFactory, owner: str
) -> None:
    keep = await keeps.open(location_cache_ttl=60.0)
    stored = await keep.put_bytes(png_bytes(5), owner=owner)
    assert stored.id
    read_done = asyncio.Event()
    release = asyncio.Event()
    real = keep.repo.locate

    async def slow_locate(asset_id: str, who: str | None) -> Any:
        found = await real(asset_id, who)  # the row as it was
        read_done.set()
        await release.wait()
        return found

    keep.repo.locate = slow_locate  # type: ignore[method-assign]
    early = asyncio.ensure_future(keep.locate(stored.id, owner=owner))
    await read_done.wait()
    await keep.delete(stored.id, owner=owner)
    release.set()
    await early  # answered from the row it read: that request was already under way
    keep.repo.locate = real  # type: ignore[method-assign]
    # Later requests must not be served the deleted asset's place from the cache.
    with pytest.raises(NotFound):
        await keep.locate(stored.id, owner=owner)

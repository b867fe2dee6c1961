"""The blocking facade does the same job for scripts."""

from __future__ import annotations

from pathlib import Path

import pytest

from mediakeep import SyncMediaKeep
from tests.conftest import Backend, make_settings
from tests.core.helpers import png_bytes
from tests.support.provider import Provider


def test_sync_facade_round_trip(
    tmp_path: Path, request: pytest.FixtureRequest, provider: Provider
) -> None:
    settings = make_settings(Backend("sqlite", "local"), tmp_path, request)
    with SyncMediaKeep(settings) as keep:
        r = keep.ingest_url(provider.url("/img/60.png"), owner="carol", collection="x")
        assert r.status == "stored"
        f = tmp_path / "a.png"
        f.write_bytes(png_bytes(61))
        assert keep.put_file(f, owner="carol").status == "stored"
        page = keep.list(owner="carol")
        assert len(page.items) == 2
        assert keep.get(r.id or "").collection == "x"
        assert set(keep.urls([a.id for a in page.items])) == {a.id for a in page.items}
        keep.delete(r.id or "")
        assert len(keep.list(owner="carol").items) == 1


def test_list_pages_never_truncate_silently(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    settings = make_settings(Backend("sqlite", "local"), tmp_path, request)
    with SyncMediaKeep(settings) as keep:
        ids = {keep.put_bytes(png_bytes(100 + i), owner="dave").id for i in range(7)}
        seen: list[str] = []
        cursor = None
        while True:
            page = keep.list(owner="dave", limit=3, cursor=cursor)
            seen += [a.id for a in page.items]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert len(seen) == 7 and set(seen) == ids

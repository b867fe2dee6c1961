"""The blocking facade does the same job for scripts."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from mediakeep import MediaKeep, SyncMediaKeep
from mediakeep.sync import NOT_BLOCKING
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


def test_every_async_method_has_a_blocking_twin() -> None:
    public = {
        name
        for name, fn in inspect.getmembers(MediaKeep)
        if not name.startswith("_") and inspect.iscoroutinefunction(fn)
    }
    missing = public - set(NOT_BLOCKING) - {n for n in dir(SyncMediaKeep) if not n.startswith("_")}
    assert missing == set(), f"no blocking twin (add one, or say why in NOT_BLOCKING): {missing}"
    assert set(NOT_BLOCKING) <= public  # no stale exemptions


def test_jobs_versions_and_uploads_through_the_blocking_facade(
    tmp_path: Path, request: pytest.FixtureRequest, provider: Provider
) -> None:
    settings = make_settings(Backend("sqlite", "local"), tmp_path, request)
    with SyncMediaKeep(settings) as keep:
        job = keep.submit_ingest([provider.url("/img/62.png")], owner="erin")
        assert keep.get_job(job.id, owner="erin").status == "queued"
        assert [j.id for j in keep.list_jobs(owner="erin")] == [job.id]
        assert [e.type for e in keep.job_events(job.id)] == ["queued"]
        # No worker runs in this process: waiting ends in the async method's own error.
        with pytest.raises(TimeoutError):
            keep.wait_for_job(job.id, wait=0.2)

        first = keep.put_bytes(png_bytes(63), owner="erin", collection="c", slot="hero")
        second = keep.put_bytes(png_bytes(64), owner="erin", collection="c", slot="hero")
        assert [a.id for a in keep.versions(owner="erin", collection="c", slot="hero")] == [
            second.id,
            first.id,
        ]
        back = keep.set_current(owner="erin", collection="c", slot="hero", version=1)
        assert back.id == first.id
        assert keep.slot(owner="erin", collection="c", slot="hero").id == first.id

        up = keep.presign_upload(owner="erin", content_type="image/png", size=len(png_bytes(65)))
        assert up.asset_id and up.upload_url

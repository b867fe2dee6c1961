"""Backfilling legacy rows from provider URLs: saved, expired (403/404), failed, and a
second run that downloads nothing it already has."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mediakeep import MediaKeep
from mediakeep.maintenance.import_urls import import_rows, read_rows
from tests.conftest import Backend, make_settings
from tests.core.test_cli import run as run_cli
from tests.support.provider import Provider, render_image


async def test_import_saves_reports_expired_and_resumes(
    provider: Provider, tmp_path: Path, request: pytest.FixtureRequest, owner: str
) -> None:
    other = f"{owner}x"
    sheet = tmp_path / "legacy.csv"
    sheet.write_text(
        "url,owner,collection,slot,metadata,ref\n"
        f'{provider.url("/img/801.png")},{owner},c1,,"{{""prompt"": ""a cat""}}",row-1\n'
        f"{provider.url('/status/404')},{owner},c1,,,row-2\n"
        f"{provider.url('/status/403')},{other},,,,row-3\n"
        f"{provider.url('/html-as-png')},{owner},,,,row-4\n"
        f"{provider.url('/img/802.png')},{other},c2,hero,,row-5\n"
        f"{provider.url('/img/801.png')},{owner},c1,,,row-6\n"
        f",{owner},,,,row-7\n"
    )
    rows, bad = read_rows(sheet)
    assert [b.line for b in bad] == [8] and bad[0].error == {
        "code": "invalid_input",
        "message": "no url",
    }
    settings = make_settings(Backend("sqlite", "local"), tmp_path, request)
    async with MediaKeep(settings) as keep:
        first = await import_rows(keep, rows, concurrency=3)
        by_ref = {i.ref: i for i in first.items}
        assert (first.saved, first.expired, first.failed, first.skipped) == (2, 2, 1, 1)
        assert {r: by_ref[r].status for r in by_ref} == {
            "row-1": "saved",
            "row-2": "expired",
            "row-3": "expired",
            "row-4": "failed",
            "row-5": "saved",
            "row-6": "skipped",
        }
        assert by_ref["row-2"].error is not None and by_ref["row-2"].error["http_status"] == 404
        assert by_ref["row-6"].asset_id == by_ref["row-1"].asset_id
        cat = await keep.get(str(by_ref["row-1"].asset_id), owner=owner)
        assert (cat.collection, cat.metadata, cat.source_url) == (
            "c1",
            {"prompt": "a cat"},
            provider.url("/img/801.png"),
        )
        chunks = [c async for c in keep.get_asset_stream(cat)]
        assert b"".join(chunks) == render_image("801", "png")
        hero = await keep.slot(owner=other, collection="c2", slot="hero")
        assert hero.id == by_ref["row-5"].asset_id

        hits = provider.hits("/img/801.png") + provider.hits("/img/802.png")
        second = await import_rows(keep, rows)
        assert (second.saved, second.skipped, second.expired, second.failed) == (0, 3, 2, 1)
        assert provider.hits("/img/801.png") + provider.hits("/img/802.png") == hits
        assert {i.ref: i.asset_id for i in second.items if i.status == "skipped"} == {
            "row-1": by_ref["row-1"].asset_id,
            "row-5": by_ref["row-5"].asset_id,
            "row-6": by_ref["row-1"].asset_id,
        }


def test_import_urls_command_with_json_lines(provider: Provider, tmp_path: Path) -> None:
    env = {
        "MEDIAKEEP_DATA_DIR": str(tmp_path / "data"),
        "MEDIAKEEP_ALLOW_PRIVATE_NETWORKS": "true",
        "MEDIAKEEP_RETRY_BACKOFF": "0.01",
    }
    lines = tmp_path / "rows.jsonl"
    lines.write_text(
        json.dumps({"url": provider.url("/img/811.png"), "metadata": {"seed": 811}, "ref": 1})
        + "\n"
        + json.dumps({"url": provider.url("/status/404"), "ref": 2})
        + "\n"
    )
    out = tmp_path / "report.jsonl"
    proc = run_cli(
        ["import-urls", str(lines), "--owner", "alice", "--report", str(out), "--json"], env
    )
    assert proc.returncode == 0, proc.stderr  # an expired URL is an outcome, not an error
    report = json.loads(proc.stdout)
    assert (report["saved"], report["expired"], report["failed"]) == (1, 1, 0)
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(w["ref"], w["status"]) for w in written] == [("1", "saved"), ("2", "expired")]
    listed = json.loads(run_cli(["ls", "--owner", "alice", "--json"], env).stdout)
    assert [a["metadata"] for a in listed["items"]] == [{"seed": 811}]
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"url": "ftp://nowhere/x.png"}\n')
    failed = run_cli(["import-urls", str(broken), "--owner", "alice", "--json"], env)
    assert failed.returncode == 1 and json.loads(failed.stdout)["failed"] == 1

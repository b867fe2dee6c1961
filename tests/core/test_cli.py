"""The ``mediakeep`` command, as scripts use it: ``--json`` and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.core.helpers import png_bytes
from tests.support.postgres import PostgresServer
from tests.support.provider import Provider

CLI = [sys.executable, "-m", "mediakeep.cli"]


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        CLI + args, env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    return {
        "MEDIAKEEP_DATA_DIR": str(tmp_path / "data"),
        "MEDIAKEEP_ALLOW_PRIVATE_NETWORKS": "true",
        "MEDIAKEEP_RETRY_BACKOFF": "0.01",
    }


def test_ingest_json_lists_one_result_per_input(
    cli_env: dict[str, str], provider: Provider, tmp_path: Path
) -> None:
    local = tmp_path / "picture.png"
    local.write_bytes(png_bytes(50))
    inputs = [provider.url("/img/51.png"), str(local), provider.url("/img/51.png")]
    proc = run(["ingest", *inputs, "--owner", "alice", "--collection", "c1", "--json"], cli_env)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert [r["source"] for r in results] == inputs
    assert sorted(r["status"] for r in results) == ["deduplicated", "stored", "stored"]
    for r in results:
        assert set(r) >= {"source", "id", "status", "key", "size", "sha256", "content_type", "url"}
        assert r["content_type"] == "image/png"
        assert r["key"].startswith("alice/c1/")

    listed = json.loads(run(["ls", "--owner", "alice", "--json"], cli_env).stdout)
    assert {a["id"] for a in listed["items"]} == {r["id"] for r in results}

    url = json.loads(run(["url", results[0]["id"], "--expires-in", "60", "--json"], cli_env).stdout)
    assert "sig=" in url["url"] and url["expires_at"]

    rm = run(["rm", results[0]["id"], "--json"], cli_env)
    assert rm.returncode == 0 and json.loads(rm.stdout) == {"id": results[0]["id"], "deleted": True}
    missing = run(["url", results[0]["id"], "--json"], cli_env)
    assert missing.returncode == 1
    assert json.loads(missing.stdout)["error"]["code"] == "not_found"


def test_ingest_exit_code_is_nonzero_when_any_input_fails(
    cli_env: dict[str, str], provider: Provider
) -> None:
    inputs = [provider.url("/img/52.png"), provider.url("/html-as-png"), "ftp://x/y.png"]
    proc = run(["ingest", *inputs, "--owner", "bob", "--json"], cli_env)
    assert proc.returncode == 1
    results = json.loads(proc.stdout)
    assert [r["status"] for r in results] == ["stored", "failed", "failed"]
    assert results[1]["error"]["code"] == "unsupported_media_type"
    assert results[2]["error"]["code"] == "invalid_url"
    human = run(["ingest", provider.url("/html-as-png"), "--owner", "bob"], cli_env)
    assert human.returncode == 1 and "unsupported_media_type" in human.stdout


def test_human_errors_keep_the_code_and_every_bracket(
    cli_env: dict[str, str], provider: Provider
) -> None:
    # Rich read "[not_found]" as a style and dropped it, and with it what a user searches
    # the docs for; URLs and messages with brackets lost them the same way.
    missing = run(["url", "not-an-asset"], cli_env)
    assert missing.returncode == 1
    assert "error [not_found]" in " ".join(missing.stderr.split())
    source = provider.url("/html-as-png?tag=[draft]")
    human = run(["ingest", source, "--owner", "bob"], {**cli_env, "COLUMNS": "400"})
    assert human.returncode == 1
    assert source in human.stdout and "unsupported_media_type" in human.stdout


def test_db_upgrade_on_sqlite_and_postgres(
    cli_env: dict[str, str], postgres: PostgresServer
) -> None:
    proc = run(["db", "upgrade", "--json"], cli_env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["revision"]
    with postgres.database() as url:
        proc = run(["db", "upgrade", "--json"], {**cli_env, "MEDIAKEEP_DATABASE_URL": url})
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["revision"]


def test_gc_reports_json(cli_env: dict[str, str]) -> None:
    proc = run(["gc", "--orphans", "--json"], cli_env)
    assert proc.returncode == 0, proc.stderr
    assert set(json.loads(proc.stdout)) == {
        "pending_removed",
        "deleting_removed",
        "unreferenced_removed",
        "versions_removed",
        "orphan_objects_removed",
    }

"""``mediakeep worker``, ``mediakeep jobs`` and the worker inside ``mediakeep serve``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from mediakeep import MediaKeep, Settings
from mediakeep.auth import mint_token
from tests.jobs.conftest import JWT_SECRET
from tests.support.netutil import free_port, wait_port
from tests.support.provider import Provider, render_image

CLI = [sys.executable, "-m", "mediakeep.cli"]


def cli_env(tmp: Path) -> dict[str, str]:
    return {
        **os.environ,
        "MEDIAKEEP_DATA_DIR": str(tmp / "data"),
        "MEDIAKEEP_ALLOW_PRIVATE_NETWORKS": "true",
        "MEDIAKEEP_JWT_SECRET": JWT_SECRET,
        "MEDIAKEEP_JOB_POLL_INTERVAL": "0.05",
        "MEDIAKEEP_VARIANTS_ENABLED": "false",
    }


async def test_worker_drains_the_queue_and_reports_json(
    tmp_path: Path, provider: Provider, owner: str
) -> None:
    env = cli_env(tmp_path)
    settings = Settings(data_dir=tmp_path / "data", allow_private_networks=True)
    async with MediaKeep(settings) as keep:
        jobs = [
            await keep.submit_ingest([provider.url(f"/img/{owner}-w{i}.png")], owner=owner)
            for i in range(3)
        ]
    proc = subprocess.run(
        [*CLI, "worker", "--drain", "--json"], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines[0]["event"] == "ready" and lines[-1]["event"] == "stopped"
    assert lines[-1]["jobs"] == 3 and lines[-1]["completed"] == 3
    shown = subprocess.run(
        [*CLI, "jobs", "show", jobs[0].id, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    data = json.loads(shown.stdout)
    assert data["status"] == "completed" and data["items"][0]["content_url"].endswith("/content")


def test_mediakeep_serve_runs_the_worker_on_sqlite(
    tmp_path: Path, provider: Provider, owner: str
) -> None:
    port = free_port()
    env = cli_env(tmp_path)
    server = subprocess.Popen(
        [*CLI, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_port("127.0.0.1", port, 60)
        base = f"http://127.0.0.1:{port}"
        token = mint_token(JWT_SECRET, owner)
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as c:
            url = provider.url(f"/img/{owner}-serve.png")
            resp = c.post("/v1/ingest", json={"urls": [url], "async": True})
            assert resp.status_code == 202, resp.text
            job = resp.json()
            for _ in range(1200):
                job = c.get(f"/v1/jobs/{job['id']}").json()
                if job["status"] == "completed":
                    break
                time.sleep(0.05)
            assert job["status"] == "completed"
            got = c.get(job["items"][0]["content_url"])
            assert got.content == render_image(f"{owner}-serve", "png")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)

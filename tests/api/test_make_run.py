"""`make run`'s command from a clean start (only a data dir): it serves /docs, says how to
get a token, a token from `mediakeep token` can ingest and fetch an asset, and the logs
are JSON lines with a request id and a category that never contain a secret."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.netutil import free_port, wait_port
from tests.support.provider import Provider, render_image

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run_recipe() -> list[str]:
    """The command the Makefile's ``run`` target ends with (the server; the lines before it
    prepare), with $(BIN) resolved."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("run:"))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return shlex.split(recipe[-1].replace("$(BIN)", str(BIN)))


def clean_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIAKEEP_")}
    env["MEDIAKEEP_DATA_DIR"] = str(data_dir)
    # The embedded default refuses loopback downloads; the local provider is on loopback.
    env["MEDIAKEEP_ALLOW_PRIVATE_NETWORKS"] = "true"
    return env


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str], Path, dict[str, str]]]:
    port = free_port()
    env = clean_env(tmp_path / "mediakeep-data")
    log = tmp_path / "stderr.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [*run_recipe(), "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    try:
        assert wait_port("127.0.0.1", port, timeout=60), log.read_text()
        yield f"http://127.0.0.1:{port}", proc, log, env
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_make_run_serves_docs_and_a_minted_token_works(
    served: tuple[str, subprocess.Popen[str], Path, dict[str, str]],
    provider: Provider,
    tmp_path: Path,
) -> None:
    url, proc, log, env = served
    assert run_recipe()[1:] == ["serve"]
    with httpx.Client(base_url=url, timeout=60, trust_env=False) as h:
        docs = h.get("/docs")
        assert docs.status_code == 200 and "/openapi.json" in docs.text
        assert h.get("/openapi.json").json()["info"]["title"] == "mediakeep"

        minted = subprocess.run(
            [str(BIN / "mediakeep"), "token", "--owner", "alice"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert minted.returncode == 0, minted.stderr
        token = minted.stdout.strip()
        auth = {"Authorization": f"Bearer {token}"}

        source = provider.url("/img/make-run.png")
        r = h.post("/v1/ingest", json={"urls": [source]}, headers=auth)
        assert r.status_code == 200, r.text
        item = r.json()["results"][0]
        assert item["status"] == "stored"
        content = h.get(f"/v1/assets/{item['id']}/content", headers=auth)
        assert content.status_code == 200 and content.content == render_image("make-run")
        # The signed URL points at this server, on the port it was started on.
        assert item["url"].startswith(url + "/")
        signed = h.get(item["url"])
        assert signed.status_code == 200 and signed.content == render_image("make-run")
        h.get("/v1/assets", headers={"Authorization": "Bearer " + token[:-4] + "AAAA"})

    proc.send_signal(signal.SIGTERM)
    stdout, _ = proc.communicate(timeout=20)
    assert f"{url}" in stdout and f"{url}/docs" in stdout
    assert re.search(r"mediakeep token --owner \w+", stdout), stdout

    secret = (tmp_path / "mediakeep-data" / "jwt.secret").read_text().strip()
    signature = item["url"].split("sig=")[1]
    text = log.read_text()
    for leaked in (token, token.split(".")[2], secret, signature):
        assert leaked not in text
    entries = [json.loads(line) for line in text.splitlines() if line.strip()]
    access = [e for e in entries if e["logger"] == "mediakeep.access"]
    assert access and all(e["request_id"] and e["category"] for e in access)
    by_route = {(e["method"], e["route"]): e for e in access}
    assert by_route[("POST", "/v1/ingest")]["category"] == "upload"
    assert by_route[("POST", "/v1/ingest")]["owner"] == "alice"
    assert by_route[("GET", "/v1/assets/{asset_id}/content")]["category"] == "download"
    assert {e["category"] for e in entries} <= {"upload", "download", "cleanup", "validate", "info"}

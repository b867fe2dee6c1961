"""persist_json: every media URL in a document (nested fal outputs included) replaced by a
permanent link that serves the same bytes; what cannot be stored stays and is reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from mediakeep.integrations import MediaMatcher
from mediakeep.integrations.persist import find_urls
from mediakeep.jobs.sources import decode_data_uri
from tests.jobs.conftest import JWT_SECRET, Keeps
from tests.jobs.support import MediaServer, audio_result, data_uri, flux_result, png, video_result
from tests.jobs.test_generations import wav_bytes
from tests.support.provider import Provider

CLI = [sys.executable, "-m", "mediakeep.cli"]


def master_json(provider: Provider, media: MediaServer, owner: str) -> dict[str, Any]:
    """A project file as teams keep them: fal outputs pasted in at several depths."""
    cover = provider.url(f"/img/{owner}-cover.png")
    return {
        "project": "demo",
        "docs": "https://example.com/guide",  # not media: left alone
        "cover": cover,
        "scenes": [
            {
                "id": 1,
                "render": flux_result([cover, provider.url(f"/img/{owner}-s1.jpg")]),
                "thumb": data_uri(png(5)),
            },
            {
                "id": 2,
                "render": video_result(media.url(f"/big/250000.mp4?o={owner}")),
                "voice": audio_result(data_uri(wav_bytes(), "audio/wav")),
                "takes": [[{"url": provider.url(f"/img/{owner}-t.webp")}]],
            },
        ],
    }


def original_bytes(url: str) -> bytes:
    if url.startswith("data:"):
        return decode_data_uri(url, 10**8)[1]
    with httpx.Client(timeout=30, trust_env=False) as c:
        resp = c.get(url)
        assert resp.status_code == 200
        return resp.content


async def test_every_media_url_becomes_a_permanent_link_to_the_same_bytes(
    keeps: Keeps, services: Any, provider: Provider, media: MediaServer, owner: str
) -> None:
    svc = services()
    doc = master_json(provider, media, owner)
    c = svc.client(owner)
    resp = c.post("/v1/persist-json", json={"document": doc, "collection": "master"})
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["failed"] == []
    matcher = MediaMatcher(hosts=(), extensions=("png", "jpg", "webp", "mp4"))
    before = find_urls(doc, matcher)
    assert len(before) == 7
    assert len(out["replaced"]) == 7
    base = f"{svc.url}/v1/assets/"
    new = out["document"]
    by_path = {r["path"]: r for r in out["replaced"]}
    for path, url in before:
        link = by_path[path]["content_url"]
        assert link.startswith(base) and link.endswith("/content")
        # The same place in the new document holds the link, and it serves the bytes.
        node: Any = new
        for part in path.split("/")[1:]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        assert node == link
        served = c.get(link, follow_redirects=True)
        assert served.status_code == 200
        assert served.content == original_bytes(url)
    # The cover appears twice and was stored once.
    cover_links = {r["asset_id"] for r in out["replaced"] if r["url"] == doc["cover"]}
    assert len(cover_links) == 1
    assert len(c.get("/v1/assets", params={"limit": 100}).json()["items"]) == 6
    assert (
        new["docs"] == doc["docs"]
        and new["scenes"][0]["render"]["seed"] == doc["scenes"][0]["render"]["seed"]
    )
    # Running it again over the new document finds nothing left to do.
    again = c.post("/v1/persist-json", json={"document": new}).json()
    assert again["replaced"] == [] and again["failed"] == [] and again["document"] == new


async def test_unstorable_urls_stay_and_are_reported(
    keeps: Keeps, services: Any, provider: Provider, owner: str
) -> None:
    svc = services()
    c = svc.client(owner)
    lost = provider.url(f"/status/404/{owner}.png")
    fake = provider.url("/html-as-png?x=.png")
    doc = {
        "a": [lost, {"b": provider.url(f"/img/{owner}-ok.png")}],
        "c": "data:image/png;base64,!!",
    }
    resp = c.post("/v1/persist-json", json={"document": doc})
    assert resp.status_code == 207
    out = resp.json()
    assert out["document"]["a"][0] == lost and out["document"]["c"] == doc["c"]
    assert out["document"]["a"][1]["b"].endswith("/content")
    failed = {f["path"]: f["error"]["code"] for f in out["failed"]}
    assert failed == {"/a/0": "upstream_status", "/c": "invalid_input"}
    # The matcher is configurable: by host, without any extension.
    by_host = c.post(
        "/v1/persist-json",
        json={
            "document": {"x": provider.url(f"/img/{owner}-h.png?v=1"), "y": fake},
            "hosts": ["127.0.0.1"],
            "extensions": [],
        },
    ).json()
    assert by_host["document"]["x"].endswith("/content")
    assert [f["path"] for f in by_host["failed"]] == ["/y"]
    nothing = c.post(
        "/v1/persist-json", json={"document": doc, "hosts": [], "extensions": ["gif"]}
    ).json()
    assert nothing["document"]["a"] == doc["a"] and nothing["replaced"] == []


async def test_library_persist_json_with_a_custom_matcher(
    keeps: Keeps, provider: Provider, owner: str
) -> None:
    keep = await keeps.open()
    url = provider.url(f"/img/{owner}-lib.png")
    doc = {"keep": url, "skip": provider.url(f"/img/{owner}-skip.png")}
    report = await keep.persist_json(doc, owner=owner, matcher=lambda s: s == url)
    assert report.ok and report.document["skip"] == doc["skip"]
    assert report.document["keep"] == report.replaced[0]["content_url"]
    assert doc["keep"] == url  # the input is not changed


def test_cli_persist_json(tmp_path: Path, provider: Provider, owner: str) -> None:
    env = {
        **os.environ,
        "MEDIAKEEP_DATA_DIR": str(tmp_path / "data"),
        "MEDIAKEEP_ALLOW_PRIVATE_NETWORKS": "true",
        "MEDIAKEEP_JWT_SECRET": JWT_SECRET,
    }
    lost = provider.url(f"/status/404/{owner}.png")
    doc = {"shots": [flux_result([provider.url(f"/img/{owner}-cli.png")])], "lost": lost}
    path = tmp_path / "master.json"
    path.write_text(json.dumps(doc))
    proc = subprocess.run(
        [*CLI, "persist-json", str(path), "--owner", owner, "--in-place", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr  # one URL could not be stored
    out = json.loads(proc.stdout)
    assert [f["path"] for f in out["failed"]] == ["/lost"]
    written = json.loads(path.read_text())
    assert written == out["document"] and written["lost"] == lost
    link = written["shots"][0]["images"][0]["url"]
    assert link.startswith("http://127.0.0.1:8787/v1/assets/") and link.endswith("/content")

    clean = tmp_path / "clean.json"
    clean.write_text(json.dumps({"img": provider.url(f"/img/{owner}-cli2.png")}))
    ok = subprocess.run(
        [*CLI, "persist-json", str(clean), "--owner", owner],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["img"].endswith("/content")
    assert "1 replaced, 0 left" in ok.stderr

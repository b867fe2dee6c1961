"""The HTTP side of jobs: 202 before any work, idempotency, status and SSE progress,
and the worker that ``serve`` runs itself."""

from __future__ import annotations

import time
from typing import Any

import httpx

from mediakeep.jobs import background_worker
from tests.jobs.conftest import Keeps
from tests.jobs.support import MediaServer, sse_events
from tests.support.provider import Provider, payload_sha256, render_image


def wait_job(client: httpx.Client, job_id: str, wait: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + wait
    while True:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("completed", "partial", "failed"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def content(client: httpx.Client, url: str) -> bytes:
    resp = client.get(url, follow_redirects=True)
    assert resp.status_code == 200, resp.text
    return resp.content


async def test_async_ingest_answers_202_with_a_job_recorded_before_any_work(
    keeps: Keeps, services: Any, provider: Provider, owner: str
) -> None:
    svc = services(serve_worker=False)
    c = svc.client(owner)
    urls = [provider.url(f"/img/{owner}-1.png"), provider.url(f"/img/{owner}-2.webp")]
    body = {"urls": urls, "async": True, "collection": "c1"}
    resp = c.post("/v1/ingest", json=body, headers={"Idempotency-Key": "batch-1"})
    assert resp.status_code == 202, resp.text
    job = resp.json()
    assert job["status"] == "queued" and resp.headers["location"] == job["status_url"]
    assert job["events_url"].endswith(f"/v1/jobs/{job['id']}/events")
    # Nothing has been fetched: the answer only promises, and the promise is on disk.
    assert provider.hits(urls[0]) == 0
    assert c.get(f"/v1/jobs/{job['id']}").json()["status"] == "queued"

    again = c.post("/v1/ingest", json=body, headers={"Idempotency-Key": "batch-1"})
    assert again.status_code == 202 and again.json()["id"] == job["id"]
    assert again.headers["idempotent-replayed"] == "true"
    other = c.post(
        "/v1/ingest", json={**body, "urls": urls[:1]}, headers={"Idempotency-Key": "batch-1"}
    )
    assert other.status_code == 409 and other.json()["code"] == "idempotency_key_reused"
    # Another owner sees no such job.
    assert svc.client(owner + "z").get(f"/v1/jobs/{job['id']}").status_code == 404

    # Any worker on the same database finishes it (here: one in this process).
    keep = await keeps.open()
    async with background_worker(keep):
        await keep.wait_for_job(job["id"], wait=30)
    done = c.get(f"/v1/jobs/{job['id']}").json()
    assert done["status"] == "completed" and done["counts"]["stored"] == 2
    # The service ran none of it, yet streams all of it: events live in the database.
    with c.stream("GET", job["events_url"]) as resp:
        types = [t for _, t, _ in sse_events(resp.iter_lines())]
    assert types[0] == "queued" and types[-1] == "done" and types.count("stored") == 2
    first = done["items"][0]
    assert content(c, first["content_url"]) == render_image(f"{owner}-1", "png")
    assert provider.hits(urls[0]) == 1
    listed = c.get("/v1/jobs").json()["items"]
    assert [j["id"] for j in listed] == [job["id"]]


async def test_serve_runs_a_worker_itself(
    keeps: Keeps, services: Any, provider: Provider, owner: str
) -> None:
    svc = services()
    c = svc.client(owner)
    url = provider.url(f"/img/{owner}-served.png")
    job = c.post("/v1/ingest", json={"urls": [url], "async": True}).json()
    done = wait_job(c, job["id"])
    assert done["status"] == "completed"
    assert content(c, done["items"][0]["content_url"]) == render_image(f"{owner}-served", "png")


async def test_events_stream_progress_from_the_database(
    keeps: Keeps, services: Any, media: MediaServer, owner: str
) -> None:
    svc = services()
    c = svc.client(owner)
    n = 2_000_000
    url = media.url(f"/big/{n}.mp4?chunk=32768&delay=0.03&o={owner}")
    job = c.post("/v1/ingest", json={"urls": [url], "async": True}).json()
    seen: list[tuple[int | None, str, dict[str, Any]]] = []
    with c.stream("GET", job["events_url"]) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        for event in sse_events(resp.iter_lines()):
            seen.append(event)
    types = [t for _, t, _ in seen]
    assert types[0] == "queued" and types[-1] == "done"
    assert types.index("started") < types.index("downloading") < types.index("stored")
    progress = [d for _, t, d in seen if t == "downloading"]
    done_bytes = [p["bytes_done"] for p in progress]
    assert done_bytes == sorted(done_bytes) and len(set(done_bytes)) >= 2
    assert all(p["bytes_total"] == n for p in progress)
    stored = next(d for _, t, d in seen if t == "stored")
    assert stored["size"] == n and stored["sha256"] == payload_sha256(n, "mp4")
    assert seen[-1][2]["status"] == "completed"
    # Resuming after the "stored" event gives what came after it, and ends.
    last_id = next(i for i, t, _ in seen if t == "stored")
    with c.stream("GET", job["events_url"], headers={"Last-Event-ID": str(last_id)}) as resp:
        rest = [t for _, t, _ in sse_events(resp.iter_lines())]
    assert rest == types[types.index("stored") + 1 :]
    assert c.get(f"/v1/jobs/{job['id']}/events", params={"after": 0}).status_code == 200
    missing = "00000000-0000-4000-8000-000000000000"
    assert c.get(f"/v1/jobs/{missing}/events").status_code == 404
    assert svc.client(owner + "z").get(job["events_url"]).status_code == 404


async def test_event_streams_are_pushed_at_commit_not_at_the_next_poll(
    keeps: Keeps, services: Any, media: MediaServer, owner: str, monkeypatch: Any
) -> None:
    from mediakeep.api import routes_jobs

    # Reads for other processes' events would come a minute apart; this process's worker
    # commits must wake the stream instead. A stream that waited for the poll would run
    # into the client's read timeout.
    monkeypatch.setattr(routes_jobs, "EVENTS_POLL", 60.0)
    svc = services()
    c = svc.client(owner, timeout=httpx.Timeout(30, read=20))
    url = media.url(f"/big/600000.mp4?chunk=32768&delay=0.05&o={owner}")
    job = c.post("/v1/ingest", json={"urls": [url], "async": True}).json()
    with c.stream("GET", job["events_url"]) as resp:
        types = [t for _, t, _ in sse_events(resp.iter_lines())]
    assert types[0] == "queued" and types[-1] == "done"
    assert "downloading" in types and types.count("stored") == 1

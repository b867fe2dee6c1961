"""The load generator of the load suite: closed-loop async clients over aiohttp, each one
pacing itself with a think time so that a slow service slows the load down instead of
piling up requests until they time out. Everything a client sees is recorded per kind of
request; `Stats.summary` turns that into the report."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import random
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

# The kinds of request the report breaks down; the service's own are the first five.
SERVICE_KINDS = ("ingest_sync", "ingest_async", "job_poll", "content", "sign")
STORE_KINDS = ("follow",)


@dataclass(frozen=True)
class Stored:
    """An ingest the service reported as successful: what must exist afterwards."""

    owner: str
    asset_id: str
    sha256: str
    via: str


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    # Transport failures (timeouts, resets): they could hide a server error, so they count.
    transport_errors: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    # First few bodies of unexpected answers, so a failing run says what went wrong.
    samples: list[str] = field(default_factory=list)
    stored: list[Stored] = field(default_factory=list)
    failed_items: Counter[str] = field(default_factory=Counter)
    read_mismatches: int = 0
    jobs_unfinished: list[str] = field(default_factory=list)

    def record(self, kind: str, status: int, seconds: float) -> None:
        self.latencies[kind].append(seconds)
        self.statuses[kind][status] += 1

    def unexpected(self, kind: str, status: int, body: str) -> None:
        if len(self.samples) < 20:
            self.samples.append(f"{kind} {status}: {body[:500]}")

    def server_errors(self, kinds: tuple[str, ...] = SERVICE_KINDS) -> int:
        return sum(n for k in kinds for s, n in self.statuses[k].items() if s >= 500)

    def summary(self) -> dict[str, Any]:
        kinds: dict[str, Any] = {}
        for kind in (*SERVICE_KINDS, *STORE_KINDS):
            lat = sorted(self.latencies.get(kind, []))
            kinds[kind] = {
                "requests": len(lat),
                "statuses": {str(s): n for s, n in sorted(self.statuses[kind].items())},
                "transport_errors": dict(self.transport_errors[kind]),
                "p50_ms": _ms(percentile(lat, 50)),
                "p95_ms": _ms(percentile(lat, 95)),
                "p99_ms": _ms(percentile(lat, 99)),
                "max_ms": _ms(lat[-1] if lat else None),
            }
        return {
            "kinds": kinds,
            "service_5xx": self.server_errors(),
            "stored": len(self.stored),
            "failed_items": dict(self.failed_items),
            "read_mismatches": self.read_mismatches,
            "jobs_unfinished": len(self.jobs_unfinished),
            "samples": self.samples,
        }


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


@dataclass
class Plan:
    base_url: str
    duration: float
    ingesters: int
    readers: int
    ingest_think: float  # mean pause between one ingest client's requests, seconds
    read_think: float
    async_every: int  # every n-th ingest of a client goes through a durable job
    sign_every: int  # every n-th read asks /url instead of the permanent link
    request_timeout: float = 60.0
    job_drain: float = 60.0  # how long jobs accepted during the run may take to finish


@dataclass
class Catalogue:
    """Assets readers pick from: the seeded ones plus every ingest that succeeded."""

    entries: list[tuple[str, str, str]] = field(default_factory=list)  # owner, id, sha256

    def add(self, owner: str, asset_id: str, sha256: str) -> None:
        self.entries.append((owner, asset_id, sha256))

    def pick(self, rng: random.Random) -> tuple[str, str, str]:
        return self.entries[rng.randrange(len(self.entries))]


class LoadRun:
    def __init__(
        self,
        plan: Plan,
        tokens: dict[str, str],
        owners: list[str],
        catalogue: Catalogue,
        source_url: Callable[[str], str],
        seed: int = 2026,
    ) -> None:
        self.plan = plan
        self.tokens = tokens
        self.owners = owners
        self.catalogue = catalogue
        self.source_url = source_url
        self.stats = Stats()
        self.seed = seed
        self._stop = asyncio.Event()
        self._deadline = 0.0

    def _auth(self, owner: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[owner]}"}

    async def _timed(
        self,
        kind: str,
        call: Callable[[], Awaitable[tuple[int, bytes]]],
    ) -> tuple[int, bytes] | None:
        started = time.perf_counter()
        try:
            status, body = await call()
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.stats.transport_errors[kind][type(exc).__name__] += 1
            return None
        self.stats.record(kind, status, time.perf_counter() - started)
        return status, body

    async def _pause(self, rng: random.Random, mean: float) -> None:
        # Uniform around the mean: clients drift apart instead of moving in lockstep.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), rng.uniform(0.5 * mean, 1.5 * mean))

    async def run(self) -> Stats:
        timeout = aiohttp.ClientTimeout(total=self.plan.request_timeout)
        # No connection cap: every client may hold its own connection, as real ones would.
        # Idle connections are dropped before uvicorn's 5 s keep-alive ends: reusing one the
        # server is closing at that moment fails on the client, with no server at fault.
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=2)
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, trust_env=False
        ) as http:
            self._deadline = time.monotonic() + self.plan.duration
            clients = [
                asyncio.create_task(self._ingester(http, i)) for i in range(self.plan.ingesters)
            ] + [asyncio.create_task(self._reader(http, i)) for i in range(self.plan.readers)]
            await asyncio.sleep(self.plan.duration)
            self._stop.set()
            await asyncio.gather(*clients)
        return self.stats

    # -- ingest clients ------------------------------------------------------------------

    async def _ingester(self, http: aiohttp.ClientSession, index: int) -> None:
        rng = random.Random(self.seed * 1000 + index)
        owner = self.owners[index % len(self.owners)]
        await self._pause(rng, self.plan.ingest_think)  # spread the first requests out
        n = 0
        while not self._stop.is_set():
            n += 1
            url = self.source_url(f"load-{owner}-{index}-{n}")
            if n % self.plan.async_every == 0:
                await self._ingest_async(http, owner, url)
            else:
                await self._ingest_sync(http, owner, url)
            await self._pause(rng, self.plan.ingest_think)

    async def _post_json(
        self, http: aiohttp.ClientSession, path: str, owner: str, body: dict[str, Any]
    ) -> tuple[int, bytes]:
        async with http.post(
            self.plan.base_url + path, json=body, headers=self._auth(owner)
        ) as resp:
            return resp.status, await resp.read()

    async def _get(
        self, http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes, str | None]:
        async with http.get(url, headers=headers, allow_redirects=False) as resp:
            return resp.status, await resp.read(), resp.headers.get("Location")

    async def _ingest_sync(self, http: aiohttp.ClientSession, owner: str, url: str) -> None:
        got = await self._timed(
            "ingest_sync", lambda: self._post_json(http, "/v1/ingest", owner, {"urls": [url]})
        )
        if got is None:
            return
        status, body = got
        if status not in (200, 207):
            self.stats.unexpected("ingest_sync", status, body.decode(errors="replace"))
            return
        for item in json.loads(body)["results"]:
            if item["status"] in ("stored", "deduplicated"):
                self._stored(owner, item["id"], item["sha256"], "sync")
            else:
                self.stats.failed_items[str((item.get("error") or {}).get("code"))] += 1

    async def _ingest_async(self, http: aiohttp.ClientSession, owner: str, url: str) -> None:
        got = await self._timed(
            "ingest_async",
            lambda: self._post_json(http, "/v1/ingest", owner, {"urls": [url], "async": True}),
        )
        if got is None:
            return
        status, body = got
        if status != 202:
            self.stats.unexpected("ingest_async", status, body.decode(errors="replace"))
            return
        job_id = json.loads(body)["id"]
        # The client waits for its job like a real caller would, polling its status; the
        # job was accepted, so it must finish even if the run ends meanwhile.
        deadline = max(time.monotonic(), self._deadline) + self.plan.job_drain
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            polled = await self._timed(
                "job_poll",
                lambda: self._status_body(http, f"/v1/jobs/{job_id}", owner),
            )
            if polled is None:
                continue
            status, body = polled
            if status != 200:
                self.stats.unexpected("job_poll", status, body.decode(errors="replace"))
                continue
            job = json.loads(body)
            if job["status"] in ("completed", "partial", "failed"):
                for item in job["items"]:
                    if item["status"] in ("stored", "deduplicated"):
                        self._stored(owner, item["asset_id"], item["sha256"], "async")
                    else:
                        code = (item.get("error") or {}).get("code")
                        self.stats.failed_items[f"job:{code}"] += 1
                return
        self.stats.jobs_unfinished.append(job_id)

    async def _status_body(
        self, http: aiohttp.ClientSession, path: str, owner: str
    ) -> tuple[int, bytes]:
        status, body, _ = await self._get(http, self.plan.base_url + path, self._auth(owner))
        return status, body

    def _stored(self, owner: str, asset_id: str, sha256: str, via: str) -> None:
        self.stats.stored.append(Stored(owner, asset_id, sha256, via))
        self.catalogue.add(owner, asset_id, sha256)

    # -- read clients --------------------------------------------------------------------

    async def _reader(self, http: aiohttp.ClientSession, index: int) -> None:
        rng = random.Random(self.seed * 7919 + index)
        await self._pause(rng, self.plan.read_think)
        n = 0
        while not self._stop.is_set():
            n += 1
            owner, asset_id, sha256 = self.catalogue.pick(rng)
            if n % self.plan.sign_every == 0:
                target = await self._sign(http, owner, asset_id)
            else:
                target = await self._content(http, owner, asset_id)
            if target is not None:
                await self._follow(http, target, sha256)
            await self._pause(rng, self.plan.read_think)

    async def _content(self, http: aiohttp.ClientSession, owner: str, asset_id: str) -> str | None:
        location: list[str | None] = []

        async def call() -> tuple[int, bytes]:
            status, body, loc = await self._get(
                http, f"{self.plan.base_url}/v1/assets/{asset_id}/content", self._auth(owner)
            )
            location.append(loc)
            return status, body

        got = await self._timed("content", call)
        if got is None:
            return None
        if got[0] != 302 or not location[0]:
            self.stats.unexpected("content", got[0], got[1].decode(errors="replace"))
            return None
        return location[0]

    async def _sign(self, http: aiohttp.ClientSession, owner: str, asset_id: str) -> str | None:
        got = await self._timed(
            "sign", lambda: self._status_body(http, f"/v1/assets/{asset_id}/url", owner)
        )
        if got is None:
            return None
        if got[0] != 200:
            self.stats.unexpected("sign", got[0], got[1].decode(errors="replace"))
            return None
        url: str = json.loads(got[1])["url"]
        return url

    async def _follow(self, http: aiohttp.ClientSession, url: str, sha256: str) -> None:
        body: list[bytes] = []

        async def call() -> tuple[int, bytes]:
            status, data, _ = await self._get(http, url)
            body.append(data)
            return status, data

        got = await self._timed("follow", call)
        if got is None:
            return
        if got[0] != 200:
            self.stats.unexpected("follow", got[0], got[1][:200].decode(errors="replace"))
        elif hashlib.sha256(body[0]).hexdigest() != sha256:
            self.stats.read_mismatches += 1

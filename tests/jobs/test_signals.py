"""Readers of a job's events are woken by this process's commits, not only by polling."""

from __future__ import annotations

import asyncio
import threading

import pytest
from sqlalchemy import select

from mediakeep.db.models import Job
from mediakeep.jobs import background_worker
from mediakeep.jobs.signals import JobSignals
from mediakeep.waiting import event_within
from tests.jobs.conftest import Keeps
from tests.support.provider import Provider


class Boom(Exception):
    pass


async def test_a_committed_event_wakes_readers_of_that_job_only(
    keeps: Keeps, provider: Provider, owner: str
) -> None:
    keep = await keeps.open()
    a = await keep.submit_ingest([provider.url(f"/img/{owner}-a.png")], owner=owner)
    b = await keep.submit_ingest([provider.url(f"/img/{owner}-b.png")], owner=owner)
    with keep.job_signals.watch(a.id) as woke_a, keep.job_signals.watch(b.id) as woke_b:
        # Watching began before the write: a reader that read, found nothing and is about
        # to wait cannot miss this commit.
        await keep.job_repo.add_events(a.id, [("note", {"n": 1})])
        assert woke_a.is_set()
        assert not woke_b.is_set()
    assert keep.job_signals.watching() == 0


async def test_a_rolled_back_write_wakes_nobody(
    keeps: Keeps, provider: Provider, owner: str
) -> None:
    keep = await keeps.open()
    job = await keep.submit_ingest([provider.url(f"/img/{owner}-r.png")], owner=owner)
    repo = keep.job_repo
    with keep.job_signals.watch(job.id) as woke:
        with pytest.raises(Boom):
            async with repo.sessions.begin() as s:
                await s.execute(select(Job.id).where(Job.id == job.id))
                repo._event(s, job.id, "note", {"n": 1})
                await s.flush()
                raise Boom
        assert not woke.is_set()
        assert [e.type for e in await keep.job_events(job.id)] == ["queued"]
        # The next transaction of the same kind still wakes: nothing stayed registered.
        await repo.add_events(job.id, [("note", {"n": 2})])
        assert woke.is_set()


async def test_wait_for_job_is_woken_when_this_process_finishes_the_job(
    keeps: Keeps, provider: Provider, owner: str
) -> None:
    keep = await keeps.open()
    job = await keep.submit_ingest([provider.url(f"/img/{owner}-w.png")], owner=owner)
    async with background_worker(keep):
        # With a poll longer than the test's own timeout, only the wake-up can end it.
        done = await asyncio.wait_for(keep.wait_for_job(job.id, wait=600, poll=600), 60)
    assert done.status == "completed"


async def test_a_commit_in_another_thread_wakes_the_readers_loop() -> None:
    signals = JobSignals()
    with signals.watch("j1") as woke:
        thread = threading.Thread(target=signals.notify, args=(["j1"],))
        thread.start()
        thread.join()
        assert await event_within(woke, 30)
    assert signals.watching() == 0

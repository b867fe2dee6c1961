"""Waiting on an event with a deadline, for background loops that are woken or stopped
rather than cancelled (cancelling a task inside a database statement costs a connection)."""

from __future__ import annotations

import asyncio
import contextlib


async def event_within(event: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``event``; True (at once) if it is or becomes set."""
    if not event.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)
    return event.is_set()

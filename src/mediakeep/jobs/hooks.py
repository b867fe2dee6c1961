"""What a job kind does besides storing its items, run inside the job's own transactions
(so, for example, a generation's record never disagrees with its job)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import Job, JobItem

JobHook = Callable[[AsyncSession, Job], Awaitable[None]]
ItemHook = Callable[[AsyncSession, Job, JobItem], Awaitable[None]]
FinishHook = Callable[[AsyncSession, Job, list[JobItem]], Awaitable[None]]


@dataclass
class KindHooks:
    on_start: JobHook | None = None
    on_item: ItemHook | None = None
    on_finish: FinishHook | None = None


_HOOKS: dict[str, KindHooks] = {}


def register(kind: str, hooks: KindHooks) -> None:
    _HOOKS[kind] = hooks


def hooks_for(kind: str) -> KindHooks:
    return _HOOKS.get(kind, KindHooks())

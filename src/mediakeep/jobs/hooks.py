"""What a job kind does besides storing its items, run inside the job's own transactions
(so, for example, a generation's record never disagrees with its job)."""

from __future__ import annotations

import importlib
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
# Where each kind's hooks are registered, for a process that has not imported that module
# yet: a worker picking up a generation job may never have touched the integrations.
_DEFINED_IN = {"generation": "mediakeep.integrations.generations"}


def register(kind: str, hooks: KindHooks) -> None:
    _HOOKS[kind] = hooks


def hooks_for(kind: str) -> KindHooks:
    if kind not in _HOOKS and kind in _DEFINED_IN:
        importlib.import_module(_DEFINED_IN[kind])
    return _HOOKS.get(kind, KindHooks())

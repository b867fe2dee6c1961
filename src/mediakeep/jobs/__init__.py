"""Durable jobs: work recorded before it is answered for, run by workers under leases."""

from .callbacks import sign as sign_callback
from .callbacks import verify as verify_callback
from .types import JobEventInfo, JobInfo, JobItemInfo
from .worker import JobWorker, WorkerStats, background_worker

__all__ = [
    "JobEventInfo",
    "JobInfo",
    "JobItemInfo",
    "JobWorker",
    "WorkerStats",
    "background_worker",
    "sign_callback",
    "verify_callback",
]

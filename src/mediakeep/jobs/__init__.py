"""Durable jobs: work recorded before it is answered for, run by workers under leases."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .callbacks import sign as sign_callback
    from .callbacks import verify as verify_callback
    from .types import JobEventInfo, JobInfo, JobItemInfo
    from .worker import JobWorker, WorkerStats, background_worker
else:
    from .._lazy import exports

    # Loaded on first use: the facade imports jobs.api, which must not bring the worker.
    __getattr__, __dir__ = exports(
        __name__,
        {
            "JobEventInfo": ".types",
            "JobInfo": ".types",
            "JobItemInfo": ".types",
            "JobWorker": ".worker",
            "WorkerStats": ".worker",
            "background_worker": ".worker",
            "sign_callback": ".callbacks:sign",
            "verify_callback": ".callbacks:verify",
        },
    )

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

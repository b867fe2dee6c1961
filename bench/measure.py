"""Run one contender in a fresh child process and measure only that child's tree."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

SAMPLE_INTERVAL = 0.05


@dataclass
class Measurement:
    returncode: int
    timed_out: bool
    wall_s: float
    cpu_s: float  # user+sys of the child and every descendant it reaped
    peak_rss_bytes: int
    stdout: Path
    stderr: Path

    def tail(self) -> str:
        """The last line of stderr: where a crashing Python or Go program says why."""
        try:
            lines = self.stderr.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1].strip() if lines else "(no stderr)"


def _tree_rss(root: psutil.Process) -> int:
    total = 0
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total


def run_measured(
    cmd: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    logs: Path,
    timeout: float,
) -> Measurement:
    """Start ``cmd``, sample its tree's RSS every 50 ms, and reap it with ``wait4``.

    ``wait4`` gives CPU time of the child including descendants it waited for, which a
    psutil sample taken just before exit would undercount; the sampled tree RSS catches
    helper processes that ``ru_maxrss`` (a per-process maximum) would miss.
    """
    logs.parent.mkdir(parents=True, exist_ok=True)
    out_path = logs.with_suffix(".stdout")
    err_path = logs.with_suffix(".stderr")
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        peak = 0
        timed_out = threading.Event()
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            try:
                root = psutil.Process(proc.pid)
            except psutil.Error:
                return
            while not done.is_set():
                peak = max(peak, _tree_rss(root))
                if time.perf_counter() - started > timeout:
                    timed_out.set()
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    return
                done.wait(SAMPLE_INTERVAL)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            # Blocking here, rather than polling, stamps the exit time precisely.
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            # Ctrl-C or SIGTERM of the harness: the child has its own session, so the
            # terminal's signal never reached it; take it down before unwinding.
            done.set()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.wait4(proc.pid, 0)
            proc.returncode = -signal.SIGKILL
            raise
        wall = time.perf_counter() - started
        done.set()
        sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    # Whatever the contender left behind in its session must not leak into the next one.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    return Measurement(
        returncode=proc.returncode,
        timed_out=timed_out.is_set(),
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_bytes=max(peak, usage.ru_maxrss * 1024),
        stdout=out_path,
        stderr=err_path,
    )

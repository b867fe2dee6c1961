"""Bundle extraction under generated hostile archives: absolute and climbing names, links,
devices, duplicates and clashes, sizes the data does not back, corrupt compression. Each
archive is either refused with UnsafeArchive or extracted, and nothing is ever written
outside the target directory."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mediakeep.bundles.archive import UnsafeArchive, safe_extract
from tests.fuzz import fuzz

NAMES = [
    "a.txt",
    "dir/b.txt",
    "dir",
    "/etc/evil",
    "../evil",
    "dir/../../evil",
    "./c.txt",
    "dir//d.txt",
    "a.txt/inner",
    "..",
    ".",
    "",
    "dir/",
    "\u00e9\u0301.txt",
    "x" * 300,
    "C:\\evil",
    "dir\\..\\..\\evil",
]
KINDS = ["file", "dir", "symlink", "hardlink", "fifo", "chardev"]
LINK_TARGETS = ["/etc/passwd", "../../outside", "a.txt", "dir", "../evil", "."]


@dataclass(frozen=True)
class Member:
    name: str
    kind: str
    data: bytes
    declared: int | None  # a size the header claims, whatever data follows
    link: str
    mode: int


members = st.builds(
    Member,
    name=st.one_of(st.sampled_from(NAMES), st.text(min_size=1, max_size=20)),
    kind=st.sampled_from(KINDS),
    data=st.binary(max_size=64),
    declared=st.one_of(st.none(), st.sampled_from([0, 1, 10**6, 8**11 - 1, 2**40])),
    link=st.sampled_from(LINK_TARGETS),
    mode=st.sampled_from([0o644, 0o755, 0o4755, 0o000, 0o777]),
)


def make_archive(items: list[Member], compression: str, truncate: int | None) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for m in items:
            info = tarfile.TarInfo(m.name)
            info.mode = m.mode
            body: io.BytesIO | None = None
            if m.kind == "file":
                info.size = len(m.data)
                body = io.BytesIO(m.data)
            elif m.kind == "dir":
                info.type = tarfile.DIRTYPE
            elif m.kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, m.link
            elif m.kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, m.link
            elif m.kind == "fifo":
                info.type = tarfile.FIFOTYPE
            else:
                info.type = tarfile.CHRTYPE
            tar.addfile(info, body)
    data = _lie_about_sizes(raw.getvalue(), items)
    if truncate is not None:
        data = data[: max(0, len(data) - truncate)]
    if compression == "gz":
        data = gzip.compress(data, mtime=0)
    return data


def _lie_about_sizes(data: bytes, items: list[Member]) -> bytes:
    """Put each member's declared size into its header (with a fixed-up checksum)."""
    buf = bytearray(data)
    offset = 0
    for m in items:
        if offset + 512 > len(buf):
            break
        header = buf[offset : offset + 512]
        if header[156:157] == b"L":  # GNU long name record precedes the real header
            size = int(header[124:136].rstrip(b"\0 ") or b"0", 8)
            offset += 512 + (size + 511) // 512 * 512
            header = buf[offset : offset + 512]
        real = int(header[124:136].rstrip(b"\0 ") or b"0", 8)
        if m.declared is not None and m.kind == "file" and m.declared < 8**11:
            header[124:136] = f"{m.declared:011o}\0".encode()
            header[148:156] = b" " * 8
            header[148:156] = f"{sum(header):06o}\0 ".encode()
            buf[offset : offset + 512] = header
        offset += 512 + (real + 511) // 512 * 512
    return bytes(buf)


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@fuzz
@given(
    st.lists(members, min_size=1, max_size=6),
    st.sampled_from(["gz", "none"]),
    st.one_of(st.none(), st.integers(1, 600)),
)
@example([Member("a.txt", "file", b"x", 10**6, "", 0o644)], "gz", None)
@example(
    [Member("a.txt", "file", b"x", None, "", 0o644), Member("a.txt/b", "file", b"y", None, "", 0)],
    "gz",
    None,
)
@example([Member("a.txt", "file", b"x" * 64, None, "", 0o644)], "gz", 600)
@example([Member("x" * 300, "file", b"x", None, "", 0o644)], "gz", None)  # was ENAMETOOLONG
def test_extraction_refuses_or_stays_inside(
    items: list[Member], compression: str, truncate: int | None
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # The target sits two levels down so climbing names have somewhere to land.
        dest = root / "cache" / "bundle"
        archive = root / "bundle.tar.gz"
        archive.write_bytes(make_archive(items, compression, truncate))
        before = snapshot(root)
        with contextlib.suppress(UnsafeArchive):
            safe_extract(archive, dest)
        outside = snapshot(root) - before
        inside = {p for p in outside if p == "cache/bundle" or p.startswith("cache/bundle/")}
        assert outside - inside <= {"cache"}, outside - inside
        for path in dest.rglob("*") if dest.exists() else []:
            assert not path.is_symlink()
            assert path.is_file() or path.is_dir()
            assert path.resolve().is_relative_to(dest.resolve())


@fuzz
@given(st.binary(max_size=300))
@example(b"\x1f\x8b\x08\x00" + b"\x00" * 20)
def test_garbage_is_refused_with_the_typed_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "bundle.tar.gz"
        archive.write_bytes(data)
        dest = Path(tmp) / "out"
        with contextlib.suppress(UnsafeArchive):
            safe_extract(archive, dest)
        assert set(os.listdir(tmp)) <= {"bundle.tar.gz", "out"}


def test_a_climbing_name_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar.gz"
    ok = Member("a.txt", "file", b"a", None, "", 0o644)
    archive.write_bytes(
        make_archive([ok, Member("../x", "file", b"", None, "", 0o644)], "gz", None)
    )
    with pytest.raises(UnsafeArchive):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()

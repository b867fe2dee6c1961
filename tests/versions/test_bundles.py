"""Bundles: many files, one versioned archive, safe to open."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import time
from pathlib import Path

import pytest

from mediakeep import MediaKeep
from mediakeep.bundles.archive import UnsafeArchive, safe_extract
from mediakeep.bundles.cache import BundleCache
from mediakeep.errors import InvalidInput, NotFound

FILES = {"main.py": b"print('hi')\n", "README.md": b"# demo\n", "pkg/util.py": b"X = 1\n"}


async def test_save_list_open_and_read_one_file(keep: MediaKeep, owner: str) -> None:
    v1 = await keep.save_bundle(owner, "proj", FILES)
    v2 = await keep.save_bundle(owner, "proj", {**FILES, "main.py": b"print('v2')\n"})
    assert (v1.version, v2.version) == (1, 2)
    assert {f.path for f in v1.files} == set(FILES)
    entry = next(f for f in v1.files if f.path == "main.py")
    assert entry.sha256 == hashlib.sha256(FILES["main.py"]).hexdigest()
    assert entry.size == len(FILES["main.py"])

    listed = await keep.list_bundles(owner=owner, collection="proj")
    assert [b.version for b in listed] == [2, 1]

    root = await keep.open_bundle(v2.id, owner=owner)
    assert (root / "main.py").read_bytes() == b"print('v2')\n"
    assert (root / "pkg" / "util.py").read_bytes() == FILES["pkg/util.py"]
    assert await keep.open_bundle(v2.id, owner=owner) == root  # cached
    one = await keep.bundle_file(v1.id, "README.md", owner=owner)
    assert one.read_bytes() == FILES["README.md"]
    with pytest.raises(NotFound):
        await keep.bundle_file(v1.id, "nope.txt", owner=owner)
    with pytest.raises(InvalidInput):
        await keep.bundle_file(v1.id, "../README.md", owner=owner)
    # Other owners cannot see it.
    with pytest.raises(NotFound):
        await keep.get_bundle(v1.id, owner=owner + "x")
    assert (await keep.bundle_url(v1.id, owner=owner)).startswith("http")


async def test_explicit_versions_and_bad_paths(keep: MediaKeep, owner: str) -> None:
    b = await keep.save_bundle(owner, "p", {"a.txt": b"a"}, version=7)
    assert b.version == 7
    with pytest.raises(Exception, match="exists"):
        await keep.save_bundle(owner, "p", {"a.txt": b"b"}, version=7)
    for bad in ("../x", "/etc/passwd", "a/../../b", ""):
        with pytest.raises(InvalidInput):
            await keep.save_bundle(owner, "p", {bad: b"x"})


def malicious(tmp: Path, kind: str) -> Path:
    path = tmp / f"{kind}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        if kind == "dotdot":
            info = tarfile.TarInfo("../../etc/passwd-mk")
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
        elif kind == "absolute":
            info = tarfile.TarInfo("/tmp/mk-absolute-evil")
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
        else:
            link = tarfile.TarInfo("escape")
            link.type = tarfile.SYMTYPE
            link.linkname = "/etc"
            tar.addfile(link)
            info = tarfile.TarInfo("escape/passwd-mk")
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
    return path


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_malicious_archives_are_refused(tmp_path: Path, kind: str) -> None:
    dest = tmp_path / "cache" / "b1"
    with pytest.raises(UnsafeArchive):
        safe_extract(malicious(tmp_path, kind), dest)
    assert not dest.exists() or list(dest.rglob("*")) == []
    assert not Path("/etc/passwd-mk").exists()
    assert not Path("/tmp/mk-absolute-evil").exists()


async def test_cache_evicts_unused_bundles(tmp_path: Path) -> None:
    cache = BundleCache(tmp_path / "c", ttl=60)
    src = tmp_path / "ok.tar.gz"
    with tarfile.open(src, "w:gz") as tar:
        info = tarfile.TarInfo("f.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))

    async def download(dest: Path) -> None:
        dest.write_bytes(src.read_bytes())

    opened = await cache.open("b1", download)
    assert (opened / "f.txt").read_text() == "hi"
    old = time.time() - 3600
    os.utime(opened, (old, old))
    assert cache.evict() == 1
    assert not opened.exists()


def test_cli_bundle_put_and_get(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    src = tmp_path / "proj"
    (src / "sub").mkdir(parents=True)
    (src / "main.py").write_text("print(1)\n")
    (src / "sub" / "data.txt").write_text("x\n")
    env = {**os.environ, "MEDIAKEEP_DATA_DIR": str(tmp_path / "data")}
    cli = [sys.executable, "-m", "mediakeep.cli"]
    put = subprocess.run(
        [*cli, "bundle", "put", str(src), "--owner", "o1", "--collection", "c", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert put.returncode == 0, put.stderr
    info = json.loads(put.stdout)
    assert info["version"] == 1 and {f["path"] for f in info["files"]} == {
        "main.py",
        "sub/data.txt",
    }
    dest = tmp_path / "out"
    got = subprocess.run(
        [*cli, "bundle", "get", info["id"], str(dest), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert got.returncode == 0, got.stderr
    assert (dest / "sub" / "data.txt").read_text() == "x\n"

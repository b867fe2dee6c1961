"""Collections, slots and bundles over real HTTP, on sqlite+local and postgres+s3."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from mediakeep import MediaKeep
from tests.api.conftest import API_BACKENDS, Api, ApiFactory, new_owner, plain
from tests.conftest import Backend
from tests.core.helpers import png_bytes

LOCAL, S3 = API_BACKENDS


def upload(c: httpx.Client, data: bytes, **params: str) -> dict[str, Any]:
    r = c.post("/v1/uploads", params=params, files={"file": ("p.png", data)})
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def served(c: httpx.Client, path: str) -> httpx.Response:
    """What a permanent link serves: streamed (local store) or behind a redirect."""
    r = c.get(path)
    if r.status_code == 302:
        with plain() as h:
            return h.get(r.headers["location"])
    return r


# -- collections -----------------------------------------------------------------------


def test_collections_list_and_delete_with_dry_run(api: Api) -> None:
    c = api.client(new_owner())
    a1 = upload(c, png_bytes(1), collection="a")
    a2 = upload(c, png_bytes(2), collection="a", slot="s")
    upload(c, png_bytes(3), collection="b")
    cols = {x["collection"]: x for x in c.get("/v1/collections").json()["items"]}
    assert set(cols) == {"a", "b"}
    assert (cols["a"]["assets"], cols["a"]["slots"]) == (2, 1)
    assert cols["a"]["bytes"] == a1["size"] + a2["size"]

    plan = c.delete("/v1/collections/a", params={"dry_run": "true"})
    assert plan.status_code == 200, plan.text
    assert plan.json()["dry_run"] is True and plan.json()["count"] == 2
    assert {x["id"] for x in plan.json()["assets"]} == {a1["id"], a2["id"]}
    assert c.get(f"/v1/assets/{a1['id']}").status_code == 200  # nothing went

    gone = c.delete("/v1/collections/a").json()
    assert gone["dry_run"] is False and gone["bytes"] == cols["a"]["bytes"]
    assert c.get(f"/v1/assets/{a1['id']}").status_code == 404
    assert served(c, f"/v1/assets/{a2['id']}/content").status_code == 404
    assert [x["collection"] for x in c.get("/v1/collections").json()["items"]] == ["b"]
    assert c.delete("/v1/collections/a").status_code == 404
    assert c.get("/v1/collections/a/slots").status_code == 404
    assert c.get("/v1/collections/a/slots/s").status_code == 404
    # Another owner sees none of it.
    other = api.client(new_owner())
    assert other.get("/v1/collections").json()["items"] == []
    assert other.delete("/v1/collections/b").status_code == 404


# -- slots -----------------------------------------------------------------------------


def test_slot_history_rollback_and_permanent_link(api: Api) -> None:
    owner = new_owner()
    c = api.client(owner)
    ids = [upload(c, png_bytes(10 + i), collection="p42", slot="scene_3")["id"] for i in range(3)]
    upload(c, png_bytes(20), collection="p42", slot="scene_4")
    base = "/v1/collections/p42/slots"

    listed = c.get(base).json()["items"]
    assert [(s["slot"], s["current_version"], s["latest_version"]) for s in listed] == [
        ("scene_3", 3, 3),
        ("scene_4", 1, 1),
    ]
    assert listed[0]["current"]["id"] == ids[2] and listed[0]["current"]["variants"]
    one = c.get(f"{base}/scene_3").json()
    assert one["current"]["id"] == ids[2] and one["current"]["version"] == 3
    assert one["content_url"].endswith(f"{base}/scene_3/content")
    history = c.get(f"{base}/scene_3/versions").json()
    assert [a["version"] for a in history["items"]] == [3, 2, 1]
    assert [a["id"] for a in history["items"]] == ids[::-1]

    link = f"{base}/scene_3/content"
    first = c.get(link)
    assert "no-cache" in first.headers["cache-control"]
    assert served(c, link).content == png_bytes(12)

    back = c.post(f"{base}/scene_3/current", json={"version": 1})
    assert back.status_code == 200, back.text
    assert back.json()["current_version"] == 1 and back.json()["current"]["id"] == ids[0]
    # The permanent link follows at once: no cached redirect, no cached bytes.
    assert served(c, link).content == png_bytes(10)
    assert c.get(f"{base}/scene_3").json()["current_version"] == 1
    assert c.get(f"{base}/scene_3/versions").json()["current_version"] == 1
    forward = c.post(f"{base}/scene_3/current", json={"version": 3})
    assert forward.json()["current"]["id"] == ids[2]
    assert served(c, link).content == png_bytes(12)

    assert c.post(f"{base}/scene_3/current", json={"version": 9}).status_code == 404
    assert c.post(f"{base}/scene_3/current", json={"version": 0}).status_code == 422
    assert c.get(f"{base}/nope").status_code == 404
    assert c.get(f"{base}/nope/versions").status_code == 404
    assert c.get(f"{base}/nope/content").status_code == 404
    assert c.get("/v1/collections/nope/slots").status_code == 404
    other = api.client(new_owner())
    assert other.get(f"{base}/scene_3").status_code == 404
    assert other.get(link).status_code == 404
    assert other.post(f"{base}/scene_3/current", json={"version": 1}).status_code == 404


def test_local_slot_link_revalidates_with_the_current_etag(api_for: ApiFactory) -> None:
    api = api_for(LOCAL)
    c = api.client(new_owner())
    v1 = upload(c, png_bytes(30), collection="c", slot="s")
    v2 = upload(c, png_bytes(31), collection="c", slot="s")
    link = "/v1/collections/c/slots/s/content"
    r = c.get(link)
    assert r.status_code == 200 and r.headers["etag"] == f'"{v2["sha256"]}"'
    assert c.get(link, headers={"If-None-Match": r.headers["etag"]}).status_code == 304
    c.post("/v1/collections/c/slots/s/current", json={"version": 1})
    after = c.get(link, headers={"If-None-Match": r.headers["etag"]})
    assert after.status_code == 200 and after.headers["etag"] == f'"{v1["sha256"]}"'
    assert after.content == png_bytes(30)


async def test_twenty_concurrent_writers_into_one_slot(api_for: ApiFactory) -> None:
    api = api_for(S3)  # PostgreSQL
    owner = new_owner()

    def write(i: int) -> int:
        with httpx.Client(base_url=api.url, timeout=60, trust_env=False) as h:
            r = h.post(
                "/v1/uploads",
                params={"collection": "race", "slot": "hot"},
                headers={"Authorization": f"Bearer {api.token(owner)}"},
                files={"file": (f"{i}.png", png_bytes(500 + i))},
            )
            assert r.status_code == 201, r.text
            return i

    with ThreadPoolExecutor(max_workers=20) as pool:
        assert sorted(pool.map(write, range(20))) == list(range(20))
    c = api.client(owner)
    history = c.get("/v1/collections/race/slots/hot/versions").json()
    assert [a["version"] for a in history["items"]] == list(range(20, 0, -1))
    assert len({a["id"] for a in history["items"]}) == 20
    slot = c.get("/v1/collections/race/slots/hot").json()
    assert (slot["current_version"], slot["latest_version"]) == (20, 20)
    async with MediaKeep(api.settings) as keep, keep.repo.sessions() as s:
        current = (
            await s.execute(
                text("SELECT count(*) FROM current_assets WHERE owner = :o AND slot = 'hot'"),
                {"o": owner},
            )
        ).scalar_one()
    assert current == 1


# -- bundles ---------------------------------------------------------------------------

FILES = {"main.py": "print('hi')\n", "README.md": "# demo ✓\n", "pkg/util.py": "X = 1\n"}


def archive_files(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


@pytest.mark.parametrize("backend", API_BACKENDS, ids=lambda b: b.id)
def test_bundles_json_and_multipart(backend: Backend, api_for: ApiFactory) -> None:
    api = api_for(backend)
    c = api.client(new_owner())
    v1 = c.post("/v1/bundles", json={"collection": "proj", "files": FILES})
    assert v1.status_code == 201, v1.text
    b1 = v1.json()
    assert (b1["version"], b1["name"], b1["file_count"]) == (1, "bundle", 3)
    manifest = {f["path"]: f for f in b1["files"]}
    assert (
        manifest["README.md"]["sha256"] == hashlib.sha256(FILES["README.md"].encode()).hexdigest()
    )

    blob = bytes(range(256)) * 4
    v2 = c.post(
        "/v1/bundles",
        json={
            "collection": "proj",
            "encoding": "base64",
            "files": {"frames/0.bin": base64.b64encode(blob).decode(), "a.txt": "YQ=="},
        },
    ).json()
    assert v2["version"] == 2 and v2["total_size"] == len(blob) + 1

    v3 = c.post(
        "/v1/bundles",
        files=[
            ("files", ("src/main.py", b"print('v3')\n")),
            ("files", ("img/pixel.png", png_bytes(5))),
        ],
        data={"collection": "proj", "name": "bundle", "metadata": '{"run": 7}'},
    )
    assert v3.status_code == 201, v3.text
    b3 = v3.json()
    assert b3["version"] == 3 and {f["path"] for f in b3["files"]} == {
        "src/main.py",
        "img/pixel.png",
    }

    listed = c.get("/v1/bundles", params={"collection": "proj"}).json()["items"]
    assert [b["version"] for b in listed] == [3, 2, 1]
    assert c.get(f"/v1/bundles/{b1['id']}").json()["files"] == b1["files"]

    archive = served(c, f"/v1/bundles/{b1['id']}/download")
    assert archive.status_code == 200
    assert archive_files(archive.content) == {k: v.encode() for k, v in FILES.items()}

    one = c.get(f"/v1/bundles/{b1['id']}/files/README.md")
    assert one.status_code == 200 and one.content == FILES["README.md"].encode()
    assert "sandbox" in one.headers["content-security-policy"]
    assert c.get(f"/v1/bundles/{v2['id']}/files/frames/0.bin").content == blob
    assert c.get(f"/v1/bundles/{b3['id']}/files/img/pixel.png").content == png_bytes(5)
    assert c.get(f"/v1/bundles/{b1['id']}/files/nope.txt").status_code == 404

    other = api.client(new_owner())
    for path in ("", "/download", "/files/main.py"):
        assert other.get(f"/v1/bundles/{b1['id']}{path}").status_code == 404
    assert other.get("/v1/bundles", params={"collection": "proj"}).json()["items"] == []


def test_bundle_refusals(api: Api) -> None:
    c = api.client(new_owner())
    ok = c.post("/v1/bundles", json={"collection": "p", "version": 7, "files": {"a": "1"}})
    assert ok.status_code == 201 and ok.json()["version"] == 7

    def code(r: httpx.Response) -> tuple[int, str]:
        return r.status_code, r.json()["code"]

    again = c.post("/v1/bundles", json={"collection": "p", "version": 7, "files": {"a": "2"}})
    assert code(again) == (409, "bundle_version_exists")
    for bad in ("../x", "/etc/passwd", "a/../../b", "a\\b"):
        r = c.post("/v1/bundles", json={"collection": "p", "files": {bad: "x"}})
        assert r.status_code == 400, (bad, r.text)
    not_b64 = c.post(
        "/v1/bundles", json={"collection": "p", "encoding": "base64", "files": {"a": "!!"}}
    )
    assert code(not_b64) == (400, "invalid_input")
    assert code(c.post("/v1/bundles", json={"collection": "p", "files": {}})) == (
        422,
        "validation_error",
    )
    assert code(c.post("/v1/bundles", json={"files": {"a": "b"}})) == (422, "validation_error")
    no_collection = c.post("/v1/bundles", files=[("files", ("a.txt", b"a"))])
    assert code(no_collection) == (400, "invalid_input")
    twice = c.post(
        "/v1/bundles",
        files=[("files", ("a.txt", b"a")), ("files", ("a.txt", b"b"))],
        data={"collection": "p"},
    )
    assert code(twice) == (400, "invalid_input")
    xml = c.post("/v1/bundles", content=b"<x/>", headers={"content-type": "text/xml"})
    assert xml.status_code == 415
    assert c.get(f"/v1/bundles/{ok.json()['id']}/files/..%2Fx").status_code in (400, 404)
    assert (
        api.client().post("/v1/bundles", json={"collection": "p", "files": {"a": "1"}}).status_code
        == 401
    )

"""Every /v1 route's happy path, and the tenancy rules, over real HTTP on
sqlite+local and postgres+s3 (SeaweedFS)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx

from tests.api.conftest import Api, new_owner, plain
from tests.core.helpers import png_bytes
from tests.support.provider import Provider, render_image


def ingest(c: httpx.Client, *urls: str, **kw: object) -> httpx.Response:
    return c.post("/v1/ingest", json={"urls": list(urls), **kw})


def upload(c: httpx.Client, data: bytes, name: str = "pic.png", **params: str) -> httpx.Response:
    return c.post("/v1/uploads", params=params, files={"file": (name, data, "image/png")})


def fetch(url: str) -> tuple[int, bytes]:
    with plain() as h:
        r = h.get(url, follow_redirects=True)
        return r.status_code, r.content


def test_ingest_reports_each_url_and_207_on_partial_failure(api: Api, provider: Provider) -> None:
    c = api.client(new_owner())
    good, bad = provider.url("/img/api-1.png"), provider.url("/html-as-png")
    r = ingest(c, good, bad, collection="gen", slot="hero", metadata={"prompt": "a cat"})
    assert r.status_code == 207, r.text
    body = r.json()
    assert [i["source"] for i in body["results"]] == [good, bad]
    ok, failed = body["results"]
    assert ok["status"] == "stored" and ok["content_type"] == "image/png"
    assert ok["size"] == len(render_image("api-1"))
    assert set(ok) >= {"source", "id", "status", "key", "size", "sha256", "content_type", "url"}
    assert ok["content_url"].endswith(f"/v1/assets/{ok['id']}/content")
    assert failed["status"] == "failed"
    assert failed["error"] == {
        "code": "unsupported_media_type",
        "message": failed["error"]["message"],
        "status": 415,
    }
    assert (body["stored"], body["failed"]) == (1, 1)
    assert fetch(ok["url"]) == (200, render_image("api-1"))

    again = ingest(c, good, collection="gen")
    assert again.status_code == 200
    assert again.json()["results"][0]["status"] == "deduplicated"


def test_every_asset_route(api: Api, provider: Provider) -> None:
    owner = new_owner()
    c = api.client(owner)
    up = upload(c, png_bytes(1), collection="uploads")
    assert up.status_code == 201, up.text
    uploaded = up.json()
    assert uploaded["status"] == "stored" and uploaded["source"] == "pic.png"
    got = ingest(
        c, provider.url("/img/api-2.png"), provider.url("/img/api-3.jpg"), collection="gen"
    )
    assert got.status_code == 200, got.text
    ids = [uploaded["id"]] + [i["id"] for i in got.json()["results"]]

    # list: filters, and a cursor that walks every page without dropping anything
    page = c.get("/v1/assets", params={"collection": "gen"}).json()
    assert {a["id"] for a in page["items"]} == set(ids[1:]) and page["next_cursor"] is None
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 1}
        if cursor:
            params["cursor"] = cursor
        p = c.get("/v1/assets", params=params).json()
        seen += [a["id"] for a in p["items"]]
        cursor = p["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))
    assert len(c.get("/v1/assets", params={"kind": "video"}).json()["items"]) == 0
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert c.get("/v1/assets", params={"created_after": later}).json()["items"] == []
    assert len(c.get("/v1/assets", params={"created_before": later}).json()["items"]) == 3

    # get
    a = c.get(f"/v1/assets/{ids[1]}").json()
    assert a["owner"] == owner and a["collection"] == "gen" and a["media_kind"] == "image"
    assert a["width"] == 64 and a["visibility"] == "private"

    # url + batch signed urls
    u = c.get(f"/v1/assets/{ids[1]}/url", params={"expires_in": 120}).json()
    assert u["expires_at"] and fetch(u["url"]) == (200, render_image("api-2"))
    batch = c.post("/v1/signed-urls", json={"ids": ids, "expires_in": 60})
    assert batch.status_code == 200
    assert [i["id"] for i in batch.json()["items"]] == ids
    assert all(i["status"] == 200 and i["url"] for i in batch.json()["items"])

    # the permanent link
    assert fetch_content(c, ids[0]) == png_bytes(1)

    # visibility, both ways
    pub = c.put(f"/v1/assets/{ids[1]}/visibility", json={"public": True})
    assert pub.status_code == 200, pub.text
    assert pub.json()["asset"]["public"] is True and pub.json()["expires_at"] is None
    assert "?" not in pub.json()["url"]
    assert fetch(pub.json()["url"]) == (200, render_image("api-2"))
    back = c.put(f"/v1/assets/{ids[1]}/visibility", json={"public": False}).json()
    assert back["asset"]["public"] is False and fetch(back["url"])[0] == 200
    assert fetch_content(c, ids[1]) == render_image("api-2")

    # stats, with dedup savings
    assert upload(c, png_bytes(1), collection="again").json()["status"] == "deduplicated"
    st = c.get("/v1/storage/stats").json()
    one = len(png_bytes(1))
    assert st["assets"] == 4 and st["objects"] == 3
    assert st["dedup_savings_bytes"] == one
    assert st["bytes"] == st["stored_bytes"] + one
    assert st["by_kind"]["image"]["assets"] == 4
    assert st["by_collection"]["gen"]["assets"] == 2

    # delete
    assert c.delete(f"/v1/assets/{ids[2]}").status_code == 204
    assert c.get(f"/v1/assets/{ids[2]}").status_code == 404
    assert c.delete(f"/v1/assets/{ids[2]}").status_code == 404


def fetch_content(c: httpx.Client, asset_id: str) -> bytes:
    r = c.get(f"/v1/assets/{asset_id}/content")
    if r.status_code == 302:
        status, body = fetch(r.headers["location"])
        assert status == 200
        return body
    assert r.status_code == 200, r.text
    return r.content


def test_ops_routes(api: Api) -> None:
    with plain() as h:
        assert h.get(api.url + "/healthz").json() == {"status": "ok"}
        assert h.get(api.url + "/readyz").json() == {"status": "ready"}
        docs = h.get(api.url + "/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_another_owners_assets_are_404_everywhere(api: Api, provider: Provider) -> None:
    alice, bob = api.client(new_owner()), api.client(new_owner())
    theirs = ingest(alice, provider.url("/img/api-4.png")).json()["results"][0]["id"]
    mine = ingest(bob, provider.url("/img/api-5.png")).json()["results"][0]["id"]
    nobody = str(uuid.uuid4())

    def same_as_missing(method: str, path: str, **kw: object) -> None:
        foreign = bob.request(method, path.format(theirs), **kw)  # type: ignore[arg-type]
        missing = bob.request(method, path.format(nobody), **kw)  # type: ignore[arg-type]
        assert foreign.status_code == 404, (method, path, foreign.text)
        assert foreign.headers["content-type"] == "application/problem+json"
        # Nothing distinguishes "not yours" from "does not exist".
        assert foreign.json() == missing.json()
        assert theirs not in foreign.text

    same_as_missing("GET", "/v1/assets/{}")
    same_as_missing("GET", "/v1/assets/{}/url")
    same_as_missing("GET", "/v1/assets/{}/content")
    same_as_missing("PUT", "/v1/assets/{}/visibility", json={"public": True})
    same_as_missing("DELETE", "/v1/assets/{}")
    same_as_missing("POST", "/v1/uploads/{}/complete")

    # A batch with one foreign id among many of the caller's own: only that one is 404.
    own = [mine] + [upload(bob, png_bytes(60 + i), name=f"b{i}.png").json()["id"] for i in range(3)]
    batch = bob.post("/v1/signed-urls", json={"ids": [*own[:2], theirs, *own[2:]]})
    assert batch.status_code == 207
    items = {i["id"]: i for i in batch.json()["items"]}
    assert items[theirs] == {
        "id": theirs,
        "status": 404,
        "url": None,
        "public": None,
        "expires_at": None,
        "error": {"code": "not_found", "message": "no such asset", "status": 404},
    }
    assert all(items[i]["status"] == 200 for i in own)
    assert batch.json()["not_found"] == 1

    assert [a["id"] for a in bob.get("/v1/assets").json()["items"]].count(theirs) == 0
    assert bob.get("/v1/storage/stats").json()["assets"] == 4
    # Alice still has her asset, untouched by Bob's attempts.
    assert alice.get(f"/v1/assets/{theirs}").json()["public"] is False


def test_presigned_upload_of_another_owner_is_404(api: Api) -> None:
    alice, bob = api.client(new_owner()), api.client(new_owner())
    data = png_bytes(70)
    p = alice.post("/v1/uploads/presign", json={"content_type": "image/png", "size": len(data)})
    assert p.status_code == 201
    with plain() as h:
        put = h.request(
            p.json()["method"], p.json()["upload_url"], content=data, headers=p.json()["headers"]
        )
        assert put.status_code in (200, 201), put.text
    assert bob.post(f"/v1/uploads/{p.json()['asset_id']}/complete").status_code == 404
    # Bob's attempt did not consume it: Alice can still complete.
    assert alice.post(f"/v1/uploads/{p.json()['asset_id']}/complete").status_code == 201


def test_signed_urls_take_up_to_a_thousand_ids(api: Api) -> None:
    c = api.client(new_owner())
    mine = upload(c, png_bytes(130)).json()["id"]
    others = [str(uuid.uuid4()) for _ in range(999)]
    r = c.post("/v1/signed-urls", json={"ids": [*others[:500], mine, *others[500:]]})
    assert r.status_code == 207
    body = r.json()
    assert (len(body["items"]), body["found"], body["not_found"]) == (1000, 1, 999)
    assert body["items"][500]["id"] == mine and body["items"][500]["url"]
    too_many = c.post("/v1/signed-urls", json={"ids": [*others, mine, str(uuid.uuid4())]})
    assert (too_many.status_code, too_many.json()["code"]) == (422, "validation_error")

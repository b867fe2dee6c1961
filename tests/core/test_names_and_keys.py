"""Owner, collection and slot names can never steer a write outside their prefix."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mediakeep import MediaKeep
from mediakeep.errors import InvalidName
from mediakeep.pipeline.keys import build_key, check_template, validate_name
from tests.conftest import Backend, make_settings
from tests.core.helpers import png_bytes

HOSTILE = [
    "../x",
    "/etc",
    "a/../../b",
    "..",
    ".",
    "",
    "a/b",
    "a\\b",
    "a\x00b",
    "\uff41dmin",  # fullwidth a: a confusable
    "a" * 129,
    " lead",
    "x\n",
    "..%2f",
    "-rf",
]


@pytest.mark.parametrize("name", HOSTILE)
async def test_hostile_names_are_rejected_and_nothing_written_outside_root(
    tmp_path: Path, request: pytest.FixtureRequest, name: str
) -> None:
    settings = make_settings(Backend("sqlite", "local"), tmp_path, request)
    async with MediaKeep(settings) as keep:
        for field in ("owner", "collection", "slot"):
            kwargs = {"owner": "alice", "collection": "c", "slot": None}
            kwargs[field] = name
            result = await keep.put_bytes(png_bytes(1), **kwargs)  # type: ignore[arg-type]
            assert result.status == "failed"
            assert result.error and result.error["code"] == "invalid_name"
    root = settings.resolved_local_root
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix == ".png"]
    assert all(p.resolve().is_relative_to(root) for p in written)
    assert written == []


def test_default_key_layout() -> None:
    key = build_key(
        "{owner}/{collection}/{asset_id}{suffix}.{ext}",
        owner="alice",
        collection="p1",
        asset_id="abc",
        ext="png",
        kind="image",
    )
    assert key == "alice/p1/abc.png"


def test_templates_must_keep_keys_unique_and_relative() -> None:
    with pytest.raises(ValueError, match="asset_id"):
        check_template("{owner}/{collection}.{ext}")
    with pytest.raises(ValueError, match="relative"):
        check_template("/{owner}/{asset_id}.{ext}")
    with pytest.raises(ValueError, match="unknown"):
        check_template("{owner}/{secret}/{asset_id}")
    assert check_template("{kind}/{owner}/{asset_id}.{ext}")


@given(st.text(max_size=200))
def test_accepted_names_are_single_safe_components(name: str) -> None:
    try:
        validate_name(name, "owner")
    except InvalidName:
        return
    assert "/" not in name and "\\" not in name and ".." not in name
    assert name.isascii() and name.isprintable() and 0 < len(name) <= 128
    assert name not in (".", "..")

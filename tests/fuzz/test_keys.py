"""Key building under generated names and templates: whatever is accepted is a safe,
relative key whose parts give the names back; whatever is refused is an InvalidName."""

from __future__ import annotations

import string
import uuid

from hypothesis import example, given
from hypothesis import strategies as st

from mediakeep.errors import InvalidName
from mediakeep.pipeline.keys import build_key, check_template, validate_name
from tests.fuzz import fuzz

# Names near the edge of the rule: the allowed alphabet, dots, separators and look-alikes.
name_chars = st.sampled_from(
    [
        *(string.ascii_letters + string.digits + "._@+=-"),
        *["/", "\\", "\x00", "\n", " ", "%", ":", "\uff0e", "\u2215", "\u0430", "\xe9"],
    ]
)
names = st.one_of(st.text(name_chars, max_size=140), st.text(max_size=40))
exts = st.sampled_from(["png", "jpg", "webp", "mp4", "bin"])
kinds = st.sampled_from(["image", "video", "audio", "file"])
suffixes = st.sampled_from(["", "-thumb", ".small", "_v2"])


def assert_safe(key: str) -> None:
    assert not key.startswith("/")
    assert "\x00" not in key and "\\" not in key
    assert all(part not in ("", ".", "..") for part in key.split("/"))
    assert len(key) <= 1024


@fuzz
@given(names)
@example("a..b")
@example("..")
@example(".hidden")
@example("a" * 128)
@example("\uff0e\uff0e")
def test_validate_name_accepts_only_single_safe_components(name: str) -> None:
    try:
        assert validate_name(name, "owner") == name
    except InvalidName as exc:
        assert exc.code == "invalid_name"
        return
    assert name.isascii() and name.isprintable() and 1 <= len(name) <= 128
    assert name[0].isalnum()
    assert "/" not in name and "\\" not in name and ".." not in name and " " not in name


@fuzz
@given(names, names, st.one_of(st.none(), names), exts, kinds, suffixes)
def test_default_template_keys_are_safe_and_round_trip(
    owner: str, collection: str, slot: str | None, ext: str, kind: str, suffix: str
) -> None:
    asset_id = str(uuid.uuid4())
    try:
        key = build_key(
            "{owner}/{collection}/{asset_id}{suffix}.{ext}",
            owner=owner,
            collection=collection,
            slot=slot,
            asset_id=asset_id,
            ext=ext,
            kind=kind,
            suffix=suffix,
        )
    except InvalidName:
        return
    assert_safe(key)
    assert key.split("/") == [owner, collection, f"{asset_id}{suffix}.{ext}"]


# Templates from the allowed fields, separators and literal noise, including format specs
# that could pad a value with separators.
template_parts = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "{owner}",
                "{collection}",
                "{slot}",
                "{asset_id}",
                "{suffix}",
                "{ext}",
                "{kind}",
                "{owner:/>12}",
                "{owner:.<8}",
                "{collection!r}",
            ]
        ),
        st.text(st.sampled_from(list("/.-_x\\\x00")), min_size=1, max_size=3),
    ),
    min_size=1,
    max_size=8,
)


@fuzz
@given(template_parts, names, names, st.one_of(st.none(), names), exts, kinds, suffixes)
@example(["{owner}", "/", "{asset_id}", "\x00"], "alice", "c", None, "png", "image", "")
@example(["{owner}", "\\", "..", "\\", "{asset_id}"], "alice", "c", None, "png", "image", "")
def test_accepted_templates_only_ever_build_safe_keys(
    parts: list[str],
    owner: str,
    collection: str,
    slot: str | None,
    ext: str,
    kind: str,
    suffix: str,
) -> None:
    template = "".join(parts)
    try:
        check_template(template)
    except ValueError:
        return
    try:
        key = build_key(
            template,
            owner=owner,
            collection=collection,
            slot=slot,
            asset_id=str(uuid.uuid4()),
            ext=ext,
            kind=kind,
            suffix=suffix,
        )
    except InvalidName:
        return
    assert_safe(key)

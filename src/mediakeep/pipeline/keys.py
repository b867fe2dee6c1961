"""Object keys: built from a template whose every component is validated first."""

from __future__ import annotations

import re
import string

from ..errors import InvalidName

# ASCII only: keeps keys portable across stores and rules out confusables, separators,
# control characters and NULs by construction. "@", "+" and "=" admit e-mail-like owners.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+=-]{0,127}")
_ALLOWED_FIELDS = frozenset({"owner", "collection", "slot", "asset_id", "suffix", "ext", "kind"})


def validate_name(value: str, what: str) -> str:
    """Return ``value`` if it is a safe single path component, else raise InvalidName."""
    if not isinstance(value, str) or not _NAME.fullmatch(value) or ".." in value:
        raise InvalidName(
            f"{what} must be 1-128 characters of A-Z a-z 0-9 . _ @ + = - "
            f"starting with a letter or digit, without '..'",
            field=what,
        )
    return value


def check_template(template: str) -> str:
    fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    unknown = fields - _ALLOWED_FIELDS
    if unknown:
        raise ValueError(f"unknown key template fields: {sorted(unknown)}")
    if "asset_id" not in fields:
        # Without the asset id two assets could share a key and one would overwrite the other.
        raise ValueError("the key template must contain {asset_id}")
    if template.startswith("/"):
        raise ValueError("the key template must be relative")
    if "\\" in template or not template.isprintable():
        # A NUL ends a path on local disk; a backslash is a separator on some stores.
        raise ValueError("the key template must be printable, without backslashes")
    return template


def build_key(
    template: str,
    *,
    owner: str,
    collection: str,
    asset_id: str,
    ext: str,
    kind: str,
    slot: str | None = None,
    suffix: str = "",
) -> str:
    key = template.format(
        owner=validate_name(owner, "owner"),
        collection=validate_name(collection, "collection"),
        slot=validate_name(slot, "slot") if slot else "_",
        asset_id=asset_id,
        suffix=suffix,
        ext=ext,
        kind=kind,
    )
    parts = key.split("/")
    unsafe = "\x00" in key or "\\" in key or any(p in ("", ".", "..") for p in parts)
    if unsafe or len(key) > 1024:
        raise InvalidName("the key template produced an unsafe key", field="key")
    return key

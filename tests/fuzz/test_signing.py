"""Signed URLs under generated input: what is signed verifies until it expires; any change
to the method, path, expiry or signature fails; and no input, however malformed (the
service hands query parameters straight in), raises anything but the typed errors."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from mediakeep.errors import ExpiredSignature, InvalidSignature
from mediakeep.signing import UrlSigner
from tests.fuzz import fuzz

SIGNER = UrlSigner("fuzz-signing-secret")
NOW = 1_800_000_000

methods = st.sampled_from(["GET", "PUT", "HEAD"])
paths = st.text(min_size=1, max_size=80)
expiries = st.integers(NOW, NOW + 10**9)


def signed(method: str, path: str, expires: int) -> tuple[str, str]:
    query = parse_qs(SIGNER.sign(method, path, expires))
    return query["exp"][0], query["sig"][0]


@fuzz
@given(methods, paths, expiries)
def test_what_is_signed_verifies(method: str, path: str, expires: int) -> None:
    exp, sig = signed(method, path, expires)
    SIGNER.verify(method, path, exp, sig, now=NOW)
    with pytest.raises(ExpiredSignature):
        SIGNER.verify(method, path, exp, sig, now=expires + 1)


@fuzz
@given(methods, paths, expiries, methods, paths, expiries)
def test_any_other_method_path_or_expiry_fails(
    method: str, path: str, expires: int, method2: str, path2: str, expires2: int
) -> None:
    assume((method, path, expires) != (method2, path2, expires2))
    _, sig = signed(method, path, expires)
    with pytest.raises(InvalidSignature):
        SIGNER.verify(method2, path2, str(expires2), sig, now=NOW)


@fuzz
@given(methods, paths, expiries, st.data())
def test_any_change_to_the_signature_fails(
    method: str, path: str, expires: int, data: st.DataObject
) -> None:
    exp, sig = signed(method, path, expires)
    other = data.draw(
        st.one_of(
            st.text(max_size=60),
            # One character changed, dropped or added: the near misses.
            st.integers(0, len(sig) - 1).flatmap(
                lambda i: st.sampled_from(
                    [sig[:i] + c + sig[i + 1 :] for c in "A_-é0="]
                    + [sig[:i] + sig[i + 1 :], sig + "=", sig.upper()]
                )
            ),
        )
    )
    assume(other != sig)
    with pytest.raises(InvalidSignature):
        SIGNER.verify(method, path, exp, other, now=NOW)


garbage = st.one_of(st.none(), st.text(max_size=50), st.sampled_from(["", "0", "-1", "1e9"]))


@fuzz
@given(methods, paths, garbage, garbage)
@example("GET", "/v1/files/b/k", "1", "\xe9")  # non-ASCII signature: was a TypeError
@example("GET", "/v1/files/b/k", "\u00b2", "x")  # a digit int() refuses: was a ValueError
@example("GET", "/v1/files/b/k", "\u0661" * 3, "x")
def test_garbage_only_ever_raises_typed_errors(
    method: str, path: str, exp: str | None, sig: str | None
) -> None:
    with pytest.raises((InvalidSignature, ExpiredSignature)):
        SIGNER.verify(method, path, exp, sig, now=NOW)

"""Who is calling: HS256 bearer tokens (compatible with Supabase Auth) and API keys.

A token's ``sub`` is the owner it acts for; ``role: service_role`` may act for any owner.
API keys are configured as ``owner:sha256hex`` entries, so only their hashes are at rest.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .errors import (
    InvalidApiKey,
    InvalidName,
    InvalidToken,
    OwnerNotAllowed,
    OwnerRequired,
    TokenExpired,
)
from .pipeline.keys import validate_name

ALGORITHM = "HS256"
SERVICE_ROLE = "service_role"
# What Supabase puts in its users' access tokens; our own tokens say the same.
USER_ROLE = "authenticated"
USER_AUDIENCE = "authenticated"
API_KEY_PREFIX = "mk_"
VERIFIED_CACHE_SIZE = 10_000
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``owner`` is None only for a service-role token without
    ``sub``, which must name the owner it acts for on every request."""

    owner: str | None
    service: bool
    via: Literal["jwt", "api_key"]

    def acting_for(self, requested: str | None) -> str:
        """The owner a request acts for: the caller's own, or (service role only) the
        one it names."""
        if requested is None:
            if self.owner is None:
                raise OwnerRequired("a service-role caller must say which owner it acts for")
            return self.owner
        validate_name(requested, "owner")
        if self.service or requested == self.owner:
            return requested
        raise OwnerNotAllowed("only the service role may act for another owner")


def mint_token(
    secret: str,
    owner: str | None,
    *,
    expires_in: int = 3600,
    role: str = USER_ROLE,
    audience: str | None = USER_AUDIENCE,
    now: float | None = None,
) -> str:
    """An access token shaped like Supabase's, signed with ``secret``."""
    if owner is None and role != SERVICE_ROLE:
        raise OwnerRequired("a token needs an owner")
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": "mediakeep",
        "role": role,
        "iat": issued,
        "exp": issued + expires_in,
    }
    if owner is not None:
        claims["sub"] = validate_name(owner, "owner")
    if audience:
        claims["aud"] = audience
    import jwt  # deferred: PyJWT pulls in cryptography (~0.1 s) that ingest never needs

    return jwt.encode(claims, secret, algorithm=ALGORITHM)


class TokenVerifier:
    def __init__(self, secret: str | None, audiences: Sequence[str] = (USER_AUDIENCE,)) -> None:
        self._secret = secret
        self._audiences = frozenset(audiences)
        # Tokens already verified, until their exp: a client sends the same token with
        # every request, and the HMAC and claim parsing were a tenth of a redirect's cost.
        self._verified: dict[str, tuple[float, Principal]] = {}

    @property
    def enabled(self) -> bool:
        return bool(self._secret)

    def verify(self, token: str) -> Principal:
        if not self._secret:
            raise InvalidToken("bearer tokens are not accepted here: no JWT secret is configured")
        hit = self._verified.get(token)
        if hit is not None:
            if time.time() < hit[0]:
                return hit[1]
            del self._verified[token]  # expired: the full check below says so
        principal, exp = self._decode(token, self._secret)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (exp, principal)
        return principal

    def _decode(self, token: str, secret: str) -> tuple[Principal, float]:
        import jwt

        try:
            # Only HS256: "none" and every other algorithm are refused before any check.
            claims = jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                options={"require": ["exp"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise TokenExpired("the token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(f"the token is not valid: {exc}") from None
        self._check_audience(claims.get("aud"))
        exp = float(claims["exp"])  # required, and checked as a number by PyJWT
        sub = claims.get("sub")
        owner = _owner_or_none(sub)
        if claims.get("role") == SERVICE_ROLE:
            return Principal(owner=owner, service=True, via="jwt"), exp
        if owner is None:
            raise InvalidToken("the token's sub claim is not a usable owner id")
        return Principal(owner=owner, service=False, via="jwt"), exp

    def _check_audience(self, aud: object) -> None:
        if not self._audiences or aud is None:
            return
        values = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else [None]
        if not any(isinstance(v, str) and v in self._audiences for v in values):
            raise InvalidToken("the token's audience is not accepted here")


def _owner_or_none(sub: object) -> str | None:
    if not isinstance(sub, str):
        return None
    try:
        return validate_name(sub, "owner")
    except InvalidName:
        return None


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def api_key_entry(owner: str, key: str) -> str:
    """The ``MEDIAKEEP_API_KEYS`` entry for ``key``: the owner and the key's hash."""
    return f"{validate_name(owner, 'owner')}:{hash_api_key(key)}"


class ApiKeys:
    """Configured ``owner:sha256hex`` entries."""

    def __init__(self, entries: Iterable[str]) -> None:
        self._entries: list[tuple[str, str]] = []
        for entry in entries:
            owner, sep, digest = entry.strip().rpartition(":")
            digest = digest.lower()
            if not sep or not _HEX64.fullmatch(digest):
                raise ValueError("each API key entry must be owner:<sha256 hex of the key>")
            self._entries.append((digest, validate_name(owner, "owner")))

    def __len__(self) -> int:
        return len(self._entries)

    def verify(self, key: str) -> Principal:
        digest = hash_api_key(key)
        found = None
        # Compare with every entry in constant time: no early exit hints at a prefix.
        for known, owner in self._entries:
            if hmac.compare_digest(known, digest):
                found = owner
        if found is None:
            raise InvalidApiKey("the API key is not valid")
        return Principal(owner=found, service=False, via="api_key")

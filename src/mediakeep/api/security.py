"""Authentication as FastAPI dependencies (shown in /docs as the two ways to sign in)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from ..auth import ApiKeys, Principal, TokenVerifier
from ..errors import InvalidToken, Unauthorized
from .schemas import NAME_PATTERN

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    bearerFormat="JWT",
    description=(
        "An HS256 access token: `sub` is the owner; `role: service_role` may act for any "
        "owner with the `owner` parameter. Supabase Auth access tokens work as they are "
        "when MEDIAKEEP_JWT_SECRET is the project's JWT secret. "
        "Mint one with `mediakeep token --owner NAME`."
    ),
)
api_key_scheme = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="apiKey",
    description="A key configured in MEDIAKEEP_API_KEYS (`mediakeep token --api-key`).",
)


@dataclass
class Authenticator:
    tokens: TokenVerifier
    keys: ApiKeys


async def principal(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
    api_key: Annotated[str | None, Security(api_key_scheme)],
) -> Principal:
    auth: Authenticator = request.app.state.auth
    if bearer is not None:
        who = auth.tokens.verify(bearer.credentials)
    elif api_key:
        who = auth.keys.verify(api_key)
    elif request.headers.get("authorization"):
        raise InvalidToken("the Authorization header must be 'Bearer <token>'")
    else:
        raise Unauthorized("sign in with Authorization: Bearer <token> or X-API-Key")
    request.state.owner = who.owner
    return who


OwnerQuery = Annotated[
    str | None,
    Query(
        pattern=NAME_PATTERN,
        max_length=128,
        description="Service role only: the owner to act for. Others may omit it or pass "
        "their own.",
    ),
]


async def acting_owner(
    request: Request,
    who: Annotated[Principal, Depends(principal)],
    owner: OwnerQuery = None,
) -> str:
    acting = who.acting_for(owner)
    request.state.owner = acting
    return acting


Caller = Annotated[Principal, Depends(principal)]
Owner = Annotated[str, Depends(acting_owner)]

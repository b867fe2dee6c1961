"""Webhook tickets: who a provider webhook is for.

fal signs every customer's webhooks with the same keys, so a valid signature proves the
webhook came from fal, not whose media it carries. The webhook URL an app hands to fal
therefore carries a ticket that mediakeep signed (HS256 JWT): the owner, the collection
and an expiry. No valid ticket, nothing written."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from ..errors import InvalidInput, TicketExpired, TicketInvalid
from ..pipeline.keys import validate_name

AUDIENCE = "mediakeep:fal-webhook"
ISSUER = "mediakeep"


@dataclass(frozen=True)
class Ticket:
    owner: str
    collection: str | None
    public: bool
    endpoint: str | None
    expires_at: datetime
    ticket_id: str


@dataclass(frozen=True)
class IssuedTicket:
    ticket: str
    webhook_url: str
    expires_at: datetime
    owner: str
    collection: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ticket": self.ticket,
            "webhook_url": self.webhook_url,
            "expires_at": self.expires_at.isoformat(),
            "owner": self.owner,
            "collection": self.collection,
        }


def mint(
    secret: str,
    *,
    owner: str,
    collection: str | None,
    public: bool,
    endpoint: str | None,
    expires_in: int,
    max_expires: int,
    base_url: str,
    now: float | None = None,
) -> IssuedTicket:
    validate_name(owner, "owner")
    if collection is not None:
        validate_name(collection, "collection")
    if not 1 <= expires_in <= max_expires:
        raise InvalidInput(f"expires_in must be between 1 and {max_expires} seconds")
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": owner,
        "iat": issued,
        "exp": issued + expires_in,
        "jti": str(uuid.uuid4()),
        "pub": public,
    }
    if collection is not None:
        claims["col"] = collection
    if endpoint is not None:
        claims["ep"] = endpoint[:255]
    import jwt  # deferred: PyJWT pulls in cryptography, which only webhooks need

    token = jwt.encode(claims, secret, algorithm="HS256")
    url = f"{base_url.rstrip('/')}/v1/webhooks/fal?ticket={quote(token, safe='')}"
    return IssuedTicket(
        ticket=token,
        webhook_url=url,
        expires_at=datetime.fromtimestamp(issued + expires_in, UTC),
        owner=owner,
        collection=collection,
    )


def verify(secret: str, ticket: str | None) -> Ticket:
    if not ticket:
        raise TicketInvalid("the webhook URL has no ticket")
    if len(ticket) > 4096:
        raise TicketInvalid("the ticket is not valid")
    import jwt

    try:
        claims = jwt.decode(
            ticket,
            secret,
            algorithms=["HS256"],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "sub", "iat"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TicketExpired("the webhook ticket has expired") from exc
    except jwt.PyJWTError as exc:
        raise TicketInvalid("the webhook ticket is not valid") from exc
    owner = claims.get("sub")
    collection = claims.get("col")
    try:
        validate_name(str(owner), "owner")
        if collection is not None:
            validate_name(str(collection), "collection")
    except InvalidInput as exc:
        raise TicketInvalid("the webhook ticket is not valid") from exc
    endpoint = claims.get("ep")
    return Ticket(
        owner=str(owner),
        collection=None if collection is None else str(collection),
        public=bool(claims.get("pub", False)),
        endpoint=None if endpoint is None else str(endpoint),
        expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
        ticket_id=str(claims.get("jti", "")),
    )

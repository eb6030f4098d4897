"""Request-scoped dependencies: the database session and the acting principal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Path, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.errors import MALFORMED_JSON
from api.middleware import BODY_METHODS
from core.access import Actor
from core.accounts import service as accounts
from core.db import session_scope
from core.errors import DomainError, InvalidInput, PermissionDenied, Unauthenticated
from core.schemas import MAX_ID

_READ_METHODS = {"GET", "HEAD", "OPTIONS"}


def get_session(request: Request) -> Iterator[Session]:
    """One transaction per request, committed before the response is sent."""
    with session_scope(factory=request.app.state.session_factory) as session:
        yield session


# scope="function": the commit above runs before FastAPI sends the response, so
# a failed commit turns into an error response instead of a 2xx for lost work.
DbSession = Annotated[Session, Depends(get_session, scope="function")]

_bearer = HTTPBearer(auto_error=False, description="`hth_…` personal token or `hthk_…` API key")


def get_actor(
    request: Request,
    session: DbSession,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("send `Authorization: Bearer <token>`", code="unauthenticated")
    actor = accounts.authenticate(session, credentials.credentials)
    if actor.api_key is not None:
        needed = "read" if request.method in _READ_METHODS else "write"
        if needed not in actor.api_key.scopes:
            raise PermissionDenied(f"this API key lacks the '{needed}' scope", code="insufficient_scope")
    return actor


CurrentActor = Annotated[Actor, Depends(get_actor)]


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


Cursor = Annotated[str | None, Query(description="opaque cursor from a previous page's next_cursor")]
Limit = Annotated[int, Query(ge=1, le=100)]

# Ids are 64-bit: a larger number is a 422, never an overflow deep in the driver.
PathId = Annotated[int, Path(ge=1, le=MAX_ID)]
QueryId = Annotated[int, Query(ge=1, le=MAX_ID)]


# Every request that moves chips sends one (the services refuse it missing or malformed,
# with stable codes); the same key on a retry returns the first result.
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="required: a fresh key per operation, the same key when retrying it",
    ),
]


def answer_created(response: Response, replayed: bool) -> None:
    """201 for a first write, 200 for a retry that returned the first result (same Idempotency-Key)."""
    response.status_code = 200 if replayed else 201


async def refuse_unexpected_body(request: Request) -> None:
    """An endpoint that takes no body refuses one (422 `unexpected_body`), as bodies refuse
    unknown fields: a client sending `{"amount": 5}` to an action without input must not
    believe it said something. An empty body, `{}` and `null` are accepted (some clients
    always send one)."""
    if request.method not in BODY_METHODS:
        return
    route = request.scope.get("route")
    if route is None or getattr(route, "body_field", None) is not None:
        return
    body = await request.body()
    if not body.strip():
        return
    try:
        value = json.loads(body)
    except ValueError:
        raise DomainError(MALFORMED_JSON, code="malformed_json") from None
    if value not in ({}, None):
        raise InvalidInput("this endpoint takes no request body", code="unexpected_body")

"""Audit rows for every state change that matters.

`snapshot()` turns a model into JSON-safe data, leaving secrets out, so the
before/after of a change can be stored and shown to community managers.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect
from sqlalchemy.orm import Session

from core.models import AuditLog

if TYPE_CHECKING:
    from core.access import Actor

SECRET_COLUMNS = frozenset({"password_hash", "token_hash", "key_hash"})


def _jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def snapshot(obj: Any, fields: list[str] | None = None) -> dict[str, Any]:
    columns = [c.key for c in inspect(obj).mapper.column_attrs]
    keys = [k for k in (fields or columns) if k not in SECRET_COLUMNS]
    return {k: _jsonable(getattr(obj, k)) for k in keys}


def record(
    session: Session,
    actor: Actor | None,
    action: str,
    target: Any,
    *,
    community_id: int | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditLog:
    row = AuditLog(
        community_id=community_id,
        actor_user_id=actor.user.id if actor else None,
        api_key_id=actor.api_key.id if actor and actor.api_key else None,
        action=action,
        target_type=target.__tablename__,
        target_id=target.id,
        before=before,
        after=after,
    )
    session.add(row)
    return row

"""Audit rows for every state change that matters, and reading them back (managers only).

`snapshot()` turns a model into JSON-safe data, leaving secrets out, so the
before/after of a change can be stored and shown to community managers.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from core.access import Actor, community_context
from core.models import AuditLog, Role
from core.pagination import Page, paginate
from core.schemas import Output

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


def apply_changes(
    session: Session,
    actor: Actor,
    action: str,
    target: Any,
    changes: dict[str, Any],
    fields: list[str],
    *,
    community_id: int,
) -> None:
    """Set `changes` on `target` and record them with the before and after of `fields`."""
    before = snapshot(target, fields)
    for name, value in changes.items():
        setattr(target, name, value)
    session.flush()
    record(
        session,
        actor,
        action,
        target,
        community_id=community_id,
        before=before,
        after=snapshot(target, fields),
    )


class AuditOut(Output):
    id: int
    actor_user_id: int | None
    api_key_id: int | None
    action: str
    target_type: str
    target_id: int | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    created_at: datetime


def list_audit(
    session: Session,
    actor: Actor,
    community_id: int,
    *,
    action: str | None,
    target_type: str | None,
    actor_id: int | None,
    cursor: str | None,
    limit: int,
) -> Page[AuditLog]:
    community_context(session, actor, community_id).require_role(Role.ADMIN)
    stmt = select(AuditLog).where(AuditLog.community_id == community_id)
    if action:
        stmt = stmt.where(AuditLog.action == action)
    if target_type:
        stmt = stmt.where(AuditLog.target_type == target_type)
    if actor_id is not None:
        stmt = stmt.where(AuditLog.actor_user_id == actor_id)
    return paginate(session, stmt, AuditLog.id, cursor=cursor, limit=limit)

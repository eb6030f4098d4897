"""Reading the audit trail (managers only)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.access import Actor, community_context
from core.models import AuditLog, Role
from core.pagination import Page, paginate
from core.schemas import Output


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

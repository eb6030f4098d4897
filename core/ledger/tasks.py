"""Ledger housekeeping jobs: thin, idempotent, one unit of work per item."""

from __future__ import annotations

from core.db import session_scope
from core.ledger import service
from core.worker import TASK_DEFAULTS, celery_app


@celery_app.task(name="hearth.ledger.expire_holds", **TASK_DEFAULTS)
def expire_holds() -> int:
    """Release every hold whose time is up, each in its own transaction."""
    with session_scope() as session:
        due = service.due_holds(session)
    expired = 0
    for hold_id in due:
        with session_scope() as session:
            expired += service.expire_hold(session, hold_id)
    return expired

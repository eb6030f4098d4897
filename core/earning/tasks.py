"""Celery tasks for earning: thin, idempotent, retried on transient errors."""

from __future__ import annotations

from core.db import session_scope
from core.earning import service
from core.worker import TASK_DEFAULTS, celery_app


@celery_app.task(name="hearth.earning.grant", **TASK_DEFAULTS)
def grant(trigger: str, subject_id: int) -> int:
    with session_scope() as session:
        return len(service.grant(session, trigger, subject_id))


@celery_app.task(name="hearth.earning.clawback", **TASK_DEFAULTS)
def clawback(subject_type: str, subject_id: int) -> int:
    # One short read lists the grants; each grant is clawed back in its own transaction.
    return len(service.clawback(session_scope, subject_type, subject_id))

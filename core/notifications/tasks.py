"""Celery tasks for notifications: thin, idempotent, retried on transient errors."""

from __future__ import annotations

from core.db import session_scope
from core.notifications import service
from core.worker import TASK_DEFAULTS, celery_app


@celery_app.task(name="hearth.notifications.post_created", **TASK_DEFAULTS)
def post_created(post_id: int) -> int:
    with session_scope() as session:
        return service.post_created(session, post_id)


@celery_app.task(name="hearth.notifications.message_sent", **TASK_DEFAULTS)
def message_sent(message_id: int) -> int:
    with session_scope() as session:
        return service.message_sent(session, message_id)


@celery_app.task(name="hearth.notifications.rsvp_promoted", **TASK_DEFAULTS)
def rsvp_promoted(rsvp_id: int) -> int:
    with session_scope() as session:
        return service.rsvp_promoted(session, rsvp_id)

"""Celery tasks for tipping: thin, idempotent, retried on transient errors."""

from __future__ import annotations

from core.db import session_scope
from core.notifications import service as notifications
from core.tipping import service
from core.worker import TASK_DEFAULTS, celery_app


@celery_app.task(name="hearth.tipping.tip_received", **TASK_DEFAULTS)
def tip_received(tip_id: int) -> int:
    with session_scope() as session:
        return notifications.tip_received(session, tip_id)


@celery_app.task(name="hearth.tipping.sweep_rings", **TASK_DEFAULTS)
def sweep_rings() -> int:
    """Ring detection for every community with new tips (beat, every minute; safe to run twice).

    One short read lists them; each community is claimed and examined in its own transaction.
    """
    return len(service.sweep_rings(session_scope))


@celery_app.task(name="hearth.tipping.detect_rings", **TASK_DEFAULTS)
def detect_rings(community_id: int) -> int:
    """One community's window, examined now (for operators; the beat sweep is the usual path)."""
    with session_scope() as session:
        return len(service.detect_rings(session, community_id))

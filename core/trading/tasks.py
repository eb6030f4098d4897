"""Celery tasks for trading: thin and idempotent."""

from __future__ import annotations

from core.db import session_scope
from core.trading import service
from core.worker import TASK_DEFAULTS, celery_app


@celery_app.task(name="hearth.trading.swap_changed", **TASK_DEFAULTS)
def swap_changed(swap_id: int, change: str) -> int:
    with session_scope() as session:
        return service.notify_swap(session, swap_id, change)


@celery_app.task(name="hearth.trading.expire_swaps", **TASK_DEFAULTS)
def expire_swaps() -> int:
    """Expire swap offers past their time (run periodically; safe to run twice).

    One short read lists them; each offer is then expired in its own transaction.
    """
    return len(service.expire_swaps(session_scope))

"""Celery tasks for redemption: thin and idempotent."""

from __future__ import annotations

from core.db import session_scope
from core.redemption import service
from core.worker import TASK_DEFAULTS, celery_app


@celery_app.task(name="hearth.redemption.order_changed", **TASK_DEFAULTS)
def order_changed(order_id: int, change: str) -> int:
    with session_scope() as session:
        return service.notify_order(session, order_id, change)


@celery_app.task(name="hearth.redemption.expire_orders", **TASK_DEFAULTS)
def expire_orders() -> int:
    """Expire orders whose hold ran out (run periodically; safe to run twice).

    One short read lists them; each order is then expired in its own transaction.
    """
    return len(service.expire_orders(session_scope))

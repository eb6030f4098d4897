"""The Celery app.

Configured lazily from settings on first use. The embedded default broker is
kombu's SQLAlchemy transport on a SQLite file (no broker server); set
HEARTH_BROKER_URL to use Redis or RabbitMQ. Tasks are thin: they take ids,
open their own unit of work, and call a service.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals
from sqlalchemy.exc import InterfaceError, OperationalError

from core import jobs
from core.config import get_settings

log = logging.getLogger(__name__)

TASK_MODULES = [
    "core.notifications.tasks",
    "core.ledger.tasks",
    "core.chips.tasks",
    "core.tipping.tasks",
    "core.earning.tasks",
    "core.redemption.tasks",
    "core.trading.tasks",
    # By name only: core never imports the recommender.
    "recommender.tasks",
]

# Periodic jobs, run by beat (`hearth worker --beat`; `hearth up` embeds it). Every one is
# idempotent, so a missed or doubled tick is harmless.
BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "chips-remind-expiring": {"task": "hearth.chips.remind_expiring", "schedule": 3600.0},
    "chips-expire": {"task": "hearth.chips.expire_chips", "schedule": 3600.0},
    "chips-decay": {"task": "hearth.chips.apply_decay", "schedule": 3600.0},
    "ledger-expire-holds": {"task": "hearth.ledger.expire_holds", "schedule": 300.0},
    "ledger-seal-digests": {"task": "hearth.chips.seal_digests", "schedule": 3600.0},
    "redemption-expire-orders": {"task": "hearth.redemption.expire_orders", "schedule": 300.0},
    "trading-expire-swaps": {"task": "hearth.trading.expire_swaps", "schedule": 300.0},
    # Ring detection is coalesced here (tips only mark themselves unscanned): one run per
    # community with new tips per tick, however many tips arrived.
    "tipping-sweep-rings": {"task": "hearth.tipping.sweep_rings", "schedule": 60.0},
    "recommender-refresh": {"task": "hearth.recommender.refresh", "schedule": 600.0},
}


class HearthCelery(Celery):
    def on_configure(self) -> None:
        settings = get_settings()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.conf.update(
            broker_url=settings.resolved_broker_url,
            task_ignore_result=True,
            task_acks_late=True,
            task_reject_on_worker_lost=True,
            worker_prefetch_multiplier=1,
            task_always_eager=settings.task_always_eager,
            broker_connection_retry_on_startup=True,
            task_default_queue="hearth",
            beat_schedule=BEAT_SCHEDULE,
            beat_schedule_filename=str(settings.data_dir / "celerybeat-schedule"),
        )


celery_app = HearthCelery("hearth", include=TASK_MODULES)

# Defaults for every Hearth task: idempotent tasks are acked after they finish,
# transient database errors are retried with backoff, domain errors never.
TRANSIENT_ERRORS = (OperationalError, InterfaceError)
TASK_DEFAULTS: dict[str, Any] = {
    "acks_late": True,
    "autoretry_for": TRANSIENT_ERRORS,
    "retry_backoff": True,
    "retry_backoff_max": 60,
    "max_retries": 5,
}


def dispatch(job: jobs.Job) -> None:
    """Send a buffered job to Celery (installed as the jobs dispatcher)."""
    if celery_app.conf.task_always_eager:
        celery_app.tasks[job.name].apply(args=job.args, kwargs=job.kwargs)
    else:
        celery_app.send_task(job.name, args=job.args, kwargs=job.kwargs)


@signals.worker_init.connect
def _install_dispatcher(**_: Any) -> None:
    jobs.set_dispatcher(dispatch)

"""Beat-scheduled chip housekeeping: thin, idempotent, one unit of work per item.

Running any of these twice (or two workers at once) changes nothing the first run did
not: reminders are unique per (holder, chip), expiry and decay keys are deterministic,
holds and digests are settled at most once.
"""

from __future__ import annotations

from core.chips import service
from core.db import session_scope
from core.worker import TASK_DEFAULTS, celery_app


@celery_app.task(name="hearth.chips.remind_expiring", **TASK_DEFAULTS)
def remind_expiring() -> int:
    with session_scope() as session:
        return service.remind_expiring(session)


@celery_app.task(name="hearth.chips.expire_chips", **TASK_DEFAULTS)
def expire_chips() -> int:
    # One short read lists what is due; each chip and each wallet gets its own transaction.
    return service.expire_chips(session_scope)


@celery_app.task(name="hearth.chips.apply_decay", **TASK_DEFAULTS)
def apply_decay() -> int:
    return service.apply_decay(session_scope)


@celery_app.task(name="hearth.chips.seal_digests", **TASK_DEFAULTS)
def seal_digests() -> int:
    with session_scope() as session:
        return service.seal_digests(session)

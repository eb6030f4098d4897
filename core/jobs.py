"""Side effects that leave only after commit.

Services call `enqueue(session, "task.name", *args)`. The call is buffered on
the session and handed to the dispatcher after the outermost transaction
commits; a rollback drops it. Services never import Celery: the dispatcher is
installed by whoever owns the process (the API app, the worker, a test).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

_PENDING = "hearth_pending_jobs"


@dataclass(frozen=True)
class Job:
    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


Dispatcher = Callable[[Job], None]


def _log_only(job: Job) -> None:
    log.warning("no job dispatcher installed; dropping %s", job.name)


_dispatcher: Dispatcher = _log_only


def set_dispatcher(dispatcher: Dispatcher) -> Dispatcher:
    """Install the function that sends jobs; returns the previous one."""
    global _dispatcher
    previous, _dispatcher = _dispatcher, dispatcher
    return previous


def enqueue(session: Session, name: str, *args: Any, **kwargs: Any) -> None:
    if not session.in_transaction():
        session.begin()  # so that a rollback before any SQL still drops the job
    session.info.setdefault(_PENDING, []).append(Job(name, args, kwargs))


def pending(session: Session) -> list[Job]:
    return list(session.info.get(_PENDING, []))


@event.listens_for(Session, "after_commit")
def _send_after_commit(session: Session) -> None:
    jobs = session.info.pop(_PENDING, [])
    for job in jobs:
        try:
            _dispatcher(job)
        except Exception:  # the commit stands; a lost notification must not fail the request
            log.exception("failed to dispatch job %s", job.name)


@event.listens_for(Session, "after_soft_rollback")
def _drop_after_rollback(session: Session, previous: Any) -> None:
    # A rolled-back SAVEPOINT (e.g. a caught IntegrityError) leaves the outer
    # transaction, and the jobs it queued, alive.
    if not previous.nested:
        session.info.pop(_PENDING, None)

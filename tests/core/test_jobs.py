"""Side effects leave after commit, and never after a rollback."""

from __future__ import annotations

from sqlalchemy.orm import Session

from core import jobs
from core.db import session_scope


def test_jobs_are_sent_only_after_commit(session: Session, recorded_jobs: list[jobs.Job]) -> None:
    jobs.enqueue(session, "hearth.test.one", 1)
    jobs.enqueue(session, "hearth.test.two", 2, flag=True)
    session.flush()
    assert recorded_jobs == []
    session.commit()
    assert recorded_jobs == [
        jobs.Job("hearth.test.one", (1,)),
        jobs.Job("hearth.test.two", (2,), {"flag": True}),
    ]


def test_jobs_are_dropped_on_rollback(session: Session, recorded_jobs: list[jobs.Job]) -> None:
    jobs.enqueue(session, "hearth.test.dropped", 1)
    session.rollback()
    session.commit()
    assert recorded_jobs == []


def test_session_scope_drops_jobs_when_the_unit_of_work_fails(
    committed_engine, recorded_jobs: list[jobs.Job]
) -> None:  # type: ignore[no-untyped-def]
    try:
        with session_scope(committed_engine) as s:
            jobs.enqueue(s, "hearth.test.failed", 1)
            raise ValueError("domain failure")
    except ValueError:
        pass
    with session_scope(committed_engine) as s:
        jobs.enqueue(s, "hearth.test.ok", 2)
    assert recorded_jobs == [jobs.Job("hearth.test.ok", (2,))]


def test_dispatch_failure_does_not_undo_the_commit(session: Session) -> None:
    def broken(_: jobs.Job) -> None:
        raise ConnectionError("broker down")

    previous = jobs.set_dispatcher(broken)
    try:
        jobs.enqueue(session, "hearth.test.lost", 1)
        session.commit()  # must not raise: the data is already committed
    finally:
        jobs.set_dispatcher(previous)
    assert jobs.pending(session) == []

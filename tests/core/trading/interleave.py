"""Forcing one interleaving of concurrent transactions on PostgreSQL, deterministically.

A test holds a row lock in a session of its own, starts the unit of work under test in a
thread, waits until that thread is blocked by the test's session (`wait_until_blocked_by`),
then carries on: so the order in which locks are taken is fixed, not left to timing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

T = TypeVar("T")


def backend_pid(session: Session) -> int:
    """The PostgreSQL backend serving this session's transaction."""
    return int(session.scalar(text("SELECT pg_backend_pid()")) or 0)


def wait_until_blocked_by(engine: Engine, pid: int, *, timeout: float = 30.0) -> None:
    """Return once another backend waits for a lock held by backend `pid`."""
    deadline = time.monotonic() + timeout
    with engine.connect() as conn:
        while True:
            waiting = conn.scalar(
                text("SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))"),
                {"pid": pid},
            )
            conn.rollback()  # a fresh snapshot of pg_stat_activity next time
            if waiting:
                return
            assert time.monotonic() < deadline, "nobody blocked on the lock in time"
            time.sleep(0.02)


class Background(Generic[T]):
    """Run `call` in a thread; `result()` waits for it and returns its value or raises its error."""

    def __init__(self, call: Callable[[], T]) -> None:
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], T]) -> None:
        try:
            self._value = call()
        except BaseException as exc:  # handed to the test thread by result()
            self._error = exc

    def result(self, timeout: float = 60.0) -> T:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the background unit of work is stuck"
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

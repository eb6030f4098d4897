"""Engines and sessions.

Engines are built lazily from settings, never at import. SQLite gets foreign
keys, WAL and a busy timeout so that the embedded default behaves like a real
database under the worker and the API at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from core.config import get_settings


def make_engine(url: str, *, lock_timeout_s: float | None = None, **kwargs: Any) -> Engine:
    """An engine for `url`. On PostgreSQL every connection waits at most `lock_timeout_s`
    (default: the `db_lock_timeout_s` setting) for a lock: a request stuck behind a long
    transaction on the same wallet then fails fast (503 `retry_later`, nothing written)
    instead of holding its own locks and connection for as long as the other one lasts."""
    # Bound parameters (password hashes, token digests, members' words) never reach logs.
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        connect_args = {"check_same_thread": False, "timeout": 30}
        engine = create_engine(url, connect_args=connect_args, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # pysqlite's own BEGIN handling is off so SAVEPOINTs and BEGIN IMMEDIATE work.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            if ":memory:" not in url and url != "sqlite://":
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # Take the write lock up front: SQLite's deferred BEGIN lets two
            # writers read, then fails one of them at its first write.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    timeout = get_settings().db_lock_timeout_s if lock_timeout_s is None else lock_timeout_s
    if timeout > 0:
        pg_args: dict[str, Any] = dict(kwargs.pop("connect_args", {}))
        option = f"-c lock_timeout={max(1, round(timeout * 1000))}"
        pg_args["options"] = f"{pg_args['options']} {option}" if "options" in pg_args else option
        kwargs["connect_args"] = pg_args
    return create_engine(url, **kwargs)


@lru_cache(maxsize=4)
def get_engine(url: str | None = None) -> Engine:
    return make_engine(url or get_settings().resolved_database_url)


def session_factory(engine: Engine | None = None) -> sessionmaker[Session]:
    return sessionmaker(bind=engine or get_engine(), expire_on_commit=False)


@contextmanager
def session_scope(
    engine: Engine | None = None, *, factory: Callable[[], Session] | None = None
) -> Iterator[Session]:
    """One unit of work (a request, a task, a command): commit on success, roll back on error."""
    session = (factory or session_factory(engine))()
    try:
        yield session
        # Nothing to commit when the unit of work left no transaction open (a group-commit
        # transfer commits its own; `jobs.enqueue` always opens one, so no job is skipped):
        # an empty commit would still begin and end a session transaction, in Python.
        if session.in_transaction():
            session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()

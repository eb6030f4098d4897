"""Engines and sessions.

Engines are built lazily from settings, never at import. SQLite gets foreign
keys, WAL and a busy timeout so that the embedded default behaves like a real
database under the worker and the API at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, any_, bindparam, create_engine, event
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeEngine

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


_ENGINES: dict[str | None, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(url: str | None = None) -> Engine:
    """The process's engine for `url` (default: the configured database), made on first use."""
    with _ENGINES_LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            engine = _ENGINES[url] = make_engine(url or get_settings().resolved_database_url)
        return engine


def dispose_engines() -> None:
    """Close every engine `get_engine` made and forget them (tests, or a changed configuration).

    Forgetting an engine without disposing of it would leave its pooled connections open
    until the garbage collector finds them.
    """
    with _ENGINES_LOCK:
        engines = list(_ENGINES.values())
        _ENGINES.clear()
    for engine in engines:
        engine.dispose()


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


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def dialect_insert(session: Session) -> Callable[..., Any]:
    """The dialect's own `insert` (PostgreSQL or SQLite), for ON CONFLICT clauses."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return pg_insert if is_postgres(session) else sqlite_insert


def in_values(
    session: Session, column: Any, values: Iterable[Any], element: TypeEngine[Any]
) -> ColumnElement[bool]:
    """`column IN values`; on PostgreSQL one array parameter (`= ANY`), not one per value.

    A batch names hundreds or thousands of ids and keys: a placeholder each costs more to
    build, send and plan than the query itself, and every distinct count is a new statement
    to convert and prepare. One array parameter keeps one statement whatever the count.
    """
    values = list(values)
    if is_postgres(session):
        return column == any_(sql_cast(bindparam(None, values, type_=ARRAY(element)), ARRAY(element)))
    return column.in_(values)


def in_param(column: Any, name: str, element: TypeEngine[Any], *, postgres: bool) -> ColumnElement[bool]:
    """`in_values` for a statement built once per dialect: the values come with each execution,
    as the parameter `name` (a list). Building a larger statement costs about as much client
    time as running it, so the hottest ones are built once."""
    if postgres:
        return column == any_(sql_cast(bindparam(name, type_=ARRAY(element)), ARRAY(element)))
    return column.in_(bindparam(name, expanding=True))

"""Test harness.

- The database is SQLite (a temp file) unless HEARTH_TEST_DATABASE_URL names
  another (CI also runs everything on PostgreSQL). Its schema comes from the
  Alembic migrations, once per run.
- Each test runs inside a transaction that is rolled back; the code under test
  may commit freely (commits become savepoint releases).
- Jobs are recorded, not sent, unless a test installs a real dispatcher.
- The network is blocked except for loopback (PostgreSQL, Redis, RabbitMQ).
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

_TMP = Path(tempfile.mkdtemp(prefix="hearth-test-"))
os.environ["HEARTH_ENV"] = "test"
os.environ["HEARTH_DATA_DIR"] = str(_TMP)
os.environ["HEARTH_ARGON2_TIME_COST"] = "1"
os.environ["HEARTH_ARGON2_MEMORY_KIB"] = "1024"
os.environ["HEARTH_AUTH_RATE_LIMIT"] = "1000"
os.environ.pop("HEARTH_REDIS_URL", None)
os.environ.pop("HEARTH_BROKER_URL", None)
DATABASE_URL = os.environ.get("HEARTH_TEST_DATABASE_URL") or f"sqlite:///{_TMP / 'test.db'}"
# Tasks (and worker processes started by tests) open their own sessions on the test database.
os.environ["HEARTH_DATABASE_URL"] = DATABASE_URL

import pytest  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import Connection, Engine, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from core import jobs  # noqa: E402
from core.config import get_settings  # noqa: E402
from core.db import dispose_engines, make_engine  # noqa: E402
from core.migrate import upgrade  # noqa: E402

REDIS_URL = os.environ.get("HEARTH_TEST_REDIS_URL")
AMQP_URL = os.environ.get("HEARTH_TEST_AMQP_URL")
IS_POSTGRES = DATABASE_URL.startswith("postgresql")

_real_connect = socket.socket.connect


def _guarded_connect(self: socket.socket, address: object) -> object:
    host = address[0] if isinstance(address, tuple) else None
    if host is not None and host not in {"127.0.0.1", "::1", "localhost"}:
        raise RuntimeError(f"tests may not reach the network ({address!r})")
    return _real_connect(self, address)  # type: ignore[arg-type]


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]


def reset_database(url: str) -> None:
    """Empty the database and build the schema from the migrations."""
    engine = make_engine(url)
    if url.startswith("postgresql"):
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    upgrade(url)


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    get_settings.cache_clear()
    reset_database(DATABASE_URL)
    eng = make_engine(DATABASE_URL)
    yield eng
    eng.dispose()
    dispose_engines()  # tasks run in-process open the app's own engine


@pytest.fixture
def connection(engine: Engine) -> Iterator[Connection]:
    conn = engine.connect()
    trans = conn.begin()
    yield conn
    trans.rollback()
    conn.close()


def _bound_session(conn: Connection) -> Session:
    return Session(bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False)


@pytest.fixture
def session(connection: Connection) -> Iterator[Session]:
    s = _bound_session(connection)
    yield s
    s.close()


@pytest.fixture(autouse=True)
def recorded_jobs() -> Iterator[list[jobs.Job]]:
    sent: list[jobs.Job] = []
    previous = jobs.set_dispatcher(sent.append)
    yield sent
    jobs.set_dispatcher(previous)


@pytest.fixture
def app(connection: Connection):  # type: ignore[no-untyped-def]
    from api.app import create_app

    return create_app(session_maker=lambda: _bound_session(connection), dispatch_jobs=False)  # type: ignore[arg-type]


@pytest.fixture
def client(app) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def committed_engine(engine: Engine) -> Engine:
    """The test database for tests that need real commits (threads, workers).

    Rows written through it are not rolled back: give them unique names.
    """
    return engine


def needs_redis() -> pytest.MarkDecorator:
    return pytest.mark.skipif(REDIS_URL is None, reason="needs HEARTH_TEST_REDIS_URL=redis://...")


def needs_amqp() -> pytest.MarkDecorator:
    return pytest.mark.skipif(AMQP_URL is None, reason="needs HEARTH_TEST_AMQP_URL=amqp://...")


def needs_postgres() -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        not IS_POSTGRES, reason="needs HEARTH_TEST_DATABASE_URL=postgresql+psycopg://..."
    )

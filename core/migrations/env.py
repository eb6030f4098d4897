"""Alembic environment: runs on a connection handed in, or on the configured URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from core.db import make_engine
from core.models import Base
from core.models.ledger import schema_filter

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=sqlite,
        compare_type=True,
        include_object=schema_filter(connection.dialect.name),
    )
    # SQLite alters a table by rebuilding it (batch mode: copy, DROP, rename). With foreign
    # keys enforced (`core.db` turns them on), dropping a table other rows point at fails, so
    # they are off while migrating and checked once at the end instead. The pragma is a no-op
    # inside a transaction: it is set before the migration's transaction begins (a connection
    # handed in mid-transaction keeps its own setting).
    relax = sqlite and not connection.in_transaction()
    if relax:
        _pragma(connection, "PRAGMA foreign_keys=OFF")
    try:
        with context.begin_transaction():
            context.run_migrations()
            if sqlite:
                _check_foreign_keys(connection)
    finally:
        if relax:
            _pragma(connection, "PRAGMA foreign_keys=ON")


def _pragma(connection: Connection, statement: str) -> None:
    # On the driver's connection: through SQLAlchemy the statement would open a transaction.
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(statement)
    finally:
        cursor.close()


def _check_foreign_keys(connection: Connection) -> None:
    """Fail the migration (its transaction rolls back) if it left a dangling reference."""
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        raise RuntimeError(f"the migration left rows pointing at nothing: {broken[:10]}")


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()

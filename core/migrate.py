"""Alembic, driven from code: `hearth migrate`, the tests and the demo all use this."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(url: str | None = None, *, connection: Connection | None = None, revision: str = "heads") -> None:
    command.upgrade(alembic_config(url, connection), revision)


def downgrade(
    url: str | None = None, *, connection: Connection | None = None, revision: str = "base"
) -> None:
    command.downgrade(alembic_config(url, connection), revision)

"""Keyset (cursor) pagination over monotonically increasing integer ids."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from core.errors import InvalidInput

T = TypeVar("T")

MAX_LIMIT = 100


@dataclass
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"k": last_id}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))["k"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise InvalidInput("cursor is not one this API returned", code="invalid_cursor") from exc
    if not isinstance(value, int):
        raise InvalidInput("cursor is not one this API returned", code="invalid_cursor")
    return value


def paginate(
    session: Session,
    stmt: Select[Any],
    id_column: InstrumentedAttribute[int],
    *,
    cursor: str | None,
    limit: int,
    descending: bool = True,
) -> Page[Any]:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}", code="invalid_limit")
    if cursor is not None:
        last = decode_cursor(cursor)
        stmt = stmt.where(id_column < last if descending else id_column > last)
    stmt = stmt.order_by(id_column.desc() if descending else id_column.asc()).limit(limit + 1)
    rows = list(session.scalars(stmt))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode_cursor(rows[-1].id) if more and rows else None)

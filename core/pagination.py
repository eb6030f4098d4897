"""Keyset (cursor) pagination: by id, or by a time with the id as tie-breaker.

Cursors are opaque to clients; a tampered one is a 422 `invalid_cursor`."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute, Session

from core.clock import as_utc
from core.errors import InvalidInput
from core.schemas import MAX_ID, PageOut

T = TypeVar("T")
U = TypeVar("U")

MAX_LIMIT = 100


@dataclass
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None

    def map(self, convert: Callable[[T], U]) -> Page[U]:
        """The same page with each item converted (e.g. a row to its output schema)."""
        return Page([convert(item) for item in self.items], self.next_cursor)

    def with_items(self, items: list[U]) -> Page[U]:
        """The same page with items built in one batch (views that load related rows at once)."""
        return Page(items, self.next_cursor)

    def out(self) -> PageOut[T]:
        return PageOut(items=self.items, next_cursor=self.next_cursor)


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"k": last_id}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))["k"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise InvalidInput("cursor is not one this API returned", code="invalid_cursor") from exc
    if not _valid_id(value):
        raise InvalidInput("cursor is not one this API returned", code="invalid_cursor")
    return value


def _valid_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ID


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


def _encode_keyset(at: datetime, last_id: int) -> str:
    raw = json.dumps({"t": as_utc(at).isoformat(), "k": last_id}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_keyset(cursor: str) -> tuple[datetime, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        at, last_id = as_utc(datetime.fromisoformat(data["t"])), data["k"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError, OverflowError) as exc:
        raise InvalidInput("cursor is not one this API returned", code="invalid_cursor") from exc
    if not _valid_id(last_id):
        raise InvalidInput("cursor is not one this API returned", code="invalid_cursor")
    return at, last_id


def paginate_by_time(
    session: Session,
    stmt: Select[Any],
    sort: ColumnElement[datetime] | InstrumentedAttribute[datetime],
    id_column: InstrumentedAttribute[int],
    *,
    cursor: str | None,
    limit: int,
    descending: bool = True,
) -> Page[Any]:
    """Keyset pagination on (a time, id): newest activity first, or calendar order.

    The id breaks ties, so rows sharing a timestamp are neither skipped nor repeated.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}", code="invalid_limit")
    stmt = stmt.add_columns(sort.label("sort_key"))
    if cursor is not None:
        at, last_id = _decode_keyset(cursor)
        if descending:
            stmt = stmt.where(or_(sort < at, and_(sort == at, id_column < last_id)))
        else:
            stmt = stmt.where(or_(sort > at, and_(sort == at, id_column > last_id)))
    order = (sort.desc(), id_column.desc()) if descending else (sort.asc(), id_column.asc())
    rows: Sequence[Any] = session.execute(stmt.order_by(*order).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = _encode_keyset(rows[-1][1], rows[-1][0].id) if more and rows else None
    return Page([row[0] for row in rows], next_cursor)

"""Keyset pagination: every row exactly once, ties broken by id, tampered cursors rejected."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.clock import utcnow
from core.errors import InvalidInput
from core.models import Notification
from core.pagination import paginate, paginate_by_time
from tests.factories import make_user


def _notifications(session: Session, n: int) -> list[int]:
    user = make_user(session)
    base = utcnow()
    rows = [
        # Pairs share a timestamp, so only the id can order them.
        Notification(
            user_id=user.id,
            kind="k",
            subject_type="s",
            subject_id=i,
            created_at=base - timedelta(minutes=i // 2),
        )
        for i in range(n)
    ]
    session.add_all(rows)
    session.flush()
    return [r.id for r in rows]


@pytest.mark.parametrize("descending", [True, False])
def test_time_keyset_visits_every_row_once(session: Session, descending: bool) -> None:
    ids = _notifications(session, 11)
    stmt = select(Notification).where(Notification.id.in_(ids))
    seen: list[int] = []
    cursor = None
    while True:
        page = paginate_by_time(
            session,
            stmt,
            Notification.created_at,
            Notification.id,
            cursor=cursor,
            limit=3,
            descending=descending,
        )
        seen += [n.id for n in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    rows = session.scalars(stmt).all()
    key = sorted(rows, key=lambda n: (n.created_at, n.id), reverse=descending)
    assert seen == [n.id for n in key]


def test_id_keyset_and_bad_input(session: Session) -> None:
    ids = _notifications(session, 5)
    stmt = select(Notification).where(Notification.id.in_(ids))
    first = paginate(session, stmt, Notification.id, cursor=None, limit=2)
    second = paginate(session, stmt, Notification.id, cursor=first.next_cursor, limit=10)
    assert [n.id for n in first.items + second.items] == sorted(ids, reverse=True)
    assert second.next_cursor is None
    for bad in ["", "!!!", "eyJrIjogIngifQ", "bnVsbA"]:
        with pytest.raises(InvalidInput) as info:
            paginate_by_time(
                session, stmt, Notification.created_at, Notification.id, cursor=bad or "x", limit=2
            )
        assert info.value.code == "invalid_cursor"
    with pytest.raises(InvalidInput) as info:
        paginate(session, stmt, Notification.id, cursor=None, limit=0)
    assert info.value.code == "invalid_limit"

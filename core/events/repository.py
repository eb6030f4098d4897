"""All SQL for events and RSVPs.

Seats move only through statements here: `claim_seat` is one conditional
UPDATE (safe without a lock); everything that releases or hands over seats
runs after `lock_event`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, and_, func, or_, select, update
from sqlalchemy.orm import Session

from core.models import Event, EventRsvp, RsvpStatus


def events_of(
    community_id: int,
    *,
    ends_after: datetime | None,
    starts_from: datetime | None,
    starts_before: datetime | None,
) -> Select[Event]:
    stmt = select(Event).where(Event.community_id == community_id)
    if ends_after is not None:
        stmt = stmt.where(Event.ends_at > ends_after)
    if starts_from is not None:
        stmt = stmt.where(Event.starts_at >= starts_from)
    if starts_before is not None:
        stmt = stmt.where(Event.starts_at < starts_before)
    return stmt


def open_rsvp_event_ids(session: Session, community_id: int, user_id: int, now: datetime) -> list[int]:
    """Events not yet ended where the member is going or waitlisted, in id (lock) order."""
    stmt = (
        select(Event.id)
        .join(EventRsvp, EventRsvp.event_id == Event.id)
        .where(
            Event.community_id == community_id,
            Event.ends_at > now,
            EventRsvp.user_id == user_id,
            EventRsvp.status != RsvpStatus.CANCELLED,
        )
        .order_by(Event.id)
    )
    return list(session.scalars(stmt))


def lock_event(session: Session, event_id: int) -> Event:
    """Re-read the event under a row lock; SQLite needs none (BEGIN IMMEDIATE serialises writers).

    On PostgreSQL this is FOR NO KEY UPDATE, not FOR UPDATE: every RSVP insert
    holds FOR KEY SHARE on its event row (the foreign key), which FOR UPDATE
    would wait on, so two full-event RSVPs each waiting for the other's insert
    would deadlock. NO KEY UPDATE still excludes `claim_seat` and other lockers.
    """
    event = session.scalar(
        select(Event)
        .where(Event.id == event_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    assert event is not None, "events are never deleted while a request holds one"
    return event


def claim_seat(session: Session, event_id: int) -> bool:
    """Take one seat atomically; False when the event is full."""
    result = session.execute(
        update(Event)
        .where(Event.id == event_id, or_(Event.capacity.is_(None), Event.going_count < Event.capacity))
        .values(going_count=Event.going_count + 1)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def add_seats(session: Session, event_id: int, count: int) -> None:
    """Change the seats taken by `count` (negative releases). Call under `lock_event`."""
    session.execute(
        update(Event)
        .where(Event.id == event_id)
        .values(going_count=Event.going_count + count)
        .execution_options(synchronize_session=False)
    )


def rsvp_of(session: Session, event_id: int, user_id: int) -> EventRsvp | None:
    return session.scalar(
        select(EventRsvp)
        .where(EventRsvp.event_id == event_id, EventRsvp.user_id == user_id)
        .execution_options(populate_existing=True)
    )


def reopen_rsvp(session: Session, rsvp_id: int, now: datetime) -> bool:
    """Move a cancelled RSVP back to the waitlist; False when another request already did.

    Claiming the row first means two concurrent re-RSVPs by the same member
    cannot both take a seat.
    """
    result = session.execute(
        update(EventRsvp)
        .where(EventRsvp.id == rsvp_id, EventRsvp.status == RsvpStatus.CANCELLED)
        .values(
            status=RsvpStatus.WAITLISTED,
            waitlisted_at=now,
            updated_at=now,
            checked_in_at=None,
            checked_in_by=None,
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def first_waitlisted(session: Session, event_id: int, limit: int | None) -> Sequence[EventRsvp]:
    stmt = (
        select(EventRsvp)
        .where(EventRsvp.event_id == event_id, EventRsvp.status == RsvpStatus.WAITLISTED)
        .order_by(EventRsvp.waitlisted_at.asc(), EventRsvp.id.asc())
        .execution_options(populate_existing=True)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return session.scalars(stmt).all()


def going(session: Session, event_id: int) -> Sequence[EventRsvp]:
    # updated_at is the time the status last changed: for `going`, when the seat was taken.
    return session.scalars(
        select(EventRsvp)
        .where(EventRsvp.event_id == event_id, EventRsvp.status == RsvpStatus.GOING)
        .order_by(EventRsvp.updated_at.asc(), EventRsvp.id.asc())
    ).all()


def waitlist_position(session: Session, rsvp: EventRsvp) -> int | None:
    if rsvp.status != RsvpStatus.WAITLISTED or rsvp.waitlisted_at is None:
        return None
    ahead = session.scalar(
        select(func.count()).where(
            EventRsvp.event_id == rsvp.event_id,
            EventRsvp.status == RsvpStatus.WAITLISTED,
            or_(
                EventRsvp.waitlisted_at < rsvp.waitlisted_at,
                and_(EventRsvp.waitlisted_at == rsvp.waitlisted_at, EventRsvp.id < rsvp.id),
            ),
        )
    )
    return (ahead or 0) + 1


def waitlist_counts(session: Session, event_ids: Sequence[int]) -> dict[int, int]:
    if not event_ids:
        return {}
    rows = session.execute(
        select(EventRsvp.event_id, func.count())
        .where(EventRsvp.event_id.in_(event_ids), EventRsvp.status == RsvpStatus.WAITLISTED)
        .group_by(EventRsvp.event_id)
    )
    return {event_id: count for event_id, count in rows}


def rsvp_statuses(session: Session, event_ids: Sequence[int], user_id: int) -> dict[int, RsvpStatus]:
    if not event_ids:
        return {}
    rows = session.execute(
        select(EventRsvp.event_id, EventRsvp.status).where(
            EventRsvp.event_id.in_(event_ids), EventRsvp.user_id == user_id
        )
    )
    return {event_id: status for event_id, status in rows}

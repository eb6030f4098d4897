"""Event rules: who may schedule, see, RSVP to and check in at an event.

Seat accounting (see the package docstring): an RSVP first claims its own
RSVP row (insert, or re-open a cancelled one with a conditional UPDATE), then
tries `claim_seat`. Releasing a seat and promoting from the waitlist happen
only under the event row lock. Lock order is always event row, then RSVP rows,
except that an RSVP holds its own row before it touches the event; no other
transaction can be waiting on that row (it is new, or still cancelled in every
other transaction's view), so the two orders cannot deadlock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import audit, jobs
from core.access import Actor, CommunityContext, community_context, context_via
from core.accounts.schemas import UserOut
from core.clock import as_utc, utcnow
from core.communities import repository as community_repo
from core.earning import service as earning
from core.errors import Conflict, InvalidInput, NotFound
from core.events import repository as repo
from core.events.schemas import (
    AttendeeOut,
    AttendeesOut,
    CheckinIn,
    EventIn,
    EventOut,
    EventPatch,
    RsvpIn,
    RsvpOut,
    in_zone,
)
from core.models import EarnTrigger, Event, EventRsvp, EventStatus, MembershipStatus, Role, RsvpStatus, User
from core.pagination import paginate_by_time
from core.schemas import PageOut

PROMOTED_JOB = "hearth.notifications.rsvp_promoted"

_AUDITED = [
    "title",
    "description",
    "location",
    "online_url",
    "timezone",
    "starts_at",
    "ends_at",
    "capacity",
    "min_tier_id",
    "status",
]
_PLAIN_FIELDS = ("title", "description", "location", "online_url", "timezone", "capacity")


def _load(session: Session, actor: Actor, event_id: int) -> tuple[Event, CommunityContext]:
    event = session.get(Event, event_id)
    if event is None:
        raise NotFound("event not found", code="event_not_found")
    ctx = context_via(session, actor, event.community_id, NotFound("event not found", code="event_not_found"))
    return event, ctx


def _require_scheduled(event: Event) -> None:
    if event.status == EventStatus.CANCELLED:
        raise Conflict("this event was cancelled", code="event_cancelled")


def _require_open(event: Event, now: datetime) -> None:
    _require_scheduled(event)
    if event.ends_at <= now:
        raise Conflict("this event has ended", code="event_ended")


# --- reading -----------------------------------------------------------------


def _views(session: Session, ctx: CommunityContext, events: Sequence[Event]) -> list[EventOut]:
    ids = [e.id for e in events]
    waiting = repo.waitlist_counts(session, ids)
    mine = repo.rsvp_statuses(session, ids, ctx.actor.id)
    now = utcnow()
    out = []
    for event in events:
        zone = ZoneInfo(event.timezone)
        locked = not ctx.meets_tier(event.min_tier_id)
        tier = ctx.tiers.get(event.min_tier_id) if event.min_tier_id is not None else None
        out.append(
            EventOut(
                id=event.id,
                community_id=event.community_id,
                title=event.title,
                description=event.description,
                location=event.location,
                online_url=None if locked else event.online_url,
                timezone=event.timezone,
                starts_at=event.starts_at,
                ends_at=event.ends_at,
                local_starts_at=event.starts_at.astimezone(zone),
                local_ends_at=event.ends_at.astimezone(zone),
                status=event.status,
                phase="upcoming" if now < event.starts_at else "ongoing" if now < event.ends_at else "ended",
                capacity=event.capacity,
                going_count=event.going_count,
                waitlist_count=waiting.get(event.id, 0),
                min_tier=tier.key if tier else None,
                locked=locked,
                my_rsvp=mine.get(event.id),
                created_by=event.created_by,
                created_at=event.created_at,
            )
        )
    return out


def _rsvp_out(session: Session, rsvp: EventRsvp) -> RsvpOut:
    return RsvpOut(
        event_id=rsvp.event_id,
        user_id=rsvp.user_id,
        status=rsvp.status,
        waitlist_position=repo.waitlist_position(session, rsvp),
        note=rsvp.note,
        updated_at=rsvp.updated_at,
        checked_in_at=rsvp.checked_in_at,
        checked_in_by=rsvp.checked_in_by,
    )


def list_events(
    session: Session,
    actor: Actor,
    community_id: int,
    *,
    upcoming: bool,
    starts_from: datetime | None,
    starts_before: datetime | None,
    cursor: str | None,
    limit: int,
) -> PageOut[EventOut]:
    """Events the caller's tier does not admit are listed too, flagged `locked`."""
    ctx = community_context(session, actor, community_id)
    try:
        starts_from = as_utc(starts_from) if starts_from else None
        starts_before = as_utc(starts_before) if starts_before else None
    except OverflowError as exc:
        raise InvalidInput("`from`/`to` is out of range", code="invalid_range") from exc
    if starts_from and starts_before and starts_from >= starts_before:
        raise InvalidInput("`from` must be before `to`", code="invalid_range")
    stmt = repo.events_of(
        community_id,
        ends_after=utcnow() if upcoming else None,
        starts_from=starts_from,
        starts_before=starts_before,
    )
    # Calendar order: soonest first.
    page = paginate_by_time(
        session, stmt, Event.starts_at, Event.id, cursor=cursor, limit=limit, descending=False
    )
    return page.with_items(_views(session, ctx, page.items)).out()


def get_event(session: Session, actor: Actor, event_id: int) -> EventOut:
    event, ctx = _load(session, actor, event_id)
    return _views(session, ctx, [event])[0]


def attendees(session: Session, actor: Actor, event_id: int) -> AttendeesOut:
    event, ctx = _load(session, actor, event_id)
    ctx.require_tier(event.min_tier_id)
    going = repo.going(session, event.id)
    waitlist = repo.first_waitlisted(session, event.id, None)
    ids = [r.user_id for r in (*going, *waitlist)]
    users = {u.id: u for u in session.scalars(select(User).where(User.id.in_(ids)))} if ids else {}

    def row(rsvp: EventRsvp, position: int | None) -> AttendeeOut:
        return AttendeeOut(
            user=UserOut.model_validate(users[rsvp.user_id]),
            status=rsvp.status,
            waitlist_position=position,
            # A note is for the organisers (dietary needs, a room number), not for everyone.
            note=rsvp.note if ctx.is_staff or rsvp.user_id == actor.id else "",
            updated_at=rsvp.updated_at,
            checked_in_at=rsvp.checked_in_at,
        )

    return AttendeesOut(
        going=[row(r, None) for r in going],
        waitlist=[row(r, n) for n, r in enumerate(waitlist, start=1)],
    )


# --- scheduling --------------------------------------------------------------


def create_event(session: Session, actor: Actor, community_id: int, data: EventIn) -> EventOut:
    ctx = community_context(session, actor, community_id)
    ctx.require_role(Role.MODERATOR)
    if data.ends_at <= utcnow():
        raise InvalidInput("an event must end in the future", code="event_in_past")
    event = Event(
        community_id=community_id,
        created_by=actor.id,
        title=data.title,
        description=data.description,
        location=data.location,
        online_url=data.online_url,
        timezone=data.timezone,
        starts_at=data.starts_at,
        ends_at=data.ends_at,
        capacity=data.capacity,
        going_count=0,
        min_tier_id=ctx.tier(data.min_tier).id if data.min_tier else None,
        status=EventStatus.SCHEDULED,
    )
    session.add(event)
    session.flush()
    audit.record(
        session,
        actor,
        "event.create",
        event,
        community_id=community_id,
        after=audit.snapshot(event, _AUDITED),
    )
    return _views(session, ctx, [event])[0]


def _when(value: datetime, zone: str) -> datetime:
    try:
        return in_zone(value, zone)
    except ValueError as exc:
        raise InvalidInput(str(exc), code="invalid_time") from exc


def update_event(session: Session, actor: Actor, event_id: int, patch: EventPatch) -> EventOut:
    event, ctx = _load(session, actor, event_id)
    ctx.require_role(Role.MODERATOR)
    _require_scheduled(event)
    changes = patch.model_dump(exclude_unset=True)
    if "capacity" in changes:
        # Capacity is checked against going_count and seats are handed out: no RSVP may slip in between.
        event = repo.lock_event(session, event.id)
        _require_scheduled(event)
    before = audit.snapshot(event, _AUDITED)

    zone = changes.get("timezone", event.timezone)
    starts_at = _when(changes["starts_at"], zone) if "starts_at" in changes else event.starts_at
    ends_at = _when(changes["ends_at"], zone) if "ends_at" in changes else event.ends_at
    if ends_at <= starts_at:
        raise InvalidInput("ends_at must be after starts_at", code="ends_before_start")
    capacity = changes.get("capacity", event.capacity)
    if capacity is not None and capacity < event.going_count:
        raise Conflict(
            f"{event.going_count} members are going; capacity cannot be lower",
            code="capacity_below_attendance",
        )
    for key in _PLAIN_FIELDS:
        if key in changes:
            setattr(event, key, changes[key])
    if "starts_at" in changes:
        event.starts_at = starts_at
    if "ends_at" in changes:
        event.ends_at = ends_at
    if "min_tier" in changes:
        event.min_tier_id = ctx.tier(changes["min_tier"]).id if changes["min_tier"] else None
    session.flush()

    if "capacity" in changes:
        free = None if capacity is None else capacity - event.going_count
        promoted = _promote(session, event, free)
        if promoted:
            repo.add_seats(session, event.id, len(promoted))
            session.expire(event, ["going_count"])
    after = audit.snapshot(event, _AUDITED)
    changed = [k for k in _AUDITED if before[k] != after[k]]
    if changed:
        audit.record(
            session,
            actor,
            "event.update",
            event,
            community_id=event.community_id,
            before={k: before[k] for k in changed},
            after={k: after[k] for k in changed},
        )
    return _views(session, ctx, [event])[0]


def cancel_event(session: Session, actor: Actor, event_id: int) -> EventOut:
    """Idempotent. RSVPs are kept as they were, so attendees can still be told."""
    event, ctx = _load(session, actor, event_id)
    ctx.require_role(Role.MODERATOR)
    if event.status != EventStatus.CANCELLED:
        event.status = EventStatus.CANCELLED
        session.flush()
        audit.record(
            session,
            actor,
            "event.cancel",
            event,
            community_id=event.community_id,
            before={"status": EventStatus.SCHEDULED.value},
            after={"status": EventStatus.CANCELLED.value},
        )
    return _views(session, ctx, [event])[0]


# --- RSVPs -------------------------------------------------------------------


def _promote(session: Session, event: Event, seats: int | None) -> list[EventRsvp]:
    """Move up to `seats` (None: all) waitlisted members to going, earliest first.

    Call under `lock_event`; the caller accounts for the seats in going_count.
    """
    if seats is not None and seats <= 0:
        return []
    now = utcnow()
    promoted = list(repo.first_waitlisted(session, event.id, seats))
    for rsvp in promoted:
        rsvp.status = RsvpStatus.GOING
        rsvp.waitlisted_at = None
        rsvp.updated_at = now
    session.flush()
    for rsvp in promoted:
        jobs.enqueue(session, PROMOTED_JOB, rsvp.id)
    return promoted


def rsvp(session: Session, actor: Actor, event_id: int, data: RsvpIn) -> RsvpOut:
    """Going when a seat is free, else waitlisted. Repeating an active RSVP changes nothing."""
    actor.require_personal()
    event, ctx = _load(session, actor, event_id)
    ctx.require_tier(event.min_tier_id)
    now = utcnow()
    _require_open(event, now)

    row = repo.rsvp_of(session, event.id, actor.id)
    if row is not None and row.status != RsvpStatus.CANCELLED:
        return _rsvp_out(session, row)
    if row is None:
        row = EventRsvp(
            event_id=event.id,
            user_id=actor.id,
            status=RsvpStatus.WAITLISTED,
            waitlisted_at=now,
            updated_at=now,
            note=data.note,
        )
        try:
            with session.begin_nested():
                session.add(row)
                session.flush()
        except IntegrityError:
            # The same member's concurrent request inserted first; it owns the seat decision.
            existing = repo.rsvp_of(session, event.id, actor.id)
            assert existing is not None
            return _rsvp_out(session, existing)
    else:
        reopened = repo.reopen_rsvp(session, row.id, now)
        row = repo.rsvp_of(session, event.id, actor.id)
        assert row is not None
        if not reopened:
            return _rsvp_out(session, row)
        row.note = data.note

    took = repo.claim_seat(session, event.id)
    if not took and event.capacity is not None:
        # A concurrent cancel may hold the event lock and, not seeing this RSVP on the
        # waitlist yet, free its seat instead of handing it over. Wait for it and retry.
        repo.lock_event(session, event.id)
        took = repo.claim_seat(session, event.id)
    if took:
        row.status = RsvpStatus.GOING
        row.waitlisted_at = None
    session.flush()
    session.expire(event, ["going_count"])
    return _rsvp_out(session, row)


def cancel_rsvp(session: Session, actor: Actor, event_id: int) -> RsvpOut:
    """Cancel the caller's RSVP; a freed seat goes to the earliest waitlisted member."""
    actor.require_personal()
    event, _ctx = _load(session, actor, event_id)
    _require_open(event, utcnow())
    # Lock before reading the RSVP, so the status read is the one that holds until commit.
    event = repo.lock_event(session, event.id)
    _require_open(event, utcnow())
    row = repo.rsvp_of(session, event.id, actor.id)
    if row is None:
        raise NotFound("you have not RSVP'd to this event", code="rsvp_not_found")
    _release(session, event, row)
    return _rsvp_out(session, row)


def _release(session: Session, event: Event, row: EventRsvp) -> None:
    """Cancel an RSVP under the event lock; a freed seat goes to the waitlist first."""
    if row.status == RsvpStatus.CANCELLED:
        return
    was_going = row.status == RsvpStatus.GOING
    row.status = RsvpStatus.CANCELLED
    row.waitlisted_at = None
    row.updated_at = utcnow()
    session.flush()
    if was_going and not _promote(session, event, 1):
        repo.add_seats(session, event.id, -1)
        session.expire(event, ["going_count"])


def release_member(session: Session, community_id: int, user_id: int) -> int:
    """Give up a departing (left or banned) member's seats at upcoming events.

    Events are locked in id order, so two departures never deadlock each other.
    """
    released = 0
    for event_id in repo.open_rsvp_event_ids(session, community_id, user_id, utcnow()):
        event = repo.lock_event(session, event_id)
        row = repo.rsvp_of(session, event_id, user_id)
        if row is not None and row.status != RsvpStatus.CANCELLED:
            _release(session, event, row)
            released += 1
    return released


def check_in(session: Session, actor: Actor, event_id: int, data: CheckinIn) -> RsvpOut:
    """Idempotent: a second check-in keeps the first time and checker."""
    event, ctx = _load(session, actor, event_id)
    ctx.require_role(Role.MODERATOR)
    _require_scheduled(event)
    member = community_repo.membership(session, event.community_id, data.user_id)
    if member is None or member.status != MembershipStatus.ACTIVE:
        raise NotFound("member not found", code="member_not_found")
    row = repo.rsvp_of(session, event.id, data.user_id)
    if row is None or row.status != RsvpStatus.GOING:
        raise Conflict("only members who are going can be checked in", code="not_going")
    if row.checked_in_at is None:
        row.checked_in_at, row.checked_in_by = utcnow(), actor.id
        session.flush()
        audit.record(
            session,
            actor,
            "event.checkin",
            row,
            community_id=event.community_id,
            after={
                "event_id": event.id,
                "user_id": row.user_id,
                "checked_in_at": row.checked_in_at.isoformat(),
            },
        )
        earning.enqueue_grant(session, event.community_id, EarnTrigger.EVENT_CHECKIN, row.id)
    return _rsvp_out(session, row)

"""Concurrent RSVPs and cancellations never over-book an event or skip the waitlist.

These run on real commits through `committed_engine` (each thread its own
session and transaction), on SQLite and, with HEARTH_TEST_DATABASE_URL, on
PostgreSQL, where the conditional UPDATE and the row lock do the work.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from core import jobs
from core.access import Actor
from core.accounts import service as accounts
from core.clock import utcnow
from core.communities import service as communities
from core.communities.schemas import CommunityIn, JoinIn
from core.events import service as events
from core.events.schemas import EventIn, RsvpIn
from core.models import Event, EventRsvp, RsvpStatus, User

PROMOTED = "hearth.notifications.rsvp_promoted"


def _setup(
    engine: Engine, *, members: int, capacity: int | None, events_count: int = 1
) -> tuple[list[int], list[int]]:
    """A community with `members` members and events; returns (event ids, member user ids)."""
    tag = uuid.uuid4().hex[:10]
    with sessionmaker(bind=engine, expire_on_commit=False)() as s:

        def user(n: int | str) -> User:
            return accounts.create_user(
                s, email=f"rsvp-{tag}-{n}@example.com", password="correct horse battery", display_name=f"U{n}"
            )

        owner = user("owner")
        community = communities.create_community(
            s, Actor(owner), CommunityIn(slug=f"rsvp-race-{tag}", name="RSVP race")
        )
        people = [user(n) for n in range(members)]
        for person in people:
            communities.join(s, Actor(person), community.id, JoinIn())
        start = utcnow() + timedelta(days=2)
        event_ids = [
            events.create_event(
                s,
                Actor(owner),
                community.id,
                EventIn(
                    title=f"Race {n}",
                    timezone="Asia/Taipei",
                    starts_at=start,
                    ends_at=start + timedelta(hours=2),
                    capacity=capacity,
                ),
            ).id
            for n in range(events_count)
        ]
        s.commit()
        return event_ids, [p.id for p in people]


def _act(engine: Engine, user_id: int, action: Callable[[Session, Actor], object]) -> None:
    with sessionmaker(bind=engine, expire_on_commit=False)() as s:
        user = s.get(User, user_id)
        assert user is not None
        action(s, Actor(user))
        s.commit()


def _run_at_once(calls: list[Callable[[], None]]) -> None:
    """Start every call at the same moment; re-raise the first failure."""
    barrier = threading.Barrier(len(calls))
    errors: list[BaseException] = []

    def run(call: Callable[[], None]) -> None:
        barrier.wait()
        try:
            call()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread is stuck (deadlock?)"
    if errors:
        raise errors[0]


def _rsvp(engine: Engine, event_id: int, user_id: int) -> Callable[[], None]:
    return lambda: _act(engine, user_id, lambda s, a: events.rsvp(s, a, event_id, RsvpIn()))


def _cancel(engine: Engine, event_id: int, user_id: int) -> Callable[[], None]:
    return lambda: _act(engine, user_id, lambda s, a: events.cancel_rsvp(s, a, event_id))


def _state(engine: Engine, event_id: int) -> tuple[int, dict[int, RsvpStatus], list[int]]:
    """(going_count, user id -> status, waitlisted user ids in order)."""
    with sessionmaker(bind=engine)() as s:
        going_count = s.scalar(select(Event.going_count).where(Event.id == event_id))
        rows = s.scalars(select(EventRsvp).where(EventRsvp.event_id == event_id)).all()
        waitlist = [
            r.user_id
            for r in sorted(
                (r for r in rows if r.status == RsvpStatus.WAITLISTED), key=lambda r: (r.waitlisted_at, r.id)
            )
        ]
        assert going_count is not None
        return going_count, {r.user_id: r.status for r in rows}, waitlist


def _rsvp_id(engine: Engine, event_id: int, user_id: int) -> int:
    with sessionmaker(bind=engine)() as s:
        found = s.scalar(
            select(EventRsvp.id).where(EventRsvp.event_id == event_id, EventRsvp.user_id == user_id)
        )
        assert found is not None
        return found


def test_twelve_members_race_for_three_seats(committed_engine: Engine) -> None:
    [event_id], people = _setup(committed_engine, members=12, capacity=3)
    _run_at_once([_rsvp(committed_engine, event_id, uid) for uid in people])
    going_count, statuses, waitlist = _state(committed_engine, event_id)
    assert going_count == 3
    assert sorted(statuses.values()) == [RsvpStatus.GOING] * 3 + [RsvpStatus.WAITLISTED] * 9
    assert len(waitlist) == 9


def test_one_member_rsvping_from_many_requests_takes_one_seat(committed_engine: Engine) -> None:
    [event_id], [uid] = _setup(committed_engine, members=1, capacity=5)
    _run_at_once([_rsvp(committed_engine, event_id, uid) for _ in range(6)])
    going_count, statuses, _ = _state(committed_engine, event_id)
    assert (going_count, statuses) == (1, {uid: RsvpStatus.GOING})
    # Coming back after cancelling re-opens the one RSVP row once, not once per request.
    _cancel(committed_engine, event_id, uid)()
    _run_at_once([_rsvp(committed_engine, event_id, uid) for _ in range(6)])
    going_count, statuses, _ = _state(committed_engine, event_id)
    assert (going_count, statuses) == (1, {uid: RsvpStatus.GOING})


def test_going_members_cancelling_at_once_promote_the_waitlist_in_order(
    committed_engine: Engine, recorded_jobs: list[jobs.Job]
) -> None:
    [event_id], people = _setup(committed_engine, members=8, capacity=3)
    for uid in people:  # one by one: the first three go, the rest queue in this order
        _rsvp(committed_engine, event_id, uid)()
    going, queued = people[:3], people[3:]
    _run_at_once([_cancel(committed_engine, event_id, uid) for uid in going])
    going_count, statuses, waitlist = _state(committed_engine, event_id)
    assert going_count == 3
    assert [uid for uid in people if statuses[uid] == RsvpStatus.GOING] == queued[:3]
    assert waitlist == queued[3:]
    assert sorted(j.args[0] for j in recorded_jobs if j.name == PROMOTED) == sorted(
        _rsvp_id(committed_engine, event_id, uid) for uid in queued[:3]
    )


def test_cancel_racing_an_rsvp_hands_the_seat_to_the_waitlist(
    committed_engine: Engine, recorded_jobs: list[jobs.Job]
) -> None:
    """A (going) cancels while C RSVPs and B waits: B gets the seat, whatever the interleaving."""
    rounds = 6
    event_ids, (a, b, c) = _setup(committed_engine, members=3, capacity=1, events_count=rounds)
    for event_id in event_ids:
        _rsvp(committed_engine, event_id, a)()
        _rsvp(committed_engine, event_id, b)()
        recorded_jobs.clear()
        _run_at_once([_cancel(committed_engine, event_id, a), _rsvp(committed_engine, event_id, c)])
        going_count, statuses, waitlist = _state(committed_engine, event_id)
        assert going_count == 1
        assert statuses == {a: RsvpStatus.CANCELLED, b: RsvpStatus.GOING, c: RsvpStatus.WAITLISTED}
        assert waitlist == [c]
        assert [j.args[0] for j in recorded_jobs if j.name == PROMOTED] == [
            _rsvp_id(committed_engine, event_id, b)
        ]


def test_cancel_racing_an_rsvp_never_leaves_a_seat_empty(committed_engine: Engine) -> None:
    """A (going) cancels while C RSVPs to a full event with no waitlist: C always ends up going."""
    rounds = 6
    event_ids, (a, c) = _setup(committed_engine, members=2, capacity=1, events_count=rounds)
    for event_id in event_ids:
        _rsvp(committed_engine, event_id, a)()
        _run_at_once([_cancel(committed_engine, event_id, a), _rsvp(committed_engine, event_id, c)])
        going_count, statuses, waitlist = _state(committed_engine, event_id)
        assert (going_count, statuses, waitlist) == (1, {a: RsvpStatus.CANCELLED, c: RsvpStatus.GOING}, [])


def test_going_count_matches_the_rsvps(committed_engine: Engine) -> None:
    """Churn: members RSVP and cancel at once; the counter still equals the going rows."""
    [event_id], people = _setup(committed_engine, members=10, capacity=4)
    for uid in people[:6]:
        _rsvp(committed_engine, event_id, uid)()
    calls = [_cancel(committed_engine, event_id, uid) for uid in people[:6:2]]
    calls += [_rsvp(committed_engine, event_id, uid) for uid in people[6:]]
    _run_at_once(calls)
    going_count, statuses, _ = _state(committed_engine, event_id)
    going = sum(1 for s in statuses.values() if s == RsvpStatus.GOING)
    assert going_count == going == 4
    with sessionmaker(bind=committed_engine)() as s:
        waiting = s.scalar(
            select(func.count()).where(
                EventRsvp.event_id == event_id, EventRsvp.status == RsvpStatus.WAITLISTED
            )
        )
    assert waiting == 10 - 3 - 4

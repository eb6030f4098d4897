from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import jobs
from core.access import Actor
from core.clock import utcnow
from core.events import service as events
from core.events.schemas import EventIn
from core.models import AuditLog, Community, Event, EventRsvp, Role, RsvpStatus, User, Visibility
from tests.factories import add_member, auth, make_community, make_user

PROMOTED = "hearth.notifications.rsvp_promoted"


def _owner_of(session: Session, community: Community) -> User:
    owner = session.get(User, community.created_by)
    assert owner is not None
    return owner


def make_event(session: Session, community: Community, **overrides: Any) -> int:
    start = utcnow() + timedelta(days=7)
    fields: dict[str, Any] = {
        "title": "Night hike",
        "timezone": "Asia/Taipei",
        "starts_at": start,
        "ends_at": start + timedelta(hours=3),
        **overrides,
    }
    return events.create_event(
        session, Actor(_owner_of(session, community)), community.id, EventIn(**fields)
    ).id


def event_body(**overrides: Any) -> dict[str, Any]:
    start = (utcnow() + timedelta(days=3)).replace(microsecond=0)
    return {
        "title": "Tea tasting",
        "timezone": "Asia/Taipei",
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=2)).isoformat(),
        **overrides,
    }


def rsvp(client: TestClient, session: Session, user: User, event_id: int) -> dict[str, Any]:
    r = client.post(f"/events/{event_id}/rsvp", headers=auth(session, user))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def promoted_jobs(recorded: list[jobs.Job]) -> list[int]:
    return [job.args[0] for job in recorded if job.name == PROMOTED]


def rsvp_id(session: Session, event_id: int, user: User) -> int:
    found = session.scalar(
        select(EventRsvp.id).where(EventRsvp.event_id == event_id, EventRsvp.user_id == user.id)
    )
    assert found is not None
    return found


# --- permissions ---------------------------------------------------------------

ROLES = [Role.MEMBER, Role.MODERATOR, Role.ADMIN]
TIERS = ["free", "member", "vip"]


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("role", ROLES)
def test_permission_matrix_for_members(client: TestClient, session: Session, role: Role, tier: str) -> None:
    community = make_community(session)
    user = add_member(session, community, role=role, tier=tier)
    h = auth(session, user)
    staff = role != Role.MEMBER

    created = client.post(f"/communities/{community.id}/events", json=event_body(), headers=h)
    assert created.status_code == (201 if staff else 403), created.text
    if not staff:
        assert created.json()["error"] == "insufficient_role"

    gated = make_event(session, community, min_tier="member", capacity=5, online_url="https://meet.example/x")
    view = client.get(f"/events/{gated}", headers=h).json()
    admitted = staff or tier != "free"
    assert view["locked"] is (not admitted)
    assert view["online_url"] == ("https://meet.example/x" if admitted else None)
    assert view["min_tier"] == "member"

    r = client.post(f"/events/{gated}/rsvp", headers=h)
    if admitted:
        assert r.status_code == 200 and r.json()["status"] == "going"
    else:
        assert r.status_code == 403 and r.json()["error"] == "tier_required"

    patch = client.patch(f"/events/{gated}", json={"title": "Renamed"}, headers=h)
    assert patch.status_code == (200 if staff else 403)
    cancel = client.post(f"/events/{gated}/cancel", headers=h)
    assert cancel.status_code == (200 if staff else 403)
    # Who goes to a tier-gated event is as gated as the event itself.
    assert client.get(f"/events/{gated}/attendees", headers=h).status_code == (200 if admitted else 403)


def test_non_member_of_a_public_community_sees_locked_events_but_cannot_act(
    client: TestClient, session: Session
) -> None:
    community = make_community(session)
    event_id = make_event(session, community)
    outsider = auth(session, make_user(session))
    listed = client.get(f"/communities/{community.id}/events", headers=outsider)
    assert listed.status_code == 200
    assert [(e["id"], e["locked"]) for e in listed.json()["items"]] == [(event_id, True)]
    for method, path, code in [
        ("post", f"/events/{event_id}/rsvp", "not_a_member"),
        ("get", f"/events/{event_id}/attendees", "not_a_member"),
        ("patch", f"/events/{event_id}", "not_a_member"),
        ("post", f"/communities/{community.id}/events", "not_a_member"),
    ]:
        body = {"title": "x"} if method == "patch" else event_body() if path.endswith("/events") else None
        r = client.request(method, path, json=body, headers=outsider)
        assert r.status_code == 403 and r.json()["error"] == code, path


def test_private_community_events_do_not_exist_for_outsiders(client: TestClient, session: Session) -> None:
    community = make_community(session, visibility=Visibility.PRIVATE)
    event_id = make_event(session, community)
    other = make_community(session)
    stranger = add_member(session, other, role=Role.ADMIN, tier="vip")  # staff elsewhere counts for nothing
    h = auth(session, stranger)
    r = client.get(f"/communities/{community.id}/events", headers=h)
    assert r.status_code == 404 and r.json()["error"] == "community_not_found"
    for method, path in [
        ("get", f"/events/{event_id}"),
        ("post", f"/events/{event_id}/rsvp"),
        ("delete", f"/events/{event_id}/rsvp"),
        ("get", f"/events/{event_id}/attendees"),
        ("post", f"/events/{event_id}/cancel"),
    ]:
        r = client.request(method, path, headers=h)
        assert r.status_code == 404 and r.json()["error"] == "event_not_found", path
    r = client.post(f"/events/{event_id}/checkins", json={"user_id": stranger.id}, headers=h)
    assert r.status_code == 404 and r.json()["error"] == "event_not_found"
    assert client.get("/events/999999", headers=h).json()["error"] == "event_not_found"
    # ...and its events never show up in another community's list.
    make_event(session, other)
    listed = client.get(f"/communities/{other.id}/events", headers=h).json()["items"]
    assert event_id not in {e["id"] for e in listed}


# --- time zones ---------------------------------------------------------------


def test_naive_times_are_read_in_the_event_time_zone(client: TestClient, session: Session) -> None:
    community = make_community(session)
    h = auth(session, _owner_of(session, community))
    body = event_body(starts_at="2031-05-01T19:00:00", ends_at="2031-05-01T21:30:00")
    r = client.post(f"/communities/{community.id}/events", json=body, headers=h)
    assert r.status_code == 201, r.text
    event = r.json()
    assert event["timezone"] == "Asia/Taipei"
    assert event["starts_at"] == "2031-05-01T11:00:00Z"
    assert event["ends_at"] == "2031-05-01T13:30:00Z"
    assert event["local_starts_at"] == "2031-05-01T19:00:00+08:00"
    assert event["local_ends_at"] == "2031-05-01T21:30:00+08:00"
    stored = session.get(Event, event["id"])
    assert stored is not None and stored.starts_at == datetime(2031, 5, 1, 11, tzinfo=UTC)


def test_aware_times_keep_their_offset(client: TestClient, session: Session) -> None:
    community = make_community(session)
    h = auth(session, _owner_of(session, community))
    body = event_body(starts_at="2031-05-01T19:00:00-07:00", ends_at="2031-05-02T05:00:00+01:00")
    event = client.post(f"/communities/{community.id}/events", json=body, headers=h).json()
    assert event["starts_at"] == "2031-05-02T02:00:00Z"
    assert event["ends_at"] == "2031-05-02T04:00:00Z"
    assert event["local_starts_at"] == "2031-05-02T10:00:00+08:00"


def test_changing_the_time_zone(client: TestClient, session: Session) -> None:
    community = make_community(session)
    h = auth(session, _owner_of(session, community))
    body = event_body(starts_at="2031-01-10T10:00:00", ends_at="2031-01-10T12:00:00")
    event_id = client.post(f"/communities/{community.id}/events", json=body, headers=h).json()["id"]
    # Only the zone: the same instant, shown in the new zone.
    moved = client.patch(f"/events/{event_id}", json={"timezone": "Europe/London"}, headers=h).json()
    assert moved["starts_at"] == "2031-01-10T02:00:00Z"
    assert moved["local_starts_at"] == "2031-01-10T02:00:00Z"
    # Naive times in a patch are read in the zone sent with them (else the event's).
    r = client.patch(
        f"/events/{event_id}",
        json={
            "timezone": "America/New_York",
            "starts_at": "2031-01-10T09:00:00",
            "ends_at": "2031-01-10T11:00:00",
        },
        headers=h,
    )
    assert r.status_code == 200, r.text
    assert r.json()["starts_at"] == "2031-01-10T14:00:00Z"
    assert r.json()["local_starts_at"] == "2031-01-10T09:00:00-05:00"
    r = client.patch(f"/events/{event_id}", json={"ends_at": "2031-01-10T08:00:00"}, headers=h)
    assert r.status_code == 422 and r.json()["error"] == "ends_before_start"
    r = client.patch(f"/events/{event_id}", json={"starts_at": "2031-03-09T02:30:00"}, headers=h)
    assert r.status_code == 422 and r.json()["error"] == "invalid_time"  # a daylight-saving gap in New York


@pytest.mark.parametrize(
    "overrides",
    [
        {"timezone": "Mars/Olympus_Mons"},
        {"timezone": "../../etc/passwd"},
        {"timezone": ""},
        {"starts_at": "2031-05-01T19:00:00", "ends_at": "2031-05-01T18:00:00"},
        {"starts_at": "2031-05-01T19:00:00", "ends_at": "2031-05-01T19:00:00"},
        # 02:30 does not exist in New York on the day clocks spring forward.
        {
            "timezone": "America/New_York",
            "starts_at": "2031-03-09T02:30:00",
            "ends_at": "2031-03-09T04:00:00",
        },
        {"starts_at": "0001-01-01T00:00:00", "ends_at": "0001-01-01T01:00:00"},
        {"starts_at": "2300-01-01T00:00:00Z", "ends_at": "2300-01-01T01:00:00Z"},
        {"starts_at": "not a date"},
        {"capacity": 0},
        {"capacity": -3},
        {"title": ""},
        {"title": "x" * 201},
        {"online_url": "javascript:alert(1)"},
        {"min_tier": "Not A Key"},
        {"going_count": 5},
        {"status": "cancelled"},
    ],
)
def test_event_validation(client: TestClient, session: Session, overrides: dict[str, Any]) -> None:
    community = make_community(session)
    h = auth(session, _owner_of(session, community))
    r = client.post(f"/communities/{community.id}/events", json=event_body(**overrides), headers=h)
    assert r.status_code == 422 and r.json()["error"] == "validation_error", r.text


def test_event_rules_beyond_the_schema(client: TestClient, session: Session) -> None:
    community = make_community(session)
    h = auth(session, _owner_of(session, community))
    past = client.post(
        f"/communities/{community.id}/events",
        json=event_body(starts_at="2020-01-01T10:00:00", ends_at="2020-01-01T11:00:00"),
        headers=h,
    )
    assert past.status_code == 422 and past.json()["error"] == "event_in_past"
    unknown = client.post(f"/communities/{community.id}/events", json=event_body(min_tier="gold"), headers=h)
    assert unknown.status_code == 404 and unknown.json()["error"] == "tier_not_found"
    event_id = make_event(session, community)
    for patch in [{"title": None}, {"timezone": None}, {"capacity": 0}, {"colour": "red"}]:
        r = client.patch(f"/events/{event_id}", json=patch, headers=h)
        assert r.status_code == 422 and r.json()["error"] == "validation_error", patch
    r = client.get(
        f"/communities/{community.id}/events?from=2031-02-01T00:00:00&to=2031-01-01T00:00:00", headers=h
    )
    assert r.status_code == 422 and r.json()["error"] == "invalid_range"
    r = client.get(f"/communities/{community.id}/events?from=0001-01-01T00:00:00%2B14:00", headers=h)
    assert r.status_code == 422 and r.json()["error"] == "invalid_range"
    assert client.get(f"/communities/{community.id}/events?cursor=zzz", headers=h).json()["error"] == (
        "invalid_cursor"
    )


def test_audit_rows_for_create_update_cancel(client: TestClient, session: Session) -> None:
    community = make_community(session)
    h = auth(session, _owner_of(session, community))
    event_id = client.post(f"/communities/{community.id}/events", json=event_body(), headers=h).json()["id"]
    client.patch(f"/events/{event_id}", json={"title": "Oolong tasting", "capacity": 10}, headers=h)
    client.patch(f"/events/{event_id}", json={"title": "Oolong tasting"}, headers=h)  # no change, no row
    client.post(f"/events/{event_id}/cancel", headers=h)
    again = client.post(f"/events/{event_id}/cancel", headers=h)
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    rows = session.scalars(
        select(AuditLog)
        .where(AuditLog.target_type == "events", AuditLog.target_id == event_id)
        .order_by(AuditLog.id)
    ).all()
    assert [r.action for r in rows] == ["event.create", "event.update", "event.cancel"]
    assert all(r.community_id == community.id for r in rows)
    assert rows[1].before == {"title": "Tea tasting", "capacity": None}
    assert rows[1].after == {"title": "Oolong tasting", "capacity": 10}


# --- listing -------------------------------------------------------------------


def test_listing_filters_and_pages(client: TestClient, session: Session) -> None:
    community = make_community(session)
    h = auth(session, _owner_of(session, community))
    soon = make_event(
        session, community, starts_at=datetime(2031, 1, 5, 10), ends_at=datetime(2031, 1, 5, 12)
    )
    later = make_event(
        session, community, starts_at=datetime(2031, 3, 5, 10), ends_at=datetime(2031, 3, 5, 12)
    )
    ended = make_event(session, community)
    row = session.get(Event, ended)
    assert row is not None
    row.starts_at, row.ends_at = utcnow() - timedelta(days=2), utcnow() - timedelta(days=1)
    session.flush()

    upcoming = client.get(f"/communities/{community.id}/events", headers=h).json()
    assert [e["id"] for e in upcoming["items"]] == [soon, later] and upcoming["next_cursor"] is None
    everything = client.get(f"/communities/{community.id}/events?upcoming=false", headers=h).json()
    # Calendar order (soonest start first), not creation order.
    assert [e["id"] for e in everything["items"]] == [ended, soon, later]

    first = client.get(f"/communities/{community.id}/events?upcoming=false&limit=2", headers=h).json()
    assert [e["id"] for e in first["items"]] == [ended, soon] and first["next_cursor"]
    rest = client.get(
        f"/communities/{community.id}/events?upcoming=false&limit=2&cursor={first['next_cursor']}", headers=h
    ).json()
    assert [e["id"] for e in rest["items"]] == [later] and rest["next_cursor"] is None

    window = client.get(
        f"/communities/{community.id}/events?from=2031-02-01T00:00:00Z&to=2031-04-01T00:00:00Z", headers=h
    ).json()
    assert [e["id"] for e in window["items"]] == [later]


# --- RSVPs, capacity and the waitlist --------------------------------------------


def test_capacity_waitlist_and_promotion(
    client: TestClient, session: Session, recorded_jobs: list[jobs.Job]
) -> None:
    community = make_community(session)
    owner = _owner_of(session, community)
    a, b, c, d = (add_member(session, community) for _ in range(4))
    event_id = make_event(session, community, capacity=2)

    assert rsvp(client, session, a, event_id)["status"] == "going"
    assert rsvp(client, session, b, event_id)["status"] == "going"
    c_rsvp = rsvp(client, session, c, event_id)
    assert c_rsvp["status"] == "waitlisted" and c_rsvp["waitlist_position"] == 1
    assert rsvp(client, session, d, event_id)["waitlist_position"] == 2
    assert rsvp(client, session, d, event_id)["waitlist_position"] == 2  # repeating changes nothing

    view = client.get(f"/events/{event_id}", headers=auth(session, c)).json()
    assert (view["going_count"], view["waitlist_count"], view["my_rsvp"]) == (2, 2, "waitlisted")
    assert recorded_jobs == []

    # A going member cancels: the earliest waitlisted member takes the seat and is told.
    r = client.delete(f"/events/{event_id}/rsvp", headers=auth(session, a))
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert promoted_jobs(recorded_jobs) == [rsvp_id(session, event_id, c)]
    view = client.get(f"/events/{event_id}", headers=auth(session, c)).json()
    assert (view["going_count"], view["waitlist_count"], view["my_rsvp"]) == (2, 1, "going")

    # Re-RSVP after cancelling joins the back of the queue.
    again = rsvp(client, session, a, event_id)
    assert again["status"] == "waitlisted" and again["waitlist_position"] == 2

    # A waitlisted member leaving frees no seat and promotes nobody.
    recorded_jobs.clear()
    assert client.delete(f"/events/{event_id}/rsvp", headers=auth(session, d)).json()["status"] == "cancelled"
    assert recorded_jobs == []
    assert rsvp(client, session, d, event_id)["waitlist_position"] == 2

    # Lowering capacity below attendance is refused; raising it promotes in order.
    h = auth(session, owner)
    low = client.patch(f"/events/{event_id}", json={"capacity": 1}, headers=h)
    assert low.status_code == 409 and low.json()["error"] == "capacity_below_attendance"
    raised = client.patch(f"/events/{event_id}", json={"capacity": 3}, headers=h).json()
    assert (raised["capacity"], raised["going_count"], raised["waitlist_count"]) == (3, 3, 1)
    assert promoted_jobs(recorded_jobs) == [rsvp_id(session, event_id, a)]
    unlimited = client.patch(f"/events/{event_id}", json={"capacity": None}, headers=h).json()
    assert (unlimited["capacity"], unlimited["going_count"], unlimited["waitlist_count"]) == (None, 4, 0)
    assert promoted_jobs(recorded_jobs)[-1] == rsvp_id(session, event_id, d)
    assert client.patch(f"/events/{event_id}", json={"capacity": 4}, headers=h).status_code == 200

    attendees = client.get(f"/events/{event_id}/attendees", headers=auth(session, b)).json()
    assert [x["user"]["id"] for x in attendees["going"]] == [b.id, c.id, a.id, d.id]
    assert attendees["waitlist"] == []


def test_freed_seat_without_waitlist_goes_back_to_the_pool(client: TestClient, session: Session) -> None:
    community = make_community(session)
    a, b = add_member(session, community), add_member(session, community)
    event_id = make_event(session, community, capacity=1)
    assert rsvp(client, session, a, event_id)["status"] == "going"
    client.delete(f"/events/{event_id}/rsvp", headers=auth(session, a))
    assert client.get(f"/events/{event_id}", headers=auth(session, a)).json()["going_count"] == 0
    assert rsvp(client, session, b, event_id)["status"] == "going"
    assert rsvp(client, session, a, event_id)["status"] == "waitlisted"
    r = client.delete(f"/events/{event_id}/rsvp", headers=auth(session, add_member(session, community)))
    assert r.status_code == 404 and r.json()["error"] == "rsvp_not_found"


def test_attendees_lists_going_then_waitlist_in_order(client: TestClient, session: Session) -> None:
    community = make_community(session)
    users = [add_member(session, community) for _ in range(4)]
    event_id = make_event(session, community, capacity=2)
    for user in users:
        client.post(
            f"/events/{event_id}/rsvp", json={"note": f"hi from {user.id}"}, headers=auth(session, user)
        )
    body = client.get(f"/events/{event_id}/attendees", headers=auth(session, users[0])).json()
    assert [x["user"]["id"] for x in body["going"]] == [users[0].id, users[1].id]
    assert [(x["user"]["id"], x["waitlist_position"]) for x in body["waitlist"]] == [
        (users[2].id, 1),
        (users[3].id, 2),
    ]
    assert body["going"][0]["note"] == f"hi from {users[0].id}"
    assert "email" not in body["going"][0]["user"]


def test_cancelled_and_ended_events_reject_rsvps(client: TestClient, session: Session) -> None:
    community = make_community(session)
    h = auth(session, _owner_of(session, community))
    member = add_member(session, community)
    cancelled = make_event(session, community)
    rsvp(client, session, member, cancelled)
    client.post(f"/events/{cancelled}/cancel", headers=h)
    for method in ("post", "delete"):
        r = client.request(method, f"/events/{cancelled}/rsvp", headers=auth(session, member))
        assert r.status_code == 409 and r.json()["error"] == "event_cancelled"
    r = client.patch(f"/events/{cancelled}", json={"title": "back on"}, headers=h)
    assert r.status_code == 409 and r.json()["error"] == "event_cancelled"

    ended = make_event(session, community)
    rsvp(client, session, member, ended)
    row = session.get(Event, ended)
    assert row is not None
    row.starts_at, row.ends_at = utcnow() - timedelta(hours=3), utcnow() - timedelta(hours=1)
    session.flush()
    for method in ("post", "delete"):
        r = client.request(method, f"/events/{ended}/rsvp", headers=auth(session, member))
        assert r.status_code == 409 and r.json()["error"] == "event_ended"


def test_rsvp_is_personal_not_for_api_keys(client: TestClient, session: Session) -> None:
    community = make_community(session)
    owner = _owner_of(session, community)
    event_id = make_event(session, community)
    key = client.post(
        f"/communities/{community.id}/api-keys",
        json={"name": "bot", "scopes": ["read", "write"]},
        headers=auth(session, owner),
    )
    assert key.status_code == 201, key.text
    h = {"Authorization": f"Bearer {key.json()['key']}"}
    assert client.get(f"/events/{event_id}", headers=h).status_code == 200
    r = client.post(f"/events/{event_id}/rsvp", headers=h)
    assert r.status_code == 403 and r.json()["error"] == "api_key_not_allowed"


# --- check-in ------------------------------------------------------------------


def test_check_in_rules(client: TestClient, session: Session) -> None:
    community = make_community(session)
    moderator = add_member(session, community, role=Role.MODERATOR)
    going, waiting, absent = (add_member(session, community) for _ in range(3))
    event_id = make_event(session, community, capacity=1)
    rsvp(client, session, going, event_id)
    rsvp(client, session, waiting, event_id)
    h = auth(session, moderator)

    r = client.post(f"/events/{event_id}/checkins", json={"user_id": going.id}, headers=auth(session, going))
    assert r.status_code == 403 and r.json()["error"] == "insufficient_role"

    first = client.post(f"/events/{event_id}/checkins", json={"user_id": going.id}, headers=h)
    assert first.status_code == 200, first.text
    assert first.json()["checked_in_at"] is not None and first.json()["checked_in_by"] == moderator.id
    second = client.post(f"/events/{event_id}/checkins", json={"user_id": going.id}, headers=h)
    assert second.status_code == 200 and second.json()["checked_in_at"] == first.json()["checked_in_at"]

    for user in (waiting, absent):
        r = client.post(f"/events/{event_id}/checkins", json={"user_id": user.id}, headers=h)
        assert r.status_code == 409 and r.json()["error"] == "not_going"
    elsewhere = add_member(session, make_community(session))
    for user_id in (elsewhere.id, 999_999):
        r = client.post(f"/events/{event_id}/checkins", json={"user_id": user_id}, headers=h)
        assert r.status_code == 404 and r.json()["error"] == "member_not_found"
    for body in ({}, {"user_id": 0}, {"user_id": going.id, "at": "now"}):
        r = client.post(f"/events/{event_id}/checkins", json=body, headers=h)
        assert r.status_code == 422 and r.json()["error"] == "validation_error"

    row = session.get(EventRsvp, rsvp_id(session, event_id, going))
    session.refresh(row)
    assert row is not None and row.checked_in_by == moderator.id and row.status == RsvpStatus.GOING
    audits = session.scalars(select(AuditLog).where(AuditLog.action == "event.checkin")).all()
    assert [(a.target_id, a.community_id, a.actor_user_id) for a in audits] == [
        (row.id, community.id, moderator.id)
    ]
    attendees = client.get(f"/events/{event_id}/attendees", headers=h).json()
    assert attendees["going"][0]["checked_in_at"] == first.json()["checked_in_at"]


def test_changing_the_tier_gate(client: TestClient, session: Session) -> None:
    community = make_community(session)
    h = auth(session, _owner_of(session, community))
    free = auth(session, add_member(session, community))
    event_id = make_event(session, community)
    assert client.get(f"/events/{event_id}", headers=free).json()["locked"] is False
    gated = client.patch(f"/events/{event_id}", json={"min_tier": "vip"}, headers=h).json()
    assert gated["min_tier"] == "vip"
    assert client.get(f"/events/{event_id}", headers=free).json()["locked"] is True
    assert client.post(f"/events/{event_id}/rsvp", headers=free).json()["error"] == "tier_required"
    opened = client.patch(f"/events/{event_id}", json={"min_tier": None}, headers=h).json()
    assert opened["min_tier"] is None
    assert client.post(f"/events/{event_id}/rsvp", headers=free).json()["status"] == "going"


def test_cancelling_an_rsvp_twice_is_harmless(client: TestClient, session: Session) -> None:
    community = make_community(session)
    a, b = add_member(session, community), add_member(session, community)
    event_id = make_event(session, community, capacity=1)
    rsvp(client, session, a, event_id)
    rsvp(client, session, b, event_id)
    for _ in range(2):
        r = client.delete(f"/events/{event_id}/rsvp", headers=auth(session, a))
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
    view = client.get(f"/events/{event_id}", headers=auth(session, b)).json()
    assert (view["going_count"], view["waitlist_count"], view["my_rsvp"]) == (1, 0, "going")


def test_leaving_or_being_banned_frees_seats_for_the_waitlist(
    client: TestClient, session: Session, recorded_jobs: list[jobs.Job]
) -> None:
    community = make_community(session)
    owner = _owner_of(session, community)
    event_id = make_event(session, community, capacity=2)
    leaver, banned, waiting, also_waiting = (add_member(session, community) for _ in range(4))
    for user in (leaver, banned, waiting, also_waiting):
        rsvp(client, session, user, event_id)

    assert client.post(f"/communities/{community.id}/leave", headers=auth(session, leaver)).is_success
    r = client.post(
        f"/communities/{community.id}/bans", json={"user_id": banned.id}, headers=auth(session, owner)
    )
    assert r.status_code == 201

    people = client.get(f"/events/{event_id}/attendees", headers=auth(session, owner)).json()
    assert [a["user"]["id"] for a in people["going"]] == [waiting.id, also_waiting.id]
    assert people["waitlist"] == []
    event = session.get(Event, event_id)
    assert event is not None
    session.refresh(event)
    assert event.going_count == 2
    promoted = [j for j in recorded_jobs if j.name == "hearth.notifications.rsvp_promoted"]
    assert len(promoted) == 2


def test_events_say_whether_they_are_upcoming_ongoing_or_ended(client: TestClient, session: Session) -> None:
    community = make_community(session)
    h = auth(session, _owner_of(session, community))
    now = utcnow()
    upcoming = make_event(session, community)
    ongoing = make_event(session, community)
    ended = make_event(session, community)
    for event_id, (start, end) in {
        ongoing: (now - timedelta(hours=1), now + timedelta(hours=1)),
        ended: (now - timedelta(days=2), now - timedelta(days=1)),
    }.items():
        row = session.get(Event, event_id)
        assert row is not None
        row.starts_at, row.ends_at = start, end
    session.flush()
    phases = {
        e["id"]: e["phase"]
        for e in client.get(f"/communities/{community.id}/events?upcoming=false", headers=h).json()["items"]
    }
    assert phases == {upcoming: "upcoming", ongoing: "ongoing", ended: "ended"}

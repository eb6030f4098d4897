from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.access import Actor
from core.courses import service as courses
from core.courses.schemas import CourseIn, LessonIn
from core.models import AuditLog, Community, Enrollment, Role, User, Visibility
from tests.factories import add_member, auth, make_community, make_user


def _owner_of(session: Session, community: Community) -> User:
    owner = session.get(User, community.created_by)
    assert owner is not None
    return owner


def make_course(
    session: Session,
    community: Community,
    *,
    lessons: int = 3,
    publish: bool = True,
    min_tier: str | None = None,
) -> tuple[int, list[int]]:
    actor = Actor(_owner_of(session, community))
    course = courses.create_course(
        session, actor, community.id, CourseIn(title="Mandarin for hikers", min_tier=min_tier)
    )
    lesson_ids = [
        courses.add_lesson(
            session,
            actor,
            course.id,
            LessonIn(title=f"Lesson {n}", body=f"# Part {n}\n\n**Bold** text", duration_minutes=10 * n),
        ).id
        for n in range(1, lessons + 1)
    ]
    if publish:
        courses.publish_course(session, actor, course.id)
    return course.id, lesson_ids


# --- permissions ---------------------------------------------------------------


@pytest.mark.parametrize("tier", ["free", "member", "vip"])
@pytest.mark.parametrize("role", [Role.MEMBER, Role.MODERATOR, Role.ADMIN])
def test_permission_matrix(client: TestClient, session: Session, role: Role, tier: str) -> None:
    community = make_community(session)
    user = add_member(session, community, role=role, tier=tier)
    h = auth(session, user)
    admin = role == Role.ADMIN
    staff = role != Role.MEMBER

    r = client.post(f"/communities/{community.id}/courses", json={"title": "Knots"}, headers=h)
    assert r.status_code == (201 if admin else 403), r.text
    if not admin:
        assert r.json()["error"] == "insufficient_role"

    draft, draft_lessons = make_course(session, community, publish=False)
    seen = client.get(f"/courses/{draft}", headers=h)
    assert seen.status_code == (200 if staff else 404)
    if not staff:
        assert seen.json()["error"] == "course_not_found"
    drafts = client.get(f"/communities/{community.id}/courses?drafts=true", headers=h)
    assert drafts.status_code == (200 if staff else 403)
    for method, path, body in [
        ("patch", f"/courses/{draft}", {"title": "x"}),
        ("put", f"/courses/{draft}/lessons/order", {"lesson_ids": draft_lessons[::-1]}),
        ("post", f"/courses/{draft}/lessons", {"title": "x"}),
        ("patch", f"/courses/{draft}/lessons/{draft_lessons[0]}", {"title": "x"}),
        ("post", f"/courses/{draft}/publish", None),
    ]:
        r = client.request(method, path, json=body, headers=h)
        expected = 200 if admin else 403 if staff else 404
        assert r.status_code in ((expected, 201) if expected == 200 else (expected,)), (path, r.text)

    gated, lessons = make_course(session, community, min_tier="member")
    admitted = staff or tier != "free"
    view = client.get(f"/courses/{gated}", headers=h).json()
    assert view["locked"] is (not admitted) and view["min_tier"] == "member"
    assert all((lesson["body"] is not None) is admitted for lesson in view["lessons"])
    lesson = client.get(f"/courses/{gated}/lessons/{lessons[0]}", headers=h)
    assert lesson.status_code == (200 if admitted else 403)
    r = client.post(f"/courses/{gated}/enrolment", headers=h)
    if admitted:
        assert r.status_code == 201 and r.json()["user_id"] == user.id
    else:
        assert r.status_code == 403 and r.json()["error"] == "tier_required"


def test_outsiders(client: TestClient, session: Session) -> None:
    private = make_community(session, visibility=Visibility.PRIVATE)
    hidden, hidden_lessons = make_course(session, private)
    public = make_community(session)
    visible, visible_lessons = make_course(session, public)
    stranger = add_member(session, make_community(session), role=Role.ADMIN, tier="vip")
    h = auth(session, stranger)

    assert (
        client.get(f"/communities/{private.id}/courses", headers=h).json()["error"] == "community_not_found"
    )
    for method, path in [
        ("get", f"/courses/{hidden}"),
        ("get", f"/courses/{hidden}/progress"),
        ("post", f"/courses/{hidden}/enrolment"),
        ("get", f"/courses/{hidden}/lessons/{hidden_lessons[0]}"),
        ("post", f"/courses/{hidden}/lessons/{hidden_lessons[0]}/complete"),
        ("patch", f"/courses/{hidden}"),
        ("get", "/courses/999999"),
    ]:
        r = client.request(method, path, json={} if method == "patch" else None, headers=h)
        assert r.status_code == 404 and r.json()["error"] == "course_not_found", path

    # A public community's published courses are listed, locked, with no lesson bodies.
    listed = client.get(f"/communities/{public.id}/courses", headers=h).json()["items"]
    assert [(c["id"], c["locked"]) for c in listed] == [(visible, True)]
    detail = client.get(f"/courses/{visible}", headers=h).json()
    assert [lesson["body"] for lesson in detail["lessons"]] == [None, None, None]
    r = client.post(f"/courses/{visible}/enrolment", headers=h)
    assert r.status_code == 403 and r.json()["error"] == "not_a_member"
    # A lesson id from another course is not found through this one.
    r = client.get(
        f"/courses/{visible}/lessons/{hidden_lessons[0]}", headers=auth(session, _owner_of(session, public))
    )
    assert r.status_code == 404 and r.json()["error"] == "lesson_not_found"
    r = client.post(
        f"/courses/{visible}/lessons/{hidden_lessons[0]}/complete",
        headers=auth(session, _owner_of(session, public)),
    )
    assert r.status_code == 404 and r.json()["error"] == "lesson_not_found"
    assert visible_lessons


# --- authoring -----------------------------------------------------------------


def test_authoring_lessons_and_publishing(client: TestClient, session: Session) -> None:
    community = make_community(session)
    owner = _owner_of(session, community)
    h = auth(session, owner)
    member = auth(session, add_member(session, community, tier="vip"))

    r = client.post(
        f"/communities/{community.id}/courses",
        json={"title": "  Tea ceremony  ", "description": "From leaf to cup", "min_tier": "member"},
        headers=h,
    )
    assert r.status_code == 201, r.text
    course = r.json()
    assert (
        course["title"] == "Tea ceremony" and course["published_at"] is None and course["lesson_count"] == 0
    )
    cid = course["id"]

    empty = client.post(f"/courses/{cid}/publish", headers=h)
    assert empty.status_code == 409 and empty.json()["error"] == "course_has_no_lessons"
    ids = []
    for n, minutes in enumerate((15, 20, None), start=1):
        r = client.post(
            f"/courses/{cid}/lessons",
            json={"title": f"Step {n}", "body": "Boil *water*", "duration_minutes": minutes},
            headers=h,
        )
        assert r.status_code == 201 and r.json()["position"] == n
        ids.append(r.json()["id"])

    assert client.get(f"/communities/{community.id}/courses", headers=member).json()["items"] == []
    published = client.post(f"/courses/{cid}/publish", headers=h).json()
    assert published["published_at"] is not None
    assert published["lesson_count"] == 3 and published["total_minutes"] == 35
    again = client.post(f"/courses/{cid}/publish", headers=h).json()
    assert again["published_at"] == published["published_at"]
    assert [
        c["id"] for c in client.get(f"/communities/{community.id}/courses", headers=member).json()["items"]
    ] == [cid]

    reordered = client.put(
        f"/courses/{cid}/lessons/order", json={"lesson_ids": [ids[2], ids[0], ids[1]]}, headers=h
    )
    assert reordered.status_code == 200, reordered.text
    assert [(x["id"], x["position"]) for x in reordered.json()] == [(ids[2], 1), (ids[0], 2), (ids[1], 3)]
    detail = client.get(f"/courses/{cid}", headers=member).json()
    assert [x["id"] for x in detail["lessons"]] == [ids[2], ids[0], ids[1]]
    assert detail["lessons"][0]["body"] == "Boil *water*"
    for bad in ([ids[0], ids[1]], [*ids, 999_999], [ids[0], ids[0], ids[1]], []):
        r = client.put(f"/courses/{cid}/lessons/order", json={"lesson_ids": bad}, headers=h)
        assert r.status_code == 422 and r.json()["error"] in {"invalid_lesson_order", "validation_error"}, bad

    patched = client.patch(
        f"/courses/{cid}/lessons/{ids[0]}",
        json={"title": "Warm the pot", "duration_minutes": None},
        headers=h,
    ).json()
    assert (patched["title"], patched["duration_minutes"], patched["position"]) == ("Warm the pot", None, 2)
    course_patch = client.patch(f"/courses/{cid}", json={"min_tier": None, "title": "Tea"}, headers=h).json()
    assert (course_patch["title"], course_patch["min_tier"]) == ("Tea", None)

    actions = session.scalars(
        select(AuditLog.action).where(AuditLog.community_id == community.id).order_by(AuditLog.id)
    ).all()
    assert [a for a in actions if a.startswith(("course.", "lesson."))] == [
        "course.create",
        "lesson.create",
        "lesson.create",
        "lesson.create",
        "course.publish",
        "course.reorder_lessons",
        "lesson.update",
        "course.update",
    ]


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("courses", {"title": ""}),
        ("courses", {"title": "x" * 201}),
        ("courses", {"title": "ok", "published_at": "2030-01-01T00:00:00Z"}),
        ("courses", {"title": "ok", "min_tier": "VIP!"}),
        ("lessons", {"title": "ok", "duration_minutes": 0}),
        ("lessons", {"title": "ok", "duration_minutes": 24 * 60 + 1}),
        ("lessons", {"title": "ok", "position": 1}),
        ("lessons", {"body": "no title"}),
        ("lessons", {"title": "ok", "body": "x" * 100_001}),
        ("course_patch", {"title": None}),
        ("course_patch", {"description": None}),
        ("lesson_patch", {"body": None}),
        ("lesson_patch", {"duration_minutes": -1}),
    ],
)
def test_course_validation(client: TestClient, session: Session, path: str, payload: dict[str, Any]) -> None:
    community = make_community(session)
    h = auth(session, _owner_of(session, community))
    course_id, lesson_ids = make_course(session, community, lessons=1)
    url = {
        "courses": f"/communities/{community.id}/courses",
        "lessons": f"/courses/{course_id}/lessons",
        "course_patch": f"/courses/{course_id}",
        "lesson_patch": f"/courses/{course_id}/lessons/{lesson_ids[0]}",
    }[path]
    method = "patch" if path.endswith("_patch") else "post"
    r = client.request(method, url, json=payload, headers=h)
    assert r.status_code == 422 and r.json()["error"] == "validation_error", r.text


def test_unknown_tier_is_not_found(client: TestClient, session: Session) -> None:
    community = make_community(session)
    h = auth(session, _owner_of(session, community))
    r = client.post(
        f"/communities/{community.id}/courses", json={"title": "x", "min_tier": "gold"}, headers=h
    )
    assert r.status_code == 404 and r.json()["error"] == "tier_not_found"


# --- learning ------------------------------------------------------------------


def test_progress_to_completion(client: TestClient, session: Session) -> None:
    community = make_community(session)
    course_id, lessons = make_course(session, community)
    learner = add_member(session, community)
    h = auth(session, learner)

    r = client.post(f"/courses/{course_id}/lessons/{lessons[0]}/complete", headers=h)
    assert r.status_code == 409 and r.json()["error"] == "not_enrolled"
    before = client.get(f"/courses/{course_id}/progress", headers=h).json()
    assert before["enrolled"] is False and before["progress"] == 0 and before["total_lessons"] == 3

    assert client.post(f"/courses/{course_id}/enrolment", headers=h).status_code == 201
    dup = client.post(f"/courses/{course_id}/enrolment", headers=h)
    assert dup.status_code == 409 and dup.json()["error"] == "already_enrolled"

    one = client.post(f"/courses/{course_id}/lessons/{lessons[1]}/complete", headers=h).json()
    assert (one["completed_lessons"], one["total_lessons"], one["completed_at"]) == (1, 3, None)
    assert one["progress"] == pytest.approx(1 / 3)
    same = client.post(f"/courses/{course_id}/lessons/{lessons[1]}/complete", headers=h).json()
    assert same["completed_lessons"] == 1  # idempotent
    client.post(f"/courses/{course_id}/lessons/{lessons[0]}/complete", headers=h)
    done = client.post(f"/courses/{course_id}/lessons/{lessons[2]}/complete", headers=h).json()
    assert done["progress"] == 1 and done["completed_at"] is not None
    assert done["completed_lesson_ids"] == lessons

    detail = client.get(f"/courses/{course_id}", headers=h).json()
    assert detail["enrolled"] is True and detail["progress"]["completed_at"] == done["completed_at"]
    assert client.get(f"/courses/{course_id}/progress", headers=h).json() == done
    enrollment = session.scalar(select(Enrollment).where(Enrollment.user_id == learner.id))
    assert enrollment is not None
    session.refresh(enrollment)
    assert enrollment.completed_at is not None

    # Unenrolling keeps the progress; a second unenrol has nothing to undo.
    assert client.delete(f"/courses/{course_id}/enrolment", headers=h).status_code == 204
    again = client.delete(f"/courses/{course_id}/enrolment", headers=h)
    assert again.status_code == 409 and again.json()["error"] == "not_enrolled"
    assert client.get(f"/courses/{course_id}/progress", headers=h).json()["enrolled"] is False
    r = client.post(f"/courses/{course_id}/lessons/{lessons[0]}/complete", headers=h)
    assert r.status_code == 409 and r.json()["error"] == "not_enrolled"
    # Coming back picks up where they left off.
    assert client.post(f"/courses/{course_id}/enrolment", headers=h).status_code == 201
    back = client.get(f"/courses/{course_id}/progress", headers=h).json()
    assert (back["completed_lessons"], back["completed_at"]) == (3, done["completed_at"])
    dup_again = client.post(f"/courses/{course_id}/enrolment", headers=h)
    assert dup_again.status_code == 409 and dup_again.json()["error"] == "already_enrolled"


def test_staff_cannot_enrol_in_a_draft(client: TestClient, session: Session) -> None:
    community = make_community(session)
    draft, _ = make_course(session, community, publish=False)
    r = client.post(f"/courses/{draft}/enrolment", headers=auth(session, _owner_of(session, community)))
    assert r.status_code == 409 and r.json()["error"] == "course_not_published"


def test_listing_pages_and_flags(client: TestClient, session: Session) -> None:
    community = make_community(session)
    free = add_member(session, community)
    h = auth(session, free)
    open_course, _ = make_course(session, community, lessons=1)
    vip_course, _ = make_course(session, community, lessons=1, min_tier="vip")
    make_course(session, community, lessons=1, publish=False)
    client.post(f"/courses/{open_course}/enrolment", headers=h)

    first = client.get(f"/communities/{community.id}/courses?limit=1", headers=h).json()
    assert [c["id"] for c in first["items"]] == [vip_course] and first["next_cursor"]
    assert first["items"][0]["locked"] is True and first["items"][0]["enrolled"] is False
    rest = client.get(
        f"/communities/{community.id}/courses?limit=1&cursor={first['next_cursor']}", headers=h
    ).json()
    assert [(c["id"], c["locked"], c["enrolled"]) for c in rest["items"]] == [(open_course, False, True)]
    assert rest["next_cursor"] is None
    staff = auth(session, _owner_of(session, community))
    everything = client.get(f"/communities/{community.id}/courses?drafts=true", headers=staff).json()["items"]
    assert len(everything) == 3


def test_enrolment_is_personal(client: TestClient, session: Session) -> None:
    community = make_community(session)
    owner = _owner_of(session, community)
    course_id, _ = make_course(session, community)
    key = client.post(
        f"/communities/{community.id}/api-keys",
        json={"name": "bot", "scopes": ["read", "write"]},
        headers=auth(session, owner),
    ).json()["key"]
    r = client.post(f"/courses/{course_id}/enrolment", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 403 and r.json()["error"] == "api_key_not_allowed"
    assert make_user(session)


def test_lessons_per_course_are_capped(
    client: TestClient, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(courses, "MAX_LESSONS", 2)
    community = make_community(session)
    course_id, _ = make_course(session, community, lessons=2)
    r = client.post(
        f"/courses/{course_id}/lessons",
        json={"title": "one too many"},
        headers=auth(session, _owner_of(session, community)),
    )
    assert r.status_code == 409 and r.json()["error"] == "too_many_lessons"

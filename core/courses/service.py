"""Course rules: who may author, publish, see, enrol in and progress through a course."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import audit
from core.access import Actor, CommunityContext, community_context, context_via
from core.clock import utcnow
from core.courses import repository as repo
from core.courses.schemas import (
    MAX_LESSONS,
    CourseDetailOut,
    CourseIn,
    CourseOut,
    CoursePatch,
    EnrollmentOut,
    LessonIn,
    LessonOrderIn,
    LessonOut,
    LessonPatch,
    ProgressOut,
)
from core.earning import service as earning
from core.errors import Conflict, InvalidInput, NotFound
from core.models import Course, EarnTrigger, Enrollment, Lesson, LessonCompletion, Role
from core.pagination import paginate
from core.schemas import PageOut

_AUDITED = ["title", "description", "min_tier_id", "published_at"]
_LESSON_AUDITED = ["position", "title", "duration_minutes"]


def _load(session: Session, actor: Actor, course_id: int) -> tuple[Course, CommunityContext]:
    """The course and the caller's context; drafts do not exist for non-staff."""
    course = session.get(Course, course_id)
    if course is None:
        raise NotFound("course not found", code="course_not_found")
    ctx = context_via(
        session, actor, course.community_id, NotFound("course not found", code="course_not_found")
    )
    if course.published_at is None and not ctx.is_staff:
        raise NotFound("course not found", code="course_not_found")
    return course, ctx


def _lesson(session: Session, course: Course, lesson_id: int) -> Lesson:
    lesson = session.get(Lesson, lesson_id)
    if lesson is None or lesson.course_id != course.id:
        raise NotFound("lesson not found", code="lesson_not_found")
    return lesson


# --- reading -----------------------------------------------------------------


def _seated(session: Session, ctx: CommunityContext, courses: Sequence[Course]) -> set[int]:
    """Courses the member's tier does not admit but a seat bought with chips does."""
    gated = [c.id for c in courses if not ctx.meets_tier(c.min_tier_id)]
    return repo.seat_course_ids(session, gated, ctx.actor.id) if ctx.is_member else set()


def _require_access(session: Session, ctx: CommunityContext, course: Course) -> None:
    """The course's tier, or a seat in it (a redeemed course-seat offer) for any tier."""
    ctx.require_member()
    if course.id not in _seated(session, ctx, [course]):
        ctx.require_tier(course.min_tier_id)


def _views(session: Session, ctx: CommunityContext, courses: Sequence[Course]) -> list[CourseOut]:
    ids = [c.id for c in courses]
    totals = repo.lesson_totals(session, ids)
    enrolled = repo.enrolled_course_ids(session, ids, ctx.actor.id)
    seated = _seated(session, ctx, courses)
    out = []
    for course in courses:
        tier = ctx.tiers.get(course.min_tier_id) if course.min_tier_id is not None else None
        count, minutes = totals.get(course.id, (0, 0))
        out.append(
            CourseOut(
                id=course.id,
                community_id=course.community_id,
                title=course.title,
                description=course.description,
                min_tier=tier.key if tier else None,
                published_at=course.published_at,
                lesson_count=count,
                total_minutes=minutes,
                locked=not ctx.meets_tier(course.min_tier_id) and course.id not in seated,
                enrolled=course.id in enrolled,
                created_by=course.created_by,
                created_at=course.created_at,
            )
        )
    return out


def _lesson_out(lesson: Lesson, *, with_body: bool = True) -> LessonOut:
    return LessonOut(
        id=lesson.id,
        course_id=lesson.course_id,
        position=lesson.position,
        title=lesson.title,
        duration_minutes=lesson.duration_minutes,
        body=lesson.body if with_body else None,
    )


def _progress(session: Session, course: Course, enrollment: Enrollment | None) -> ProgressOut:
    total, _minutes = repo.lesson_totals(session, [course.id]).get(course.id, (0, 0))
    done = repo.completed_lesson_ids(session, enrollment.id) if enrollment else []
    return ProgressOut(
        course_id=course.id,
        enrolled=enrollment is not None,
        enrolled_at=enrollment.enrolled_at if enrollment else None,
        completed_at=enrollment.completed_at if enrollment else None,
        completed_lessons=len(done),
        total_lessons=total,
        progress=len(done) / total if total else 0.0,
        completed_lesson_ids=done,
    )


def list_courses(
    session: Session, actor: Actor, community_id: int, *, drafts: bool, cursor: str | None, limit: int
) -> PageOut[CourseOut]:
    """Published courses, newest first; `drafts` (staff only) adds unpublished ones."""
    ctx = community_context(session, actor, community_id)
    if drafts:
        ctx.require_role(Role.MODERATOR)
    stmt = repo.courses_of(community_id, published_only=not drafts)
    page = paginate(session, stmt, Course.id, cursor=cursor, limit=limit)
    return page.with_items(_views(session, ctx, page.items)).out()


def get_course(session: Session, actor: Actor, course_id: int) -> CourseDetailOut:
    """Lesson titles for everyone who can see the course; bodies only for those it admits."""
    course, ctx = _load(session, actor, course_id)
    view = _views(session, ctx, [course])[0]
    open_ = not view.locked
    lessons = [_lesson_out(lesson, with_body=open_) for lesson in repo.lessons(session, course.id)]
    enrollment = repo.enrollment(session, course.id, actor.id)
    return CourseDetailOut(
        **view.model_dump(), lessons=lessons, progress=_progress(session, course, enrollment)
    )


def get_lesson(session: Session, actor: Actor, course_id: int, lesson_id: int) -> LessonOut:
    course, ctx = _load(session, actor, course_id)
    lesson = _lesson(session, course, lesson_id)
    _require_access(session, ctx, course)
    return _lesson_out(lesson)


def progress(session: Session, actor: Actor, course_id: int) -> ProgressOut:
    course, _ctx = _load(session, actor, course_id)
    return _progress(session, course, repo.enrollment(session, course.id, actor.id))


# --- authoring ---------------------------------------------------------------


def create_course(session: Session, actor: Actor, community_id: int, data: CourseIn) -> CourseOut:
    ctx = community_context(session, actor, community_id)
    ctx.require_role(Role.ADMIN)
    course = Course(
        community_id=community_id,
        created_by=actor.id,
        title=data.title,
        description=data.description,
        min_tier_id=ctx.tier(data.min_tier).id if data.min_tier else None,
    )
    session.add(course)
    session.flush()
    audit.record(
        session,
        actor,
        "course.create",
        course,
        community_id=community_id,
        after=audit.snapshot(course, _AUDITED),
    )
    return _views(session, ctx, [course])[0]


def update_course(session: Session, actor: Actor, course_id: int, patch: CoursePatch) -> CourseOut:
    course, ctx = _load(session, actor, course_id)
    ctx.require_role(Role.ADMIN)
    changes = patch.model_dump(exclude_unset=True)
    before = audit.snapshot(course, _AUDITED)
    for key in ("title", "description"):
        if key in changes:
            setattr(course, key, changes[key])
    if "min_tier" in changes:
        course.min_tier_id = ctx.tier(changes["min_tier"]).id if changes["min_tier"] else None
    session.flush()
    _record_change(session, actor, "course.update", course, course.community_id, before, _AUDITED)
    return _views(session, ctx, [course])[0]


def publish_course(session: Session, actor: Actor, course_id: int) -> CourseOut:
    """Idempotent; a course needs at least one lesson to be published."""
    course, ctx = _load(session, actor, course_id)
    ctx.require_role(Role.ADMIN)
    if course.published_at is None:
        if not repo.last_position(session, course.id):
            raise Conflict("add a lesson before publishing", code="course_has_no_lessons")
        course.published_at = utcnow()
        session.flush()
        audit.record(
            session,
            actor,
            "course.publish",
            course,
            community_id=course.community_id,
            after={"published_at": course.published_at.isoformat()},
        )
    return _views(session, ctx, [course])[0]


def add_lesson(session: Session, actor: Actor, course_id: int, data: LessonIn) -> LessonOut:
    """Appends; use `reorder_lessons` to move it."""
    course, ctx = _load(session, actor, course_id)
    ctx.require_role(Role.ADMIN)
    course = repo.lock_course(session, course.id)  # positions are allocated one writer at a time
    position = repo.last_position(session, course.id) + 1
    if position > MAX_LESSONS:
        raise Conflict(f"a course holds at most {MAX_LESSONS} lessons", code="too_many_lessons")
    lesson = Lesson(course_id=course.id, position=position, **data.model_dump())
    session.add(lesson)
    session.flush()
    audit.record(
        session,
        actor,
        "lesson.create",
        lesson,
        community_id=course.community_id,
        after=audit.snapshot(lesson, _LESSON_AUDITED),
    )
    return _lesson_out(lesson)


def update_lesson(
    session: Session, actor: Actor, course_id: int, lesson_id: int, patch: LessonPatch
) -> LessonOut:
    course, ctx = _load(session, actor, course_id)
    ctx.require_role(Role.ADMIN)
    lesson = _lesson(session, course, lesson_id)
    before = audit.snapshot(lesson, [*_LESSON_AUDITED, "body"])
    for key, value in patch.model_dump(exclude_unset=True).items():
        setattr(lesson, key, value)
    session.flush()
    _record_change(
        session, actor, "lesson.update", lesson, course.community_id, before, [*_LESSON_AUDITED, "body"]
    )
    return _lesson_out(lesson)


def reorder_lessons(session: Session, actor: Actor, course_id: int, data: LessonOrderIn) -> list[LessonOut]:
    """`lesson_ids` must name every lesson of the course exactly once; positions become 1..n."""
    course, ctx = _load(session, actor, course_id)
    ctx.require_role(Role.ADMIN)
    course = repo.lock_course(session, course.id)
    lessons = {lesson.id: lesson for lesson in repo.lessons(session, course.id)}
    if set(data.lesson_ids) != set(lessons):
        raise InvalidInput(
            "lesson_ids must list every lesson of this course once", code="invalid_lesson_order"
        )
    before = {str(i): lessons[i].position for i in lessons}
    # (course_id, position) is unique and checked row by row: park every lesson on a
    # distinct negative position first, so no intermediate state collides.
    for n, lesson in enumerate(lessons.values(), start=1):
        lesson.position = -n
    session.flush()
    for position, lesson_id in enumerate(data.lesson_ids, start=1):
        lessons[lesson_id].position = position
    session.flush()
    after = {str(i): lessons[i].position for i in lessons}
    if before != after:
        audit.record(
            session,
            actor,
            "course.reorder_lessons",
            course,
            community_id=course.community_id,
            before={"positions": before},
            after={"positions": after},
        )
    return [_lesson_out(lessons[i]) for i in data.lesson_ids]


def _record_change(
    session: Session,
    actor: Actor,
    action: str,
    target: Course | Lesson,
    community_id: int,
    before: dict[str, object],
    fields: list[str],
) -> None:
    after = audit.snapshot(target, fields)
    changed = [k for k in fields if before[k] != after[k]]
    if changed:
        audit.record(
            session,
            actor,
            action,
            target,
            community_id=community_id,
            before={k: before[k] for k in changed},
            after={k: after[k] for k in changed},
        )


# --- learning ----------------------------------------------------------------


def enrol(session: Session, actor: Actor, course_id: int) -> EnrollmentOut:
    actor.require_personal()
    course, ctx = _load(session, actor, course_id)
    if course.published_at is None:
        raise Conflict("this course is not published yet", code="course_not_published")
    _require_access(session, ctx, course)
    existing = repo.enrollment(session, course.id, actor.id, include_left=True)
    if existing is not None:
        if existing.unenrolled_at is None or not repo.mark_reenrolled(session, existing.id):
            raise Conflict("you are already enrolled", code="already_enrolled")
        session.refresh(existing)
        return EnrollmentOut.model_validate(existing)
    enrollment = Enrollment(course_id=course.id, user_id=actor.id, enrolled_at=utcnow())
    try:
        with session.begin_nested():
            session.add(enrollment)
            session.flush()
    except IntegrityError as exc:
        raise Conflict("you are already enrolled", code="already_enrolled") from exc
    return EnrollmentOut.model_validate(enrollment)


def unenrol(session: Session, actor: Actor, course_id: int) -> None:
    """Progress is kept: re-enrolling picks up where the member left off."""
    actor.require_personal()
    course, _ctx = _load(session, actor, course_id)
    if not repo.mark_unenrolled(session, course.id, actor.id, utcnow()):
        raise Conflict("you are not enrolled in this course", code="not_enrolled")


def complete_lesson(session: Session, actor: Actor, course_id: int, lesson_id: int) -> ProgressOut:
    """Idempotent. Completing the last lesson completes the course."""
    actor.require_personal()
    course, ctx = _load(session, actor, course_id)
    lesson = _lesson(session, course, lesson_id)
    _require_access(session, ctx, course)
    # Locked so that two last lessons completed at once still see each other.
    enrollment = repo.enrollment(session, course.id, actor.id, lock=True)
    if enrollment is None:
        raise Conflict("enrol in this course first", code="not_enrolled")
    if repo.completion(session, enrollment.id, lesson.id) is None:
        session.add(LessonCompletion(enrollment_id=enrollment.id, lesson_id=lesson.id, completed_at=utcnow()))
        session.flush()
    result = _progress(session, course, enrollment)
    if result.completed_lessons >= result.total_lessons and enrollment.completed_at is None:
        enrollment.completed_at = utcnow()
        session.flush()
        earning.enqueue_grant(session, course.community_id, EarnTrigger.COURSE_COMPLETED, enrollment.id)
        result.completed_at = enrollment.completed_at
    return result

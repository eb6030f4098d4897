"""All SQL for courses, lessons, enrolments and lesson completions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session

from core.models import AccessGrant, Course, Enrollment, Lesson, LessonCompletion


def courses_of(community_id: int, *, published_only: bool) -> Select[Course]:
    stmt = select(Course).where(Course.community_id == community_id)
    if published_only:
        stmt = stmt.where(Course.published_at.is_not(None))
    return stmt


def lock_course(session: Session, course_id: int) -> Course:
    """Re-read the course under a row lock; SQLite needs none (BEGIN IMMEDIATE serialises writers).

    FOR NO KEY UPDATE on PostgreSQL: it does not wait on the FOR KEY SHARE locks
    that concurrent enrolments take through their foreign key.
    """
    course = session.scalar(
        select(Course)
        .where(Course.id == course_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    assert course is not None
    return course


def lessons(session: Session, course_id: int) -> Sequence[Lesson]:
    return session.scalars(
        select(Lesson).where(Lesson.course_id == course_id).order_by(Lesson.position.asc())
    ).all()


def last_position(session: Session, course_id: int) -> int:
    return session.scalar(select(func.max(Lesson.position)).where(Lesson.course_id == course_id)) or 0


def lesson_totals(session: Session, course_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
    """course id -> (lesson count, total minutes)."""
    if not course_ids:
        return {}
    rows = session.execute(
        select(Lesson.course_id, func.count(), func.coalesce(func.sum(Lesson.duration_minutes), 0))
        .where(Lesson.course_id.in_(course_ids))
        .group_by(Lesson.course_id)
    )
    return {course_id: (count, int(minutes or 0)) for course_id, count, minutes in rows}


def enrollment(
    session: Session, course_id: int, user_id: int, *, lock: bool = False, include_left: bool = False
) -> Enrollment | None:
    stmt = select(Enrollment).where(Enrollment.course_id == course_id, Enrollment.user_id == user_id)
    if not include_left:
        stmt = stmt.where(Enrollment.unenrolled_at.is_(None))
    if lock:
        stmt = stmt.with_for_update(key_share=True).execution_options(populate_existing=True)
    return session.scalar(stmt)


def mark_unenrolled(session: Session, course_id: int, user_id: int, now: datetime) -> bool:
    """False when not enrolled. Completions stay for a later return."""
    result = session.execute(
        update(Enrollment)
        .where(
            Enrollment.course_id == course_id,
            Enrollment.user_id == user_id,
            Enrollment.unenrolled_at.is_(None),
        )
        .values(unenrolled_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def mark_reenrolled(session: Session, enrollment_id: int) -> bool:
    """False when a concurrent request already brought the enrolment back."""
    result = session.execute(
        update(Enrollment)
        .where(Enrollment.id == enrollment_id, Enrollment.unenrolled_at.is_not(None))
        .values(unenrolled_at=None)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def enrolled_course_ids(session: Session, course_ids: Sequence[int], user_id: int) -> set[int]:
    if not course_ids:
        return set()
    return set(
        session.scalars(
            select(Enrollment.course_id).where(
                Enrollment.course_id.in_(course_ids),
                Enrollment.user_id == user_id,
                Enrollment.unenrolled_at.is_(None),
            )
        )
    )


def completed_lesson_ids(session: Session, enrollment_id: int) -> list[int]:
    return list(
        session.scalars(
            select(LessonCompletion.lesson_id)
            .join(Lesson, Lesson.id == LessonCompletion.lesson_id)
            .where(LessonCompletion.enrollment_id == enrollment_id)
            .order_by(Lesson.position.asc())
        )
    )


def completion(session: Session, enrollment_id: int, lesson_id: int) -> LessonCompletion | None:
    return session.scalar(
        select(LessonCompletion).where(
            LessonCompletion.enrollment_id == enrollment_id, LessonCompletion.lesson_id == lesson_id
        )
    )


def seat_course_ids(session: Session, course_ids: Sequence[int], user_id: int) -> set[int]:
    """Those of `course_ids` in which the member holds a live seat bought with chips."""
    if not course_ids:
        return set()
    return set(
        session.scalars(
            select(AccessGrant.course_id).where(
                AccessGrant.course_id.in_(course_ids),
                AccessGrant.user_id == user_id,
                AccessGrant.revoked_at.is_(None),
            )
        )
    )

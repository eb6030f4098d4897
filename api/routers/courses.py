from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from api.deps import CurrentActor, Cursor, DbSession, Limit, PathId
from core.courses import service as courses
from core.courses.schemas import (
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
from core.schemas import PageOut

router = APIRouter(tags=["courses"])


@router.post(
    "/communities/{community_id}/courses", response_model=CourseOut, status_code=status.HTTP_201_CREATED
)
def create_course(community_id: PathId, data: CourseIn, actor: CurrentActor, session: DbSession) -> CourseOut:
    return courses.create_course(session, actor, community_id, data)


@router.get("/communities/{community_id}/courses", response_model=PageOut[CourseOut])
def list_courses(
    community_id: PathId,
    actor: CurrentActor,
    session: DbSession,
    cursor: Cursor = None,
    limit: Limit = 20,
    drafts: Annotated[bool, Query(description="include unpublished courses (staff only)")] = False,
) -> PageOut[CourseOut]:
    return courses.list_courses(session, actor, community_id, drafts=drafts, cursor=cursor, limit=limit)


@router.get("/courses/{course_id}", response_model=CourseDetailOut)
def get_course(course_id: PathId, actor: CurrentActor, session: DbSession) -> CourseDetailOut:
    return courses.get_course(session, actor, course_id)


@router.patch("/courses/{course_id}", response_model=CourseOut)
def update_course(
    course_id: PathId, patch: CoursePatch, actor: CurrentActor, session: DbSession
) -> CourseOut:
    return courses.update_course(session, actor, course_id, patch)


@router.post("/courses/{course_id}/publish", response_model=CourseOut)
def publish_course(course_id: PathId, actor: CurrentActor, session: DbSession) -> CourseOut:
    return courses.publish_course(session, actor, course_id)


@router.post("/courses/{course_id}/lessons", response_model=LessonOut, status_code=status.HTTP_201_CREATED)
def add_lesson(course_id: PathId, data: LessonIn, actor: CurrentActor, session: DbSession) -> LessonOut:
    return courses.add_lesson(session, actor, course_id, data)


@router.put("/courses/{course_id}/lessons/order", response_model=list[LessonOut])
def reorder_lessons(
    course_id: PathId, data: LessonOrderIn, actor: CurrentActor, session: DbSession
) -> list[LessonOut]:
    return courses.reorder_lessons(session, actor, course_id, data)


@router.get("/courses/{course_id}/lessons/{lesson_id}", response_model=LessonOut)
def get_lesson(course_id: PathId, lesson_id: PathId, actor: CurrentActor, session: DbSession) -> LessonOut:
    return courses.get_lesson(session, actor, course_id, lesson_id)


@router.patch("/courses/{course_id}/lessons/{lesson_id}", response_model=LessonOut)
def update_lesson(
    course_id: PathId, lesson_id: PathId, patch: LessonPatch, actor: CurrentActor, session: DbSession
) -> LessonOut:
    return courses.update_lesson(session, actor, course_id, lesson_id, patch)


@router.post(
    "/courses/{course_id}/enrolment", response_model=EnrollmentOut, status_code=status.HTTP_201_CREATED
)
def enrol(course_id: PathId, actor: CurrentActor, session: DbSession) -> EnrollmentOut:
    return courses.enrol(session, actor, course_id)


@router.delete("/courses/{course_id}/enrolment", status_code=status.HTTP_204_NO_CONTENT)
def unenrol(course_id: PathId, actor: CurrentActor, session: DbSession) -> Response:
    courses.unenrol(session, actor, course_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/courses/{course_id}/lessons/{lesson_id}/complete", response_model=ProgressOut)
def complete_lesson(
    course_id: PathId, lesson_id: PathId, actor: CurrentActor, session: DbSession
) -> ProgressOut:
    return courses.complete_lesson(session, actor, course_id, lesson_id)


@router.get("/courses/{course_id}/progress", response_model=ProgressOut)
def progress(course_id: PathId, actor: CurrentActor, session: DbSession) -> ProgressOut:
    return courses.progress(session, actor, course_id)

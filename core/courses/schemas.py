from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints, field_validator, model_validator

from core.communities.schemas import TierKey
from core.schemas import Id, Input, LongText, Output, Title

MAX_LESSONS = 500

LessonBody = Annotated[str, StringConstraints(max_length=100_000)]
Minutes = Annotated[int, Field(ge=1, le=24 * 60)]


class CourseIn(Input):
    title: Title
    description: LongText = ""
    min_tier: TierKey | None = None


class CoursePatch(Input):
    """Only the fields sent change; `null` clears min_tier."""

    title: Title | None = None
    description: LongText | None = None
    min_tier: TierKey | None = None

    @model_validator(mode="after")
    def _required_stay_set(self) -> CoursePatch:
        nulls = [
            k for k in ("title", "description") if k in self.model_fields_set and getattr(self, k) is None
        ]
        if nulls:
            raise ValueError(f"{', '.join(nulls)} cannot be null")
        return self


class LessonIn(Input):
    title: Title
    body: LessonBody = Field(default="", description="Markdown")
    duration_minutes: Minutes | None = None


class LessonPatch(Input):
    """Only the fields sent change; `null` clears duration_minutes."""

    title: Title | None = None
    body: LessonBody | None = Field(default=None, description="Markdown")
    duration_minutes: Minutes | None = None

    @model_validator(mode="after")
    def _required_stay_set(self) -> LessonPatch:
        nulls = [k for k in ("title", "body") if k in self.model_fields_set and getattr(self, k) is None]
        if nulls:
            raise ValueError(f"{', '.join(nulls)} cannot be null")
        return self


class LessonOrderIn(Input):
    lesson_ids: list[Id] = Field(min_length=1, max_length=MAX_LESSONS, description="every lesson, in order")

    @field_validator("lesson_ids")
    @classmethod
    def _unique(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError("lesson ids must be unique")
        return value


class LessonOut(Output):
    id: int
    course_id: int
    position: int
    title: str
    duration_minutes: int | None
    body: str | None = Field(description="Markdown; null while the course is locked for the caller")


class ProgressOut(Output):
    course_id: int
    enrolled: bool
    enrolled_at: datetime | None
    completed_at: datetime | None
    completed_lessons: int
    total_lessons: int
    progress: float = Field(ge=0, le=1, description="completed_lessons / total_lessons")
    completed_lesson_ids: list[int]


class EnrollmentOut(Output):
    course_id: int
    user_id: int
    enrolled_at: datetime
    completed_at: datetime | None


class CourseOut(Output):
    id: int
    community_id: int
    title: str
    description: str
    min_tier: str | None
    published_at: datetime | None
    lesson_count: int
    total_minutes: int
    locked: bool = Field(description="the caller's tier (or lack of membership) does not admit them")
    enrolled: bool
    created_by: int
    created_at: datetime


class CourseDetailOut(CourseOut):
    lessons: list[LessonOut]
    progress: ProgressOut

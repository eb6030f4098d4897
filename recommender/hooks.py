"""Enqueue embedding jobs when what members write changes, without touching core services.

`install()` adds one `after_flush` listener on every SQLAlchemy session of the process. It
looks at the rows a flush wrote (new, changed, deleted) and queues
`hearth.recommender.embed` through `core.jobs.enqueue`, so the job leaves only after the
transaction commits and is dropped on rollback, exactly like the services' own jobs.

Watched: profiles (bio, interests, name, language, the opt-out), memberships, threads,
posts (the opening post is the thread's text, every public post feeds its author's
profile), events, courses and lessons. Direct messages are not watched: they never feed
the recommender. The API app installs this; so does the worker (for tasks that write).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, UOWTransaction

from core import jobs
from core.models import Course, Event, Lesson, Membership, Post, Thread, User

EMBED_JOB = "hearth.recommender.embed"
_QUEUED = "hearth_recommender_queued"

# Columns whose change alters an entity's text (or whether it may have an embedding at all).
_USER_COLUMNS = ("bio", "interests", "display_name", "language", "recommendations_opt_out", "disabled_at")
_MEMBERSHIP_COLUMNS = ("status", "tier_id")
_THREAD_COLUMNS = ("title", "deleted_at", "channel_id")
_POST_COLUMNS = ("body", "deleted_at")
_EVENT_COLUMNS = ("title", "description", "location", "status", "min_tier_id", "ends_at")
_COURSE_COLUMNS = ("title", "description", "min_tier_id", "published_at")
_LESSON_COLUMNS = ("title", "position")


def _changed(obj: Any, columns: tuple[str, ...]) -> bool:
    state = inspect(obj)
    return any(state.attrs[c].history.has_changes() for c in columns)


def _targets(obj: Any, how: str) -> list[tuple[str, int]]:
    """The (entity type, id) embed jobs a written row calls for."""
    dirty = how == "dirty"
    if isinstance(obj, User):
        return [] if dirty and not _changed(obj, _USER_COLUMNS) else [("user", obj.id)]
    if isinstance(obj, Membership):
        return [] if dirty and not _changed(obj, _MEMBERSHIP_COLUMNS) else [("user", obj.user_id)]
    if isinstance(obj, Thread):
        return [] if dirty and not _changed(obj, _THREAD_COLUMNS) else [("thread", obj.id)]
    if isinstance(obj, Post):
        if dirty and not _changed(obj, _POST_COLUMNS):
            return []
        out = [("user", obj.author_id)]
        if obj.is_opening:
            out.append(("thread", obj.thread_id))
        return out
    if isinstance(obj, Event):
        return [] if dirty and not _changed(obj, _EVENT_COLUMNS) else [("event", obj.id)]
    if isinstance(obj, Course):
        return [] if dirty and not _changed(obj, _COURSE_COLUMNS) else [("course", obj.id)]
    if isinstance(obj, Lesson):
        return [] if dirty and not _changed(obj, _LESSON_COLUMNS) else [("course", obj.course_id)]
    return []


def _after_flush(session: Session, _flush: UOWTransaction) -> None:
    queued: set[tuple[str, int]] = session.info.setdefault(_QUEUED, set())
    for how, objs in (("new", session.new), ("dirty", session.dirty), ("deleted", session.deleted)):
        for obj in objs:
            for target in _targets(obj, how):
                if target not in queued:
                    queued.add(target)
                    jobs.enqueue(session, EMBED_JOB, *target)


def _forget(session: Session, *_: Any) -> None:
    session.info.pop(_QUEUED, None)


def install() -> None:
    """Idempotent: a second call changes nothing."""
    if not event.contains(Session, "after_flush", _after_flush):
        event.listen(Session, "after_flush", _after_flush)
        event.listen(Session, "after_commit", _forget)
        event.listen(Session, "after_rollback", _forget)


def uninstall() -> None:
    if event.contains(Session, "after_flush", _after_flush):
        event.remove(Session, "after_flush", _after_flush)
        event.remove(Session, "after_commit", _forget)
        event.remove(Session, "after_rollback", _forget)


def installed() -> bool:
    return event.contains(Session, "after_flush", _after_flush)

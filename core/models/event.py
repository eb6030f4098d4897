"""Events with capacity, RSVPs, a waitlist and check-in."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, BigId, CreatedMixin, IdMixin, UTCDateTime, str_enum


class EventStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    CANCELLED = "cancelled"


class RsvpStatus(enum.StrEnum):
    GOING = "going"
    WAITLISTED = "waitlisted"
    CANCELLED = "cancelled"


class Event(IdMixin, CreatedMixin, Base):
    __tablename__ = "events"
    __table_args__ = (
        CheckConstraint("going_count >= 0", name="going_nonnegative"),
        CheckConstraint("capacity IS NULL OR going_count <= capacity", name="within_capacity"),
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
    )

    community_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("communities.id", ondelete="CASCADE"), index=True
    )
    created_by: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    location: Mapped[str] = mapped_column(String(300), default="")
    online_url: Mapped[str | None] = mapped_column(String(500))
    timezone: Mapped[str] = mapped_column(String(64))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    capacity: Mapped[int | None] = mapped_column(Integer)
    # Seats taken; moved only by conditional UPDATEs so the last seat cannot be sold twice.
    going_count: Mapped[int] = mapped_column(Integer, default=0)
    min_tier_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("tiers.id"))
    status: Mapped[EventStatus] = mapped_column(
        str_enum(EventStatus, "event_status"), default=EventStatus.SCHEDULED
    )


class EventRsvp(IdMixin, CreatedMixin, Base):
    __tablename__ = "event_rsvps"
    __table_args__ = (UniqueConstraint("event_id", "user_id"),)

    event_id: Mapped[int] = mapped_column(BigId, ForeignKey("events.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    status: Mapped[RsvpStatus] = mapped_column(str_enum(RsvpStatus, "rsvp_status"))
    # Waitlist order: the time the member joined the waitlist.
    waitlisted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    checked_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    checked_in_by: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id"))
    note: Mapped[str] = mapped_column(String(300), default="")

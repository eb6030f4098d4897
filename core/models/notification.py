"""In-app notifications, written by jobs after the triggering commit."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, BigId, CreatedMixin, IdMixin, Json, UTCDateTime


class Notification(IdMixin, CreatedMixin, Base):
    # One row per (recipient, kind, subject): a re-run job cannot notify twice.
    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("user_id", "kind", "subject_type", "subject_id"),
        # Deleting a post deletes the notifications about it.
        Index("ix_notifications_subject", "subject_type", "subject_id"),
    )

    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    community_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("communities.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[int] = mapped_column(BigId)
    actor_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id"))
    data: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

"""Tipping (打賞): tips, the reputation they feed, per-community policy, and ring reports.

A tip is one ledger transaction (kind `tip`) plus a `Tip` row that points at it.
`member_reputation` is a running total updated in SQL (never read-modify-write),
so concurrent tips to the same member cannot lose points.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.clock import utcnow
from core.models.base import Base, BigId, CreatedMixin, IdMixin, Json, UTCDateTime, str_enum


class TippingPolicy(IdMixin, Base):
    """A community's anti-farming settings; a community without a row uses the defaults."""

    __tablename__ = "tipping_policies"
    __table_args__ = (
        CheckConstraint(
            "new_account_days >= 0 AND new_account_daily_limit >= 0 AND reputation_window_hours > 0 "
            "AND reputation_daily_cap >= 0 AND reputation_max_per_tip >= 0 AND ring_window_days > 0 "
            "AND ring_min_tips > 0 AND ring_min_volume > 0",
            name="ranges",
        ),
    )

    community_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("communities.id", ondelete="CASCADE"), unique=True
    )
    # Members younger than this (days since joining) give no reputation and tip within a daily limit.
    new_account_days: Mapped[int] = mapped_column(Integer, default=7)
    new_account_daily_limit: Mapped[int] = mapped_column(BigInteger, default=50)
    # Repeated tips tipper -> recipient within the window earn 1, 1/2, 1/4... of the points.
    reputation_window_hours: Mapped[int] = mapped_column(Integer, default=24)
    reputation_daily_cap: Mapped[int] = mapped_column(Integer, default=100)
    reputation_max_per_tip: Mapped[int] = mapped_column(Integer, default=20)
    ring_window_days: Mapped[int] = mapped_column(Integer, default=7)
    ring_min_tips: Mapped[int] = mapped_column(Integer, default=2)
    ring_min_volume: Mapped[int] = mapped_column(BigInteger, default=10)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Tip(IdMixin, CreatedMixin, Base):
    __tablename__ = "tips"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("tipper_id <> recipient_id", name="not_self"),
        CheckConstraint("reputation_points >= 0", name="points_nonnegative"),
        Index("ix_tips_pair_time", "community_id", "tipper_id", "recipient_id", "created_at"),
        Index("ix_tips_community_time", "community_id", "created_at"),
        # The ring sweep's queue: tips no detection run has examined yet (see ring_scanned).
        Index(
            "ix_tips_ring_unscanned",
            "community_id",
            sqlite_where=text("NOT ring_scanned"),
            postgresql_where=text("NOT ring_scanned"),
        ),
    )

    community_id: Mapped[int] = mapped_column(BigId, ForeignKey("communities.id", ondelete="CASCADE"))
    tipper_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"), index=True)
    recipient_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"), index=True)
    post_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("posts.id"), index=True)
    chip_id: Mapped[int] = mapped_column(BigId, ForeignKey("chips.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    note: Mapped[str] = mapped_column(String(280), default="")
    # f"tip:{tipper_id}:{client key}", the same key as the ledger transaction's.
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    transaction_id: Mapped[int] = mapped_column(BigId, ForeignKey("ledger_transactions.id"), unique=True)
    reputation_points: Mapped[int] = mapped_column(Integer, default=0)
    # Set when a moderator confirms a ring this tip belongs to: its points were taken back.
    discounted: Mapped[bool] = mapped_column(Boolean, default=False)
    # False until a ring detection run has claimed this tip (`core.tipping.service.sweep_rings`).
    # The flag commits with the tip, so a tip whose id is lower than one already examined
    # but which committed later is still waiting here: no high-water mark can skip it.
    ring_scanned: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class MemberReputation(IdMixin, Base):
    __tablename__ = "member_reputation"
    __table_args__ = (
        UniqueConstraint("community_id", "user_id"),
        Index("ix_member_reputation_board", "community_id", "points"),
    )

    community_id: Mapped[int] = mapped_column(BigId, ForeignKey("communities.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    points: Mapped[int] = mapped_column(BigInteger, default=0)
    tips_received: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class RingStatus(enum.StrEnum):
    OPEN = "open"
    DISMISSED = "dismissed"
    CONFIRMED = "confirmed"


class TipRingReport(IdMixin, CreatedMixin, Base):
    """A suspected reciprocal tipping ring, for moderators to confirm or dismiss."""

    __tablename__ = "tip_ring_reports"
    __table_args__ = (
        Index("ix_tip_ring_reports_status", "community_id", "status"),
        # At most one open report per set of members: concurrent detection runs cannot duplicate it.
        Index(
            "uq_tip_ring_reports_open",
            "community_id",
            "members_key",
            unique=True,
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
    )

    community_id: Mapped[int] = mapped_column(BigId, ForeignKey("communities.id", ondelete="CASCADE"))
    # The cycle's members in cycle order, and the same set sorted as "1,5,9" to find repeats.
    members: Mapped[list[int]] = mapped_column(Json, default=list)
    members_key: Mapped[str] = mapped_column(String(200))
    # Each edge of the cycle: tipper, recipient, tips, volume, tip ids.
    evidence: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    score: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[RingStatus] = mapped_column(str_enum(RingStatus, "ring_status"), default=RingStatus.OPEN)
    resolved_by: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id"))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

"""Access that a fulfilled redemption order granted: a tier trial or a course seat.

One row per fulfilled access order (the order is its key). A course seat is live while
`revoked_at` is NULL and admits its holder to the course whatever their tier. A tier trial
adds `seconds` to the member's running trial (`memberships.trial_tier_id` and
`trial_ends_at`, kept there so every access check reads it with the membership); a
moderator's reversal of the order's ledger transaction revokes the grant and takes those
seconds back.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, text
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, BigId, CreatedMixin, IdMixin, UTCDateTime, str_enum


class GrantKind(enum.StrEnum):
    TIER_TRIAL = "tier_trial"
    COURSE_SEAT = "course_seat"


class AccessGrant(IdMixin, CreatedMixin, Base):
    __tablename__ = "access_grants"
    __table_args__ = (
        CheckConstraint(
            "(kind = 'tier_trial' AND tier_id IS NOT NULL AND seconds > 0 AND course_id IS NULL)"
            " OR (kind = 'course_seat' AND course_id IS NOT NULL AND tier_id IS NULL AND seconds IS NULL)",
            name="target_matches_kind",
        ),
        # One live seat per member and course; the seat check reads it too.
        Index(
            "uq_access_grants_live_seat",
            "course_id",
            "user_id",
            unique=True,
            sqlite_where=text("revoked_at IS NULL AND kind = 'course_seat'"),
            postgresql_where=text("revoked_at IS NULL AND kind = 'course_seat'"),
        ),
    )

    community_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("communities.id", ondelete="CASCADE"), index=True
    )
    order_id: Mapped[int] = mapped_column(BigId, ForeignKey("redemption_orders.id"), unique=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[GrantKind] = mapped_column(str_enum(GrantKind, "grant_kind"))
    tier_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("tiers.id"))
    course_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("courses.id", ondelete="CASCADE"))
    # A trial's length (what a reversal takes back); NULL for a seat.
    seconds: Mapped[int | None] = mapped_column(Integer)
    # A trial: when the member's trial ran until once this grant was added.
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id"))

"""Communities, their tiers, memberships, invites and bans."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from core.models.account import Language
from core.models.base import Base, BigId, CreatedMixin, IdMixin, Json, UTCDateTime, str_enum


class Visibility(enum.StrEnum):
    PUBLIC = "public"  # listed; anyone signed in may join
    PRIVATE = "private"  # invisible to non-members; joined by invite only


class Role(enum.StrEnum):
    MEMBER = "member"
    MODERATOR = "moderator"
    ADMIN = "admin"
    OWNER = "owner"

    @property
    def rank(self) -> int:
        return _ROLE_RANK[self]

    def at_least(self, other: Role) -> bool:
        return self.rank >= other.rank


_ROLE_RANK = {Role.MEMBER: 0, Role.MODERATOR: 1, Role.ADMIN: 2, Role.OWNER: 3}


class MembershipStatus(enum.StrEnum):
    ACTIVE = "active"
    LEFT = "left"
    BANNED = "banned"


class Community(IdMixin, CreatedMixin, Base):
    __tablename__ = "communities"

    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    visibility: Mapped[Visibility] = mapped_column(
        str_enum(Visibility, "visibility"), default=Visibility.PUBLIC
    )
    default_language: Mapped[Language] = mapped_column(str_enum(Language, "language"), default=Language.ZH_TW)
    settings: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    created_by: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"))


class Tier(IdMixin, Base):
    __tablename__ = "tiers"
    __table_args__ = (
        UniqueConstraint("community_id", "key"),
        UniqueConstraint("community_id", "rank"),
    )

    community_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("communities.id", ondelete="CASCADE"), index=True
    )
    key: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(80))
    rank: Mapped[int] = mapped_column(Integer)
    perks: Mapped[list[str]] = mapped_column(Json, default=list)


class Membership(IdMixin, Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("community_id", "user_id"),)

    community_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("communities.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[Role] = mapped_column(str_enum(Role, "role"), default=Role.MEMBER)
    tier_id: Mapped[int] = mapped_column(BigId, ForeignKey("tiers.id"))
    status: Mapped[MembershipStatus] = mapped_column(
        str_enum(MembershipStatus, "membership_status"), default=MembershipStatus.ACTIVE
    )
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime)
    left_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A moderator froze the member's whole wallet here: accounts opened later start frozen too.
    wallet_frozen: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # A tier trial bought with chips (see `core.models.grant`): while `trial_ends_at` is in the
    # future, access checks use the higher of `tier_id` and `trial_tier_id`. The tier the
    # member holds (`tier_id`) never changes for a trial; once it ends these are just history.
    trial_tier_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("tiers.id"))
    trial_ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def trial_running(self, now: datetime) -> bool:
        return self.trial_tier_id is not None and self.trial_ends_at is not None and now < self.trial_ends_at


class Invite(IdMixin, CreatedMixin, Base):
    __tablename__ = "invites"
    __table_args__ = (
        CheckConstraint("uses >= 0", name="uses_nonnegative"),
        CheckConstraint("max_uses IS NULL OR uses <= max_uses", name="uses_within_limit"),
    )

    community_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("communities.id", ondelete="CASCADE"), index=True
    )
    code: Mapped[str] = mapped_column(String(32), unique=True)
    created_by: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"))
    tier_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("tiers.id"))
    max_uses: Mapped[int | None] = mapped_column(Integer)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Ban(IdMixin, CreatedMixin, Base):
    __tablename__ = "bans"

    community_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("communities.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lifted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lifted_by: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id"))

"""Earning: per-community rules that grant chips for taking part, the grants, and challenges.

A grant is unique per (rule, subject, member): the same act never pays twice,
and its ledger key says the same (`earn:{rule}:{subject_type}:{subject_id}:{member}`).
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.clock import utcnow
from core.models.base import Base, BigId, CreatedMixin, IdMixin, UTCDateTime, str_enum


class EarnTrigger(enum.StrEnum):
    POST_CREATED = "post_created"
    REPLY_RECEIVED = "reply_received"
    EVENT_CHECKIN = "event_checkin"
    COURSE_COMPLETED = "course_completed"
    CHALLENGE_COMPLETED = "challenge_completed"
    ONBOARDING_COMPLETED = "onboarding_completed"


class Challenge(IdMixin, CreatedMixin, Base):
    __tablename__ = "challenges"

    community_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("communities.id", ondelete="CASCADE"), index=True
    )
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"))


class EarnRule(IdMixin, CreatedMixin, Base):
    __tablename__ = "earn_rules"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("daily_count_cap IS NULL OR daily_count_cap > 0", name="count_cap_positive"),
        CheckConstraint("daily_amount_cap IS NULL OR daily_amount_cap > 0", name="amount_cap_positive"),
        Index("ix_earn_rules_trigger", "community_id", "trigger", "active"),
    )

    community_id: Mapped[int] = mapped_column(BigId, ForeignKey("communities.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(120))
    trigger: Mapped[EarnTrigger] = mapped_column(str_enum(EarnTrigger, "earn_trigger"))
    chip_id: Mapped[int] = mapped_column(BigId, ForeignKey("chips.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    daily_count_cap: Mapped[int | None] = mapped_column(BigInteger)
    daily_amount_cap: Mapped[int | None] = mapped_column(BigInteger)
    # A challenge's own reward rule; a challenge_completed rule without one pays for any challenge.
    challenge_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("challenges.id"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class GrantStatus(enum.StrEnum):
    GRANTED = "granted"
    CLAWED_BACK = "clawed_back"


class EarnGrant(IdMixin, CreatedMixin, Base):
    __tablename__ = "earn_grants"
    __table_args__ = (
        UniqueConstraint("rule_id", "subject_type", "subject_id", "user_id"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("clawed_back_amount >= 0 AND shortfall >= 0", name="clawback_nonnegative"),
        CheckConstraint("clawed_back_amount + shortfall <= amount", name="clawback_within_amount"),
        Index("ix_earn_grants_member_day", "user_id", "rule_id", "created_at"),
        Index("ix_earn_grants_subject", "subject_type", "subject_id"),
    )

    community_id: Mapped[int] = mapped_column(BigId, ForeignKey("communities.id", ondelete="CASCADE"))
    rule_id: Mapped[int] = mapped_column(BigId, ForeignKey("earn_rules.id"))
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"))
    chip_id: Mapped[int] = mapped_column(BigId, ForeignKey("chips.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    trigger: Mapped[EarnTrigger] = mapped_column(str_enum(EarnTrigger, "earn_trigger"))
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[int] = mapped_column(BigInteger)
    transaction_id: Mapped[int] = mapped_column(BigId, ForeignKey("ledger_transactions.id"), unique=True)
    status: Mapped[GrantStatus] = mapped_column(
        str_enum(GrantStatus, "grant_status"), default=GrantStatus.GRANTED
    )
    clawback_transaction_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("ledger_transactions.id"), unique=True
    )
    # What the clawback took back, and what it could not (the member had already spent it).
    clawed_back_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    shortfall: Mapped[int] = mapped_column(BigInteger, default=0)
    clawed_back_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CompletionStatus(enum.StrEnum):
    CLAIMED = "claimed"
    APPROVED = "approved"
    REJECTED = "rejected"


class ChallengeCompletion(IdMixin, CreatedMixin, Base):
    """A member's claim (or a moderator's award) that they completed a challenge."""

    __tablename__ = "challenge_completions"
    __table_args__ = (UniqueConstraint("challenge_id", "user_id"),)

    challenge_id: Mapped[int] = mapped_column(BigId, ForeignKey("challenges.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"), index=True)
    status: Mapped[CompletionStatus] = mapped_column(
        str_enum(CompletionStatus, "completion_status"), default=CompletionStatus.CLAIMED
    )
    evidence: Mapped[str] = mapped_column(String(1000), default="")
    decided_by: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

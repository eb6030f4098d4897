"""Who follows whom inside a community, and who blocked whom anywhere.

Follows are per community (a member follows a member where both belong). Blocks are per
account: a block is about a person, so it holds in every community the two share, and
either direction hides each from the other in recommendations.
"""

from __future__ import annotations

from sqlalchemy import CheckConstraint, ForeignKey, Index, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, BigId, CreatedMixin, IdMixin


class Follow(IdMixin, CreatedMixin, Base):
    __tablename__ = "follows"
    __table_args__ = (
        UniqueConstraint("community_id", "follower_id", "followee_id"),
        CheckConstraint("follower_id <> followee_id", name="not_self"),
        Index("ix_follows_followee", "community_id", "followee_id"),
    )

    community_id: Mapped[int] = mapped_column(BigId, ForeignKey("communities.id", ondelete="CASCADE"))
    follower_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    followee_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))


class Block(IdMixin, CreatedMixin, Base):
    __tablename__ = "blocks"
    __table_args__ = (
        UniqueConstraint("blocker_id", "blocked_id"),
        CheckConstraint("blocker_id <> blocked_id", name="not_self"),
    )

    blocker_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    blocked_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), index=True)

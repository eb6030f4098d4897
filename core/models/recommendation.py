"""What the recommender stores: embeddings, members' feedback, and a per-community stamp.

Embeddings are derived data: keyed by (entity type, entity id, model id) and stamped with
the hash of the text they were computed from, so they are recomputed only when that text
or the model changes, and can always be rebuilt from the database. A member's embedding
belongs to one membership (their profile plus their public posts in that community).

`RecommenderState.version` is bumped by the worker whenever a community's embeddings
change; API processes compare it with the version of the model they hold in memory, which
is how a refit crosses the process boundary without any shared memory.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.clock import utcnow
from core.models.base import Base, BigId, CreatedMixin, IdMixin, UTCDateTime, str_enum


class EmbeddingEntity(enum.StrEnum):
    MEMBER = "member"  # entity_id is a membership id
    THREAD = "thread"
    EVENT = "event"
    COURSE = "course"


class FeedbackKind(enum.StrEnum):
    NOT_INTERESTED = "not_interested"


class Embedding(IdMixin, Base):
    __tablename__ = "embeddings"
    __table_args__ = (
        UniqueConstraint("entity_type", "entity_id", "model_id"),
        Index("ix_embeddings_community_model", "community_id", "model_id"),
    )

    community_id: Mapped[int] = mapped_column(BigId, ForeignKey("communities.id", ondelete="CASCADE"))
    entity_type: Mapped[EmbeddingEntity] = mapped_column(str_enum(EmbeddingEntity, "embedding_entity"))
    entity_id: Mapped[int] = mapped_column(BigId)
    model_id: Mapped[str] = mapped_column(String(200))
    content_hash: Mapped[str] = mapped_column(String(64))
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float32, little-endian, `dim` values
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class RecommendationFeedback(IdMixin, CreatedMixin, Base):
    """A member's "not interested" in a person or an item; kept until they undo it."""

    __tablename__ = "recommendation_feedback"
    __table_args__ = (UniqueConstraint("community_id", "user_id", "target", "kind"),)

    community_id: Mapped[int] = mapped_column(BigId, ForeignKey("communities.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    target: Mapped[str] = mapped_column(String(40))  # a corpus id: "m:12", "event:3", "thread:9"
    kind: Mapped[FeedbackKind] = mapped_column(str_enum(FeedbackKind, "feedback_kind"))


class RecommenderState(Base):
    __tablename__ = "recommender_state"

    community_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("communities.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, default=0)
    refreshed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

"""Channels, threads, posts (with revisions, mentions, reactions) and DMs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, BigId, CreatedMixin, IdMixin, UTCDateTime, str_enum
from core.models.community import Role


class Channel(IdMixin, CreatedMixin, Base):
    """Visible to a member whose tier rank >= min_tier's and role >= min_role.

    Staff (moderator and up) see every channel of their community.
    """

    __tablename__ = "channels"
    __table_args__ = (UniqueConstraint("community_id", "slug"),)

    community_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("communities.id", ondelete="CASCADE"), index=True
    )
    slug: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(80))
    description: Mapped[str] = mapped_column(Text, default="")
    min_tier_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("tiers.id"))
    min_role: Mapped[Role] = mapped_column(str_enum(Role, "min_role"), default=Role.MEMBER)
    post_min_role: Mapped[Role] = mapped_column(str_enum(Role, "post_min_role"), default=Role.MEMBER)
    position: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"))
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ChannelMember(IdMixin, Base):
    """A member following a channel (what onboarding's "join channels" does)."""

    __tablename__ = "channel_members"
    __table_args__ = (UniqueConstraint("channel_id", "user_id"),)

    channel_id: Mapped[int] = mapped_column(BigId, ForeignKey("channels.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Thread(IdMixin, CreatedMixin, Base):
    __tablename__ = "threads"

    community_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("communities.id", ondelete="CASCADE"), index=True
    )
    channel_id: Mapped[int] = mapped_column(BigId, ForeignKey("channels.id", ondelete="CASCADE"), index=True)
    author_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    reply_count: Mapped[int] = mapped_column(Integer, default=0)
    last_activity_at: Mapped[datetime] = mapped_column(UTCDateTime)
    locked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deleted_by: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id"))


class Post(IdMixin, CreatedMixin, Base):
    """The opening post of a thread (is_opening) or a reply to it."""

    __tablename__ = "posts"

    community_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("communities.id", ondelete="CASCADE"), index=True
    )
    thread_id: Mapped[int] = mapped_column(BigId, ForeignKey("threads.id", ondelete="CASCADE"), index=True)
    author_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"), index=True)
    reply_to_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("posts.id"))
    is_opening: Mapped[bool] = mapped_column(default=False)
    body: Mapped[str] = mapped_column(Text)
    edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deleted_by: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id"))


class PostRevision(IdMixin, CreatedMixin, Base):
    """The body a post had before an edit; the current body lives on the post."""

    __tablename__ = "post_revisions"

    post_id: Mapped[int] = mapped_column(BigId, ForeignKey("posts.id", ondelete="CASCADE"), index=True)
    editor_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"))
    body: Mapped[str] = mapped_column(Text)
    title: Mapped[str | None] = mapped_column(String(200))


class Mention(IdMixin, Base):
    __tablename__ = "mentions"
    __table_args__ = (UniqueConstraint("post_id", "user_id"),)

    post_id: Mapped[int] = mapped_column(BigId, ForeignKey("posts.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), index=True)


class Reaction(IdMixin, CreatedMixin, Base):
    __tablename__ = "reactions"
    __table_args__ = (UniqueConstraint("post_id", "user_id", "emoji"),)

    post_id: Mapped[int] = mapped_column(BigId, ForeignKey("posts.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    emoji: Mapped[str] = mapped_column(String(32))


class Conversation(IdMixin, CreatedMixin, Base):
    """A DM conversation inside one community: 1:1 (direct_key set) or a small group."""

    __tablename__ = "conversations"

    community_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("communities.id", ondelete="CASCADE"), index=True
    )
    created_by: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"))
    title: Mapped[str | None] = mapped_column(String(120))
    # "<community>:<low user id>:<high user id>" for 1:1 conversations, so there is only one.
    direct_key: Mapped[str | None] = mapped_column(String(80), unique=True)
    last_message_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ConversationParticipant(IdMixin, Base):
    __tablename__ = "conversation_participants"
    __table_args__ = (UniqueConstraint("conversation_id", "user_id"),)

    conversation_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_read_message_id: Mapped[int | None] = mapped_column(BigId)


class DirectMessage(IdMixin, CreatedMixin, Base):
    __tablename__ = "direct_messages"

    conversation_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    sender_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"))
    body: Mapped[str] = mapped_column(Text)
    edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

"""All SQL for channels, threads, posts, mentions, reactions and DM conversations."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from datetime import datetime

from sqlalchemy import ColumnElement, Row, Select, delete, func, or_, select, update
from sqlalchemy.orm import Session

from core.models import (
    Channel,
    ChannelMember,
    Conversation,
    ConversationParticipant,
    DirectMessage,
    Membership,
    MembershipStatus,
    Mention,
    Notification,
    Post,
    PostRevision,
    Reaction,
    Role,
    Thread,
    User,
)
from core.models.base import UTCDateTime

# --- channels ---------------------------------------------------------------


def channels_of(
    community_id: int,
    *,
    roles: Collection[Role] | None,
    tier_ids: Collection[int] | None,
    include_archived: bool,
) -> Select[Channel]:
    """Channels of a community; `roles`/`tier_ids` (None: no filter) are the ones the viewer meets."""
    stmt = select(Channel).where(Channel.community_id == community_id)
    if roles is not None:
        stmt = stmt.where(Channel.min_role.in_(list(roles)))
    if tier_ids is not None:
        stmt = stmt.where(or_(Channel.min_tier_id.is_(None), Channel.min_tier_id.in_(list(tier_ids))))
    if not include_archived:
        stmt = stmt.where(Channel.archived_at.is_(None))
    return stmt.order_by(Channel.position.asc(), Channel.id.asc())


def followed_channel_ids(session: Session, user_id: int, channel_ids: Collection[int]) -> set[int]:
    if not channel_ids:
        return set()
    stmt = select(ChannelMember.channel_id).where(
        ChannelMember.user_id == user_id, ChannelMember.channel_id.in_(list(channel_ids))
    )
    return set(session.scalars(stmt))


def channel_member(session: Session, channel_id: int, user_id: int) -> ChannelMember | None:
    return session.scalar(
        select(ChannelMember).where(ChannelMember.channel_id == channel_id, ChannelMember.user_id == user_id)
    )


def active_memberships(session: Session, community_id: int, user_ids: Collection[int]) -> list[Membership]:
    if not user_ids:
        return []
    stmt = select(Membership).where(
        Membership.community_id == community_id,
        Membership.user_id.in_(list(user_ids)),
        Membership.status == MembershipStatus.ACTIVE,
    )
    return list(session.scalars(stmt))


def membership_status(session: Session, community_id: int, user_id: int) -> MembershipStatus | None:
    return session.scalar(
        select(Membership.status).where(
            Membership.community_id == community_id, Membership.user_id == user_id
        )
    )


# --- threads and posts ------------------------------------------------------


def threads_of(channel_id: int, *, author_id: int | None, q: str | None) -> Select[Thread]:
    stmt = select(Thread).where(Thread.channel_id == channel_id, Thread.deleted_at.is_(None))
    if author_id is not None:
        stmt = stmt.where(Thread.author_id == author_id)
    if q:
        stmt = stmt.where(Thread.title.icontains(q, autoescape=True))
    return stmt


def opening_post(session: Session, thread_id: int) -> Post:
    post = session.scalar(select(Post).where(Post.thread_id == thread_id, Post.is_opening.is_(True)))
    assert post is not None, "every thread has an opening post"
    return post


def replies_of(thread_id: int) -> Select[Post]:
    return select(Post).where(Post.thread_id == thread_id, Post.is_opening.is_(False))


def revisions_of(post_id: int) -> Select[PostRevision]:
    return select(PostRevision).where(PostRevision.post_id == post_id)


def display_names(session: Session, user_ids: Collection[int]) -> dict[int, str]:
    if not user_ids:
        return {}
    stmt = select(User.id, User.display_name).where(User.id.in_(list(user_ids)))
    return {uid: name for uid, name in session.execute(stmt)}


def user_cards(session: Session, user_ids: Collection[int]) -> dict[int, Row[int, str, str | None]]:
    """(id, display_name, avatar_url) of each user, in one query whatever the number of ids."""
    if not user_ids:
        return {}
    stmt = select(User.id, User.display_name, User.avatar_url).where(User.id.in_(list(user_ids)))
    return {row.id: row for row in session.execute(stmt)}


def mentions_of(session: Session, post_ids: Collection[int]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    if post_ids:
        stmt = (
            select(Mention.post_id, Mention.user_id)
            .where(Mention.post_id.in_(list(post_ids)))
            .order_by(Mention.id)
        )
        for post_id, user_id in session.execute(stmt):
            out[post_id].append(user_id)
    return out


def reaction_counts(session: Session, post_ids: Collection[int]) -> dict[int, dict[str, int]]:
    out: dict[int, dict[str, int]] = defaultdict(dict)
    if post_ids:
        stmt = (
            select(Reaction.post_id, Reaction.emoji, func.count())
            .where(Reaction.post_id.in_(list(post_ids)))
            .group_by(Reaction.post_id, Reaction.emoji)
            .order_by(Reaction.post_id, func.min(Reaction.id))
        )
        for post_id, emoji, count in session.execute(stmt):
            out[post_id][emoji] = count
    return out


def reactions_by(session: Session, user_id: int, post_ids: Collection[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = defaultdict(list)
    if post_ids:
        stmt = (
            select(Reaction.post_id, Reaction.emoji)
            .where(Reaction.user_id == user_id, Reaction.post_id.in_(list(post_ids)))
            .order_by(Reaction.id)
        )
        for post_id, emoji in session.execute(stmt):
            out[post_id].append(emoji)
    return out


def reaction(session: Session, post_id: int, user_id: int, emoji: str) -> Reaction | None:
    return session.scalar(
        select(Reaction).where(
            Reaction.post_id == post_id, Reaction.user_id == user_id, Reaction.emoji == emoji
        )
    )


def delete_reaction(session: Session, post_id: int, user_id: int, emoji: str) -> None:
    session.execute(
        delete(Reaction)
        .where(Reaction.post_id == post_id, Reaction.user_id == user_id, Reaction.emoji == emoji)
        .execution_options(synchronize_session=False)
    )


# --- direct messages --------------------------------------------------------


def conversation_by_direct_key(session: Session, direct_key: str) -> Conversation | None:
    return session.scalar(select(Conversation).where(Conversation.direct_key == direct_key))


def is_participant(session: Session, conversation_id: int, user_id: int) -> bool:
    stmt = select(ConversationParticipant.id).where(
        ConversationParticipant.conversation_id == conversation_id,
        ConversationParticipant.user_id == user_id,
    )
    return session.scalar(stmt) is not None


def participants_of(session: Session, conversation_ids: Collection[int]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    if conversation_ids:
        stmt = (
            select(ConversationParticipant.conversation_id, ConversationParticipant.user_id)
            .where(ConversationParticipant.conversation_id.in_(list(conversation_ids)))
            .order_by(ConversationParticipant.id)
        )
        for conversation_id, user_id in session.execute(stmt):
            out[conversation_id].append(user_id)
    return out


def conversations_of(community_id: int, user_id: int) -> Select[Conversation]:
    mine = select(ConversationParticipant.conversation_id).where(ConversationParticipant.user_id == user_id)
    return select(Conversation).where(Conversation.community_id == community_id, Conversation.id.in_(mine))


def conversation_activity() -> ColumnElement[datetime]:
    """When a conversation last saw activity: its last message, else its creation."""
    return func.coalesce(Conversation.last_message_at, Conversation.created_at, type_=UTCDateTime)


def messages_of(conversation_id: int) -> Select[DirectMessage]:
    return select(DirectMessage).where(DirectMessage.conversation_id == conversation_id)


# --- newest-activity-first keyset pagination ---------------------------------
# core.pagination keys on ids alone; "newest activity first" needs (time, id) keys
# because activity moves while ids do not. Same opaque-cursor contract.


def mark_post_deleted(session: Session, post_id: int, by: int, now: datetime) -> bool:
    """Soft-delete once: True only for the caller whose UPDATE flipped deleted_at."""
    result = session.execute(
        update(Post)
        .where(Post.id == post_id, Post.deleted_at.is_(None))
        .values(deleted_at=now, deleted_by=by)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


# --- notifications about posts ------------------------------------------------
# Notifications are rows of their own (core.notifications), so a soft-deleted post's words
# (the excerpt) would outlive it there: deleting the post deletes what was said about it.
POST_SUBJECT = "post"


def delete_post_notifications(session: Session, post_id: int) -> int:
    return _delete_post_notifications(session, Notification.subject_id == post_id)


def delete_thread_notifications(session: Session, thread_id: int) -> int:
    """Those of every post in the thread, the opening post and all replies."""
    posts = select(Post.id).where(Post.thread_id == thread_id)
    return _delete_post_notifications(session, Notification.subject_id.in_(posts))


def _delete_post_notifications(session: Session, which: ColumnElement[bool]) -> int:
    result = session.execute(
        delete(Notification)
        .where(Notification.subject_type == POST_SUBJECT, which)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]

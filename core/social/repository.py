"""All SQL for follows, blocks and the opt-out."""

from __future__ import annotations

from sqlalchemy import Select, delete, exists, func, or_, select, union
from sqlalchemy.orm import Session

from core.models import (
    Block,
    ConversationParticipant,
    Embedding,
    EmbeddingEntity,
    Follow,
    Membership,
    MembershipStatus,
)


def active_membership(session: Session, community_id: int, user_id: int) -> Membership | None:
    return session.scalar(
        select(Membership).where(
            Membership.community_id == community_id,
            Membership.user_id == user_id,
            Membership.status == MembershipStatus.ACTIVE,
        )
    )


def follow(session: Session, community_id: int, follower_id: int, followee_id: int) -> Follow | None:
    return session.scalar(
        select(Follow).where(
            Follow.community_id == community_id,
            Follow.follower_id == follower_id,
            Follow.followee_id == followee_id,
        )
    )


def block(session: Session, blocker_id: int, blocked_id: int) -> Block | None:
    return session.scalar(select(Block).where(Block.blocker_id == blocker_id, Block.blocked_id == blocked_id))


def reachable(session: Session, a: int, b: int) -> bool:
    """Whether two users ever met: memberships (any status) of one community, or one DM
    conversation. Someone who left a community may still need to block a member of it."""
    other = select(Membership.community_id).where(Membership.user_id == b)
    shared = select(Membership.id).where(Membership.user_id == a, Membership.community_id.in_(other))
    theirs = select(ConversationParticipant.conversation_id).where(ConversationParticipant.user_id == b)
    dm = select(ConversationParticipant.id).where(
        ConversationParticipant.user_id == a, ConversationParticipant.conversation_id.in_(theirs)
    )
    return bool(session.scalar(select(exists(shared) | exists(dm))))


def blocked_either_way(session: Session, a: int, b: int) -> bool:
    cond = or_(
        (Block.blocker_id == a) & (Block.blocked_id == b),
        (Block.blocker_id == b) & (Block.blocked_id == a),
    )
    return bool(session.scalar(select(exists().where(cond))))


def blocked_ids(session: Session, user_id: int) -> set[int]:
    """Everyone this user blocked or was blocked by."""
    stmt = union(
        select(Block.blocked_id).where(Block.blocker_id == user_id),
        select(Block.blocker_id).where(Block.blocked_id == user_id),
    )
    return set(session.scalars(stmt))


def delete_follows_between(session: Session, a: int, b: int) -> int:
    result = session.execute(
        delete(Follow).where(
            or_(
                (Follow.follower_id == a) & (Follow.followee_id == b),
                (Follow.follower_id == b) & (Follow.followee_id == a),
            )
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def followers_query(community_id: int, user_id: int) -> Select[Follow]:
    return select(Follow).where(Follow.community_id == community_id, Follow.followee_id == user_id)


def following_query(community_id: int, user_id: int) -> Select[Follow]:
    return select(Follow).where(Follow.community_id == community_id, Follow.follower_id == user_id)


def blocks_query(user_id: int) -> Select[Block]:
    return select(Block).where(Block.blocker_id == user_id)


def delete_member_embeddings(session: Session, user_id: int) -> int:
    """Every embedding of this user's memberships, for every model."""
    memberships = select(Membership.id).where(Membership.user_id == user_id)
    result = session.execute(
        delete(Embedding).where(
            Embedding.entity_type == EmbeddingEntity.MEMBER, Embedding.entity_id.in_(memberships)
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def member_embedding_count(session: Session, user_id: int) -> int:
    memberships = select(Membership.id).where(Membership.user_id == user_id)
    return (
        session.scalar(
            select(func.count())
            .select_from(Embedding)
            .where(Embedding.entity_type == EmbeddingEntity.MEMBER, Embedding.entity_id.in_(memberships))
        )
        or 0
    )

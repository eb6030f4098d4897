"""Follow, block and opt-out rules.

Follows and blocks are personal acts: API keys may not make them. Every write is
idempotent (following twice, unfollowing someone not followed), so clients can retry.
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.access import Actor, community_context
from core.conversation import repository as conversation_repo
from core.conversation.schemas import AuthorOut
from core.models import Block, Follow, User
from core.pagination import Page, paginate
from core.social import errors
from core.social import repository as repo
from core.social.schemas import (
    BlockOut,
    FollowEntryOut,
    FollowOut,
    RecommendationSettingsOut,
)


def _follow_out(follow: Follow, *, replayed: bool) -> FollowOut:
    out = FollowOut.model_validate(follow)
    out.replayed = replayed
    return out


def follow(session: Session, actor: Actor, community_id: int, user_id: int) -> FollowOut:
    actor.require_personal()
    ctx = community_context(session, actor, community_id)
    ctx.require_member()
    if user_id == actor.id:
        raise errors.cannot_follow_self()
    if repo.active_membership(session, community_id, user_id) is None:
        raise errors.member_not_found()
    if repo.blocked_either_way(session, actor.id, user_id):
        raise errors.blocked()
    existing = repo.follow(session, community_id, actor.id, user_id)
    if existing is not None:
        return _follow_out(existing, replayed=True)
    row = Follow(community_id=community_id, follower_id=actor.id, followee_id=user_id)
    session.add(row)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        # A concurrent request followed first: the same outcome.
        winner = repo.follow(session, community_id, actor.id, user_id)
        if winner is None:
            raise
        return _follow_out(winner, replayed=True)
    return _follow_out(row, replayed=False)


def unfollow(session: Session, actor: Actor, community_id: int, user_id: int) -> None:
    actor.require_personal()
    community_context(session, actor, community_id).require_member()
    existing = repo.follow(session, community_id, actor.id, user_id)
    if existing is not None:
        session.delete(existing)
        session.flush()


def _entries(session: Session, page: Page[Follow], *, other: str) -> Page[FollowEntryOut]:
    ids = [getattr(f, other) for f in page.items]
    cards = conversation_repo.user_cards(session, ids)
    return page.with_items(
        [
            FollowEntryOut(user=AuthorOut.model_validate(cards[uid]), since=f.created_at)
            for uid, f in zip(ids, page.items, strict=True)
        ]
    )


def list_followers(
    session: Session, actor: Actor, community_id: int, user_id: int, *, cursor: str | None, limit: int
) -> Page[FollowEntryOut]:
    community_context(session, actor, community_id).require_member()
    if repo.active_membership(session, community_id, user_id) is None:
        raise errors.member_not_found()
    page = paginate(
        session, repo.followers_query(community_id, user_id), Follow.id, cursor=cursor, limit=limit
    )
    return _entries(session, page, other="follower_id")


def list_following(
    session: Session, actor: Actor, community_id: int, user_id: int, *, cursor: str | None, limit: int
) -> Page[FollowEntryOut]:
    community_context(session, actor, community_id).require_member()
    if repo.active_membership(session, community_id, user_id) is None:
        raise errors.member_not_found()
    page = paginate(
        session, repo.following_query(community_id, user_id), Follow.id, cursor=cursor, limit=limit
    )
    return _entries(session, page, other="followee_id")


# --- blocks -------------------------------------------------------------------


def _block_out(session: Session, block: Block, *, replayed: bool) -> BlockOut:
    card = conversation_repo.user_cards(session, [block.blocked_id])[block.blocked_id]
    return BlockOut(user=AuthorOut.model_validate(card), created_at=block.created_at, replayed=replayed)


def block(session: Session, actor: Actor, user_id: int) -> BlockOut:
    """Block a user the actor shares a community or a DM conversation with (404 otherwise)."""
    actor.require_personal()
    if user_id == actor.id:
        raise errors.cannot_block_self()
    existing = repo.block(session, actor.id, user_id)
    if existing is not None:
        return _block_out(session, existing, replayed=True)
    # Only someone the actor could have met (a shared community, a DM): blocking anyone else
    # would reveal that the account exists and its name. Unknown and unreachable answer alike.
    if session.get(User, user_id) is None or not repo.reachable(session, actor.id, user_id):
        raise errors.user_not_found()
    row = Block(blocker_id=actor.id, blocked_id=user_id)
    session.add(row)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        winner = repo.block(session, actor.id, user_id)
        if winner is None:
            raise
        return _block_out(session, winner, replayed=True)
    # A block ends following both ways, in every community the two share.
    repo.delete_follows_between(session, actor.id, user_id)
    return _block_out(session, row, replayed=False)


def unblock(session: Session, actor: Actor, user_id: int) -> None:
    actor.require_personal()
    existing = repo.block(session, actor.id, user_id)
    if existing is not None:
        session.delete(existing)
        session.flush()


def list_blocks(session: Session, actor: Actor, *, cursor: str | None, limit: int) -> Page[BlockOut]:
    actor.require_personal()
    page = paginate(session, repo.blocks_query(actor.id), Block.id, cursor=cursor, limit=limit)
    cards = conversation_repo.user_cards(session, [b.blocked_id for b in page.items])
    return page.with_items(
        [
            BlockOut(user=AuthorOut.model_validate(cards[b.blocked_id]), created_at=b.created_at)
            for b in page.items
        ]
    )


def blocked_ids(session: Session, user_id: int) -> set[int]:
    """Everyone hidden from this user and from whom this user is hidden (both directions)."""
    return repo.blocked_ids(session, user_id)


# --- recommendation opt-out -----------------------------------------------------


def recommendation_settings(session: Session, actor: Actor) -> RecommendationSettingsOut:
    actor.require_personal()
    return RecommendationSettingsOut(
        opted_out=actor.user.recommendations_opt_out,
        profiles_kept=repo.member_embedding_count(session, actor.id),
    )


def set_recommendation_opt_out(session: Session, actor: Actor, opted_out: bool) -> RecommendationSettingsOut:
    actor.require_personal()
    user = actor.user
    if opted_out:
        # Deleted now, not by a later job: an opt-out must not wait on a queue.
        repo.delete_member_embeddings(session, user.id)
    if user.recommendations_opt_out != opted_out:
        user.recommendations_opt_out = opted_out
        session.flush()
    return recommendation_settings(session, actor)

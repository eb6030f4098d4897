"""All SQL for communities, memberships, invites and bans."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.orm import Session

from core.models import (
    ApiKey,
    Ban,
    Community,
    Invite,
    Membership,
    MembershipStatus,
    Role,
    Tier,
    User,
    Visibility,
)


def member_counts(session: Session, community_ids: list[int]) -> dict[int, int]:
    if not community_ids:
        return {}
    stmt = (
        select(Membership.community_id, func.count())
        .where(Membership.community_id.in_(community_ids), Membership.status == MembershipStatus.ACTIVE)
        .group_by(Membership.community_id)
    )
    return {cid: n for cid, n in session.execute(stmt)}


def memberships_of(session: Session, user_id: int, community_ids: list[int]) -> dict[int, Membership]:
    if not community_ids:
        return {}
    stmt = select(Membership).where(
        Membership.user_id == user_id,
        Membership.community_id.in_(community_ids),
        Membership.status == MembershipStatus.ACTIVE,
    )
    return {m.community_id: m for m in session.scalars(stmt)}


def users_by_id(session: Session, user_ids: list[int]) -> dict[int, User]:
    if not user_ids:
        return {}
    return {u.id: u for u in session.scalars(select(User).where(User.id.in_(user_ids)))}


def tiers_by_id(session: Session, tier_ids: list[int]) -> dict[int, Tier]:
    if not tier_ids:
        return {}
    return {t.id: t for t in session.scalars(select(Tier).where(Tier.id.in_(tier_ids)))}


def membership(session: Session, community_id: int, user_id: int) -> Membership | None:
    return session.scalar(
        select(Membership).where(Membership.community_id == community_id, Membership.user_id == user_id)
    )


def visible_communities(user_id: int, *, mine: bool, q: str | None) -> Select[Community]:
    my_ids = select(Membership.community_id).where(
        Membership.user_id == user_id, Membership.status == MembershipStatus.ACTIVE
    )
    stmt = select(Community)
    if mine:
        stmt = stmt.where(Community.id.in_(my_ids))
    else:
        stmt = stmt.where(or_(Community.visibility == Visibility.PUBLIC, Community.id.in_(my_ids)))
    if q:
        stmt = stmt.where(
            or_(
                Community.name.icontains(q, autoescape=True),
                Community.description.icontains(q, autoescape=True),
            )
        )
    return stmt


def members_query(
    community_id: int,
    *,
    role: Role | None,
    tier_id: int | None,
    q: str | None,
    status: MembershipStatus,
) -> Select[Membership]:
    stmt = select(Membership).where(Membership.community_id == community_id, Membership.status == status)
    if role is not None:
        stmt = stmt.where(Membership.role == role)
    if tier_id is not None:
        stmt = stmt.where(Membership.tier_id == tier_id)
    if q:
        stmt = stmt.join(User, User.id == Membership.user_id).where(
            User.display_name.icontains(q, autoescape=True)
        )
    return stmt


def lowest_tier(session: Session, community_id: int) -> Tier:
    stmt = select(Tier).where(Tier.community_id == community_id).order_by(Tier.rank.asc()).limit(1)
    tier = session.scalar(stmt)
    assert tier is not None, "every community has at least one tier"
    return tier


def invite_by_code(session: Session, code: str) -> Invite | None:
    return session.scalar(select(Invite).where(Invite.code == code))


def claim_invite_use(session: Session, invite_id: int, now: datetime) -> bool:
    """Take one use of an invite atomically; False when it is used up, expired or revoked."""
    result = session.execute(
        update(Invite)
        .where(
            Invite.id == invite_id,
            Invite.revoked_at.is_(None),
            or_(Invite.expires_at.is_(None), Invite.expires_at > now),
            or_(Invite.max_uses.is_(None), Invite.uses < Invite.max_uses),
        )
        .values(uses=Invite.uses + 1)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def active_ban(session: Session, community_id: int, user_id: int, now: datetime) -> Ban | None:
    return session.scalar(
        select(Ban).where(
            Ban.community_id == community_id,
            Ban.user_id == user_id,
            Ban.lifted_at.is_(None),
            or_(Ban.expires_at.is_(None), Ban.expires_at > now),
        )
    )


def invites_of(community_id: int) -> Select[Invite]:
    return select(Invite).where(Invite.community_id == community_id)


def bans_of(community_id: int, *, active_only: bool, now: datetime) -> Select[Ban]:
    stmt = select(Ban).where(Ban.community_id == community_id)
    if active_only:
        stmt = stmt.where(Ban.lifted_at.is_(None), or_(Ban.expires_at.is_(None), Ban.expires_at > now))
    return stmt


def live_api_keys_by(session: Session, community_id: int, user_id: int) -> list[ApiKey]:
    stmt = select(ApiKey).where(
        ApiKey.community_id == community_id, ApiKey.created_by == user_id, ApiKey.revoked_at.is_(None)
    )
    return list(session.scalars(stmt))


def reactivate_membership(session: Session, membership_id: int, tier_id: int, now: datetime) -> bool:
    """Bring a departed member back as a plain member; False when someone else already did."""
    result = session.execute(
        update(Membership)
        .where(Membership.id == membership_id, Membership.status != MembershipStatus.ACTIVE)
        .values(
            status=MembershipStatus.ACTIVE, role=Role.MEMBER, tier_id=tier_id, joined_at=now, left_at=None
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]

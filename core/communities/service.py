"""Community rules: who may create, configure, join, leave, invite, ban and promote."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import audit
from core.access import Actor, CommunityContext, community_context
from core.accounts.schemas import UserOut
from core.chips.community import ensure_community_chip
from core.clock import utcnow
from core.communities import repository as repo
from core.communities.schemas import (
    DEFAULT_TIERS,
    BanIn,
    CommunityIn,
    CommunityOut,
    CommunityPatch,
    InviteIn,
    JoinIn,
    MemberPatch,
    MembershipOut,
    TierIn,
    TierPatch,
)
from core.errors import Conflict, NotFound, PermissionDenied
from core.events import service as events
from core.models import (
    Ban,
    Community,
    Invite,
    Membership,
    MembershipStatus,
    Role,
    Tier,
    Visibility,
)
from core.pagination import Page, paginate


def community_views(session: Session, actor: Actor, items: list[Community]) -> list[CommunityOut]:
    """Communities as the caller sees them, with member counts and their own role and tier."""
    ids = [c.id for c in items]
    counts = repo.member_counts(session, ids)
    mine = repo.memberships_of(session, actor.id, ids)
    tiers = repo.tiers_by_id(session, _tier_ids(mine.values()))
    now = utcnow()
    out = []
    for community in items:
        view = CommunityOut.model_validate(community)
        view.member_count = counts.get(community.id, 0)
        if (membership := mine.get(community.id)) is not None:
            view.my_role = membership.role
            view.my_tier = tiers[membership.tier_id].key
            if membership.trial_running(now) and membership.trial_tier_id is not None:
                view.my_trial_tier = tiers[membership.trial_tier_id].key
                view.my_trial_ends_at = membership.trial_ends_at
        out.append(view)
    return out


def _tier_ids(memberships: Iterable[Membership]) -> list[int]:
    """The tiers the memberships hold, and their trials' tiers."""
    ids = {m.tier_id for m in memberships} | {m.trial_tier_id for m in memberships if m.trial_tier_id}
    return sorted(ids)


def membership_views(session: Session, actor: Actor, items: list[Membership]) -> list[MembershipOut]:
    """Memberships as `actor` may see them: a running trial (bought with chips) shows to its
    member and to the community's moderators, not to the other members."""
    users = repo.users_by_id(session, [m.user_id for m in items])
    tiers = repo.tiers_by_id(session, _tier_ids(items))
    staff_in = _staff_communities(session, actor, {m.community_id for m in items if m.user_id != actor.id})
    now = utcnow()
    out = []
    for m in items:
        trial = (
            m.trial_running(now)
            and m.trial_tier_id is not None
            and (m.user_id == actor.id or m.community_id in staff_in)
        )
        out.append(
            MembershipOut(
                user=UserOut.model_validate(users[m.user_id]),
                role=m.role,
                tier=tiers[m.tier_id].key,
                trial_tier=tiers[m.trial_tier_id].key if trial and m.trial_tier_id else None,
                trial_ends_at=m.trial_ends_at if trial else None,
                status=m.status,
                joined_at=m.joined_at,
            )
        )
    return out


def _staff_communities(session: Session, actor: Actor, community_ids: set[int]) -> set[int]:
    """Which of `community_ids` the actor moderates (an active member, moderator or higher)."""
    if not community_ids:
        return set()
    return {
        m.community_id
        for m in repo.memberships_of(session, actor.id, sorted(community_ids)).values()
        if m.role.at_least(Role.MODERATOR)
    }


def create_community(session: Session, actor: Actor, data: CommunityIn) -> Community:
    actor.require_personal()
    community = Community(
        slug=data.slug,
        name=data.name,
        description=data.description,
        visibility=data.visibility,
        default_language=data.default_language,
        created_by=actor.id,
        settings={},
    )
    session.add(community)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise Conflict("a community with this slug already exists", code="slug_taken") from exc
    tiers = [Tier(community_id=community.id, **t.model_dump()) for t in (data.tiers or DEFAULT_TIERS)]
    session.add_all(tiers)
    session.flush()
    top = max(tiers, key=lambda t: t.rank)
    session.add(
        Membership(
            community_id=community.id,
            user_id=actor.id,
            role=Role.OWNER,
            tier_id=top.id,
            joined_at=utcnow(),
        )
    )
    session.flush()
    ensure_community_chip(session, community)  # every community has its chip from the start
    audit.record(
        session,
        actor,
        "community.create",
        community,
        community_id=community.id,
        after=audit.snapshot(community),
    )
    return community


def get(session: Session, actor: Actor, community_id: int) -> CommunityContext:
    return community_context(session, actor, community_id)


def list_visible(
    session: Session, actor: Actor, *, mine: bool, q: str | None, cursor: str | None, limit: int
) -> Page[Community]:
    if actor.api_key is not None:
        mine = True
    stmt = repo.visible_communities(actor.id, mine=mine, q=q)
    if actor.api_key is not None:
        stmt = stmt.where(Community.id == actor.api_key.community_id)
    return paginate(session, stmt, Community.id, cursor=cursor, limit=limit)


def update_community(session: Session, actor: Actor, community_id: int, patch: CommunityPatch) -> Community:
    ctx = community_context(session, actor, community_id)
    ctx.require_role(Role.ADMIN)
    changes = patch.model_dump(exclude_unset=True, exclude_none=True)
    before = audit.snapshot(ctx.community, list(changes))
    for key, value in changes.items():
        setattr(ctx.community, key, value)
    session.flush()
    audit.record(
        session,
        actor,
        "community.update",
        ctx.community,
        community_id=community_id,
        before=before,
        after=audit.snapshot(ctx.community, list(changes)),
    )
    return ctx.community


# --- tiers ------------------------------------------------------------------


def create_tier(session: Session, actor: Actor, community_id: int, data: TierIn) -> Tier:
    ctx = community_context(session, actor, community_id)
    ctx.require_role(Role.ADMIN)
    if any(t.key == data.key or t.rank == data.rank for t in ctx.tiers.values()):
        raise Conflict("a tier with this key or rank already exists", code="tier_exists")
    tier = Tier(community_id=community_id, **data.model_dump())
    session.add(tier)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:  # a concurrent create took the key or rank
        raise Conflict("a tier with this key or rank already exists", code="tier_exists") from exc
    audit.record(session, actor, "tier.create", tier, community_id=community_id, after=audit.snapshot(tier))
    return tier


def update_tier(session: Session, actor: Actor, community_id: int, key: str, patch: TierPatch) -> Tier:
    ctx = community_context(session, actor, community_id)
    ctx.require_role(Role.ADMIN)
    tier = ctx.tier(key)
    changes = patch.model_dump(exclude_unset=True, exclude_none=True)
    before = audit.snapshot(tier, list(changes))
    for field_name, value in changes.items():
        setattr(tier, field_name, value)
    session.flush()
    audit.record(
        session,
        actor,
        "tier.update",
        tier,
        community_id=community_id,
        before=before,
        after=audit.snapshot(tier, list(changes)),
    )
    return tier


# --- joining and leaving ----------------------------------------------------


def join(session: Session, actor: Actor, community_id: int, data: JoinIn) -> Membership:
    actor.require_personal()
    community = session.get(Community, community_id)
    if community is None:
        raise NotFound("community not found", code="community_not_found")
    now = utcnow()
    invite = _usable_invite(session, community_id, data.invite_code) if data.invite_code else None
    if invite is None and community.visibility == Visibility.PRIVATE:
        # Without a valid invite a private community does not exist for this user.
        raise NotFound("community not found", code="community_not_found")
    if repo.active_ban(session, community_id, actor.id, now) is not None:
        raise PermissionDenied("you are banned from this community", code="banned")
    membership = repo.membership(session, community_id, actor.id)
    if membership is not None and membership.status == MembershipStatus.ACTIVE:
        raise Conflict("you are already a member", code="already_member")
    if invite is not None and not repo.claim_invite_use(session, invite.id, now):
        raise Conflict("this invite is used up, expired or revoked", code="invite_exhausted")
    tier_id = invite.tier_id if invite and invite.tier_id else repo.lowest_tier(session, community_id).id
    if membership is None:
        membership = Membership(
            community_id=community_id,
            user_id=actor.id,
            role=Role.MEMBER,
            tier_id=tier_id,
            joined_at=now,
        )
        session.add(membership)
        try:
            with session.begin_nested():
                session.flush()
        except IntegrityError as exc:
            raise Conflict("you are already a member", code="already_member") from exc
    elif not repo.reactivate_membership(session, membership.id, tier_id, now):
        # A concurrent join of the same person won; raising rolls back our invite use too.
        raise Conflict("you are already a member", code="already_member")
    else:
        session.refresh(membership)
    audit.record(
        session,
        actor,
        "member.join",
        membership,
        community_id=community_id,
        after={"tier_id": tier_id, "invite_id": invite.id if invite else None},
    )
    return membership


def accept_invite(session: Session, actor: Actor, code: str) -> Membership:
    invite = repo.invite_by_code(session, code)
    if invite is None:
        raise NotFound("invite not found", code="invite_not_found")
    return join(session, actor, invite.community_id, JoinIn(invite_code=code))


def _usable_invite(session: Session, community_id: int, code: str) -> Invite:
    invite = repo.invite_by_code(session, code)
    if invite is None or invite.community_id != community_id:
        raise NotFound("invite not found", code="invite_not_found")
    return invite


def leave(session: Session, actor: Actor, community_id: int) -> Membership:
    actor.require_personal()
    ctx = community_context(session, actor, community_id)
    membership = ctx.require_member()
    if membership.role == Role.OWNER:
        raise Conflict("the owner cannot leave; transfer ownership first", code="owner_cannot_leave")
    membership.status = MembershipStatus.LEFT
    membership.left_at = utcnow()
    session.flush()
    _depart(session, community_id, actor.id)
    audit.record(session, actor, "member.leave", membership, community_id=community_id)
    return membership


# --- members ----------------------------------------------------------------


def list_members(
    session: Session,
    actor: Actor,
    community_id: int,
    *,
    role: Role | None,
    tier: str | None,
    q: str | None,
    status: MembershipStatus,
    cursor: str | None,
    limit: int,
) -> Page[Membership]:
    ctx = community_context(session, actor, community_id)
    ctx.require_member()
    if status != MembershipStatus.ACTIVE:
        ctx.require_role(Role.MODERATOR)
    tier_id = ctx.tier(tier).id if tier else None
    stmt = repo.members_query(community_id, role=role, tier_id=tier_id, q=q, status=status)
    return paginate(session, stmt, Membership.id, cursor=cursor, limit=limit, descending=False)


def get_member(session: Session, actor: Actor, community_id: int, user_id: int) -> Membership:
    ctx = community_context(session, actor, community_id)
    ctx.require_member()
    membership = repo.membership(session, community_id, user_id)
    if membership is None or (membership.status != MembershipStatus.ACTIVE and not ctx.is_staff):
        raise NotFound("member not found", code="member_not_found")
    return membership


def update_member(
    session: Session, actor: Actor, community_id: int, user_id: int, patch: MemberPatch
) -> Membership:
    ctx = community_context(session, actor, community_id)
    me = ctx.require_role(Role.ADMIN)
    target = repo.membership(session, community_id, user_id)
    if target is None or target.status != MembershipStatus.ACTIVE:
        raise NotFound("member not found", code="member_not_found")
    before = audit.snapshot(target, ["role", "tier_id"])
    if patch.role is not None and patch.role != target.role:
        # Keys may move tiers (a billing integration does); handing out power takes a person.
        actor.require_personal()
        _check_role_change(me, target, patch.role)
        target.role = patch.role
    if patch.tier is not None:
        target.tier_id = ctx.tier(patch.tier).id
    session.flush()
    audit.record(
        session,
        actor,
        "member.update",
        target,
        community_id=community_id,
        before=before,
        after=audit.snapshot(target, ["role", "tier_id"]),
    )
    return target


def remove_member(session: Session, actor: Actor, community_id: int, user_id: int) -> Membership:
    """Remove someone without banning them: they may join again."""
    ctx = community_context(session, actor, community_id)
    me = ctx.require_role(Role.MODERATOR)
    target = repo.membership(session, community_id, user_id)
    if target is None or target.status != MembershipStatus.ACTIVE:
        raise NotFound("member not found", code="member_not_found")
    if target.role.rank >= me.role.rank:
        raise PermissionDenied("you can only remove members below your role", code="insufficient_role")
    before = audit.snapshot(target, ["status", "role", "tier_id"])
    target.status, target.role, target.left_at = MembershipStatus.LEFT, Role.MEMBER, utcnow()
    session.flush()
    _depart(session, community_id, user_id)
    audit.record(
        session,
        actor,
        "member.remove",
        target,
        community_id=community_id,
        before=before,
        after=audit.snapshot(target, ["status", "role"]),
    )
    return target


def _depart(session: Session, community_id: int, user_id: int) -> None:
    """What leaving and being banned both undo: event seats and the member's API keys."""
    events.release_member(session, community_id, user_id)
    for key in repo.live_api_keys_by(session, community_id, user_id):
        key.revoked_at = utcnow()  # a key must not come back to life if they rejoin


def _check_role_change(me: Membership, target: Membership, new_role: Role) -> None:
    if target.user_id == me.user_id:
        raise PermissionDenied("you cannot change your own role", code="cannot_change_own_role")
    if new_role == Role.OWNER or target.role == Role.OWNER:
        raise PermissionDenied("ownership is transferred, not assigned", code="owner_role_fixed")
    # Admins manage moderators and members; only the owner appoints or removes admins.
    if Role.ADMIN in (new_role, target.role) and me.role != Role.OWNER:
        raise PermissionDenied("only the owner can appoint or remove admins", code="insufficient_role")


def transfer_ownership(session: Session, actor: Actor, community_id: int, user_id: int) -> Membership:
    actor.require_personal()  # irreversible: never through an integration's key
    ctx = community_context(session, actor, community_id)
    me = ctx.require_role(Role.OWNER)
    target = repo.membership(session, community_id, user_id)
    if target is None or target.status != MembershipStatus.ACTIVE or target.user_id == me.user_id:
        raise NotFound("member not found", code="member_not_found")
    me.role, target.role = Role.ADMIN, Role.OWNER
    session.flush()
    audit.record(
        session,
        actor,
        "community.transfer_ownership",
        ctx.community,
        community_id=community_id,
        before={"owner": me.user_id},
        after={"owner": target.user_id},
    )
    return target


# --- invites ----------------------------------------------------------------


def create_invite(session: Session, actor: Actor, community_id: int, data: InviteIn) -> Invite:
    ctx = community_context(session, actor, community_id)
    ctx.require_role(Role.ADMIN)
    invite = Invite(
        community_id=community_id,
        code=secrets.token_urlsafe(9),
        created_by=actor.id,
        tier_id=ctx.tier(data.tier).id if data.tier else None,
        max_uses=data.max_uses,
        expires_at=utcnow() + timedelta(hours=data.expires_in_hours) if data.expires_in_hours else None,
    )
    session.add(invite)
    session.flush()
    audit.record(
        session,
        actor,
        "invite.create",
        invite,
        community_id=community_id,
        after=audit.snapshot(invite, ["max_uses", "expires_at", "tier_id"]),
    )
    return invite


def list_invites(
    session: Session, actor: Actor, community_id: int, *, cursor: str | None, limit: int
) -> Page[Invite]:
    community_context(session, actor, community_id).require_role(Role.ADMIN)
    return paginate(session, repo.invites_of(community_id), Invite.id, cursor=cursor, limit=limit)


def revoke_invite(session: Session, actor: Actor, community_id: int, invite_id: int) -> Invite:
    community_context(session, actor, community_id).require_role(Role.ADMIN)
    invite = session.get(Invite, invite_id)
    if invite is None or invite.community_id != community_id:
        raise NotFound("invite not found", code="invite_not_found")
    if invite.revoked_at is None:
        invite.revoked_at = utcnow()
        audit.record(session, actor, "invite.revoke", invite, community_id=community_id)
    return invite


# --- bans -------------------------------------------------------------------


def ban(session: Session, actor: Actor, community_id: int, data: BanIn) -> Ban:
    ctx = community_context(session, actor, community_id)
    me = ctx.require_role(Role.MODERATOR)
    if data.user_id == actor.id:
        raise PermissionDenied("you cannot ban yourself", code="cannot_ban_self")
    now = utcnow()
    target = repo.membership(session, community_id, data.user_id)
    if target is None:
        raise NotFound("member not found", code="member_not_found")
    # A departed member's old role no longer protects them.
    target_rank = target.role.rank if target.status == MembershipStatus.ACTIVE else Role.MEMBER.rank
    if target_rank >= me.role.rank:
        raise PermissionDenied("you can only ban members below your role", code="insufficient_role")
    if repo.active_ban(session, community_id, data.user_id, now) is not None:
        raise Conflict("this member is already banned", code="already_banned")
    row = Ban(
        community_id=community_id,
        user_id=data.user_id,
        reason=data.reason,
        created_by=actor.id,
        expires_at=now + timedelta(hours=data.expires_in_hours) if data.expires_in_hours else None,
    )
    session.add(row)
    before = audit.snapshot(target, ["status", "role"])
    target.status = MembershipStatus.BANNED
    target.role = Role.MEMBER
    target.left_at = now
    session.flush()
    _depart(session, community_id, data.user_id)
    audit.record(
        session,
        actor,
        "member.ban",
        row,
        community_id=community_id,
        before=before,
        after=audit.snapshot(row, ["user_id", "reason", "expires_at"]),
    )
    return row


def lift_ban(session: Session, actor: Actor, community_id: int, ban_id: int) -> Ban:
    me = community_context(session, actor, community_id).require_role(Role.MODERATOR)
    row = session.get(Ban, ban_id)
    if row is None or row.community_id != community_id:
        raise NotFound("ban not found", code="ban_not_found")
    banner = repo.membership(session, community_id, row.created_by)
    banner_rank = banner.role.rank if banner and banner.status == MembershipStatus.ACTIVE else 0
    if me.role.rank < banner_rank:
        raise PermissionDenied(
            "only someone at or above the banner's role can lift this ban", code="insufficient_role"
        )
    if row.lifted_at is not None:
        raise Conflict("this ban was already lifted", code="ban_already_lifted")
    row.lifted_at, row.lifted_by = utcnow(), actor.id
    membership = repo.membership(session, community_id, row.user_id)
    if membership is not None and membership.status == MembershipStatus.BANNED:
        # Lifting a ban does not re-add the member; they may join again.
        membership.status = MembershipStatus.LEFT
    session.flush()
    audit.record(
        session,
        actor,
        "member.unban",
        row,
        community_id=community_id,
        after={"lifted_at": row.lifted_at.isoformat()},
    )
    return row


def list_bans(
    session: Session,
    actor: Actor,
    community_id: int,
    *,
    active_only: bool,
    cursor: str | None,
    limit: int,
) -> Page[Ban]:
    community_context(session, actor, community_id).require_role(Role.MODERATOR)
    stmt = repo.bans_of(community_id, active_only=active_only, now=utcnow())
    return paginate(session, stmt, Ban.id, cursor=cursor, limit=limit)

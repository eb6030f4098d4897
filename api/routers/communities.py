from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from sqlalchemy.orm import Session

from api.deps import CurrentActor, Cursor, DbSession, Limit, PathId, QueryId
from core.access import Actor
from core.accounts import service as accounts
from core.accounts.schemas import ApiKeyCreated, ApiKeyIn, ApiKeyOut
from core.audit import AuditOut, list_audit
from core.communities import service as communities
from core.communities.schemas import (
    BanIn,
    BanOut,
    CommunityIn,
    CommunityOut,
    CommunityPatch,
    InviteIn,
    InviteOut,
    JoinIn,
    MemberPatch,
    MembershipOut,
    TierIn,
    TierOut,
    TierPatch,
    TransferIn,
)
from core.models import Community, Membership, MembershipStatus, Role
from core.schemas import PageOut

router = APIRouter(tags=["communities"])


def community_out(session: Session, actor: Actor, community: Community) -> CommunityOut:
    return communities.community_views(session, actor, [community])[0]


def membership_out(session: Session, actor: Actor, membership: Membership) -> MembershipOut:
    return communities.membership_views(session, actor, [membership])[0]


@router.post("/communities", response_model=CommunityOut, status_code=status.HTTP_201_CREATED)
def create_community(data: CommunityIn, actor: CurrentActor, session: DbSession) -> CommunityOut:
    return community_out(session, actor, communities.create_community(session, actor, data))


@router.get("/communities", response_model=PageOut[CommunityOut])
def list_communities(
    actor: CurrentActor,
    session: DbSession,
    cursor: Cursor = None,
    limit: Limit = 20,
    mine: bool = False,
    q: Annotated[str | None, Query(max_length=100)] = None,
) -> PageOut[CommunityOut]:
    page = communities.list_visible(session, actor, mine=mine, q=q, cursor=cursor, limit=limit)
    return page.with_items(communities.community_views(session, actor, page.items)).out()


@router.get("/communities/{community_id}", response_model=CommunityOut)
def get_community(community_id: PathId, actor: CurrentActor, session: DbSession) -> CommunityOut:
    return community_out(session, actor, communities.get(session, actor, community_id).community)


@router.patch("/communities/{community_id}", response_model=CommunityOut)
def update_community(
    community_id: PathId, patch: CommunityPatch, actor: CurrentActor, session: DbSession
) -> CommunityOut:
    return community_out(session, actor, communities.update_community(session, actor, community_id, patch))


@router.get("/communities/{community_id}/tiers", response_model=list[TierOut])
def list_tiers(community_id: PathId, actor: CurrentActor, session: DbSession) -> list[TierOut]:
    ctx = communities.get(session, actor, community_id)
    return [TierOut.model_validate(t) for t in sorted(ctx.tiers.values(), key=lambda t: t.rank)]


@router.post("/communities/{community_id}/tiers", response_model=TierOut, status_code=201)
def create_tier(community_id: PathId, data: TierIn, actor: CurrentActor, session: DbSession) -> TierOut:
    return TierOut.model_validate(communities.create_tier(session, actor, community_id, data))


@router.patch("/communities/{community_id}/tiers/{key}", response_model=TierOut)
def update_tier(
    community_id: PathId, key: str, patch: TierPatch, actor: CurrentActor, session: DbSession
) -> TierOut:
    return TierOut.model_validate(communities.update_tier(session, actor, community_id, key, patch))


@router.post("/communities/{community_id}/join", response_model=MembershipOut, status_code=201)
def join(
    community_id: PathId, actor: CurrentActor, session: DbSession, data: JoinIn | None = None
) -> MembershipOut:
    return membership_out(session, actor, communities.join(session, actor, community_id, data or JoinIn()))


@router.post("/invites/{code}/accept", response_model=MembershipOut, status_code=201)
def accept_invite(code: str, actor: CurrentActor, session: DbSession) -> MembershipOut:
    return membership_out(session, actor, communities.accept_invite(session, actor, code))


@router.post("/communities/{community_id}/leave", response_model=MembershipOut)
def leave(community_id: PathId, actor: CurrentActor, session: DbSession) -> MembershipOut:
    return membership_out(session, actor, communities.leave(session, actor, community_id))


@router.get("/communities/{community_id}/members", response_model=PageOut[MembershipOut])
def list_members(
    community_id: PathId,
    actor: CurrentActor,
    session: DbSession,
    cursor: Cursor = None,
    limit: Limit = 50,
    role: Role | None = None,
    tier: Annotated[str | None, Query(max_length=32)] = None,
    q: Annotated[str | None, Query(max_length=80)] = None,
    status: MembershipStatus = MembershipStatus.ACTIVE,
) -> PageOut[MembershipOut]:
    page = communities.list_members(
        session,
        actor,
        community_id,
        role=role,
        tier=tier,
        q=q,
        status=status,
        cursor=cursor,
        limit=limit,
    )
    return page.with_items(communities.membership_views(session, actor, page.items)).out()


@router.get("/communities/{community_id}/members/{user_id}", response_model=MembershipOut)
def get_member(
    community_id: PathId, user_id: PathId, actor: CurrentActor, session: DbSession
) -> MembershipOut:
    return membership_out(session, actor, communities.get_member(session, actor, community_id, user_id))


@router.patch("/communities/{community_id}/members/{user_id}", response_model=MembershipOut)
def update_member(
    community_id: PathId, user_id: PathId, patch: MemberPatch, actor: CurrentActor, session: DbSession
) -> MembershipOut:
    updated = communities.update_member(session, actor, community_id, user_id, patch)
    return membership_out(session, actor, updated)


@router.delete("/communities/{community_id}/members/{user_id}", response_model=MembershipOut)
def remove_member(
    community_id: PathId, user_id: PathId, actor: CurrentActor, session: DbSession
) -> MembershipOut:
    """Remove a member without banning them (they may join again)."""
    return membership_out(session, actor, communities.remove_member(session, actor, community_id, user_id))


@router.post("/communities/{community_id}/transfer-ownership", response_model=MembershipOut)
def transfer_ownership(
    community_id: PathId, data: TransferIn, actor: CurrentActor, session: DbSession
) -> MembershipOut:
    new_owner = communities.transfer_ownership(session, actor, community_id, data.user_id)
    return membership_out(session, actor, new_owner)


@router.get("/communities/{community_id}/invites", response_model=PageOut[InviteOut])
def list_invites(
    community_id: PathId,
    actor: CurrentActor,
    session: DbSession,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> PageOut[InviteOut]:
    page = communities.list_invites(session, actor, community_id, cursor=cursor, limit=limit)
    return page.map(InviteOut.model_validate).out()


@router.post("/communities/{community_id}/invites", response_model=InviteOut, status_code=201)
def create_invite(community_id: PathId, data: InviteIn, actor: CurrentActor, session: DbSession) -> InviteOut:
    return InviteOut.model_validate(communities.create_invite(session, actor, community_id, data))


@router.delete("/communities/{community_id}/invites/{invite_id}", response_model=InviteOut)
def revoke_invite(
    community_id: PathId, invite_id: PathId, actor: CurrentActor, session: DbSession
) -> InviteOut:
    return InviteOut.model_validate(communities.revoke_invite(session, actor, community_id, invite_id))


@router.get("/communities/{community_id}/bans", response_model=PageOut[BanOut])
def list_bans(
    community_id: PathId,
    actor: CurrentActor,
    session: DbSession,
    cursor: Cursor = None,
    limit: Limit = 50,
    active: bool = True,
) -> PageOut[BanOut]:
    page = communities.list_bans(session, actor, community_id, active_only=active, cursor=cursor, limit=limit)
    return page.map(BanOut.model_validate).out()


@router.post("/communities/{community_id}/bans", response_model=BanOut, status_code=201)
def ban(community_id: PathId, data: BanIn, actor: CurrentActor, session: DbSession) -> BanOut:
    return BanOut.model_validate(communities.ban(session, actor, community_id, data))


@router.delete("/communities/{community_id}/bans/{ban_id}", response_model=BanOut)
def lift_ban(community_id: PathId, ban_id: PathId, actor: CurrentActor, session: DbSession) -> BanOut:
    return BanOut.model_validate(communities.lift_ban(session, actor, community_id, ban_id))


@router.get("/communities/{community_id}/api-keys", response_model=list[ApiKeyOut])
def list_api_keys(community_id: PathId, actor: CurrentActor, session: DbSession) -> list[ApiKeyOut]:
    return [ApiKeyOut.model_validate(k) for k in accounts.list_api_keys(session, actor, community_id)]


@router.post("/communities/{community_id}/api-keys", response_model=ApiKeyCreated, status_code=201)
def create_api_key(
    community_id: PathId, data: ApiKeyIn, actor: CurrentActor, session: DbSession
) -> ApiKeyCreated:
    issued = accounts.create_api_key(session, actor, community_id, data)
    return ApiKeyCreated(**ApiKeyOut.model_validate(issued.api_key).model_dump(), key=issued.secret)


@router.delete("/communities/{community_id}/api-keys/{key_id}", response_model=ApiKeyOut)
def revoke_api_key(
    community_id: PathId, key_id: PathId, actor: CurrentActor, session: DbSession
) -> ApiKeyOut:
    return ApiKeyOut.model_validate(accounts.revoke_api_key(session, actor, community_id, key_id))


@router.get("/communities/{community_id}/audit", response_model=PageOut[AuditOut])
def audit_log(
    community_id: PathId,
    actor: CurrentActor,
    session: DbSession,
    cursor: Cursor = None,
    limit: Limit = 50,
    action: Annotated[str | None, Query(max_length=64)] = None,
    target_type: Annotated[str | None, Query(max_length=32)] = None,
    actor_id: QueryId | None = None,
) -> PageOut[AuditOut]:
    page = list_audit(
        session,
        actor,
        community_id,
        action=action,
        target_type=target_type,
        actor_id=actor_id,
        cursor=cursor,
        limit=limit,
    )
    return page.map(AuditOut.model_validate).out()

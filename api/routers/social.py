"""Follows (per community), blocks (per account) and the recommendation opt-out."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from api.deps import CurrentActor, Cursor, DbSession, Limit, PathId, answer_created
from core.schemas import PageOut
from core.social import service as social
from core.social.schemas import (
    BlockIn,
    BlockOut,
    FollowEntryOut,
    FollowOut,
    RecommendationSettingsIn,
    RecommendationSettingsOut,
)

router = APIRouter(tags=["social"])


@router.post(
    "/communities/{community_id}/members/{user_id}/follow",
    response_model=FollowOut,
    status_code=status.HTTP_201_CREATED,
    description="Follow a member of this community; following again answers 200 with replayed=true.",
)
def follow(
    community_id: PathId, user_id: PathId, actor: CurrentActor, session: DbSession, response: Response
) -> FollowOut:
    out = social.follow(session, actor, community_id, user_id)
    answer_created(response, out.replayed)
    return out


@router.delete("/communities/{community_id}/members/{user_id}/follow", status_code=status.HTTP_204_NO_CONTENT)
def unfollow(community_id: PathId, user_id: PathId, actor: CurrentActor, session: DbSession) -> None:
    social.unfollow(session, actor, community_id, user_id)


@router.get("/communities/{community_id}/members/{user_id}/followers", response_model=PageOut[FollowEntryOut])
def followers(
    community_id: PathId,
    user_id: PathId,
    actor: CurrentActor,
    session: DbSession,
    cursor: Cursor = None,
    limit: Limit = 20,
) -> PageOut[FollowEntryOut]:
    return social.list_followers(session, actor, community_id, user_id, cursor=cursor, limit=limit).out()


@router.get("/communities/{community_id}/members/{user_id}/following", response_model=PageOut[FollowEntryOut])
def following(
    community_id: PathId,
    user_id: PathId,
    actor: CurrentActor,
    session: DbSession,
    cursor: Cursor = None,
    limit: Limit = 20,
) -> PageOut[FollowEntryOut]:
    return social.list_following(session, actor, community_id, user_id, cursor=cursor, limit=limit).out()


@router.post(
    "/me/blocks",
    response_model=BlockOut,
    status_code=status.HTTP_201_CREATED,
    description="Block someone everywhere: follows end both ways and neither is recommended to the other.",
)
def block(data: BlockIn, actor: CurrentActor, session: DbSession, response: Response) -> BlockOut:
    out = social.block(session, actor, data.user_id)
    answer_created(response, out.replayed)
    return out


@router.delete("/me/blocks/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
def unblock(user_id: PathId, actor: CurrentActor, session: DbSession) -> None:
    social.unblock(session, actor, user_id)


@router.get("/me/blocks", response_model=PageOut[BlockOut])
def blocks(
    actor: CurrentActor, session: DbSession, cursor: Cursor = None, limit: Limit = 20
) -> PageOut[BlockOut]:
    return social.list_blocks(session, actor, cursor=cursor, limit=limit).out()


@router.get("/me/recommendation-settings", response_model=RecommendationSettingsOut)
def recommendation_settings(actor: CurrentActor, session: DbSession) -> RecommendationSettingsOut:
    return social.recommendation_settings(session, actor)


@router.put(
    "/me/recommendation-settings",
    response_model=RecommendationSettingsOut,
    description="Opting out deletes what the recommender kept about you at once; you get "
    "non-personalised suggestions and are never suggested to others.",
)
def set_recommendation_settings(
    data: RecommendationSettingsIn, actor: CurrentActor, session: DbSession
) -> RecommendationSettingsOut:
    return social.set_recommendation_opt_out(session, actor, data.opted_out)

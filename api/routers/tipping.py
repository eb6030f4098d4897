"""Tipping (打賞): tip a member or a post, read tips and reputation, moderate tipping rings."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from api.deps import CurrentActor, Cursor, DbSession, IdempotencyKey, Limit, PathId, answer_created
from core.models import RingStatus
from core.schemas import PageOut
from core.tipping import service as tipping
from core.tipping.schemas import (
    LeaderboardEntry,
    PolicyOut,
    PolicyPatch,
    ReputationOut,
    RingReportOut,
    RingReportPatch,
    TipIn,
    TipOut,
)

router = APIRouter(tags=["tipping"])


@router.post(
    "/communities/{community_id}/members/{user_id}/tips",
    response_model=TipOut,
    status_code=status.HTTP_201_CREATED,
)
def tip_member(
    community_id: PathId,
    user_id: PathId,
    data: TipIn,
    actor: CurrentActor,
    session: DbSession,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> TipOut:
    return _created(
        response, tipping.tip_member(session, actor, community_id, user_id, data, idempotency_key)
    )


@router.post("/posts/{post_id}/tips", response_model=TipOut, status_code=status.HTTP_201_CREATED)
def tip_post(
    post_id: PathId,
    data: TipIn,
    actor: CurrentActor,
    session: DbSession,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> TipOut:
    return _created(response, tipping.tip_post(session, actor, post_id, data, idempotency_key))


def _created(response: Response, tip: TipOut) -> TipOut:
    answer_created(response, tip.replayed)
    return tip


@router.get("/communities/{community_id}/tips/sent", response_model=PageOut[TipOut])
def tips_sent(
    community_id: PathId, actor: CurrentActor, session: DbSession, cursor: Cursor = None, limit: Limit = 20
) -> PageOut[TipOut]:
    return tipping.list_tips(session, actor, community_id, direction="sent", cursor=cursor, limit=limit)


@router.get("/communities/{community_id}/tips/received", response_model=PageOut[TipOut])
def tips_received(
    community_id: PathId, actor: CurrentActor, session: DbSession, cursor: Cursor = None, limit: Limit = 20
) -> PageOut[TipOut]:
    return tipping.list_tips(session, actor, community_id, direction="received", cursor=cursor, limit=limit)


@router.get("/communities/{community_id}/members/{user_id}/reputation", response_model=ReputationOut)
def reputation(
    community_id: PathId, user_id: PathId, actor: CurrentActor, session: DbSession
) -> ReputationOut:
    return tipping.get_reputation(session, actor, community_id, user_id)


@router.get("/communities/{community_id}/reputation/leaderboard", response_model=list[LeaderboardEntry])
def leaderboard(
    community_id: PathId, actor: CurrentActor, session: DbSession, limit: Limit = 20
) -> list[LeaderboardEntry]:
    return tipping.leaderboard(session, actor, community_id, limit=limit)


@router.get("/communities/{community_id}/tipping/policy", response_model=PolicyOut)
def get_policy(community_id: PathId, actor: CurrentActor, session: DbSession) -> PolicyOut:
    return tipping.get_policy(session, actor, community_id)


@router.patch("/communities/{community_id}/tipping/policy", response_model=PolicyOut)
def update_policy(
    community_id: PathId, patch: PolicyPatch, actor: CurrentActor, session: DbSession
) -> PolicyOut:
    return tipping.update_policy(session, actor, community_id, patch)


@router.get("/communities/{community_id}/tip-rings", response_model=PageOut[RingReportOut])
def ring_reports(
    community_id: PathId,
    actor: CurrentActor,
    session: DbSession,
    cursor: Cursor = None,
    limit: Limit = 20,
    report_status: Annotated[RingStatus | None, Query(alias="status")] = None,
) -> PageOut[RingReportOut]:
    return tipping.list_reports(
        session, actor, community_id, status=report_status, cursor=cursor, limit=limit
    )


@router.patch("/tip-rings/{report_id}", response_model=RingReportOut)
def update_ring_report(
    report_id: PathId, patch: RingReportPatch, actor: CurrentActor, session: DbSession
) -> RingReportOut:
    return tipping.update_report(session, actor, report_id, patch)

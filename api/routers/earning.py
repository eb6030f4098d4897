"""Earning: rules (admins), my grants, challenges and onboarding completion."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from api.deps import CurrentActor, Cursor, DbSession, Limit, PathId
from core.earning import service as earning
from core.earning.schemas import (
    AwardIn,
    ChallengeIn,
    ChallengeOut,
    ClaimIn,
    CompletionOut,
    DecisionIn,
    GrantOut,
    RuleIn,
    RuleOut,
    RulePatch,
)
from core.models import CompletionStatus
from core.schemas import PageOut

router = APIRouter(tags=["earning"])


@router.get("/communities/{community_id}/earn-rules", response_model=PageOut[RuleOut])
def list_rules(
    community_id: PathId, actor: CurrentActor, session: DbSession, cursor: Cursor = None, limit: Limit = 50
) -> PageOut[RuleOut]:
    return earning.list_rules(session, actor, community_id, cursor=cursor, limit=limit)


@router.post(
    "/communities/{community_id}/earn-rules", response_model=RuleOut, status_code=status.HTTP_201_CREATED
)
def create_rule(community_id: PathId, data: RuleIn, actor: CurrentActor, session: DbSession) -> RuleOut:
    return earning.create_rule(session, actor, community_id, data)


@router.get("/earn-rules/{rule_id}", response_model=RuleOut)
def get_rule(rule_id: PathId, actor: CurrentActor, session: DbSession) -> RuleOut:
    return earning.get_rule(session, actor, rule_id)


@router.patch("/earn-rules/{rule_id}", response_model=RuleOut)
def update_rule(rule_id: PathId, patch: RulePatch, actor: CurrentActor, session: DbSession) -> RuleOut:
    return earning.update_rule(session, actor, rule_id, patch)


@router.delete("/earn-rules/{rule_id}", response_model=RuleOut)
def disable_rule(rule_id: PathId, actor: CurrentActor, session: DbSession) -> RuleOut:
    """Rules are disabled, never deleted: their grants keep pointing at them."""
    return earning.disable_rule(session, actor, rule_id)


@router.get("/communities/{community_id}/earnings/mine", response_model=PageOut[GrantOut])
def my_grants(
    community_id: PathId, actor: CurrentActor, session: DbSession, cursor: Cursor = None, limit: Limit = 20
) -> PageOut[GrantOut]:
    return earning.list_my_grants(session, actor, community_id, cursor=cursor, limit=limit)


@router.post("/communities/{community_id}/onboarding/complete", status_code=status.HTTP_202_ACCEPTED)
def onboarding_complete(community_id: PathId, actor: CurrentActor, session: DbSession) -> dict[str, str]:
    earning.onboarding_completed(session, actor, community_id)
    return {"status": "accepted"}


@router.get("/communities/{community_id}/challenges", response_model=list[ChallengeOut])
def list_challenges(community_id: PathId, actor: CurrentActor, session: DbSession) -> list[ChallengeOut]:
    return earning.list_challenges(session, actor, community_id)


@router.post(
    "/communities/{community_id}/challenges", response_model=ChallengeOut, status_code=status.HTTP_201_CREATED
)
def create_challenge(
    community_id: PathId, data: ChallengeIn, actor: CurrentActor, session: DbSession
) -> ChallengeOut:
    return earning.create_challenge(session, actor, community_id, data)


@router.post("/challenges/{challenge_id}/close", response_model=ChallengeOut)
def close_challenge(challenge_id: PathId, actor: CurrentActor, session: DbSession) -> ChallengeOut:
    return earning.close_challenge(session, actor, challenge_id)


@router.post("/challenges/{challenge_id}/claims", response_model=CompletionOut)
def claim(
    challenge_id: PathId, actor: CurrentActor, session: DbSession, data: ClaimIn | None = None
) -> CompletionOut:
    return earning.claim(session, actor, challenge_id, data or ClaimIn())


@router.post("/challenges/{challenge_id}/awards", response_model=CompletionOut)
def award(challenge_id: PathId, data: AwardIn, actor: CurrentActor, session: DbSession) -> CompletionOut:
    return earning.award(session, actor, challenge_id, data.user_id)


@router.get("/challenges/{challenge_id}/completions", response_model=PageOut[CompletionOut])
def list_completions(
    challenge_id: PathId,
    actor: CurrentActor,
    session: DbSession,
    cursor: Cursor = None,
    limit: Limit = 20,
    completion_status: Annotated[CompletionStatus | None, Query(alias="status")] = None,
) -> PageOut[CompletionOut]:
    return earning.list_completions(
        session, actor, challenge_id, status=completion_status, cursor=cursor, limit=limit
    )


@router.patch("/challenge-completions/{completion_id}", response_model=CompletionOut)
def decide(completion_id: PathId, data: DecisionIn, actor: CurrentActor, session: DbSession) -> CompletionOut:
    return earning.decide(session, actor, completion_id, data)

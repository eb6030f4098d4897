"""Recommendations: people to meet, events, courses and threads, each with its reason."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status

from api.deps import CurrentActor, DbSession, PathId, answer_created
from recommender import service as recommendations
from recommender.corpus import Kind
from recommender.schemas import FeedbackIn, FeedbackOut, RecommendationsOut, Target

router = APIRouter(tags=["recommendations"])


@router.get(
    "/communities/{community_id}/recommendations",
    response_model=RecommendationsOut,
    description="Personalised suggestions for the caller, each with a reason in their language. "
    "`locked` items are upgrade suggestions (at most one per list).",
)
def recommend(
    community_id: PathId,
    request: Request,
    actor: CurrentActor,
    session: DbSession,
    kind: Annotated[Kind, Query(description="people, event, course or thread")] = "people",
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> RecommendationsOut:
    recommender: recommendations.Recommender = request.app.state.recommender
    return recommender.recommend(session, actor, community_id, kind, limit=limit)


@router.post(
    "/communities/{community_id}/recommendations/feedback",
    response_model=FeedbackOut,
    status_code=status.HTTP_201_CREATED,
    description='"Not interested": the target is never suggested again and look-alikes rank lower. '
    "Repeating it answers 200 with replayed=true.",
)
def add_feedback(
    community_id: PathId, data: FeedbackIn, actor: CurrentActor, session: DbSession, response: Response
) -> FeedbackOut:
    out = recommendations.add_feedback(session, actor, community_id, data.target, data.kind)
    answer_created(response, out.replayed)
    return out


@router.delete(
    "/communities/{community_id}/recommendations/feedback/{target}", status_code=status.HTTP_204_NO_CONTENT
)
def remove_feedback(
    community_id: PathId, target: Annotated[Target, Path()], actor: CurrentActor, session: DbSession
) -> None:
    recommendations.remove_feedback(session, actor, community_id, target)

"""Recommendation shapes for the API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import StringConstraints

from core.schemas import Input, Output
from recommender.corpus import Kind

# "m:<user id>" for a person, "<kind>:<id>" for an event, course or thread.
Target = Annotated[str, StringConstraints(pattern=r"^(m|event|course|thread):[1-9][0-9]{0,17}$")]


class ReasonOut(Output):
    code: str  # stable: clients may style or translate by it
    params: dict[str, str | int]
    text: str  # rendered in the member's language


class RecommendationOut(Output):
    id: str  # "m:12", "event:3", ...
    kind: Kind
    entity_id: int  # the user id for people, the row id for items
    title: str  # the member's name for people
    score: float
    reason: ReasonOut
    locked: bool  # an upgrade suggestion: the member's tier cannot open it yet


class RecommendationsOut(Output):
    kind: Kind
    personalised: bool  # false when the member opted out of recommendations
    items: list[RecommendationOut]


class FeedbackIn(Input):
    target: Target
    kind: Literal["not_interested"] = "not_interested"


class FeedbackOut(Output):
    target: str
    kind: str
    created_at: datetime
    replayed: bool = False

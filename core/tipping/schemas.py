from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from core.models import RingStatus
from core.schemas import Id, Input, Output

TipNote = Annotated[str, StringConstraints(max_length=280)]
Amount = Annotated[int, Field(ge=1, le=10**15, strict=True)]


class TipIn(Input):
    chip_id: Id
    amount: Amount
    note: TipNote = ""


class TipOut(Output):
    id: int
    community_id: int
    tipper_id: int
    recipient_id: int
    post_id: int | None
    chip_id: int
    amount: int
    note: str
    transaction_id: int
    reputation_points: int
    discounted: bool
    created_at: datetime
    # True when this answers a retry (same Idempotency-Key): nothing was paid again.
    replayed: bool = False


class ReputationOut(Output):
    community_id: int
    user_id: int
    points: int
    tips_received: int


class LeaderboardEntry(Output):
    rank: int
    user_id: int
    display_name: str
    points: int
    tips_received: int


class PolicyOut(Output):
    community_id: int
    new_account_days: int
    new_account_daily_limit: int
    reputation_window_hours: int
    reputation_daily_cap: int
    reputation_max_per_tip: int
    ring_window_days: int
    ring_min_tips: int
    ring_min_volume: int


class PolicyPatch(Input):
    new_account_days: Annotated[int, Field(ge=0, le=365)] | None = None
    new_account_daily_limit: Annotated[int, Field(ge=0, le=10**15)] | None = None
    reputation_window_hours: Annotated[int, Field(ge=1, le=24 * 30)] | None = None
    reputation_daily_cap: Annotated[int, Field(ge=0, le=10**6)] | None = None
    reputation_max_per_tip: Annotated[int, Field(ge=0, le=10**6)] | None = None
    ring_window_days: Annotated[int, Field(ge=1, le=90)] | None = None
    ring_min_tips: Annotated[int, Field(ge=1, le=1000)] | None = None
    ring_min_volume: Annotated[int, Field(ge=1, le=10**15)] | None = None


class RingReportOut(Output):
    id: int
    community_id: int
    members: list[int]
    evidence: dict[str, Any]
    score: int
    status: RingStatus
    resolved_by: int | None
    resolved_at: datetime | None
    created_at: datetime
    updated_at: datetime


class RingReportPatch(Input):
    status: Literal["open", "dismissed", "confirmed"]

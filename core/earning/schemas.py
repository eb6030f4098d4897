from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from core.errors import InvalidInput
from core.models import CompletionStatus, EarnTrigger, GrantStatus
from core.schemas import Id, Input, LongText, Output, StrictBool, Title, refuse_nulls

Amount = Annotated[int, Field(ge=1, le=10**12, strict=True)]
RuleName = Annotated[str, StringConstraints(min_length=1, max_length=120)]


class RuleIn(Input):
    name: RuleName
    trigger: EarnTrigger
    amount: Amount
    chip_id: Id | None = None  # the community chip when left out
    daily_count_cap: Amount | None = None
    daily_amount_cap: Amount | None = None
    active: StrictBool = True


class RulePatch(Input):
    """Only the fields sent change. `clear_caps: true` removes both daily caps; `null` is
    refused for every field (it would be ignored), as for chips and offers."""

    name: RuleName | None = None
    amount: Amount | None = None
    daily_count_cap: Amount | None = None
    daily_amount_cap: Amount | None = None
    clear_caps: StrictBool = False
    active: StrictBool | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> RulePatch:
        # InvalidInput, not a ValueError: the same 422 `invalid_input` the chip and offer
        # patches answer for a null.
        caps = " (send clear_caps: true to remove the caps)"
        refuse_nulls(
            {name: getattr(self, name) for name in self.model_fields_set},
            ("name", "amount", "daily_count_cap", "daily_amount_cap", "active"),
            {"daily_count_cap": caps, "daily_amount_cap": caps},
        )
        if self.clear_caps and {"daily_count_cap", "daily_amount_cap"} & self.model_fields_set:
            raise InvalidInput(
                "`clear_caps` removes the caps: do not send a cap with it", code="invalid_input"
            )
        return self


class RuleOut(Output):
    id: int
    community_id: int
    name: str
    trigger: EarnTrigger
    chip_id: int
    amount: int
    daily_count_cap: int | None
    daily_amount_cap: int | None
    challenge_id: int | None
    active: bool
    created_by: int
    created_at: datetime


class GrantOut(Output):
    id: int
    community_id: int
    rule_id: int
    user_id: int
    chip_id: int
    amount: int
    trigger: EarnTrigger
    subject_type: str
    subject_id: int
    transaction_id: int
    status: GrantStatus
    clawback_transaction_id: int | None
    clawed_back_amount: int
    shortfall: int
    created_at: datetime
    clawed_back_at: datetime | None


class ChallengeIn(Input):
    title: Title
    description: LongText = ""
    reward: Amount
    chip_id: Id | None = None


class ChallengeOut(Output):
    id: int
    community_id: int
    title: str
    description: str
    active: bool
    reward: int
    chip_id: int
    rule_id: int
    created_at: datetime


class ClaimIn(Input):
    evidence: Annotated[str, StringConstraints(max_length=1000)] = ""


class AwardIn(Input):
    user_id: Id


class DecisionIn(Input):
    decision: Literal["approve", "reject"]


class CompletionOut(Output):
    id: int
    challenge_id: int
    user_id: int
    status: CompletionStatus
    evidence: str
    decided_by: int | None
    decided_at: datetime | None
    created_at: datetime

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints, model_validator

from core.accounts.schemas import UserOut
from core.models import Language, MembershipStatus, Role, Visibility
from core.schemas import Id, Input, LongText, Name, Output, Slug

TierKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
Perk = Annotated[str, StringConstraints(min_length=1, max_length=120)]


class TierIn(Input):
    key: TierKey
    name: Name
    rank: int = Field(ge=0, le=100, strict=True)
    perks: list[Perk] = Field(default_factory=list, max_length=20)


class TierPatch(Input):
    name: Name | None = None
    perks: list[Perk] | None = Field(default=None, max_length=20)


class TierOut(Output):
    id: int
    key: str
    name: str
    rank: int
    perks: list[str]


DEFAULT_TIERS = [
    TierIn(key="free", name="Free", rank=0, perks=[]),
    TierIn(key="member", name="Member", rank=1, perks=["members-only channels"]),
    TierIn(key="vip", name="VIP", rank=2, perks=["members-only channels", "VIP channels", "VIP events"]),
]


class CommunityIn(Input):
    slug: Slug
    name: Annotated[str, StringConstraints(min_length=1, max_length=120)]
    description: LongText = ""
    visibility: Visibility = Visibility.PUBLIC
    default_language: Language = Language.ZH_TW
    tiers: list[TierIn] | None = Field(default=None, min_length=1, max_length=10)

    @model_validator(mode="after")
    def _unique_tiers(self) -> CommunityIn:
        if self.tiers is not None:
            if len({t.key for t in self.tiers}) != len(self.tiers):
                raise ValueError("tier keys must be unique")
            if len({t.rank for t in self.tiers}) != len(self.tiers):
                raise ValueError("tier ranks must be unique")
        return self


class CommunityPatch(Input):
    name: Annotated[str, StringConstraints(min_length=1, max_length=120)] | None = None
    description: LongText | None = None
    visibility: Visibility | None = None
    default_language: Language | None = None


class CommunityOut(Output):
    id: int
    slug: str
    name: str
    description: str
    visibility: Visibility
    default_language: Language
    created_at: datetime
    member_count: int = 0
    my_role: Role | None = None
    my_tier: str | None = None
    # A tier trial bought with chips, while it runs (access checks use the higher tier).
    my_trial_tier: str | None = None
    my_trial_ends_at: datetime | None = None


class JoinIn(Input):
    invite_code: Annotated[str, StringConstraints(min_length=4, max_length=32)] | None = None


class MembershipOut(Output):
    user: UserOut
    role: Role
    tier: str  # the tier the member holds; a trial never changes it
    trial_tier: str | None = None  # a running trial's tier (null when none runs)
    trial_ends_at: datetime | None = None
    status: MembershipStatus
    joined_at: datetime


class MemberPatch(Input):
    role: Role | None = None
    tier: TierKey | None = None


class InviteIn(Input):
    max_uses: int | None = Field(default=None, ge=1, le=100_000, strict=True)
    expires_in_hours: int | None = Field(default=168, ge=1, le=24 * 365, strict=True)
    tier: TierKey | None = None


class InviteOut(Output):
    id: int
    code: str
    max_uses: int | None
    uses: int
    expires_at: datetime | None
    revoked_at: datetime | None
    tier_id: int | None
    created_by: int
    created_at: datetime


class BanIn(Input):
    user_id: Id
    reason: Annotated[str, StringConstraints(max_length=1000)] = ""
    expires_in_hours: int | None = Field(default=None, ge=1, le=24 * 3650, strict=True)


class BanOut(Output):
    id: int
    user_id: int
    reason: str
    created_by: int
    created_at: datetime
    expires_at: datetime | None
    lifted_at: datetime | None


class TransferIn(Input):
    user_id: Id

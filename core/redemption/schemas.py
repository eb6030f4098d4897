from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints

from core.models import GrantKind, OfferKind, OrderStatus, Settlement
from core.schemas import Id, Input, LongText, Output, StrictBool, Title

Price = Annotated[int, Field(ge=1, le=10**12, strict=True)]
Stock = Annotated[int, Field(ge=0, le=10**9, strict=True)]
PerMember = Annotated[int, Field(ge=1, le=10**6, strict=True)]
HoldSeconds = Annotated[int, Field(ge=60, le=365 * 86400, strict=True)]
TrialDays = Annotated[int, Field(ge=1, le=365, strict=True)]
Quantity = Annotated[int, Field(ge=1, le=1000, strict=True)]
AccessRef = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Note = Annotated[str, StringConstraints(max_length=500)]


class OfferIn(Input):
    chip_id: Id
    title: Title
    description: LongText = ""
    kind: OfferKind
    # vip_trial: a tier key of the community; course_seat: a course id; free text otherwise.
    access_ref: AccessRef | None = None
    trial_days: TrialDays | None = None  # vip_trial only (required there)
    # Access offers only: redeeming grants the access at once (the order is fulfilled in the
    # same request), with no step for the issuer.
    instant: StrictBool = False
    price: Price
    stock: Stock | None = None
    per_member_limit: PerMember | None = None
    settlement: Settlement = Settlement.BURN
    active: StrictBool = True
    hold_seconds: HoldSeconds | None = None


class OfferPatch(Input):
    """Only the fields sent change; `null` clears stock (unlimited), limit and hold expiry."""

    title: Title | None = None
    description: LongText | None = None
    access_ref: AccessRef | None = None
    trial_days: TrialDays | None = None
    instant: StrictBool | None = None
    price: Price | None = None
    stock: Stock | None = None
    per_member_limit: PerMember | None = None
    active: StrictBool | None = None
    hold_seconds: HoldSeconds | None = None


class OfferOut(Output):
    id: int
    community_id: int
    chip_id: int
    created_by: int
    title: str
    description: str
    kind: OfferKind
    access_ref: str | None
    trial_days: int | None
    instant: bool
    price: int
    stock: int | None
    per_member_limit: int | None
    settlement: Settlement
    active: bool
    hold_seconds: int | None
    created_at: datetime
    updated_at: datetime


class RedeemIn(Input):
    quantity: Quantity = 1
    note: Note = ""


class AccessOut(Output):
    """What a fulfilled access order granted."""

    kind: GrantKind
    tier: str | None  # a trial's tier key
    course_id: int | None  # a seat's course
    ends_at: datetime | None  # a trial: when the member's trial ran until with this order
    revoked_at: datetime | None  # a moderator reversed the order's payment


class OrderOut(Output):
    id: int
    community_id: int
    offer_id: int
    offer_title: str
    offer_kind: OfferKind
    member_id: int
    member_name: str  # whom the issuer delivers to (for a 1:1 call: whom to call)
    chip_id: int
    quantity: int
    unit_price: int
    total: int
    settlement: Settlement
    status: OrderStatus
    hold_id: int | None
    hold_expires_at: datetime | None
    transaction_id: int | None
    note: str
    resolved_by: int | None
    resolved_at: datetime | None
    created_at: datetime
    # An access order's terms as paid (copied from the offer when redeemed): what fulfilment grants.
    access_ref: str | None = None  # a trial's tier key, a seat's course id
    trial_days: int | None = None
    access: AccessOut | None = None

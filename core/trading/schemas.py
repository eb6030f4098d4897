from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints

from core.models import Side, SwapStatus, TradeOrderStatus
from core.schemas import Id, Input, Output

Units = Annotated[int, Field(ge=1, le=10**12, strict=True)]
Bps = Annotated[int, Field(ge=1, le=100_000, strict=True)]
WindowSeconds = Annotated[int, Field(ge=60, le=7 * 86400, strict=True)]
ExpirySeconds = Annotated[int, Field(ge=60, le=30 * 86400, strict=True)]
SwapNote = Annotated[str, StringConstraints(max_length=280)]


class PairIn(Input):
    base_chip_id: Id
    quote_chip_id: Id


class GuardsIn(Input):
    """Guard rails; only the fields sent change, `null` turns one off."""

    daily_limit: Units | None = None
    price_band_bps: Bps | None = None
    breaker_bps: Bps | None = None
    breaker_window_seconds: WindowSeconds | None = None


class PairOut(Output):
    id: int
    community_id: int
    base_chip_id: int
    quote_chip_id: int
    daily_limit: int | None
    price_band_bps: int | None
    breaker_bps: int | None
    breaker_window_seconds: int
    halted: bool
    halt_reason: str | None
    halted_at: datetime | None
    last_price: int | None
    created_at: datetime


class OrderIn(Input):
    side: Side
    price: Units
    amount: Units


class TradeOrderOut(Output):
    id: int
    pair_id: int
    user_id: int
    side: Side
    price: int
    amount: int
    filled: int
    status: TradeOrderStatus
    cancel_reason: str | None
    hold_id: int | None
    created_at: datetime
    updated_at: datetime


class TradeOut(Output):
    id: int
    pair_id: int
    price: int
    amount: int
    taker_side: Side
    buy_order_id: int
    sell_order_id: int
    transaction_id: int
    created_at: datetime


class PlacedOut(Output):
    order: TradeOrderOut
    trades: list[TradeOut]


class Level(Output):
    price: int
    amount: int
    orders: int


class BookOut(Output):
    pair_id: int
    bids: list[Level]
    asks: list[Level]
    last_price: int | None
    halted: bool


class SwapIn(Input):
    taker_id: Id
    give_chip_id: Id
    give_amount: Units
    want_chip_id: Id
    want_amount: Units
    note: SwapNote = ""
    expires_in_seconds: ExpirySeconds | None = None


class SwapOut(Output):
    id: int
    community_id: int
    maker_id: int
    taker_id: int
    give_chip_id: int
    give_amount: int
    want_chip_id: int
    want_amount: int
    status: SwapStatus
    hold_id: int | None
    transaction_id: int | None
    note: str
    expires_at: datetime | None
    resolved_at: datetime | None
    created_at: datetime

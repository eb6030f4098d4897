from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from api.deps import CurrentActor, Cursor, DbSession, IdempotencyKey, Limit, PathId, QueryId, answer_created
from core.models import SwapStatus, TradeOrderStatus
from core.schemas import PageOut
from core.trading import service as trading
from core.trading.schemas import (
    BookOut,
    GuardsIn,
    OrderIn,
    PairIn,
    PairOut,
    PlacedOut,
    SwapIn,
    SwapOut,
    TradeOrderOut,
    TradeOut,
)

router = APIRouter(tags=["trading"])


@router.post(
    "/communities/{community_id}/trading/pairs", response_model=PairOut, status_code=status.HTTP_201_CREATED
)
def create_pair(community_id: PathId, data: PairIn, actor: CurrentActor, session: DbSession) -> PairOut:
    return trading.create_pair(session, actor, community_id, data)


@router.get("/communities/{community_id}/trading/pairs", response_model=PageOut[PairOut])
def list_pairs(
    community_id: PathId, actor: CurrentActor, session: DbSession, cursor: Cursor = None, limit: Limit = 20
) -> PageOut[PairOut]:
    return trading.list_pairs(session, actor, community_id, cursor=cursor, limit=limit)


@router.get("/trading/pairs/{pair_id}", response_model=PairOut)
def get_pair(pair_id: PathId, actor: CurrentActor, session: DbSession) -> PairOut:
    return trading.get_pair(session, actor, pair_id)


@router.patch("/trading/pairs/{pair_id}/guards", response_model=PairOut)
def set_guards(pair_id: PathId, data: GuardsIn, actor: CurrentActor, session: DbSession) -> PairOut:
    return trading.set_guards(session, actor, pair_id, data)


@router.post("/trading/pairs/{pair_id}/halt", response_model=PairOut)
def halt_pair(pair_id: PathId, actor: CurrentActor, session: DbSession) -> PairOut:
    return trading.halt_pair(session, actor, pair_id)


@router.post("/trading/pairs/{pair_id}/resume", response_model=PairOut)
def resume_pair(pair_id: PathId, actor: CurrentActor, session: DbSession) -> PairOut:
    return trading.resume_pair(session, actor, pair_id)


@router.get("/trading/pairs/{pair_id}/book", response_model=BookOut)
def book(
    pair_id: PathId,
    actor: CurrentActor,
    session: DbSession,
    levels: Annotated[int, Query(ge=1, le=100)] = 20,
) -> BookOut:
    return trading.book(session, actor, pair_id, levels=levels)


@router.get("/trading/pairs/{pair_id}/trades", response_model=PageOut[TradeOut])
def recent_trades(
    pair_id: PathId, actor: CurrentActor, session: DbSession, cursor: Cursor = None, limit: Limit = 20
) -> PageOut[TradeOut]:
    return trading.recent_trades(session, actor, pair_id, cursor=cursor, limit=limit)


@router.post("/trading/pairs/{pair_id}/orders", response_model=PlacedOut, status_code=status.HTTP_201_CREATED)
def place_order(
    pair_id: PathId,
    data: OrderIn,
    actor: CurrentActor,
    session: DbSession,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> PlacedOut:
    placed, created = trading.place_order(session, actor, pair_id, data, idempotency_key)
    answer_created(response, replayed=not created)
    return placed


@router.post("/trading/orders/{order_id}/cancel", response_model=TradeOrderOut)
def cancel_order(order_id: PathId, actor: CurrentActor, session: DbSession) -> TradeOrderOut:
    return trading.cancel_order(session, actor, order_id)


@router.get("/communities/{community_id}/trading/orders", response_model=PageOut[TradeOrderOut])
def my_orders(
    community_id: PathId,
    actor: CurrentActor,
    session: DbSession,
    cursor: Cursor = None,
    limit: Limit = 20,
    pair_id: QueryId | None = None,
    order_status: Annotated[TradeOrderStatus | None, Query(alias="status")] = None,
) -> PageOut[TradeOrderOut]:
    return trading.my_orders(
        session, actor, community_id, pair_id=pair_id, status=order_status, cursor=cursor, limit=limit
    )


@router.post("/communities/{community_id}/swaps", response_model=SwapOut, status_code=status.HTTP_201_CREATED)
def create_swap(
    community_id: PathId,
    data: SwapIn,
    actor: CurrentActor,
    session: DbSession,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> SwapOut:
    swap, created = trading.create_swap(session, actor, community_id, data, idempotency_key)
    answer_created(response, replayed=not created)
    return swap


@router.get("/communities/{community_id}/swaps", response_model=PageOut[SwapOut])
def list_swaps(
    community_id: PathId,
    actor: CurrentActor,
    session: DbSession,
    cursor: Cursor = None,
    limit: Limit = 20,
    swap_status: Annotated[SwapStatus | None, Query(alias="status")] = None,
) -> PageOut[SwapOut]:
    """Swap offers the caller made or received."""
    return trading.list_swaps(session, actor, community_id, status=swap_status, cursor=cursor, limit=limit)


@router.get("/swaps/{swap_id}", response_model=SwapOut)
def get_swap(swap_id: PathId, actor: CurrentActor, session: DbSession) -> SwapOut:
    return trading.get_swap(session, actor, swap_id)


@router.post("/swaps/{swap_id}/accept", response_model=SwapOut)
def accept_swap(swap_id: PathId, actor: CurrentActor, session: DbSession) -> SwapOut:
    return trading.accept_swap(session, actor, swap_id)


@router.post("/swaps/{swap_id}/decline", response_model=SwapOut)
def decline_swap(swap_id: PathId, actor: CurrentActor, session: DbSession) -> SwapOut:
    return trading.decline_swap(session, actor, swap_id)


@router.post("/swaps/{swap_id}/cancel", response_model=SwapOut)
def cancel_swap(swap_id: PathId, actor: CurrentActor, session: DbSession) -> SwapOut:
    return trading.cancel_swap(session, actor, swap_id)

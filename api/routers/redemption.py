from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from api.deps import CurrentActor, Cursor, DbSession, IdempotencyKey, Limit, PathId, QueryId, answer_created
from core.models import OrderStatus
from core.redemption import service as redemption
from core.redemption.schemas import OfferIn, OfferOut, OfferPatch, OrderOut, RedeemIn
from core.schemas import PageOut

router = APIRouter(tags=["redemption"])


@router.post(
    "/communities/{community_id}/redemption/offers",
    response_model=OfferOut,
    status_code=status.HTTP_201_CREATED,
)
def create_offer(community_id: PathId, data: OfferIn, actor: CurrentActor, session: DbSession) -> OfferOut:
    return redemption.create_offer(session, actor, community_id, data)


@router.get("/communities/{community_id}/redemption/offers", response_model=PageOut[OfferOut])
def list_offers(
    community_id: PathId,
    actor: CurrentActor,
    session: DbSession,
    cursor: Cursor = None,
    limit: Limit = 20,
    chip_id: QueryId | None = None,
    active: Annotated[bool | None, Query(description="only active (or inactive) offers")] = None,
) -> PageOut[OfferOut]:
    return redemption.list_offers(
        session, actor, community_id, chip_id=chip_id, active=active, cursor=cursor, limit=limit
    )


@router.get("/redemption/offers/{offer_id}", response_model=OfferOut)
def get_offer(offer_id: PathId, actor: CurrentActor, session: DbSession) -> OfferOut:
    return redemption.get_offer(session, actor, offer_id)


@router.patch("/redemption/offers/{offer_id}", response_model=OfferOut)
def update_offer(offer_id: PathId, patch: OfferPatch, actor: CurrentActor, session: DbSession) -> OfferOut:
    return redemption.update_offer(session, actor, offer_id, patch)


@router.delete("/redemption/offers/{offer_id}", response_model=OfferOut)
def withdraw_offer(offer_id: PathId, actor: CurrentActor, session: DbSession) -> OfferOut:
    """Offers are never deleted (orders refer to them): this deactivates one."""
    return redemption.update_offer(session, actor, offer_id, OfferPatch(active=False))


@router.post(
    "/redemption/offers/{offer_id}/redeem", response_model=OrderOut, status_code=status.HTTP_201_CREATED
)
def redeem(
    offer_id: PathId,
    actor: CurrentActor,
    session: DbSession,
    response: Response,
    idempotency_key: IdempotencyKey = None,
    data: RedeemIn | None = None,
) -> OrderOut:
    order, created = redemption.redeem(session, actor, offer_id, data or RedeemIn(), idempotency_key)
    answer_created(response, replayed=not created)
    return order


@router.get("/communities/{community_id}/redemption/orders/mine", response_model=PageOut[OrderOut])
def my_orders(
    community_id: PathId,
    actor: CurrentActor,
    session: DbSession,
    cursor: Cursor = None,
    limit: Limit = 20,
    order_status: Annotated[OrderStatus | None, Query(alias="status")] = None,
) -> PageOut[OrderOut]:
    return redemption.my_orders(session, actor, community_id, status=order_status, cursor=cursor, limit=limit)


@router.get("/communities/{community_id}/redemption/orders/issued", response_model=PageOut[OrderOut])
def issuer_orders(
    community_id: PathId,
    actor: CurrentActor,
    session: DbSession,
    cursor: Cursor = None,
    limit: Limit = 20,
    order_status: Annotated[OrderStatus | None, Query(alias="status")] = None,
) -> PageOut[OrderOut]:
    """Orders for offers in chips the caller issued (admins: also the community chip's)."""
    return redemption.issuer_orders(
        session, actor, community_id, status=order_status, cursor=cursor, limit=limit
    )


@router.get("/redemption/orders/{order_id}", response_model=OrderOut)
def get_order(order_id: PathId, actor: CurrentActor, session: DbSession) -> OrderOut:
    return redemption.get_order(session, actor, order_id)


@router.post("/redemption/orders/{order_id}/fulfil", response_model=OrderOut)
def fulfil_order(order_id: PathId, actor: CurrentActor, session: DbSession) -> OrderOut:
    return redemption.fulfil_order(session, actor, order_id)


@router.post("/redemption/orders/{order_id}/cancel", response_model=OrderOut)
def cancel_order(order_id: PathId, actor: CurrentActor, session: DbSession) -> OrderOut:
    return redemption.cancel_order(session, actor, order_id)

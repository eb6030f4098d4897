"""All SQL for redemption offers and orders.

Stock moves only here: `claim_stock` is one conditional UPDATE (never below
zero, whatever runs concurrently); `return_stock` runs under `lock_offer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.orm import Session

from core.models import (
    AccessGrant,
    Chip,
    GrantKind,
    HoldStatus,
    LedgerHold,
    LedgerTransaction,
    Membership,
    OrderStatus,
    RedemptionOffer,
    RedemptionOrder,
    Tier,
    User,
)

LIVE = (OrderStatus.PENDING, OrderStatus.FULFILLED)


def lock_offer(session: Session, offer_id: int) -> RedemptionOffer | None:
    """The offer under a row lock (FOR NO KEY UPDATE: order inserts hold KEY SHARE on it)."""
    return session.scalar(
        select(RedemptionOffer)
        .where(RedemptionOffer.id == offer_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )


def lock_order(session: Session, order_id: int) -> RedemptionOrder | None:
    return session.scalar(
        select(RedemptionOrder)
        .where(RedemptionOrder.id == order_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )


def claim_stock(session: Session, offer_id: int, quantity: int) -> bool:
    """Take `quantity` items atomically; False when fewer are left. NULL stock is unlimited."""
    result = session.execute(
        update(RedemptionOffer)
        .where(
            RedemptionOffer.id == offer_id,
            or_(RedemptionOffer.stock.is_(None), RedemptionOffer.stock >= quantity),
        )
        .values(stock=RedemptionOffer.stock - quantity)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def return_stock(session: Session, offer_id: int, quantity: int) -> None:
    """Give items back (NULL stays NULL). Call under `lock_offer`."""
    session.execute(
        update(RedemptionOffer)
        .where(RedemptionOffer.id == offer_id)
        .values(stock=RedemptionOffer.stock + quantity)
        .execution_options(synchronize_session=False)
    )


def order_by_key(session: Session, key: str) -> RedemptionOrder | None:
    return session.scalar(
        select(RedemptionOrder)
        .where(RedemptionOrder.idempotency_key == key)
        .execution_options(populate_existing=True)
    )


def redeemed_quantity(session: Session, offer_id: int, member_id: int) -> int:
    """Items of the offer the member holds in pending or fulfilled orders.

    A fulfilled order whose payment a moderator reversed does not count: the member has the
    chips back (and an access order's grant was withdrawn), as after a cancellation.
    """
    reversed_ = select(LedgerTransaction.id).where(
        LedgerTransaction.reverses_id == RedemptionOrder.transaction_id
    )
    total = session.scalar(
        select(func.coalesce(func.sum(RedemptionOrder.quantity), 0)).where(
            RedemptionOrder.offer_id == offer_id,
            RedemptionOrder.member_id == member_id,
            RedemptionOrder.status.in_(LIVE),
            ~reversed_.exists(),
        )
    )
    return int(total or 0)


def offers_of(community_id: int, *, chip_id: int | None, active: bool | None) -> Select[RedemptionOffer]:
    stmt = select(RedemptionOffer).where(RedemptionOffer.community_id == community_id)
    if chip_id is not None:
        stmt = stmt.where(RedemptionOffer.chip_id == chip_id)
    if active is not None:
        stmt = stmt.where(RedemptionOffer.active.is_(active))
    return stmt


def orders_of_member(
    community_id: int, member_id: int, status: OrderStatus | None
) -> Select[RedemptionOrder]:
    stmt = select(RedemptionOrder).where(
        RedemptionOrder.community_id == community_id, RedemptionOrder.member_id == member_id
    )
    return stmt if status is None else stmt.where(RedemptionOrder.status == status)


def orders_for_issuer(
    community_id: int, issuer_id: int, *, include_community_chip: bool, status: OrderStatus | None
) -> Select[RedemptionOrder]:
    """Orders for offers in chips the member issued (and the community chip, for admins)."""
    owned = Chip.issuer_id == issuer_id
    if include_community_chip:
        owned = or_(owned, Chip.issuer_id.is_(None))
    stmt = (
        select(RedemptionOrder)
        .join(Chip, Chip.id == RedemptionOrder.chip_id)
        .where(RedemptionOrder.community_id == community_id, owned)
    )
    return stmt if status is None else stmt.where(RedemptionOrder.status == status)


def offers_by_id(session: Session, ids: Sequence[int]) -> dict[int, RedemptionOffer]:
    if not ids:
        return {}
    return {o.id: o for o in session.scalars(select(RedemptionOffer).where(RedemptionOffer.id.in_(ids)))}


def hold_expiries(session: Session, hold_ids: Sequence[int]) -> dict[int, datetime | None]:
    if not hold_ids:
        return {}
    rows = session.execute(select(LedgerHold.id, LedgerHold.expires_at).where(LedgerHold.id.in_(hold_ids)))
    return {hold_id: expires for hold_id, expires in rows}


def expired_order_ids(session: Session, now: datetime, limit: int) -> list[int]:
    """Pending orders whose hold is past its expiry or was already settled by the ledger."""
    return list(
        session.scalars(
            select(RedemptionOrder.id)
            .join(LedgerHold, LedgerHold.id == RedemptionOrder.hold_id)
            .where(
                RedemptionOrder.status == OrderStatus.PENDING,
                or_(LedgerHold.status != HoldStatus.PENDING, LedgerHold.expires_at <= now),
            )
            .order_by(RedemptionOrder.id)
            .limit(limit)
        )
    )


# --- access grants -----------------------------------------------------------------------


def lock_membership(session: Session, community_id: int, user_id: int) -> Membership | None:
    """The member's row under a lock: trials of one member are granted and withdrawn in turn."""
    return session.scalar(
        select(Membership)
        .where(Membership.community_id == community_id, Membership.user_id == user_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )


def membership(session: Session, community_id: int, user_id: int) -> Membership | None:
    return session.scalar(
        select(Membership).where(Membership.community_id == community_id, Membership.user_id == user_id)
    )


def tiers_of(session: Session, community_id: int) -> Sequence[Tier]:
    return session.scalars(select(Tier).where(Tier.community_id == community_id)).all()


def grant_of_order(session: Session, order_id: int) -> AccessGrant | None:
    return session.scalar(
        select(AccessGrant).where(AccessGrant.order_id == order_id).execution_options(populate_existing=True)
    )


def grants_of_orders(session: Session, order_ids: Sequence[int]) -> dict[int, AccessGrant]:
    if not order_ids:
        return {}
    return {
        g.order_id: g for g in session.scalars(select(AccessGrant).where(AccessGrant.order_id.in_(order_ids)))
    }


def has_live_seat(session: Session, course_id: int, user_id: int) -> bool:
    found = session.scalar(
        select(AccessGrant.id).where(
            AccessGrant.kind == GrantKind.COURSE_SEAT,
            AccessGrant.course_id == course_id,
            AccessGrant.user_id == user_id,
            AccessGrant.revoked_at.is_(None),
        )
    )
    return found is not None


def trial_grants_after(
    session: Session, community_id: int, user_id: int, after: datetime
) -> list[AccessGrant]:
    """The member's live trial grants that end after `after` (call under the membership lock)."""
    return list(
        session.scalars(
            select(AccessGrant).where(
                AccessGrant.community_id == community_id,
                AccessGrant.user_id == user_id,
                AccessGrant.kind == GrantKind.TIER_TRIAL,
                AccessGrant.revoked_at.is_(None),
                AccessGrant.ends_at > after,
            )
        )
    )


def user_names(session: Session, user_ids: Sequence[int]) -> dict[int, str]:
    if not user_ids:
        return {}
    return {
        uid: name
        for uid, name in session.execute(select(User.id, User.display_name).where(User.id.in_(user_ids)))
    }

"""All SQL for trading pairs, orders, trades and swap offers."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session

from core.models import (
    AccountKind,
    Chip,
    LedgerAccount,
    LedgerHold,
    Side,
    SwapOffer,
    SwapStatus,
    Trade,
    TradeOrder,
    TradeOrderStatus,
    TradingPair,
)

BOOK_BATCH = 100


def lock_pair(session: Session, pair_id: int) -> TradingPair | None:
    """The pair under a row lock: everything that changes its book waits here (one at a time).

    FOR NO KEY UPDATE: order and trade inserts hold KEY SHARE on the pair (their foreign key).
    """
    return session.scalar(
        select(TradingPair)
        .where(TradingPair.id == pair_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )


def lock_order(session: Session, order_id: int) -> TradeOrder | None:
    return session.scalar(
        select(TradeOrder)
        .where(TradeOrder.id == order_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )


def lock_swap(session: Session, swap_id: int) -> SwapOffer | None:
    return session.scalar(
        select(SwapOffer)
        .where(SwapOffer.id == swap_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )


def pair_between(session: Session, chip_a: int, chip_b: int) -> TradingPair | None:
    return session.scalar(
        select(TradingPair).where(
            or_(
                and_(TradingPair.base_chip_id == chip_a, TradingPair.quote_chip_id == chip_b),
                and_(TradingPair.base_chip_id == chip_b, TradingPair.quote_chip_id == chip_a),
            )
        )
    )


def pairs_of(community_id: int) -> Select[TradingPair]:
    return select(TradingPair).where(TradingPair.community_id == community_id)


def order_by_key(session: Session, key: str) -> TradeOrder | None:
    return session.scalar(
        select(TradeOrder).where(TradeOrder.idempotency_key == key).execution_options(populate_existing=True)
    )


def resting(
    session: Session, pair_id: int, incoming: Side, limit: int, chip_ids: Sequence[int], *, first: int
) -> Iterator[tuple[TradeOrder, bool, int | None]]:
    """Open orders an incoming order of side `incoming` at `limit` crosses, in price-time priority.

    Each comes with whether its owner's wallet in one of `chip_ids` is frozen (read without
    a lock: the caller checks again under the account locks) and what its hold still keeps.
    The first read asks for `first` rows (an order of amount n fills against at most n
    resting orders), later ones for BOOK_BATCH: only what matching needs is loaded.
    Read while the caller holds the pair lock (the book cannot change meanwhile).
    """
    opposite = Side.SELL if incoming == Side.BUY else Side.BUY
    # Best price first (lowest ask, highest bid), then oldest (lowest id).
    price_order = TradeOrder.price.asc() if opposite == Side.SELL else TradeOrder.price.desc()
    crossing = TradeOrder.price <= limit if opposite == Side.SELL else TradeOrder.price >= limit
    stopped = (
        select(LedgerAccount.id)
        .where(
            LedgerAccount.kind == AccountKind.MEMBER,
            LedgerAccount.owner_id == TradeOrder.user_id,
            LedgerAccount.chip_id.in_(sorted(set(chip_ids))),
            LedgerAccount.frozen.is_(True),
        )
        .exists()
    )
    after: tuple[int, int] | None = None
    batch = max(1, min(first, BOOK_BATCH))
    while True:
        stmt = (
            select(TradeOrder, stopped, LedgerHold.remaining)
            .outerjoin(LedgerHold, LedgerHold.id == TradeOrder.hold_id)
            .where(
                TradeOrder.pair_id == pair_id,
                TradeOrder.side == opposite,
                TradeOrder.status == TradeOrderStatus.OPEN,
                crossing,
            )
        )
        if after is not None:
            price, last_id = after
            worse = TradeOrder.price > price if opposite == Side.SELL else TradeOrder.price < price
            stmt = stmt.where(or_(worse, and_(TradeOrder.price == price, TradeOrder.id > last_id)))
        rows = session.execute(
            stmt.order_by(price_order, TradeOrder.id.asc())
            .limit(batch)
            .execution_options(populate_existing=True)
        ).all()
        for order, frozen, kept in rows:
            yield order, bool(frozen), None if kept is None else int(kept)
        if len(rows) < batch:
            return
        after = (rows[-1][0].price, rows[-1][0].id)
        batch = BOOK_BATCH


def lock_wallets(session: Session, owner_ids: Iterable[int], chip_ids: Iterable[int]) -> list[LedgerAccount]:
    """The members' wallets in these chips (those that exist), locked in id order and read fresh.

    One statement locks and reads: FOR UPDATE returns each row as it is once locked, so
    its `frozen` is exact for as long as the transaction holds the lock.
    """
    owners, chips = sorted(set(owner_ids)), sorted(set(chip_ids))
    if not owners or not chips:
        return []
    return list(
        session.scalars(
            select(LedgerAccount)
            .where(
                LedgerAccount.kind == AccountKind.MEMBER,
                LedgerAccount.owner_id.in_(owners),
                LedgerAccount.chip_id.in_(chips),
            )
            .order_by(LedgerAccount.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )


def chips_of(session: Session, chip_ids: Iterable[int]) -> list[Chip]:
    """Both chips of a pair in one read (later `session.get` calls find them in the session)."""
    return list(session.scalars(select(Chip).where(Chip.id.in_(sorted(set(chip_ids))))))


def depth(session: Session, pair_id: int, side: Side, levels: int) -> list[tuple[int, int, int]]:
    """(price, open amount, orders) per price level, best first."""
    remaining = func.sum(TradeOrder.amount - TradeOrder.filled)
    stmt = (
        select(TradeOrder.price, remaining, func.count())
        .where(
            TradeOrder.pair_id == pair_id, TradeOrder.side == side, TradeOrder.status == TradeOrderStatus.OPEN
        )
        .group_by(TradeOrder.price)
        .order_by(TradeOrder.price.desc() if side == Side.BUY else TradeOrder.price.asc())
        .limit(levels)
    )
    return [(int(p), int(a), int(n)) for p, a, n in session.execute(stmt)]


def traded_since(session: Session, pair_id: int, user_id: int, since: datetime) -> int:
    total = session.scalar(
        select(func.coalesce(func.sum(Trade.amount), 0)).where(
            Trade.pair_id == pair_id,
            or_(Trade.buyer_id == user_id, Trade.seller_id == user_id),
            Trade.created_at >= since,
        )
    )
    return int(total or 0)


def open_remaining(session: Session, pair_id: int, user_id: int) -> int:
    total = session.scalar(
        select(func.coalesce(func.sum(TradeOrder.amount - TradeOrder.filled), 0)).where(
            TradeOrder.pair_id == pair_id,
            TradeOrder.user_id == user_id,
            TradeOrder.status == TradeOrderStatus.OPEN,
        )
    )
    return int(total or 0)


def trades_of_order(session: Session, order_id: int) -> list[Trade]:
    return list(
        session.scalars(
            select(Trade)
            .where(or_(Trade.buy_order_id == order_id, Trade.sell_order_id == order_id))
            .order_by(Trade.id)
        )
    )


def trades_of(pair_id: int) -> Select[Trade]:
    return select(Trade).where(Trade.pair_id == pair_id)


def orders_of(
    community_id: int, user_id: int, *, pair_id: int | None, status: TradeOrderStatus | None
) -> Select[TradeOrder]:
    stmt = select(TradeOrder).where(TradeOrder.community_id == community_id, TradeOrder.user_id == user_id)
    if pair_id is not None:
        stmt = stmt.where(TradeOrder.pair_id == pair_id)
    if status is not None:
        stmt = stmt.where(TradeOrder.status == status)
    return stmt


def swap_by_key(session: Session, key: str) -> SwapOffer | None:
    return session.scalar(select(SwapOffer).where(SwapOffer.idempotency_key == key))


def swaps_of(community_id: int, user_id: int, *, status: SwapStatus | None) -> Select[SwapOffer]:
    stmt = select(SwapOffer).where(
        SwapOffer.community_id == community_id,
        or_(SwapOffer.maker_id == user_id, SwapOffer.taker_id == user_id),
    )
    return stmt if status is None else stmt.where(SwapOffer.status == status)


def expired_swap_ids(session: Session, now: datetime, limit: int) -> list[int]:
    return list(
        session.scalars(
            select(SwapOffer.id)
            .where(SwapOffer.status == SwapStatus.OPEN, SwapOffer.expires_at <= now)
            .order_by(SwapOffer.id)
            .limit(limit)
        )
    )

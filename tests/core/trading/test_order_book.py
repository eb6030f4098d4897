"""The order book: fills, priority, holds, self-trade prevention and the guard rails."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.access import Actor
from core.errors import Conflict, InvalidInput, PermissionDenied
from core.ledger import service as ledger
from core.models import (
    AuditLog,
    LedgerPosting,
    LedgerTransaction,
    Side,
    TradeOrderStatus,
    TxKind,
)
from core.trading import service as trading
from core.trading.schemas import GuardsIn, OrderIn, PairIn
from tests.core.trading.conftest import Bourse, assert_invariants
from tests.factories import add_member, fund


def test_full_fill_settles_in_one_four_leg_transaction(session: Session, bourse: Bourse) -> None:
    a, b = bourse.members[1], bourse.members[2]
    sell = bourse.place(session, a, "sell", 5, 10)
    assert sell.trades == [] and bourse.wallet(session, a, bourse.base) == (1000, 10)
    buy = bourse.place(session, b, "buy", 5, 10)
    [trade] = buy.trades
    assert (trade.price, trade.amount, trade.taker_side) == (5, 10, Side.BUY)
    assert buy.order.status == TradeOrderStatus.FILLED
    assert bourse.wallet(session, a, bourse.base) == (990, 0)
    assert bourse.wallet(session, a, bourse.quote) == (10_050, 0)
    assert bourse.wallet(session, b, bourse.base) == (1010, 0)
    assert bourse.wallet(session, b, bourse.quote) == (9_950, 0)
    tx = session.get(LedgerTransaction, trade.transaction_id)
    assert tx is not None and tx.kind == TxKind.TRADE and tx.legs == 4
    legs = session.scalars(select(LedgerPosting.amount).where(LedgerPosting.transaction_id == tx.id)).all()
    assert sorted(legs) == [-50, -10, 10, 50]
    mine = trading.my_orders(
        session, Actor(a), bourse.community.id, pair_id=None, status=None, cursor=None, limit=10
    )
    assert [(o.status, o.filled) for o in mine.items] == [(TradeOrderStatus.FILLED, 10)]
    assert_invariants(session, bourse.community.id)


def test_partial_fills_rest_on_the_book(session: Session, bourse: Bourse) -> None:
    a, b, c = bourse.members[1:4]
    sell = bourse.place(session, a, "sell", 5, 10)
    bourse.place(session, b, "buy", 5, 4)
    assert bourse.wallet(session, a, bourse.base) == (996, 6)
    third = bourse.place(session, c, "buy", 5, 10)
    assert [t.amount for t in third.trades] == [6]
    assert (third.order.status, third.order.filled) == (TradeOrderStatus.OPEN, 6)
    assert bourse.wallet(session, c, bourse.quote) == (9_970, 20)
    depth = trading.book(session, Actor(b), bourse.pair.id)
    assert [(lvl.price, lvl.amount) for lvl in depth.bids] == [(5, 4)] and depth.asks == []
    assert depth.last_price == 5
    recent = trading.recent_trades(session, Actor(b), bourse.pair.id, cursor=None, limit=10)
    assert [t.amount for t in recent.items] == [6, 4]
    mine = trading.my_orders(
        session,
        Actor(a),
        bourse.community.id,
        pair_id=bourse.pair.id,
        status=TradeOrderStatus.FILLED,
        cursor=None,
        limit=5,
    )
    assert [o.id for o in mine.items] == [sell.order.id]
    assert_invariants(session, bourse.community.id)


def test_price_time_priority(session: Session, bourse: Bourse) -> None:
    a, b, c, d = bourse.members
    dear = bourse.place(session, a, "sell", 6, 5)
    early = bourse.place(session, b, "sell", 5, 5)
    late = bourse.place(session, c, "sell", 5, 5)
    taken = bourse.place(session, d, "buy", 6, 12)
    assert [(t.sell_order_id, t.price, t.amount) for t in taken.trades] == [
        (early.order.id, 5, 5),
        (late.order.id, 5, 5),
        (dear.order.id, 6, 2),
    ]
    assert bourse.wallet(session, d, bourse.quote) == (10_000 - 50 - 12, 0)
    assert_invariants(session, bourse.community.id)


def test_a_buyer_above_the_execution_price_gets_the_rest_back(session: Session, bourse: Bourse) -> None:
    a, b = bourse.members[1], bourse.members[2]
    bourse.place(session, a, "sell", 5, 4)
    buy = bourse.place(session, b, "buy", 8, 10)
    # 4 filled at 5 (20 paid); the rest waits at 8: 6 * 8 = 48 held, plus the 12 saved so far.
    assert bourse.wallet(session, b, bourse.quote) == (9_980, 60)
    bourse.place(session, a, "sell", 8, 6)
    assert bourse.wallet(session, b, bourse.quote) == (9_980 - 48, 0)
    assert bourse.wallet(session, b, bourse.base) == (1010, 0)
    full = bourse.place(session, a, "sell", 5, 3)
    improved = bourse.place(session, b, "buy", 9, 3)
    assert improved.order.status == TradeOrderStatus.FILLED and full.order.status == TradeOrderStatus.OPEN
    assert bourse.wallet(session, b, bourse.quote) == (9_932 - 15, 0)
    assert buy.order.id != improved.order.id
    assert_invariants(session, bourse.community.id)


def test_cancel_releases_the_remaining_hold(session: Session, bourse: Bourse) -> None:
    a, b = bourse.members[1], bourse.members[2]
    sell = bourse.place(session, a, "sell", 5, 10)
    bourse.place(session, b, "buy", 5, 3)
    cancelled = trading.cancel_order(session, Actor(a), sell.order.id)
    assert (cancelled.status, cancelled.filled, cancelled.cancel_reason) == (
        TradeOrderStatus.CANCELLED,
        3,
        "member",
    )
    assert bourse.wallet(session, a, bourse.base) == (997, 0)
    assert trading.cancel_order(session, Actor(a), sell.order.id).status == TradeOrderStatus.CANCELLED
    with pytest.raises(Conflict):
        done = bourse.place(session, b, "sell", 100, 1)
        bourse.place(session, a, "buy", 100, 1)
        trading.cancel_order(session, Actor(b), done.order.id)
    assert_invariants(session, bourse.community.id)


def test_own_orders_never_trade(session: Session, bourse: Bourse) -> None:
    a, b = bourse.members[1], bourse.members[2]
    sell = bourse.place(session, a, "sell", 5, 5)
    behind = bourse.place(session, b, "sell", 5, 2)
    buy = bourse.place(session, a, "buy", 5, 5)
    # Self-trade prevention: the member's resting sell is cancelled; the buy trades behind it.
    assert [t.sell_order_id for t in buy.trades] == [behind.order.id]
    mine = {
        o.id: o
        for o in trading.my_orders(
            session, Actor(a), bourse.community.id, pair_id=None, status=None, cursor=None, limit=10
        ).items
    }
    assert (mine[sell.order.id].status, mine[sell.order.id].cancel_reason) == (
        TradeOrderStatus.CANCELLED,
        "self_trade",
    )
    assert mine[buy.order.id].status == TradeOrderStatus.OPEN
    assert bourse.wallet(session, a, bourse.base) == (1002, 0)
    assert bourse.wallet(session, a, bourse.quote) == (9_990, 15)
    assert_invariants(session, bourse.community.id)


def test_price_band_rejects_orders_far_from_the_last_trade(session: Session, bourse: Bourse) -> None:
    a, b = bourse.members[1], bourse.members[2]
    trading.set_guards(session, Actor(bourse.owner), bourse.pair.id, GuardsIn(price_band_bps=1000))
    bourse.place(session, a, "sell", 100, 1)  # no reference price yet: any price
    bourse.place(session, b, "buy", 100, 1)
    for price in (111, 89):
        with pytest.raises(InvalidInput) as exc:
            bourse.place(session, a, "sell", price, 1)
        assert exc.value.code == "price_out_of_band"
        assert exc.value.extra["min"] == 90 and exc.value.extra["max"] == 110
    bourse.place(session, a, "sell", 110, 1)
    bourse.place(session, b, "buy", 90, 1)
    assert_invariants(session, bourse.community.id)


def test_manual_halt_and_resume(session: Session, bourse: Bourse) -> None:
    a = bourse.members[1]
    with pytest.raises(PermissionDenied):
        trading.halt_pair(session, Actor(a), bourse.pair.id)
    halted = trading.halt_pair(session, Actor(bourse.owner), bourse.pair.id)
    assert halted.halted and halted.halt_reason == "manual"
    with pytest.raises(Conflict) as exc:
        bourse.place(session, a, "sell", 5, 1)
    assert exc.value.code == "pair_halted"
    assert bourse.wallet(session, a, bourse.base) == (1000, 0)
    assert not trading.resume_pair(session, Actor(bourse.owner), bourse.pair.id).halted
    bourse.place(session, a, "sell", 5, 1)
    actions = set(session.scalars(select(AuditLog.action).where(AuditLog.target_type == "trading_pairs")))
    assert {"trading.halted", "trading.resumed", "trading.pair_created"} <= actions


def test_circuit_breaker_halts_on_a_large_move(session: Session, bourse: Bourse) -> None:
    a, b, c = bourse.members[1:4]
    trading.set_guards(session, Actor(bourse.owner), bourse.pair.id, GuardsIn(breaker_bps=2000))
    bourse.place(session, a, "sell", 100, 1)
    bourse.place(session, b, "buy", 100, 1)
    bourse.place(session, a, "sell", 115, 1)
    bourse.place(session, a, "sell", 130, 1)
    bourse.place(session, a, "sell", 131, 1)
    sweep = bourse.place(session, c, "buy", 140, 5)
    # 115 is within 20% of 100, 130 is not: the pair halts after that trade and stops matching.
    assert [t.price for t in sweep.trades] == [115, 130]
    assert (sweep.order.status, sweep.order.cancel_reason) == (TradeOrderStatus.CANCELLED, "halted")
    pair = trading.get_pair(session, Actor(c), bourse.pair.id)
    assert pair.halted and pair.halt_reason == "circuit_breaker" and pair.last_price == 130
    assert bourse.wallet(session, c, bourse.quote) == (10_000 - 245, 0)
    with pytest.raises(Conflict) as exc:
        bourse.place(session, b, "buy", 131, 1)
    assert exc.value.code == "pair_halted"
    assert_invariants(session, bourse.community.id)


def test_daily_limit_counts_trades_and_open_orders(session: Session, bourse: Bourse) -> None:
    a, b = bourse.members[1], bourse.members[2]
    trading.set_guards(session, Actor(bourse.owner), bourse.pair.id, GuardsIn(daily_limit=10))
    bourse.place(session, a, "sell", 5, 6)
    with pytest.raises(Conflict) as exc:
        bourse.place(session, a, "sell", 5, 5)
    assert exc.value.code == "daily_limit_exceeded"
    bourse.place(session, b, "buy", 5, 6)  # fills a's 6: both have traded 6 today
    bourse.place(session, a, "buy", 4, 4)
    with pytest.raises(Conflict):
        bourse.place(session, b, "sell", 9, 5)
    trading.set_guards(session, Actor(bourse.owner), bourse.pair.id, GuardsIn(daily_limit=None))
    bourse.place(session, b, "sell", 9, 5)
    assert_invariants(session, bourse.community.id)


def test_placement_is_idempotent_and_refusals_change_nothing(session: Session, bourse: Bourse) -> None:
    a, b = bourse.members[1], bourse.members[2]
    first = bourse.place(session, a, "sell", 5, 10, key="same")
    again, created = trading.place_order(
        session, Actor(a), bourse.pair.id, OrderIn(side=Side.SELL, price=5, amount=10), "same"
    )
    assert not created and again.order.id == first.order.id
    assert bourse.wallet(session, a, bourse.base) == (1000, 10)
    with pytest.raises(Conflict) as exc:
        bourse.place(session, a, "sell", 6, 10, key="same")
    assert exc.value.code == "idempotency_key_reused"
    with pytest.raises(Conflict) as poor:
        bourse.place(session, b, "buy", 5, 3000)
    assert poor.value.code == "insufficient_funds"
    assert bourse.wallet(session, b, bourse.quote) == (10_000, 0)
    book = trading.book(session, Actor(b), bourse.pair.id)
    assert book.bids == [] and [(lvl.price, lvl.amount, lvl.orders) for lvl in book.asks] == [(5, 10, 1)]
    with pytest.raises(InvalidInput):
        trading.place_order(
            session, Actor(a), bourse.pair.id, OrderIn(side=Side.SELL, price=5, amount=1), None
        )
    assert_invariants(session, bourse.community.id)


def test_pairs_are_created_by_admins_between_tradable_chips(session: Session, bourse: Bourse) -> None:
    from tests.factories import make_chip

    with pytest.raises(PermissionDenied):
        trading.create_pair(
            session,
            Actor(bourse.members[1]),
            bourse.community.id,
            PairIn(base_chip_id=bourse.quote.id, quote_chip_id=bourse.base.id),
        )
    with pytest.raises(Conflict) as exists:
        trading.create_pair(
            session,
            Actor(bourse.owner),
            bourse.community.id,
            PairIn(base_chip_id=bourse.quote.id, quote_chip_id=bourse.base.id),
        )
    assert exists.value.code == "pair_exists"
    locked = make_chip(session, bourse.community, bourse.members[1], tradable=False)
    with pytest.raises(Conflict) as untradable:
        trading.create_pair(
            session,
            Actor(bourse.owner),
            bourse.community.id,
            PairIn(base_chip_id=locked.id, quote_chip_id=bourse.quote.id),
        )
    assert untradable.value.code == "chip_not_tradable"
    pairs = trading.list_pairs(session, Actor(bourse.members[2]), bourse.community.id, cursor=None, limit=10)
    assert [p.id for p in pairs.items] == [bourse.pair.id]


def test_a_fill_opens_the_wallets_its_members_did_not_have(session: Session, bourse: Bourse) -> None:
    """A seller who never held the quote chip and a buyer who never held the base chip: the fill
    opens both wallets (`ledger.wallet_ids`) and pays them."""
    seller, buyer = add_member(session, bourse.community), add_member(session, bourse.community)
    fund(session, bourse.base, seller, 100)
    fund(session, bourse.quote, buyer, 1_000)
    assert ledger.find_wallet(session, bourse.quote.id, seller.id) is None
    assert ledger.find_wallet(session, bourse.base.id, buyer.id) is None

    bourse.place(session, seller, "sell", 5, 10)
    [trade] = bourse.place(session, buyer, "buy", 5, 10).trades

    assert (trade.price, trade.amount) == (5, 10)
    assert bourse.wallet(session, seller, bourse.quote) == (50, 0)
    assert bourse.wallet(session, buyer, bourse.base) == (10, 0)
    assert_invariants(session, bourse.community.id)

"""Random sequences of orders and cancels: after every step the ledger and the book agree."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.access import Actor
from core.errors import Conflict
from core.models import LedgerHold, Side, TradeOrder, TradeOrderStatus
from core.trading import service as trading
from tests.core.trading.conftest import Bourse, assert_invariants


def _check_book(session: Session, bourse: Bourse) -> None:
    orders = session.scalars(
        select(TradeOrder)
        .where(TradeOrder.pair_id == bourse.pair.id)
        .execution_options(populate_existing=True)
    ).all()
    bids = [o.price for o in orders if o.status == TradeOrderStatus.OPEN and o.side == Side.BUY]
    asks = [o.price for o in orders if o.status == TradeOrderStatus.OPEN and o.side == Side.SELL]
    assert not bids or not asks or max(bids) < min(asks), "the book is crossed"
    for order in orders:
        hold = session.get(LedgerHold, order.hold_id, populate_existing=True)
        assert hold is not None
        left = order.amount - order.filled
        if order.status != TradeOrderStatus.OPEN:
            assert hold.remaining == 0
        elif order.side == Side.SELL:
            assert hold.remaining == left
        else:  # a buy keeps at least its rest at its limit (plus any price improvement so far)
            assert hold.remaining >= left * order.price


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_orders_keep_every_invariant(session: Session, bourse: Bourse, seed: int) -> None:
    rng = random.Random(seed)
    placed: list[tuple[int, int]] = []  # (order id, owner index)
    for step in range(40):
        who = rng.randrange(len(bourse.members))
        if placed and rng.random() < 0.2:
            order_id, owner = placed.pop(rng.randrange(len(placed)))
            try:
                trading.cancel_order(session, Actor(bourse.members[owner]), order_id)
            except Conflict as exc:
                assert exc.code == "order_not_open"
        else:
            side = rng.choice(["buy", "sell"])
            result = bourse.place(session, bourse.members[who], side, rng.randint(4, 9), rng.randint(1, 40))
            placed.append((result.order.id, who))
        _check_book(session, bourse)
        if step % 5 == 4:
            assert_invariants(session, bourse.community.id)
    assert_invariants(session, bourse.community.id)

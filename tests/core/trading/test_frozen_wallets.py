"""A frozen wallet never blocks its pair: its crossing resting orders are cancelled, not traded.

Matching skips a resting order whose owner's account in either chip of the pair is
frozen (it could neither deliver nor be paid), cancels it with reason "account_frozen"
and voids its hold (voiding works on frozen accounts), then matches what lies behind it.
"""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from core.access import Actor
from core.chips import service as chips
from core.chips.schemas import WalletFreezeIn
from core.errors import Conflict
from core.models import Chip, TradeOrder, TradeOrderStatus, User
from tests.core.trading.conftest import Bourse, assert_invariants


def _freeze(session: Session, bourse: Bourse, user: User, chip: Chip | None) -> None:
    chips.set_wallet_frozen(
        session,
        Actor(bourse.owner),
        bourse.community.id,
        user.id,
        WalletFreezeIn(reason="under review", chip_id=chip.id if chip else None),
        frozen=True,
    )


def _order(session: Session, order_id: int) -> TradeOrder:
    order = session.get(TradeOrder, order_id, populate_existing=True)
    assert order is not None
    return order


@pytest.mark.parametrize("frozen", ["base", "quote", "both"])
def test_a_frozen_sellers_ask_is_cancelled_and_the_buyer_trades_behind_it(
    session: Session, bourse: Bourse, frozen: str
) -> None:
    a, b, c = bourse.members[1], bourse.members[2], bourse.members[3]
    stale = bourse.place(session, a, "sell", 10, 5).order  # the best ask, soon frozen
    behind = bourse.place(session, c, "sell", 11, 5).order
    _freeze(session, bourse, a, {"base": bourse.base, "quote": bourse.quote, "both": None}[frozen])

    buy = bourse.place(session, b, "buy", 11, 8)

    [trade] = buy.trades
    assert (trade.sell_order_id, trade.price, trade.amount) == (behind.id, 11, 5)
    assert (buy.order.status, buy.order.filled) == (TradeOrderStatus.OPEN, 5)
    cancelled = _order(session, stale.id)
    assert (cancelled.status, cancelled.cancel_reason, cancelled.filled) == (
        TradeOrderStatus.CANCELLED,
        "account_frozen",
        0,
    )
    assert bourse.wallet(session, a, bourse.base) == (1000, 0)  # its hold is released
    assert bourse.wallet(session, a, bourse.quote) == (10_000, 0)
    assert bourse.wallet(session, c, bourse.base) == (995, 0)
    assert bourse.wallet(session, c, bourse.quote) == (10_055, 0)
    assert bourse.wallet(session, b, bourse.base) == (1005, 0)
    assert bourse.wallet(session, b, bourse.quote) == (10_000 - 55, 3 * 11)
    assert_invariants(session, bourse.community.id)


def test_a_frozen_buyers_bid_is_cancelled_and_the_seller_rests(session: Session, bourse: Bourse) -> None:
    a, b = bourse.members[1], bourse.members[2]
    bid = bourse.place(session, a, "buy", 10, 4).order
    far = bourse.place(session, a, "buy", 5, 4).order  # does not cross: left alone
    _freeze(session, bourse, a, bourse.base)

    sell = bourse.place(session, b, "sell", 9, 4)

    assert sell.trades == [] and sell.order.status == TradeOrderStatus.OPEN
    assert _order(session, bid.id).cancel_reason == "account_frozen"
    assert _order(session, far.id).status == TradeOrderStatus.OPEN
    assert bourse.wallet(session, a, bourse.quote) == (10_000, 20)  # only the far bid's hold is left
    assert bourse.wallet(session, b, bourse.base) == (1000, 4)
    assert_invariants(session, bourse.community.id)


def test_a_frozen_member_cannot_place_orders(session: Session, bourse: Bourse) -> None:
    a, b = bourse.members[1], bourse.members[2]
    ask = bourse.place(session, b, "sell", 10, 5).order
    _freeze(session, bourse, a, bourse.base)  # buying would pay into the frozen account
    with pytest.raises(Conflict) as exc:
        bourse.place(session, a, "buy", 10, 5)
    assert exc.value.code == "account_frozen"
    assert _order(session, ask.id).status == TradeOrderStatus.OPEN
    assert bourse.wallet(session, a, bourse.quote) == (10_000, 0)
    assert bourse.wallet(session, b, bourse.base) == (1000, 5)
    assert_invariants(session, bourse.community.id)

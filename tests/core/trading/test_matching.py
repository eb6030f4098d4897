"""The matching rule on its own: price-time priority, partial fills, self-trade prevention."""

from __future__ import annotations

from core.models import Side
from core.trading.matching import Fill, Resting, crosses, plan


def test_buy_takes_the_cheapest_then_the_oldest() -> None:
    book = [Resting(1, 10, 9, 5), Resting(2, 11, 9, 5), Resting(3, 12, 10, 5), Resting(4, 13, 12, 5)]
    result = plan(Side.BUY, 99, 10, 12, book)
    assert result.fills == [Fill(1, 9, 5), Fill(2, 9, 5), Fill(3, 10, 2)]
    assert result.remaining == 0 and result.self_cancels == []


def test_sell_stops_at_its_limit_and_rests() -> None:
    book = [Resting(1, 10, 12, 3), Resting(2, 11, 10, 3)]
    result = plan(Side.SELL, 99, 11, 10, book)
    assert result.fills == [Fill(1, 12, 3)] and result.remaining == 7


def test_own_orders_are_cancelled_not_traded() -> None:
    book = [Resting(1, 99, 9, 5), Resting(2, 10, 9, 5)]
    result = plan(Side.BUY, 99, 9, 5, book)
    assert result.self_cancels == [1] and result.fills == [Fill(2, 9, 5)]


def test_crosses() -> None:
    assert crosses(Side.BUY, 10, 10) and not crosses(Side.BUY, 9, 10)
    assert crosses(Side.SELL, 10, 11) and not crosses(Side.SELL, 10, 9)


def test_frozen_owners_orders_are_cancelled_not_traded() -> None:
    book = [Resting(1, 10, 9, 5, frozen=True), Resting(2, 11, 9, 5), Resting(3, 12, 10, 5, frozen=True)]
    result = plan(Side.BUY, 99, 9, 5, book)
    assert result.frozen_cancels == [1] and result.fills == [Fill(2, 9, 5)] and result.remaining == 0
    # Only orders the incoming one meets are touched: 3 lies beyond its limit.
    assert plan(Side.BUY, 99, 9, 20, book).frozen_cancels == [1]

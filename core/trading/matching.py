"""The matching rule, free of the database: which resting orders an incoming order trades with.

Price-time priority: the best price first, then the oldest order. A fill
executes at the resting order's price, for the smaller of the two remaining
amounts. Self-trade prevention is "cancel resting": a member's own resting
order that the new order would cross is cancelled, not traded with, and
matching continues behind it, so the book never stays crossed. A crossing
resting order whose owner's wallet is frozen (it could neither pay nor be
paid) is cancelled the same way, so one frozen wallet never blocks a pair.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from core.models import Side


@dataclass(frozen=True, slots=True)
class Resting:
    id: int
    user_id: int
    price: int
    remaining: int
    frozen: bool = False  # the owner's wallet (either chip of the pair) is frozen


@dataclass(frozen=True, slots=True)
class Fill:
    resting_id: int
    price: int
    amount: int


@dataclass
class Plan:
    fills: list[Fill] = field(default_factory=list)
    self_cancels: list[int] = field(default_factory=list)
    frozen_cancels: list[int] = field(default_factory=list)
    remaining: int = 0


def crosses(side: Side, limit: int, resting_price: int) -> bool:
    """Whether an incoming order at `limit` trades with a resting order at `resting_price`."""
    return resting_price <= limit if side == Side.BUY else resting_price >= limit


def plan(side: Side, user_id: int, limit: int, amount: int, book: Iterable[Resting]) -> Plan:
    """Fills for an incoming order against `book` (the opposite side, in priority order)."""
    result = Plan(remaining=amount)
    orders = iter(book)
    # Done before pulling the next resting order: a lazy book then reads no further than needed.
    while result.remaining > 0:
        order = next(orders, None)
        if order is None or not crosses(side, limit, order.price):
            break
        if order.remaining <= 0:
            continue
        if order.user_id == user_id:
            result.self_cancels.append(order.id)
            continue
        if order.frozen:
            result.frozen_cancels.append(order.id)
            continue
        qty = min(result.remaining, order.remaining)
        result.fills.append(Fill(order.id, order.price, qty))
        result.remaining -= qty
    return result

"""Forced interleavings on PostgreSQL: the swap sweep against cancel and decline, one key twice.

Each test pins the order in which two transactions take their locks: the test's own
session takes a row lock first, the unit of work under test runs in a thread until it
blocks on that lock, then the test's session carries on with a real cancel, decline or
request. Before the fix the sweep held the maker's account (from the previous offer)
while it waited for offer B, and a cancel holding offer B then waited for that account.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.access import Actor
from core.clock import utcnow
from core.db import session_scope
from core.errors import Conflict
from core.ledger import service as ledger
from core.models import Chip, Side, SwapOffer, SwapStatus, TradeOrder, User
from core.trading import repository as repo
from core.trading import service as trading
from core.trading.schemas import OrderIn, PairIn, SwapIn
from tests.conftest import needs_postgres
from tests.core.trading.interleave import Background, backend_pid, wait_until_blocked_by
from tests.factories import add_member, fund, make_chip, make_community, make_user

pytestmark = needs_postgres()


@dataclass
class Market:
    community_id: int
    maker_id: int
    taker_id: int
    chips: tuple[int, int, int]  # STAR, GOLD, MOON
    pairs: tuple[int, int]  # STAR/GOLD, MOON/GOLD


def _market(engine: Engine) -> Market:
    with session_scope(engine) as s:
        owner = make_user(s)
        community = make_community(s, owner)
        maker, taker = add_member(s, community), add_member(s, community)
        chips = [
            make_chip(s, community, add_member(s, community), symbol=sym) for sym in ("STAR", "GOLD", "MOON")
        ]
        for chip in chips:
            for user in (maker, taker):
                fund(s, chip, user, 1000)
        star, gold, moon = chips
        pairs = [
            trading.create_pair(
                s, Actor(owner), community.id, PairIn(base_chip_id=b.id, quote_chip_id=gold.id)
            ).id
            for b in (star, moon)
        ]
        return Market(community.id, maker.id, taker.id, (star.id, gold.id, moon.id), (pairs[0], pairs[1]))


def _session(engine: Engine) -> Session:
    return sessionmaker(bind=engine, expire_on_commit=False)()


def _actor(s: Session, user_id: int) -> Actor:
    user = s.get(User, user_id)
    assert user is not None
    return Actor(user)


def _swap_in(m: Market, give: int = 10, expires_in: int | None = 600) -> SwapIn:
    star, gold, _ = m.chips
    return SwapIn(
        taker_id=m.taker_id,
        give_chip_id=star,
        give_amount=give,
        want_chip_id=gold,
        want_amount=20,
        expires_in_seconds=expires_in,
    )


def _offer(engine: Engine, m: Market, key: str, data: SwapIn | None = None) -> int:
    with session_scope(engine) as s:
        swap, _ = trading.create_swap(s, _actor(s, m.maker_id), m.community_id, data or _swap_in(m), key)
        return swap.id


def _wallet(engine: Engine, m: Market, user_id: int, chip_id: int) -> tuple[int, int]:
    with session_scope(engine) as s:
        report = ledger.check_invariants(s, m.community_id)
        assert report.ok, report.problems
        chip = s.get(Chip, chip_id)
        assert chip is not None
        account = ledger.open_account(s, chip, user_id)
        return account.balance, account.held


@pytest.mark.parametrize("then", ["cancel", "decline"])
def test_the_swap_sweep_never_deadlocks_with_cancel_or_decline(committed_engine: Engine, then: str) -> None:
    m = _market(committed_engine)
    tag = uuid.uuid4().hex
    swap_a = _offer(committed_engine, m, f"a-{tag}")
    swap_b = _offer(committed_engine, m, f"b-{tag}")
    later = utcnow() + timedelta(hours=1)  # both are due for the sweep; not yet for the members

    with _session(committed_engine) as interactive:
        # A cancel (or decline) of offer B got there first: it holds B's row lock ...
        repo.lock_swap(interactive, swap_b)
        pid = backend_pid(interactive)
        sweep = Background(lambda: trading.expire_swaps(lambda: session_scope(committed_engine), later))
        # ... the sweep expires offer A (the maker's account), then waits for offer B ...
        wait_until_blocked_by(committed_engine, pid)
        # ... and the cancel goes on to lock the maker's account: the sweep must not hold it.
        if then == "cancel":
            out = trading.cancel_swap(interactive, _actor(interactive, m.maker_id), swap_b)
        else:
            out = trading.decline_swap(interactive, _actor(interactive, m.taker_id), swap_b)
        interactive.commit()
    assert out.status == (SwapStatus.CANCELLED if then == "cancel" else SwapStatus.DECLINED)
    assert sweep.result() == [swap_a]
    with session_scope(committed_engine) as s:
        a = s.get(SwapOffer, swap_a)
        assert a is not None and a.status == SwapStatus.EXPIRED
    assert _wallet(committed_engine, m, m.maker_id, m.chips[0]) == (1000, 0)


def _concurrently(
    engine: Engine, first: Callable[[Session], object], second: Callable[[], object]
) -> Background[object]:
    """Run `first` in a session left open, start `second` in a thread, wait until it blocks, commit."""
    with _session(engine) as s:
        first(s)
        pid = backend_pid(s)
        retry = Background(second)
        wait_until_blocked_by(engine, pid)
        s.commit()
    return retry


@pytest.mark.parametrize("same_request", [True, False])
def test_one_swap_key_sent_twice_at_once(committed_engine: Engine, same_request: bool) -> None:
    m = _market(committed_engine)
    key = f"twice-{uuid.uuid4().hex}"
    made: list[int] = []

    def first(s: Session) -> None:
        swap, created = trading.create_swap(s, _actor(s, m.maker_id), m.community_id, _swap_in(m), key)
        assert created
        made.append(swap.id)

    other = _swap_in(m) if same_request else _swap_in(m, give=11)
    retry = _concurrently(committed_engine, first, lambda: _offer(committed_engine, m, key, other))
    if same_request:
        assert retry.result() == made[0]
    else:
        with pytest.raises(Conflict) as exc:
            retry.result()
        assert exc.value.code == "idempotency_key_reused"
    assert _wallet(committed_engine, m, m.maker_id, m.chips[0]) == (1000, 10)


@pytest.mark.parametrize("same_request", [True, False])
def test_one_order_key_sent_twice_at_once(committed_engine: Engine, same_request: bool) -> None:
    m = _market(committed_engine)
    key = f"twice-{uuid.uuid4().hex}"
    data = OrderIn(side=Side.BUY, price=3, amount=4)
    placed: list[int] = []

    def place(s: Session, pair_id: int) -> int:
        out, _ = trading.place_order(s, _actor(s, m.maker_id), pair_id, data, key)
        return out.order.id

    def again() -> int:
        with session_scope(committed_engine) as s:
            return place(s, m.pairs[0] if same_request else m.pairs[1])

    retry = _concurrently(committed_engine, lambda s: placed.append(place(s, m.pairs[0])), again)
    if same_request:
        assert retry.result() == placed[0]
    else:
        with pytest.raises(Conflict) as exc:
            retry.result()
        assert exc.value.code == "idempotency_key_reused"
    with session_scope(committed_engine) as s:
        assert s.get(TradeOrder, placed[0]) is not None
    assert _wallet(committed_engine, m, m.maker_id, m.chips[1]) == (1000, 12)

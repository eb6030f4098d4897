"""Crossing orders, cancels and plain transfers on the same accounts at once.

Real commits through `committed_engine`. The pair lock serialises matching; the
accounts a placement can touch are locked in id order, so concurrent ledger
writers (transfers here) neither deadlock with it nor break any invariant.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from core.access import Actor
from core.accounts import service as accounts
from core.communities import service as communities
from core.communities.schemas import CommunityIn, JoinIn
from core.errors import Conflict
from core.ledger import service as ledger
from core.models import (
    AccountKind,
    Chip,
    ChipKind,
    LedgerAccount,
    Side,
    Trade,
    TradeOrder,
    TradeOrderStatus,
    TxKind,
    User,
)
from core.trading import service as trading
from core.trading.schemas import OrderIn, PairIn


def _setup(engine: Engine, members: int) -> tuple[int, int, list[int], tuple[int, int]]:
    tag = uuid.uuid4().hex[:10]
    with sessionmaker(bind=engine, expire_on_commit=False)() as s:

        def user(n: int | str) -> User:
            return accounts.create_user(
                s,
                email=f"trade-{tag}-{n}@example.com",
                password="correct horse battery",
                display_name=f"T{n}",
            )

        owner = user("owner")
        community = communities.create_community(
            s, Actor(owner), CommunityIn(slug=f"trade-{tag}", name="Race")
        )
        chips = []
        for symbol in ("STAR", "GOLD"):
            chip = Chip(
                community_id=community.id,
                kind=ChipKind.PERSONAL,
                issuer_id=owner.id,
                name=symbol,
                symbol=symbol,
            )
            s.add(chip)
            s.flush()
            s.add(LedgerAccount(community_id=community.id, chip_id=chip.id, kind=AccountKind.ISSUANCE))
            s.flush()
            chips.append(chip)
        people = [user(n) for n in range(members)]
        for n, person in enumerate(people):
            communities.join(s, Actor(person), community.id, JoinIn())
            for chip in chips:
                ledger.transfer(
                    s,
                    community_id=community.id,
                    chip_id=chip.id,
                    source=ledger.issuance_account(s, chip.id).id,
                    target=ledger.open_account(s, chip, person.id).id,
                    amount=10_000,
                    key=f"trade-fund-{tag}-{n}-{chip.symbol}",
                    kind=TxKind.MINT,
                )
        pair = trading.create_pair(
            s, Actor(owner), community.id, PairIn(base_chip_id=chips[0].id, quote_chip_id=chips[1].id)
        )
        s.commit()
        return community.id, pair.id, [p.id for p in people], (chips[0].id, chips[1].id)


def _act(engine: Engine, user_id: int, action: Callable[[Session, Actor], object]) -> None:
    with sessionmaker(bind=engine, expire_on_commit=False)() as s:
        user = s.get(User, user_id)
        assert user is not None
        try:
            action(s, Actor(user))
            s.commit()
        except Conflict:
            s.rollback()


def test_crossing_orders_and_transfers_at_once(committed_engine: Engine) -> None:
    community_id, pair_id, people, (base_id, quote_id) = _setup(committed_engine, 6)
    rng = random.Random(7)
    calls: list[Callable[[], None]] = []
    for n in range(48):
        uid = rng.choice(people)
        side = rng.choice([Side.BUY, Side.SELL])
        data = OrderIn(side=side, price=rng.randint(8, 12), amount=rng.randint(1, 30))

        def place(s: Session, a: Actor, data: OrderIn = data, n: int = n) -> None:
            trading.place_order(s, a, pair_id, data, f"race-{n}")

        calls.append(lambda uid=uid, place=place: _act(committed_engine, uid, place))
    for n in range(16):
        src, dst = rng.sample(people, 2)
        chip_id = rng.choice([base_id, quote_id])

        def pay(s: Session, a: Actor, dst: int = dst, chip_id: int = chip_id, n: int = n) -> None:
            chip = s.get(Chip, chip_id)
            assert chip is not None
            ledger.transfer(
                s,
                community_id=community_id,
                chip_id=chip_id,
                source=ledger.open_account(s, chip, a.id).id,
                target=ledger.open_account(s, chip, dst).id,
                amount=7,
                key=f"race-pay-{pair_id}-{n}",
            )

        calls.append(lambda src=src, pay=pay: _act(committed_engine, src, pay))
    rng.shuffle(calls)

    barrier = threading.Barrier(len(calls))
    errors: list[BaseException] = []

    def run(call: Callable[[], None]) -> None:
        barrier.wait()
        try:
            call()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread is stuck (deadlock?)"
    assert not errors, errors[0]

    with sessionmaker(bind=committed_engine)() as s:
        report = ledger.check_invariants(s, community_id)
        assert report.ok, report.problems
        assert s.scalar(select(func.count()).where(Trade.pair_id == pair_id))
        # Every order's fill count is the sum of its trades; the book never stays crossed.
        for order in s.scalars(select(TradeOrder).where(TradeOrder.pair_id == pair_id)):
            traded = s.scalar(
                select(func.coalesce(func.sum(Trade.amount), 0)).where(
                    (Trade.buy_order_id == order.id) | (Trade.sell_order_id == order.id)
                )
            )
            assert traded == order.filled
        best_bid = s.scalar(
            select(func.max(TradeOrder.price)).where(
                TradeOrder.pair_id == pair_id,
                TradeOrder.side == Side.BUY,
                TradeOrder.status == TradeOrderStatus.OPEN,
            )
        )
        best_ask = s.scalar(
            select(func.min(TradeOrder.price)).where(
                TradeOrder.pair_id == pair_id,
                TradeOrder.side == Side.SELL,
                TradeOrder.status == TradeOrderStatus.OPEN,
            )
        )
        assert best_bid is None or best_ask is None or best_bid < best_ask

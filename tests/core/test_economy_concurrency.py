"""PostgreSQL: tipping, redeeming the last items and crossing orders, all at once on the same wallets.

Many threads act for the same few members: they tip each other in both chips,
race for the last three items of an offer, and place crossing buy and sell orders
on one pair, while others retry the very same request. Afterwards the ledger is
sound (conservation, caches, no overdraft, chains), the offer sold exactly its
stock, the book is not crossed, and every retry got the first result.
"""

from __future__ import annotations

import random
import threading
from datetime import timedelta

from sqlalchemy import Engine, func, select

from core.access import Actor
from core.chips import service as chips
from core.chips.schemas import ChipIn, MintIn
from core.clock import utcnow
from core.db import session_scope
from core.errors import DomainError
from core.ledger import service as ledger
from core.models import (
    Chip,
    ChipKind,
    Membership,
    OrderStatus,
    RedemptionOffer,
    RedemptionOrder,
    Side,
    TradeOrder,
    TradeOrderStatus,
    User,
)
from core.redemption import service as redemption
from core.redemption.schemas import OfferIn, RedeemIn
from core.tipping import service as tipping
from core.tipping.schemas import TipIn
from core.trading import service as trading
from core.trading.schemas import OrderIn, PairIn
from tests.conftest import needs_postgres
from tests.factories import add_member, make_community, make_user

MEMBERS = 6
THREADS = 12
ROUNDS = 6
STOCK = 3


@needs_postgres()
def test_tips_last_items_and_crossing_orders_race_safely(committed_engine: Engine) -> None:
    with session_scope(committed_engine) as s:
        owner = make_user(s)
        community = make_community(s, owner)
        members = [add_member(s, community) for _ in range(MEMBERS)]
        for membership in s.scalars(select(Membership).where(Membership.community_id == community.id)):
            membership.joined_at = utcnow() - timedelta(days=60)
        gold = s.scalar(
            select(Chip).where(Chip.community_id == community.id, Chip.kind == ChipKind.COMMUNITY)
        )
        assert gold is not None
        star = chips.issue_chip(s, Actor(members[0]), community.id, ChipIn(name="Star", symbol="STAR"))
        for i, member in enumerate(members):
            chips.mint(s, Actor(owner), gold.id, MintIn(amount=500, to_user_id=member.id), f"g{i}")
            chips.mint(s, Actor(members[0]), star.id, MintIn(amount=500, to_user_id=member.id), f"s{i}")
        offer = redemption.create_offer(
            s,
            Actor(members[0]),
            community.id,
            OfferIn(chip_id=star.id, title="Signed print", kind="goods", price=20, stock=STOCK),
        )
        pair = trading.create_pair(
            s, Actor(owner), community.id, PairIn(base_chip_id=gold.id, quote_chip_id=star.id)
        )
        ids = (community.id, gold.id, star.id, offer.id, pair.id, [m.id for m in members])
    community_id, gold_id, star_id, offer_id, pair_id, member_ids = ids

    errors: list[BaseException] = []
    refused: list[str] = []
    redeemed: list[int] = []
    replays: dict[str, set[int]] = {}
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def act(seed: int) -> None:
        rng = random.Random(seed)
        start.wait()
        for n in range(ROUNDS):
            me = rng.choice(member_ids)
            other = rng.choice([m for m in member_ids if m != me])
            op = rng.choice(["tip", "tip", "redeem", "order", "order", "retry"])
            key = f"t{seed}-{n}"
            try:
                with session_scope(committed_engine) as s:
                    user = s.get(User, me)
                    assert user is not None
                    actor = Actor(user)
                    if op == "tip":
                        chip = rng.choice([gold_id, star_id])
                        tipping.tip_member(
                            s, actor, community_id, other, TipIn(chip_id=chip, amount=rng.randint(1, 30)), key
                        )
                    elif op == "redeem" and me != member_ids[0]:
                        order, _ = redemption.redeem(s, actor, offer_id, RedeemIn(), key)
                        with lock:
                            redeemed.append(order.id)
                    elif op == "order":
                        side = rng.choice(["buy", "sell"])
                        trading.place_order(
                            s,
                            actor,
                            pair_id,
                            OrderIn(side=side, price=rng.randint(1, 4), amount=rng.randint(1, 25)),
                            key,
                        )
                    elif op == "retry":
                        # Everyone sends the same tip at once: it must be paid once.
                        tip = tipping.tip_member(
                            s,
                            actor,
                            community_id,
                            other,
                            TipIn(chip_id=gold_id, amount=1),
                            f"same-{me}-{other}",
                        )
                        with lock:
                            replays.setdefault(f"{me}-{other}", set()).add(tip.id)
            except DomainError as exc:
                with lock:
                    refused.append(exc.code)
            except BaseException as exc:
                with lock:
                    errors.append(exc)

    threads = [threading.Thread(target=act, args=(seed,)) for seed in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert not any(t.is_alive() for t in threads)
    assert errors == [], errors
    expected_refusals = {
        "insufficient_funds",
        "out_of_stock",
        "redemption_limit_reached",
        "daily_limit_exceeded",
    }
    assert set(refused) <= expected_refusals, set(refused)
    assert all(len(tip_ids) == 1 for tip_ids in replays.values())

    with session_scope(committed_engine) as s:
        report = ledger.check_invariants(s, community_id)
        assert report.ok, report.problems
        offer_row = s.get(RedemptionOffer, offer_id)
        assert offer_row is not None and offer_row.stock is not None and offer_row.stock >= 0
        sold = s.scalar(
            select(func.coalesce(func.sum(RedemptionOrder.quantity), 0)).where(
                RedemptionOrder.offer_id == offer_id, RedemptionOrder.status != OrderStatus.CANCELLED
            )
        )
        assert sold == STOCK - offer_row.stock
        # The operations are seeded: more members try to redeem than there is stock.
        assert sold == STOCK and len(redeemed) == STOCK
        assert refused.count("out_of_stock") >= 1
        best_bid = s.scalar(
            select(func.max(TradeOrder.price)).where(
                TradeOrder.pair_id == pair_id,
                TradeOrder.status == TradeOrderStatus.OPEN,
                TradeOrder.side == Side.BUY,
            )
        )
        best_ask = s.scalar(
            select(func.min(TradeOrder.price)).where(
                TradeOrder.pair_id == pair_id,
                TradeOrder.status == TradeOrderStatus.OPEN,
                TradeOrder.side == Side.SELL,
            )
        )
        assert best_bid is None or best_ask is None or best_bid < best_ask, "the book was left crossed"

"""Many members redeeming the last items at once: never oversold, the ledger stays whole.

Real commits through `committed_engine`, one thread and session per request.
On PostgreSQL the offer's row lock and the conditional stock UPDATE do the work;
on SQLite BEGIN IMMEDIATE serialises the writers.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import sessionmaker

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
    OrderStatus,
    RedemptionOffer,
    RedemptionOrder,
    TxKind,
    User,
)
from core.redemption import service as redemption
from core.redemption.schemas import OfferIn, RedeemIn


def _setup(
    engine: Engine, *, members: int, stock: int, limit: int | None = None
) -> tuple[int, int, list[int]]:
    """(community id, offer id, member ids): each member holds 100 of the creator's chip."""
    tag = uuid.uuid4().hex[:10]
    with sessionmaker(bind=engine, expire_on_commit=False)() as s:

        def user(n: int | str) -> User:
            return accounts.create_user(
                s,
                email=f"redeem-{tag}-{n}@example.com",
                password="correct horse battery",
                display_name=f"U{n}",
            )

        owner, creator = user("owner"), user("creator")
        community = communities.create_community(
            s, Actor(owner), CommunityIn(slug=f"redeem-{tag}", name="Race")
        )
        communities.join(s, Actor(creator), community.id, JoinIn())
        chip = Chip(
            community_id=community.id,
            kind=ChipKind.PERSONAL,
            issuer_id=creator.id,
            name="Star",
            symbol="STAR",
        )
        s.add(chip)
        s.flush()
        issuance = LedgerAccount(community_id=community.id, chip_id=chip.id, kind=AccountKind.ISSUANCE)
        s.add(issuance)
        s.flush()
        people = [user(n) for n in range(members)]
        for n, person in enumerate(people):
            communities.join(s, Actor(person), community.id, JoinIn())
            account = ledger.open_account(s, chip, person.id)
            ledger.transfer(
                s,
                community_id=community.id,
                chip_id=chip.id,
                source=issuance.id,
                target=account.id,
                amount=100,
                key=f"race-fund-{tag}-{n}",
                kind=TxKind.MINT,
            )
        offer = redemption.create_offer(
            s,
            Actor(creator),
            community.id,
            OfferIn(
                chip_id=chip.id,
                title="Last posters",
                kind="goods",
                price=40,
                stock=stock,
                per_member_limit=limit,
            ),
        )
        s.commit()
        return community.id, offer.id, [p.id for p in people]


def _run_at_once(calls: list[Callable[[], None]]) -> list[str]:
    """Start every call at once; returns the error codes of refused calls (other errors re-raised)."""
    barrier = threading.Barrier(len(calls))
    refused: list[str] = []
    errors: list[BaseException] = []

    def run(call: Callable[[], None]) -> None:
        barrier.wait()
        try:
            call()
        except Conflict as exc:
            refused.append(exc.code)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread is stuck (deadlock?)"
    if errors:
        raise errors[0]
    return refused


def _redeem(engine: Engine, offer_id: int, user_id: int, key: str, quantity: int = 1) -> Callable[[], None]:
    def call() -> None:
        with sessionmaker(bind=engine, expire_on_commit=False)() as s:
            user = s.get(User, user_id)
            assert user is not None
            redemption.redeem(s, Actor(user), offer_id, RedeemIn(quantity=quantity), key)
            s.commit()

    return call


def _state(engine: Engine, community_id: int, offer_id: int) -> tuple[int | None, int, int]:
    """(stock left, items in live orders, orders) after checking every ledger invariant."""
    with sessionmaker(bind=engine)() as s:
        report = ledger.check_invariants(s, community_id)
        assert report.ok, report.problems
        stock = s.scalar(select(RedemptionOffer.stock).where(RedemptionOffer.id == offer_id))
        sold = s.scalar(
            select(func.coalesce(func.sum(RedemptionOrder.quantity), 0)).where(
                RedemptionOrder.offer_id == offer_id, RedemptionOrder.status == OrderStatus.PENDING
            )
        )
        orders = s.scalar(select(func.count()).where(RedemptionOrder.offer_id == offer_id))
        return stock, int(sold or 0), int(orders or 0)


def test_sixteen_members_race_for_the_last_three_items(committed_engine: Engine) -> None:
    community_id, offer_id, people = _setup(committed_engine, members=16, stock=3)
    refused = _run_at_once([_redeem(committed_engine, offer_id, uid, "race") for uid in people])
    assert sorted(refused) == ["out_of_stock"] * 13
    assert _state(committed_engine, community_id, offer_id) == (0, 3, 3)


def test_one_member_many_requests_within_the_per_member_limit(committed_engine: Engine) -> None:
    community_id, offer_id, [uid, other] = _setup(committed_engine, members=2, stock=10, limit=2)
    calls = [_redeem(committed_engine, offer_id, uid, f"k{n}") for n in range(6)]
    calls += [_redeem(committed_engine, offer_id, uid, "retried") for _ in range(3)]  # one request, retried
    calls += [_redeem(committed_engine, offer_id, other, "o", quantity=2)]
    refused = _run_at_once(calls)
    stock, sold, orders = _state(committed_engine, community_id, offer_id)
    assert (stock, sold, orders) == (6, 4, 3)
    assert all(code in {"redemption_limit_reached", "insufficient_funds"} for code in refused)


def test_the_tasks_expire_orders_and_notify_on_committed_data(committed_engine: Engine) -> None:
    from sqlalchemy import update

    from core.db import get_engine
    from core.models import LedgerHold, Notification
    from core.redemption import tasks

    community_id, offer_id, [uid] = _setup(committed_engine, members=1, stock=1)
    _redeem(committed_engine, offer_id, uid, "task")()
    with sessionmaker(bind=committed_engine)() as s:
        order = s.scalars(select(RedemptionOrder).where(RedemptionOrder.offer_id == offer_id)).one()
        order_id = order.id
        s.execute(
            update(LedgerHold).where(LedgerHold.id == order.hold_id).values(expires_at=order.created_at)
        )
        s.commit()
    try:  # the tasks open their own sessions on the configured database (the test database)
        assert tasks.order_changed.apply(args=(order_id, "requested")).get() == 1
        assert tasks.expire_orders.apply().get() >= 1
        assert tasks.order_changed.apply(args=(order_id, "expired")).get() == 1
        assert tasks.order_changed.apply(args=(order_id, "expired")).get() == 0
    finally:
        get_engine().dispose()
    assert _state(committed_engine, community_id, offer_id) == (1, 0, 1)
    with sessionmaker(bind=committed_engine)() as s:
        kinds = s.scalars(select(Notification.kind).where(Notification.subject_id == order_id)).all()
        assert {"redemption_requested", "redemption_expired"} <= set(kinds)

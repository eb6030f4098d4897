"""Forced interleavings on PostgreSQL: the expiry sweep against redeem and cancel, one key twice.

Each test pins the order in which two transactions take their locks: the test's own
session takes a row lock first, the unit of work under test runs in a thread until it
blocks on that lock, then the test's session carries on with a real redeem or cancel.
Before the fix the sweep held member m's account (from the previous order) while it
waited for offer B, and a redeem holding offer B then waited for m's account: a deadlock.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session, sessionmaker

from core.access import Actor
from core.db import session_scope
from core.errors import Conflict
from core.ledger import service as ledger
from core.models import Chip, LedgerHold, OrderStatus, RedemptionOrder, User
from core.redemption import repository as repo
from core.redemption import service as redemption
from core.redemption.schemas import OfferIn, RedeemIn
from tests.conftest import needs_postgres
from tests.core.trading.interleave import Background, backend_pid, wait_until_blocked_by
from tests.factories import add_member, fund, make_chip, make_community, make_user

pytestmark = needs_postgres()


@dataclass
class Shop:
    community_id: int
    chip_id: int
    member_id: int
    offers: tuple[int, int]  # A, B: the same chip, the same member redeems both


def _shop(engine: Engine) -> Shop:
    with session_scope(engine) as s:
        owner = make_user(s)
        community = make_community(s, owner)
        creator = add_member(s, community)
        member = add_member(s, community)
        chip = make_chip(s, community, creator, symbol="STAR")
        fund(s, chip, member, 1000)
        offer_a, offer_b = (
            redemption.create_offer(
                s,
                Actor(creator),
                community.id,
                OfferIn(chip_id=chip.id, title=f"Poster {n}", kind="goods", price=10, hold_seconds=3600),
            ).id
            for n in range(2)
        )
        return Shop(community.id, chip.id, member.id, (offer_a, offer_b))


def _session(engine: Engine) -> Session:
    return sessionmaker(bind=engine, expire_on_commit=False)()


def _actor(s: Session, user_id: int) -> Actor:
    user = s.get(User, user_id)
    assert user is not None
    return Actor(user)


def _redeem(engine: Engine, member_id: int, offer_id: int, key: str) -> int:
    with session_scope(engine) as s:
        order, _ = redemption.redeem(s, _actor(s, member_id), offer_id, RedeemIn(), key)
        return order.id


def _run_out(engine: Engine, *order_ids: int) -> None:
    """The orders' holds ran out (as if their time had passed)."""
    with session_scope(engine) as s:
        for order_id in order_ids:
            order = s.get(RedemptionOrder, order_id)
            assert order is not None
            s.execute(
                update(LedgerHold).where(LedgerHold.id == order.hold_id).values(expires_at=order.created_at)
            )


def _wallet(engine: Engine, shop: Shop) -> tuple[int, int]:
    """The member's (balance, held), after checking every ledger invariant."""
    with session_scope(engine) as s:
        report = ledger.check_invariants(s, shop.community_id)
        assert report.ok, report.problems
        chip = s.get(Chip, shop.chip_id)
        assert chip is not None
        account = ledger.open_account(s, chip, shop.member_id)
        return account.balance, account.held


@pytest.mark.parametrize("then", ["redeem", "cancel"])
def test_the_expiry_sweep_never_deadlocks_with_redeem_or_cancel(committed_engine: Engine, then: str) -> None:
    shop = _shop(committed_engine)
    offer_a, offer_b = shop.offers
    tag = uuid.uuid4().hex
    order_a = _redeem(committed_engine, shop.member_id, offer_a, f"a-{tag}")
    order_b = _redeem(committed_engine, shop.member_id, offer_b, f"b-{tag}")
    _run_out(committed_engine, order_a, order_b)

    with _session(committed_engine) as interactive:
        # A redeem (or cancel) on offer B got there first: it holds B's row lock ...
        repo.lock_offer(interactive, offer_b)
        pid = backend_pid(interactive)
        sweep = Background(
            lambda: redemption.expire_orders(lambda: session_scope(committed_engine), limit=10_000)
        )
        # ... the sweep expires order A (member m's account), then waits for offer B ...
        wait_until_blocked_by(committed_engine, pid)
        # ... and the redeem goes on to lock m's account: the sweep must not be holding it.
        if then == "redeem":
            redemption.redeem(
                interactive, _actor(interactive, shop.member_id), offer_b, RedeemIn(), f"c-{tag}"
            )
        else:
            redemption.cancel_order(interactive, _actor(interactive, shop.member_id), order_b)
        interactive.commit()
    expired = sweep.result()

    assert order_a in expired
    with session_scope(committed_engine) as s:
        a, b = s.get(RedemptionOrder, order_a), s.get(RedemptionOrder, order_b)
        assert a is not None and b is not None
        assert a.status == OrderStatus.EXPIRED
        # Either way B's hold had run out: a cancellation that comes later records the expiry.
        assert b.status == OrderStatus.EXPIRED
    assert (order_b in expired) == (then == "redeem")
    # 1000 chips, nothing spent; only the new order's 10 are held.
    assert _wallet(committed_engine, shop) == (1000, 10 if then == "redeem" else 0)


@pytest.mark.parametrize("same_request", [True, False])
def test_one_key_sent_twice_at_once_never_fails_with_a_500(
    committed_engine: Engine, same_request: bool
) -> None:
    shop = _shop(committed_engine)
    offer_a, offer_b = shop.offers
    key = f"twice-{uuid.uuid4().hex}"
    with _session(committed_engine) as first:
        order, created = redemption.redeem(first, _actor(first, shop.member_id), offer_a, RedeemIn(), key)
        assert created
        pid = backend_pid(first)
        retry = Background(
            lambda: _redeem(committed_engine, shop.member_id, offer_a if same_request else offer_b, key)
        )
        wait_until_blocked_by(committed_engine, pid)  # the retry waits for the first attempt
        first.commit()
    if same_request:
        assert retry.result() == order.id
    else:
        with pytest.raises(Conflict) as exc:
            retry.result()
        assert exc.value.code == "idempotency_key_reused"
    assert _wallet(committed_engine, shop) == (1000, 10)

"""Redemption: offers, orders, holds, fulfilment (burn and issuer), cancellation, expiry, retries."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import jobs
from core.access import Actor
from core.clock import utcnow
from core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from core.ledger import service as ledger
from core.models import (
    AuditLog,
    HoldStatus,
    LedgerHold,
    LedgerTransaction,
    Notification,
    OrderStatus,
    RedemptionOffer,
    RedemptionOrder,
    Settlement,
    TxKind,
)
from core.redemption import service as redemption
from core.redemption.schemas import OfferIn, OfferPatch, RedeemIn
from tests.core.redemption.conftest import Market, assert_invariants
from tests.factories import make_chip

JOB = "hearth.redemption.order_changed"


def _stock(session: Session, offer_id: int) -> int | None:
    return session.scalar(
        select(RedemptionOffer.stock)
        .where(RedemptionOffer.id == offer_id)
        .execution_options(populate_existing=True)
    )


Changes = Callable[[], list[tuple[object, ...]]]


@pytest.fixture
def changes(session: Session, recorded_jobs: list[jobs.Job]) -> Changes:
    """Order-change jobs sent (the test harness may deliver them at a savepoint) or still pending."""
    return lambda: [j.args for j in (*recorded_jobs, *jobs.pending(session)) if j.name == JOB]


def test_burn_happy_path(session: Session, market: Market, changes: Changes) -> None:
    member = market.members[0]
    offer = market.offer(session, stock=5, settlement=Settlement.BURN)
    issued_before = market.issuance(session, market.star)
    order, created = redemption.redeem(session, Actor(member), offer.id, RedeemIn(quantity=2), "k1")
    assert created and order.status == OrderStatus.PENDING and order.total == 60
    assert market.wallet(session, member, market.star) == (100, 60)
    assert _stock(session, offer.id) == 3
    assert changes() == [(order.id, "requested")]

    done = redemption.fulfil_order(session, Actor(market.creator), order.id)
    assert done.status == OrderStatus.FULFILLED and done.transaction_id is not None
    assert market.wallet(session, member, market.star) == (40, 0)
    # Burned: the chips went back to the issuance account, so the supply shrank by 60.
    assert market.issuance(session, market.star) == issued_before + 60
    assert market.wallet(session, market.creator, market.star) == (0, 0)
    tx = session.get(LedgerTransaction, done.transaction_id)
    assert tx is not None and tx.kind == TxKind.REDEEM and tx.legs == 2
    hold = session.get(LedgerHold, order.hold_id, populate_existing=True)
    assert hold is not None and hold.status == HoldStatus.POSTED
    assert changes()[-1] == (order.id, "fulfilled")
    assert_invariants(session, market.community.id)


def test_issuer_settlement_pays_the_issuer(session: Session, market: Market) -> None:
    member = market.members[1]
    offer = market.offer(session, settlement=Settlement.ISSUER, price=25, kind="call")
    order, _ = redemption.redeem(session, Actor(member), offer.id, RedeemIn(), "call-1")
    redemption.fulfil_order(session, Actor(market.creator), order.id)
    assert market.wallet(session, member, market.star) == (75, 0)
    assert market.wallet(session, market.creator, market.star) == (25, 0)
    assert_invariants(session, market.community.id)


def test_community_chip_offers_are_run_by_admins_and_burn(session: Session, market: Market) -> None:
    with pytest.raises(PermissionDenied) as exc:
        redemption.create_offer(
            session,
            Actor(market.creator),
            market.community.id,
            OfferIn(chip_id=market.gold.id, title="VIP week", kind="vip_trial", price=10),
        )
    assert exc.value.code == "not_issuer"
    with pytest.raises(InvalidInput) as bad:
        market.offer(session, market.gold, settlement=Settlement.ISSUER)
    assert bad.value.code == "invalid_settlement"
    offer = market.offer(session, market.gold, kind="vip_trial", access_ref="vip", trial_days=7, price=10)
    order, _ = redemption.redeem(session, Actor(market.members[0]), offer.id, RedeemIn(), "vip")
    # Issuer side: the admins see and fulfil the community chip's orders; a plain member does not.
    issued = redemption.issuer_orders(
        session, Actor(market.owner), market.community.id, status=None, cursor=None, limit=20
    )
    assert [o.id for o in issued.items] == [order.id]
    with pytest.raises(PermissionDenied):
        redemption.fulfil_order(session, Actor(market.members[0]), order.id)
    with pytest.raises(NotFound):
        redemption.get_order(session, Actor(market.members[1]), order.id)
    redemption.fulfil_order(session, Actor(market.owner), order.id)
    assert market.wallet(session, market.members[0], market.gold) == (90, 0)
    assert_invariants(session, market.community.id)


def test_member_cancel_returns_chips_and_stock(session: Session, market: Market) -> None:
    member = market.members[0]
    offer = market.offer(session, stock=1)
    order, _ = redemption.redeem(session, Actor(member), offer.id, RedeemIn(), "c1")
    assert _stock(session, offer.id) == 0
    cancelled = redemption.cancel_order(session, Actor(member), order.id)
    assert cancelled.status == OrderStatus.CANCELLED and cancelled.resolved_by == member.id
    assert market.wallet(session, member, market.star) == (100, 0)
    assert _stock(session, offer.id) == 1
    # Idempotent: cancelling again changes nothing; a cancelled order cannot be fulfilled.
    assert redemption.cancel_order(session, Actor(member), order.id).status == OrderStatus.CANCELLED
    assert _stock(session, offer.id) == 1
    with pytest.raises(Conflict) as exc:
        redemption.fulfil_order(session, Actor(market.creator), order.id)
    assert exc.value.code == "order_not_pending"
    hold = session.get(LedgerHold, order.hold_id, populate_existing=True)
    assert hold is not None and hold.status == HoldStatus.VOIDED
    assert_invariants(session, market.community.id)


def test_issuer_cancel_and_fulfilled_orders_stay_fulfilled(
    session: Session, market: Market, changes: Changes
) -> None:
    member = market.members[0]
    offer = market.offer(session, stock=3)
    first, _ = redemption.redeem(session, Actor(member), offer.id, RedeemIn(), "a")
    second, _ = redemption.redeem(session, Actor(member), offer.id, RedeemIn(), "b")
    redemption.cancel_order(session, Actor(market.creator), first.id)
    redemption.fulfil_order(session, Actor(market.creator), second.id)
    with pytest.raises(Conflict) as exc:
        redemption.cancel_order(session, Actor(member), second.id)
    assert exc.value.code == "order_not_pending"
    assert market.wallet(session, member, market.star) == (70, 0)
    assert _stock(session, offer.id) == 2
    changes = changes()
    assert (first.id, "cancelled") in changes and (second.id, "fulfilled") in changes
    assert_invariants(session, market.community.id)


def test_per_member_limit(session: Session, market: Market) -> None:
    member, other = market.members[0], market.members[1]
    offer = market.offer(session, per_member_limit=2, price=5)
    redemption.redeem(session, Actor(member), offer.id, RedeemIn(), "1")
    second, _ = redemption.redeem(session, Actor(member), offer.id, RedeemIn(), "2")
    with pytest.raises(Conflict) as exc:
        redemption.redeem(session, Actor(member), offer.id, RedeemIn(), "3")
    assert exc.value.code == "redemption_limit_reached"
    with pytest.raises(Conflict):
        redemption.redeem(session, Actor(other), offer.id, RedeemIn(quantity=3), "x")
    redemption.redeem(session, Actor(other), offer.id, RedeemIn(quantity=2), "y")
    # A cancelled order no longer counts.
    redemption.cancel_order(session, Actor(member), second.id)
    redemption.redeem(session, Actor(member), offer.id, RedeemIn(), "4")
    assert market.wallet(session, member, market.star) == (100, 10)
    assert_invariants(session, market.community.id)


def test_out_of_stock_changes_nothing(session: Session, market: Market) -> None:
    offer = market.offer(session, stock=2)
    redemption.redeem(session, Actor(market.members[0]), offer.id, RedeemIn(quantity=2), "all")
    orders_before = session.scalar(select(func.count()).select_from(RedemptionOrder))
    with pytest.raises(Conflict) as exc:
        redemption.redeem(session, Actor(market.members[1]), offer.id, RedeemIn(), "late")
    assert exc.value.code == "out_of_stock"
    assert _stock(session, offer.id) == 0
    assert session.scalar(select(func.count()).select_from(RedemptionOrder)) == orders_before
    assert market.wallet(session, market.members[1], market.star) == (100, 0)
    assert_invariants(session, market.community.id)


def test_not_enough_chips_changes_nothing(session: Session, market: Market) -> None:
    offer = market.offer(session, stock=5, price=70)
    with pytest.raises(Conflict) as exc:
        redemption.redeem(session, Actor(market.members[0]), offer.id, RedeemIn(quantity=2), "big")
    assert exc.value.code == "insufficient_funds"
    assert _stock(session, offer.id) == 5
    orders = select(func.count()).select_from(RedemptionOrder)
    assert session.scalar(orders.where(RedemptionOrder.community_id == market.community.id)) == 0
    assert market.wallet(session, market.members[0], market.star) == (100, 0)
    # The same key still works for a request the member can afford.
    order, created = redemption.redeem(session, Actor(market.members[0]), offer.id, RedeemIn(), "big")
    assert created and order.total == 70
    assert_invariants(session, market.community.id)


def test_inactive_offer_own_offer_and_frozen_chip_are_refused(session: Session, market: Market) -> None:
    offer = market.offer(session)
    with pytest.raises(Conflict) as own:
        redemption.redeem(session, Actor(market.creator), offer.id, RedeemIn(), "own")
    assert own.value.code == "own_offer"
    redemption.update_offer(session, Actor(market.creator), offer.id, OfferPatch(active=False))
    with pytest.raises(Conflict) as inactive:
        redemption.redeem(session, Actor(market.members[0]), offer.id, RedeemIn(), "k")
    assert inactive.value.code == "offer_inactive"
    plain = make_chip(session, market.community, market.creator, redeemable=False)
    with pytest.raises(Conflict) as not_redeemable:
        market.offer(session, plain)
    assert not_redeemable.value.code == "chip_not_redeemable"
    with pytest.raises(PermissionDenied):
        redemption.update_offer(session, Actor(market.members[0]), offer.id, OfferPatch(price=1))


def test_retry_with_the_same_key_returns_the_first_order(session: Session, market: Market) -> None:
    member = market.members[0]
    offer = market.offer(session, stock=3)
    first, created = redemption.redeem(session, Actor(member), offer.id, RedeemIn(), "same")
    again, created_again = redemption.redeem(session, Actor(member), offer.id, RedeemIn(), "same")
    assert created and not created_again and again.id == first.id
    assert _stock(session, offer.id) == 2
    assert market.wallet(session, member, market.star) == (100, 30)
    with pytest.raises(Conflict) as exc:
        redemption.redeem(session, Actor(member), offer.id, RedeemIn(quantity=2), "same")
    assert exc.value.code == "idempotency_key_reused"
    with pytest.raises(InvalidInput) as missing:
        redemption.redeem(session, Actor(member), offer.id, RedeemIn(), None)
    assert missing.value.code == "idempotency_key_required"
    # Fulfilling twice posts once.
    done = redemption.fulfil_order(session, Actor(market.creator), first.id)
    twice = redemption.fulfil_order(session, Actor(market.creator), first.id)
    assert done.transaction_id == twice.transaction_id
    assert market.wallet(session, member, market.star) == (70, 0)
    assert_invariants(session, market.community.id)


def test_hold_expiry_cancels_the_order(session: Session, market: Market, changes: Changes) -> None:
    member = market.members[0]
    offer = market.offer(session, stock=1, hold_seconds=3600)
    order, _ = redemption.redeem(session, Actor(member), offer.id, RedeemIn(), "exp")
    assert order.hold_expires_at is not None
    assert redemption.expire_orders(session) == []  # not yet
    later = utcnow() + timedelta(hours=2)
    assert redemption.expire_orders(session, later) == [order.id]
    assert redemption.expire_orders(session, later) == []  # idempotent
    expired = redemption.get_order(session, Actor(member), order.id)
    assert expired.status == OrderStatus.EXPIRED
    assert _stock(session, offer.id) == 1
    assert market.wallet(session, member, market.star) == (100, 0)
    hold = session.get(LedgerHold, order.hold_id, populate_existing=True)
    assert hold is not None and hold.status == HoldStatus.EXPIRED
    with pytest.raises(Conflict):
        redemption.fulfil_order(session, Actor(market.creator), order.id)
    assert (order.id, "expired") in changes()
    assert_invariants(session, market.community.id)


def test_holds_expired_by_the_ledger_cancel_their_orders(session: Session, market: Market) -> None:
    member = market.members[0]
    offer = market.offer(session, stock=1, hold_seconds=60)
    order, _ = redemption.redeem(session, Actor(member), offer.id, RedeemIn(), "exp2")
    later = utcnow() + timedelta(minutes=5)
    with pytest.raises(Conflict) as exc:  # past its expiry the issuer can no longer capture it
        session.get(LedgerHold, order.hold_id).expires_at = utcnow() - timedelta(seconds=1)  # type: ignore[union-attr]
        session.flush()
        redemption.fulfil_order(session, Actor(market.creator), order.id)
    assert exc.value.code == "order_expired"
    assert ledger.expire_holds(session, later) == [order.hold_id]
    assert redemption.expire_orders(session, later) == [order.id]
    assert _stock(session, offer.id) == 1
    assert market.wallet(session, member, market.star) == (100, 0)
    assert_invariants(session, market.community.id)


def test_both_sides_see_the_order_and_are_notified(session: Session, market: Market) -> None:
    member = market.members[0]
    offer = market.offer(session, title="Poster 海報")
    order, _ = redemption.redeem(session, Actor(member), offer.id, RedeemIn(note="size M"), "n1")
    mine = redemption.my_orders(
        session, Actor(member), market.community.id, status=None, cursor=None, limit=20
    )
    issued = redemption.issuer_orders(
        session, Actor(market.creator), market.community.id, status=OrderStatus.PENDING, cursor=None, limit=20
    )
    assert [o.id for o in mine.items] == [o.id for o in issued.items] == [order.id]
    assert mine.items[0].offer_title == "Poster 海報"
    assert redemption.notify_order(session, order.id, "requested") == 1
    assert redemption.notify_order(session, order.id, "requested") == 0  # the job may run twice
    redemption.fulfil_order(session, Actor(market.creator), order.id)
    assert redemption.notify_order(session, order.id, "fulfilled") == 1
    rows = session.scalars(select(Notification).where(Notification.subject_id == order.id)).all()
    by_kind = {n.kind: n for n in rows if n.subject_type == "redemption_order"}
    assert by_kind["redemption_requested"].user_id == market.creator.id
    assert by_kind["redemption_fulfilled"].user_id == member.id
    text = by_kind["redemption_fulfilled"].data["text"]
    assert set(text) == {"en", "zh-TW", "zh-CN"} and "Poster 海報" in text["zh-TW"]
    actions = set(session.scalars(select(AuditLog.action).where(AuditLog.target_type == "redemption_orders")))
    assert {"redemption.redeemed", "redemption.fulfilled"} <= actions


def test_offer_listing_and_patch(session: Session, market: Market) -> None:
    offer = market.offer(session, stock=3)
    other = market.offer(session, market.gold, title="Portfolio review", kind="service", access_ref="zoom")
    page = redemption.list_offers(
        session,
        Actor(market.members[0]),
        market.community.id,
        chip_id=None,
        active=True,
        cursor=None,
        limit=20,
    )
    assert {o.id for o in page.items} == {offer.id, other.id}
    patched = redemption.update_offer(
        session, Actor(market.creator), offer.id, OfferPatch(stock=None, price=12, per_member_limit=1)
    )
    assert (patched.stock, patched.price, patched.per_member_limit) == (None, 12, 1)
    with pytest.raises(InvalidInput):
        redemption.update_offer(session, Actor(market.creator), offer.id, OfferPatch(price=None))


@pytest.mark.parametrize("ledger_swept", [False, True], ids=["hold-ran-out", "hold-expired-by-ledger"])
def test_cancelling_an_order_whose_hold_ran_out_records_it_as_expired(
    session: Session, market: Market, changes: Changes, ledger_swept: bool
) -> None:
    member = market.members[0]
    offer = market.offer(session, stock=1, hold_seconds=60)
    order, _ = redemption.redeem(session, Actor(member), offer.id, RedeemIn(), f"late-{ledger_swept}")
    hold = session.get(LedgerHold, order.hold_id)
    assert hold is not None
    hold.expires_at = utcnow() - timedelta(seconds=1)
    session.flush()
    if ledger_swept:
        assert ledger.expire_holds(session) == [order.hold_id]
    cancelled = redemption.cancel_order(session, Actor(member), order.id)
    assert cancelled.status == OrderStatus.EXPIRED  # what happened, not what was asked too late
    assert redemption.cancel_order(session, Actor(member), order.id).status == OrderStatus.EXPIRED
    assert session.get(LedgerHold, order.hold_id, populate_existing=True).status == HoldStatus.EXPIRED  # type: ignore[union-attr]
    assert _stock(session, offer.id) == 1
    assert market.wallet(session, member, market.star) == (100, 0)
    assert (order.id, "expired") in changes() and (order.id, "cancelled") not in changes()
    assert redemption.expire_orders(session, utcnow() + timedelta(hours=1)) == []
    assert_invariants(session, market.community.id)

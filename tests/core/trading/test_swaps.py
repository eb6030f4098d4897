"""Direct swap offers between two members: accept, decline, cancel, expiry."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import jobs
from core.access import Actor
from core.clock import utcnow
from core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from core.models import HoldStatus, LedgerTransaction, Notification, SwapStatus, TxKind
from core.trading import service as trading
from core.trading.schemas import SwapIn, SwapOut
from tests.core.trading.conftest import Bourse, assert_invariants
from tests.factories import make_user


def _offer(session: Session, bourse: Bourse, key: str = "s1", **fields: object) -> SwapOut:
    a, b = bourse.members[1], bourse.members[2]
    data = {
        "taker_id": b.id,
        "give_chip_id": bourse.base.id,
        "give_amount": 10,
        "want_chip_id": bourse.quote.id,
        "want_amount": 50,
        **fields,
    }
    swap, _ = trading.create_swap(session, Actor(a), bourse.community.id, SwapIn(**data), key)  # type: ignore[arg-type]
    return swap


def test_accept_settles_in_one_swap_transaction(
    session: Session, bourse: Bourse, recorded_jobs: list[jobs.Job]
) -> None:
    a, b = bourse.members[1], bourse.members[2]
    swap = _offer(session, bourse)
    assert bourse.wallet(session, a, bourse.base) == (1000, 10)
    done = trading.accept_swap(session, Actor(b), swap.id)
    assert done.status == SwapStatus.ACCEPTED
    assert bourse.wallet(session, a, bourse.base) == (990, 0)
    assert bourse.wallet(session, a, bourse.quote) == (10_050, 0)
    assert bourse.wallet(session, b, bourse.base) == (1010, 0)
    assert bourse.wallet(session, b, bourse.quote) == (9_950, 0)
    tx = session.get(LedgerTransaction, done.transaction_id)
    assert tx is not None and tx.kind == TxKind.SWAP and tx.legs == 4
    assert trading.accept_swap(session, Actor(b), swap.id).transaction_id == done.transaction_id
    changes = [j.args for j in (*recorded_jobs, *jobs.pending(session)) if j.name == trading.SWAP_CHANGED_JOB]
    assert changes == [(swap.id, "offered"), (swap.id, "accepted")]
    assert trading.notify_swap(session, swap.id, "offered") == 1
    note = session.scalar(select(Notification).where(Notification.kind == "swap_offered"))
    assert note is not None and note.user_id == b.id and "STAR" in note.data["text"]["zh-TW"]
    assert_invariants(session, bourse.community.id)


def test_decline_and_cancel_release_the_hold(session: Session, bourse: Bourse) -> None:
    a, b = bourse.members[1], bourse.members[2]
    first = _offer(session, bourse, "d")
    with pytest.raises(PermissionDenied):
        trading.decline_swap(session, Actor(a), first.id)
    assert trading.decline_swap(session, Actor(b), first.id).status == SwapStatus.DECLINED
    second = _offer(session, bourse, "c")
    with pytest.raises(PermissionDenied):
        trading.cancel_swap(session, Actor(b), second.id)
    assert trading.cancel_swap(session, Actor(a), second.id).status == SwapStatus.CANCELLED
    assert bourse.wallet(session, a, bourse.base) == (1000, 0)
    with pytest.raises(Conflict) as exc:
        trading.accept_swap(session, Actor(b), second.id)
    assert exc.value.code == "swap_not_open"
    listed = trading.list_swaps(session, Actor(b), bourse.community.id, status=None, cursor=None, limit=10)
    assert [s.id for s in listed.items] == [second.id, first.id]
    with pytest.raises(NotFound):
        trading.get_swap(session, Actor(bourse.members[3]), first.id)
    assert_invariants(session, bourse.community.id)


def test_a_taker_short_of_chips_changes_nothing(session: Session, bourse: Bourse) -> None:
    a, b = bourse.members[1], bourse.members[2]
    swap = _offer(session, bourse, want_amount=20_000)
    with pytest.raises(Conflict) as exc:
        trading.accept_swap(session, Actor(b), swap.id)
    assert exc.value.code == "insufficient_funds"
    assert trading.get_swap(session, Actor(a), swap.id).status == SwapStatus.OPEN
    assert bourse.wallet(session, b, bourse.quote) == (10_000, 0)
    assert bourse.wallet(session, a, bourse.base) == (1000, 10)
    assert_invariants(session, bourse.community.id)


def test_expired_offers_release_the_hold(session: Session, bourse: Bourse) -> None:
    a, b = bourse.members[1], bourse.members[2]
    swap = _offer(session, bourse, expires_in_seconds=600)
    assert trading.expire_swaps(session) == []
    later = utcnow() + timedelta(hours=1)
    assert trading.expire_swaps(session, later) == [swap.id]
    assert trading.expire_swaps(session, later) == []
    assert bourse.wallet(session, a, bourse.base) == (1000, 0)
    with pytest.raises(Conflict):
        trading.accept_swap(session, Actor(b), swap.id)
    assert_invariants(session, bourse.community.id)


def test_swap_offers_are_validated_and_idempotent(session: Session, bourse: Bourse) -> None:
    a = bourse.members[1]
    first = _offer(session, bourse, "same")
    again = _offer(session, bourse, "same")
    assert again.id == first.id and bourse.wallet(session, a, bourse.base) == (1000, 10)
    with pytest.raises(Conflict):
        _offer(session, bourse, "same", give_amount=11)
    with pytest.raises(InvalidInput):
        _offer(session, bourse, "self", taker_id=a.id)
    with pytest.raises(NotFound):
        _offer(session, bourse, "outsider", taker_id=make_user(session).id)
    with pytest.raises(Conflict) as poor:
        _offer(session, bourse, "poor", give_amount=5000)
    assert poor.value.code == "insufficient_funds"
    assert bourse.wallet(session, a, bourse.base) == (1000, 10)
    assert_invariants(session, bourse.community.id)


def _run_out(session: Session, swap: SwapOut) -> None:
    """The offer's time is up, but no sweep has run yet."""
    from sqlalchemy import update

    from core.models import LedgerHold, SwapOffer

    past = utcnow() - timedelta(seconds=1)
    session.execute(update(SwapOffer).where(SwapOffer.id == swap.id).values(expires_at=past))
    session.execute(update(LedgerHold).where(LedgerHold.id == swap.hold_id).values(expires_at=past))
    session.expire_all()


@pytest.mark.parametrize("who", ["maker cancels", "taker declines", "sweep"])
def test_an_offer_past_its_time_ends_expired_whoever_gets_there_first(
    session: Session, bourse: Bourse, recorded_jobs: list[jobs.Job], who: str
) -> None:
    a, b = bourse.members[1], bourse.members[2]
    swap = _offer(session, bourse, expires_in_seconds=600)
    _run_out(session, swap)

    def cancel() -> SwapOut:
        return trading.cancel_swap(session, Actor(a), swap.id)

    def decline() -> SwapOut:
        return trading.decline_swap(session, Actor(b), swap.id)

    if who == "sweep":
        assert trading.expire_swaps(session) == [swap.id]
    else:
        first = (cancel if who == "maker cancels" else decline)()
        assert first.status == SwapStatus.EXPIRED
        assert trading.expire_swaps(session) == []  # nothing left for the sweep
    # Whatever came first, a cancel or decline now returns it unchanged; it cannot be accepted.
    assert cancel().status == decline().status == SwapStatus.EXPIRED
    with pytest.raises(Conflict) as exc:
        trading.accept_swap(session, Actor(b), swap.id)
    assert exc.value.code == "swap_expired"
    assert bourse.wallet(session, a, bourse.base) == (1000, 0)
    changes = [j.args for j in (*recorded_jobs, *jobs.pending(session)) if j.name == trading.SWAP_CHANGED_JOB]
    assert changes == [(swap.id, "offered")]  # no "declined" for an offer that simply ran out
    assert_invariants(session, bourse.community.id)


def test_an_offer_whose_hold_the_ledger_expired_is_expired_too(session: Session, bourse: Bourse) -> None:
    from core.ledger import service as ledger

    a, b = bourse.members[1], bourse.members[2]
    swap = _offer(session, bourse, expires_in_seconds=600)
    assert swap.hold_id is not None
    ledger.void_hold(session, swap.hold_id, status=HoldStatus.EXPIRED)  # what the ledger's hold sweep does
    with pytest.raises(Conflict) as exc:
        trading.accept_swap(session, Actor(b), swap.id)
    assert exc.value.code == "swap_expired"
    assert trading.cancel_swap(session, Actor(a), swap.id).status == SwapStatus.EXPIRED
    assert bourse.wallet(session, a, bourse.base) == (1000, 0)
    assert_invariants(session, bourse.community.id)

"""Tipping through the service: money moves once, limits hold, refusals change nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import jobs
from core.access import Actor
from core.clock import utcnow
from core.errors import DomainError
from core.ledger import service as ledger
from core.models import LedgerTransaction, MemberReputation, Notification, Tip, TippingPolicy, TxKind
from core.tipping import service as tipping
from core.tipping.schemas import PolicyPatch, TipIn
from tests.core.tipping.helpers import (
    accounts_ok,
    age,
    balance,
    channel,
    commit_and_run,
    community_chip,
    thread,
)
from tests.factories import add_member, fund, make_chip, make_community, make_user

TIP_JOB = "hearth.tipping.tip_received"
RINGS_JOB = "hearth.tipping.detect_rings"


@pytest.fixture
def world(session: Session):  # type: ignore[no-untyped-def]
    owner = make_user(session)
    community = make_community(session, owner)
    alice, bob = add_member(session, community), add_member(session, community)
    for user in (alice, bob):
        age(session, community, user)
    chip = community_chip(session, community)
    fund(session, chip, alice, 1000)
    room = channel(session, owner, community)
    thread(session, alice, room, "alice is active")  # activity: her tips give reputation
    return community, owner, alice, bob, chip, room


def _code(exc: pytest.ExceptionInfo[DomainError]) -> str:
    return exc.value.code


def test_tip_a_member_moves_chips_once_and_notifies_once(
    session: Session,
    world,
    recorded_jobs: list[jobs.Job],  # type: ignore[no-untyped-def]
) -> None:
    community, _, alice, bob, chip, _ = world
    out = tipping.tip_member(
        session, Actor(alice), community.id, bob.id, TipIn(chip_id=chip.id, amount=30, note="thanks!"), "k1"
    )
    assert (out.amount, out.recipient_id, out.note) == (30, bob.id, "thanks!")
    assert balance(session, chip, alice) == 970 and balance(session, chip, bob) == 30
    tx = session.get(LedgerTransaction, out.transaction_id)
    assert tx is not None and tx.kind == TxKind.TIP and (tx.subject_type, tx.subject_id) == ("user", bob.id)
    assert tx.idempotency_key == f"tip:{alice.id}:k1"
    ran = commit_and_run(session, recorded_jobs, TIP_JOB, RINGS_JOB)
    assert [j.name for j in ran] == [TIP_JOB]  # ring detection is the beat sweep's, not the tip's
    # The task again (a redelivery) adds nothing.
    assert tipping_notify_again(session, out.id) == 0
    notes = session.scalars(select(Notification).where(Notification.user_id == bob.id)).all()
    assert len(notes) == 1 and notes[0].kind == "tip_received" and notes[0].subject_id == out.id
    assert "tipped you 30" in notes[0].data["text"]["en"] and "打賞" in notes[0].data["text"]["zh-TW"]
    accounts_ok(session)


def tipping_notify_again(session: Session, tip_id: int) -> int:
    from core.notifications import service as notifications

    return notifications.tip_received(session, tip_id)


def test_tip_a_post_pays_its_author(session: Session, world) -> None:  # type: ignore[no-untyped-def]
    _, _, alice, bob, chip, room = world
    _, post_id = thread(session, bob, room, "bob's post")
    out = tipping.tip_post(session, Actor(alice), post_id, TipIn(chip_id=chip.id, amount=5), "p1")
    assert out.recipient_id == bob.id and out.post_id == post_id
    tx = session.get(LedgerTransaction, out.transaction_id)
    assert tx is not None and (tx.subject_type, tx.subject_id) == ("post", post_id)
    assert balance(session, chip, bob) == 5


def test_retry_returns_the_same_tip_and_a_different_request_is_409(session: Session, world) -> None:  # type: ignore[no-untyped-def]
    community, _, alice, bob, chip, _ = world
    data = TipIn(chip_id=chip.id, amount=10)
    first = tipping.tip_member(session, Actor(alice), community.id, bob.id, data, "same")
    again = tipping.tip_member(session, Actor(alice), community.id, bob.id, data, "same")
    assert again.id == first.id and balance(session, chip, alice) == 990
    with pytest.raises(DomainError) as exc:
        tipping.tip_member(
            session, Actor(alice), community.id, bob.id, TipIn(chip_id=chip.id, amount=11), "same"
        )
    assert _code(exc) == "idempotency_key_reused" and exc.value.status_code == 409
    assert session.scalar(select(func.count()).select_from(Tip).where(Tip.community_id == community.id)) == 1


@pytest.mark.parametrize(
    "case",
    [
        "self",
        "not_tippable",
        "insufficient",
        "frozen_chip",
        "frozen_account",
        "other_community",
        "not_member",
    ],
)
def test_refused_tips_change_nothing(session: Session, world, case: str) -> None:  # type: ignore[no-untyped-def]
    community, _, alice, bob, chip, _ = world
    recipient, chip_id, amount = bob.id, chip.id, 10
    expected = {
        "self": "cannot_tip_self",
        "not_tippable": "chip_not_tippable",
        "insufficient": "insufficient_funds",
        "frozen_chip": "chip_frozen",
        "frozen_account": "account_frozen",
        "other_community": "chip_not_found",
        "not_member": "member_not_found",
    }[case]
    if case == "self":
        recipient = alice.id
    elif case == "not_tippable":
        plain = make_chip(session, community, alice, tippable=False)
        fund(session, plain, alice, 100)
        chip_id = plain.id
    elif case == "insufficient":
        amount = 1001
    elif case == "frozen_chip":
        chip.frozen = True
    elif case == "frozen_account":
        ledger.open_account(session, chip, bob.id).frozen = True
    elif case == "other_community":
        chip_id = make_chip(session, make_community(session)).id
    elif case == "not_member":
        recipient = make_user(session).id
    session.flush()
    before = session.scalar(select(func.count()).select_from(LedgerTransaction))
    with pytest.raises(DomainError) as exc:
        tipping.tip_member(
            session, Actor(alice), community.id, recipient, TipIn(chip_id=chip_id, amount=amount), "x"
        )
    assert _code(exc) == expected
    assert session.scalar(select(func.count()).select_from(LedgerTransaction)) == before
    assert session.scalar(select(func.count()).select_from(Tip).where(Tip.community_id == community.id)) == 0
    assert balance(session, chip, alice) == 1000


def test_new_accounts_tip_within_a_daily_limit_and_give_no_reputation(session: Session, world) -> None:  # type: ignore[no-untyped-def]
    community, owner, _, bob, chip, _ = world
    newbie = add_member(session, community)
    fund(session, chip, newbie, 500)
    tipping.update_policy(session, Actor(owner), community.id, PolicyPatch(new_account_daily_limit=40))
    out = tipping.tip_member(
        session, Actor(newbie), community.id, bob.id, TipIn(chip_id=chip.id, amount=30), "n1"
    )
    assert out.reputation_points == 0
    with pytest.raises(DomainError) as exc:
        tipping.tip_member(
            session, Actor(newbie), community.id, bob.id, TipIn(chip_id=chip.id, amount=11), "n2"
        )
    assert _code(exc) == "new_account_tip_limit" and exc.value.status_code == 409
    tipping.tip_member(session, Actor(newbie), community.id, bob.id, TipIn(chip_id=chip.id, amount=10), "n3")
    assert balance(session, chip, newbie) == 460
    # Once old enough, the limit no longer applies.
    age(session, community, newbie, 8)
    tipping.tip_member(session, Actor(newbie), community.id, bob.id, TipIn(chip_id=chip.id, amount=100), "n4")


def test_reputation_diminishes_for_repeated_tips_and_is_capped_per_day(session: Session, world) -> None:  # type: ignore[no-untyped-def]
    community, owner, alice, bob, chip, _ = world
    tipping.update_policy(
        session, Actor(owner), community.id, PolicyPatch(reputation_max_per_tip=16, reputation_daily_cap=40)
    )
    points = [
        tipping.tip_member(
            session, Actor(alice), community.id, bob.id, TipIn(chip_id=chip.id, amount=50), f"r{i}"
        ).reputation_points
        for i in range(4)
    ]
    assert points == [16, 8, 4, 2]
    rep = tipping.get_reputation(session, Actor(bob), community.id, bob.id)
    assert (rep.points, rep.tips_received) == (30, 4)
    # Another recipient starts at full value again, up to the tipper's daily cap (40 - 30 = 10).
    carol = add_member(session, community)
    first = tipping.tip_member(
        session, Actor(alice), community.id, carol.id, TipIn(chip_id=chip.id, amount=50), "c1"
    )
    assert first.reputation_points == 10
    # Tips older than the window no longer diminish.
    for tip in session.scalars(select(Tip).where(Tip.recipient_id == bob.id)):
        tip.created_at = utcnow() - timedelta(days=2)
    session.flush()
    later = tipping.tip_member(
        session, Actor(alice), community.id, bob.id, TipIn(chip_id=chip.id, amount=50), "late"
    )
    assert later.reputation_points == 16
    board = tipping.leaderboard(session, Actor(bob), community.id, limit=10)
    assert [(e.user_id, e.points) for e in board] == [(bob.id, 46), (carol.id, 10)]
    # Today's cap: 10 (carol) + 16 given today, so 14 points remain; this tip is worth 8.
    assert (
        tipping.tip_member(
            session, Actor(alice), community.id, bob.id, TipIn(chip_id=chip.id, amount=50), "l2"
        ).reputation_points
        == 8
    )
    # 34 given today, 6 left: carol's second tip (worth 8) is capped to 6, then nothing.
    assert (
        tipping.tip_member(
            session, Actor(alice), community.id, carol.id, TipIn(chip_id=chip.id, amount=50), "l3"
        ).reputation_points
        == 6
    )
    assert (
        tipping.tip_member(
            session, Actor(alice), community.id, bob.id, TipIn(chip_id=chip.id, amount=50), "l4"
        ).reputation_points
        == 0
    )


def test_inactive_tippers_give_no_reputation(session: Session, world) -> None:  # type: ignore[no-untyped-def]
    community, _, _, bob, chip, _ = world
    lurker = add_member(session, community)
    age(session, community, lurker)
    fund(session, chip, lurker, 100)
    out = tipping.tip_member(
        session, Actor(lurker), community.id, bob.id, TipIn(chip_id=chip.id, amount=50), "l1"
    )
    assert out.reputation_points == 0
    assert (
        session.scalar(select(MemberReputation.tips_received).where(MemberReputation.user_id == bob.id)) == 1
    )


def test_policy_is_admin_only_and_audited(session: Session, world) -> None:  # type: ignore[no-untyped-def]
    community, owner, alice, _, _, _ = world
    with pytest.raises(DomainError) as exc:
        tipping.update_policy(session, Actor(alice), community.id, PolicyPatch(new_account_days=1))
    assert _code(exc) == "insufficient_role"
    out = tipping.update_policy(session, Actor(owner), community.id, PolicyPatch(new_account_days=1))
    assert out.new_account_days == 1 and out.ring_min_tips == 2
    assert (
        session.scalar(
            select(TippingPolicy.new_account_days).where(TippingPolicy.community_id == community.id)
        )
        == 1
    )

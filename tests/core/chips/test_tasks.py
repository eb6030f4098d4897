"""The beat tasks' work: reminders, expiry, decay, hold expiry, digests. Each runs twice."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.access import Actor
from core.chips import service as chips
from core.chips.schemas import ReasonIn, WalletFreezeIn
from core.clock import utcnow
from core.ledger import service as ledger
from core.models import (
    Chip,
    EmissionPeriod,
    Language,
    LedgerDigest,
    LedgerTransaction,
    Notification,
    TxKind,
)
from core.worker import BEAT_SCHEDULE, TASK_MODULES, celery_app
from tests.core.chips.conftest import Town, assert_books_balance, balance, circulating, mint
from tests.factories import add_member, community_chip, issue_chip, make_user


def seasonal(session: Session, town: Town, **policy: object) -> Chip:
    return issue_chip(session, town.community, town.alice, expires_at=utcnow() + timedelta(days=30), **policy)


def test_holders_are_reminded_once_in_their_language(session: Session, town: Town) -> None:
    chip = seasonal(session, town)
    reader = add_member(session, town.community, make_user(session, language=Language.ZH_TW))
    mint(session, chip, town.alice, 30, to=reader)
    mint(session, chip, town.alice, 5, to=town.bob)
    assert chip.expires_at is not None
    # Too early: nothing.
    assert chips.remind_expiring(session, chip.expires_at - timedelta(days=8)) == 0
    soon = chip.expires_at - timedelta(days=6)
    assert chips.remind_expiring(session, soon) == 2
    assert chips.remind_expiring(session, soon) == 0
    assert chips.remind_expiring(session, soon + timedelta(hours=1)) == 0
    notes = {
        n.user_id: n
        for n in session.scalars(
            select(Notification).where(
                Notification.kind == "chip_expiring", Notification.subject_id == chip.id
            )
        )
    }
    assert set(notes) == {reader.id, town.bob.id}
    zh = notes[reader.id].data
    assert zh["language"] == "zh-TW" and "到期" in zh["body"] and "30" in zh["body"]
    assert set(zh["texts"]) == {"zh-TW", "zh-CN", "en"}
    assert "筹码" in zh["texts"]["zh-CN"]["body"] and "expire" in zh["texts"]["en"]["body"]
    assert notes[town.bob.id].data["body"].startswith("Your 5 ")
    # A holder who arrives later is reminded on the next run.
    mint(session, chip, town.alice, 1, to=town.owner)
    assert chips.remind_expiring(session, soon + timedelta(hours=2)) == 1


def test_at_season_end_balances_return_to_the_issuer_once(session: Session, town: Town) -> None:
    chip = seasonal(session, town)
    mint(session, chip, town.alice, 30, to=town.bob)
    mint(session, chip, town.alice, 20)
    assert chip.expires_at is not None
    assert chips.expire_chips(session, chip.expires_at - timedelta(minutes=1)) == 0
    after = chip.expires_at + timedelta(minutes=1)
    assert chips.expire_chips(session, after) == 2
    assert chips.expire_chips(session, after) == 0
    session.refresh(chip)
    assert chip.expired
    assert (
        balance(session, chip, town.bob),
        balance(session, chip, town.alice),
        circulating(session, chip),
    ) == (
        0,
        0,
        0,
    )
    kinds = session.scalars(
        select(LedgerTransaction.kind).where(LedgerTransaction.idempotency_key.like(f"expiry:{chip.id}:%"))
    ).all()
    assert kinds == [TxKind.EXPIRY, TxKind.EXPIRY]
    assert_books_balance(session, town.community)


def test_held_and_frozen_chips_are_swept_when_released(session: Session, town: Town) -> None:
    chip = seasonal(session, town)
    mint(session, chip, town.alice, 30, to=town.bob)
    mint(session, chip, town.alice, 10)
    bob = ledger.open_account(session, chip, town.bob.id)
    hold = ledger.place_hold(session, account_id=bob.id, amount=12, key="order-1")
    chips.set_wallet_frozen(
        session, Actor(town.mod), town.community.id, town.alice.id, WalletFreezeIn(reason="x"), frozen=True
    )
    assert chip.expires_at is not None
    after = chip.expires_at + timedelta(minutes=1)
    assert chips.expire_chips(session, after) == 1
    assert (balance(session, chip, town.bob), balance(session, chip, town.alice)) == (12, 10)
    assert chips.expire_chips(session, after) == 0
    ledger.void_hold(session, hold.id)
    chips.set_wallet_frozen(
        session, Actor(town.mod), town.community.id, town.alice.id, WalletFreezeIn(reason="x"), frozen=False
    )
    assert chips.expire_chips(session, after) == 2
    assert circulating(session, chip) == 0
    assert_books_balance(session, town.community)


def test_a_frozen_chip_is_not_expired_until_thawed(session: Session, town: Town) -> None:
    chip = seasonal(session, town)
    mint(session, chip, town.alice, 5, to=town.bob)
    chips.set_chip_frozen(session, Actor(town.mod), chip.id, ReasonIn(reason="x"), frozen=True)
    assert chip.expires_at is not None
    after = chip.expires_at + timedelta(minutes=1)
    assert chips.expire_chips(session, after) == 0
    chips.set_chip_frozen(session, Actor(town.mod), chip.id, ReasonIn(reason="x"), frozen=False)
    assert chips.expire_chips(session, after) == 1


def test_decay_is_charged_once_per_month(session: Session, town: Town) -> None:
    chip = issue_chip(session, town.community, town.alice, decay_bps=250)  # 2.5% a month
    mint(session, chip, town.alice, 1000, to=town.bob)
    mint(session, chip, town.alice, 30)
    # The chip's first month is free: decay is due for whole months it existed.
    assert chips.apply_decay(session, utcnow()) == 0
    next_month = chips.period_start(EmissionPeriod.MONTH, utcnow()) + timedelta(days=40)
    assert chips.apply_decay(session, next_month) == 1  # Alice's 30 * 2.5% rounds down to nothing
    assert chips.apply_decay(session, next_month) == 0
    assert chips.apply_decay(session, next_month + timedelta(hours=3)) == 0
    assert (balance(session, chip, town.bob), balance(session, chip, town.alice)) == (975, 30)  # 30*2.5% < 1
    # The month after charges again, on the new balance.
    assert chips.apply_decay(session, next_month + timedelta(days=31)) == 1
    assert balance(session, chip, town.bob) == 951
    assert circulating(session, chip) == 981
    decays = session.scalars(
        select(LedgerTransaction).where(
            LedgerTransaction.kind == TxKind.DECAY, LedgerTransaction.community_id == town.community.id
        )
    ).all()
    assert len(decays) == 2 and all(tx.subject_id == chip.id for tx in decays)
    assert_books_balance(session, town.community)


def test_chips_without_decay_or_expiry_are_left_alone(session: Session, town: Town) -> None:
    points = community_chip(session, town.community)
    mint(session, points, town.owner, 100, to=town.bob)
    far = utcnow() + timedelta(days=400)
    assert chips.apply_decay(session, far) == 0
    assert chips.expire_chips(session, far) == 0
    assert chips.remind_expiring(session, far) == 0
    assert balance(session, points, town.bob) == 100


def test_yesterdays_digest_is_sealed_once_per_community(session: Session, town: Town) -> None:
    points = community_chip(session, town.community)
    mint(session, points, town.owner, 10, to=town.bob)
    tomorrow = utcnow() + timedelta(days=1)
    assert chips.seal_digests(session, tomorrow) >= 1
    first = session.scalar(select(LedgerDigest).where(LedgerDigest.community_id == town.community.id))
    assert first is not None and first.day == utcnow().date() and first.accounts == 2
    chips.seal_digests(session, tomorrow)
    again = session.scalars(select(LedgerDigest).where(LedgerDigest.community_id == town.community.id)).all()
    assert [d.id for d in again] == [first.id]
    assert ledger.verify_digest(session, first)


def test_the_tasks_are_registered_and_scheduled() -> None:
    assert "core.chips.tasks" in TASK_MODULES
    celery_app.loader.import_default_modules()
    names = {entry["task"] for entry in BEAT_SCHEDULE.values()}
    assert names >= {
        "hearth.chips.remind_expiring",
        "hearth.chips.expire_chips",
        "hearth.chips.apply_decay",
        "hearth.ledger.expire_holds",
        "hearth.chips.seal_digests",
    }
    assert names <= set(celery_app.tasks)
    assert celery_app.conf.beat_schedule == BEAT_SCHEDULE

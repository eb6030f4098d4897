"""The ledger service: posting, idempotency, refusals, holds, reversals, batches."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from core.clock import utcnow
from core.db import session_scope
from core.errors import Conflict, DomainError, InvalidInput, NotFound
from core.ledger import service as ledger
from core.ledger.types import Entry, HoldUse, Leg
from core.models import (
    AccountKind,
    Chip,
    Community,
    HoldStatus,
    LedgerAccount,
    LedgerHold,
    LedgerPosting,
    LedgerTransaction,
    Membership,
    TxKind,
    User,
)
from tests.conftest import IS_POSTGRES, needs_postgres
from tests.core.ledger.conftest import Book, balances
from tests.factories import add_member, make_chip, make_community, make_user


def mint(session: Session, book: Book, account: LedgerAccount, amount: int, key: str) -> int:
    return ledger.transfer(
        session,
        community_id=book.community.id,
        chip_id=account.chip_id,
        source=ledger.issuance_account(session, account.chip_id).id,
        target=account.id,
        amount=amount,
        key=key,
        kind=TxKind.MINT,
    ).transaction_id


def pay(session: Session, book: Book, a: LedgerAccount, b: LedgerAccount, amount: int, key: str) -> int:
    return ledger.transfer(
        session,
        community_id=book.community.id,
        chip_id=a.chip_id,
        source=a.id,
        target=b.id,
        amount=amount,
        key=key,
    ).transaction_id


def tx_count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(LedgerTransaction)) or 0)


def test_mint_and_transfer_move_balances_and_keep_invariants(session: Session, book: Book) -> None:
    alice, bob = (book.wallet(session, m) for m in book.members[:2])
    mint(session, book, alice, 100, "m1")
    tx = pay(session, book, alice, bob, 30, "t1")

    assert balances(session, alice, bob, book.gold_issuance) == [(70, 0), (30, 0), (-100, 0)]
    postings = session.scalars(select(LedgerPosting).where(LedgerPosting.transaction_id == tx)).all()
    assert sorted(p.amount for p in postings) == [-30, 30]
    assert {p.legs for p in postings} == {2}
    report = ledger.check_invariants(session, book.community.id)
    assert report.ok, report.problems
    assert report.transactions == 2


def test_retry_with_same_key_returns_first_result_and_moves_nothing(session: Session, book: Book) -> None:
    alice, bob = (book.wallet(session, m) for m in book.members[:2])
    mint(session, book, alice, 50, "m1")
    first = ledger.transfer(
        session,
        community_id=book.community.id,
        chip_id=book.gold.id,
        source=alice.id,
        target=bob.id,
        amount=5,
        key="k",
    )
    again = ledger.transfer(
        session,
        community_id=book.community.id,
        chip_id=book.gold.id,
        source=alice.id,
        target=bob.id,
        amount=5,
        key="k",
    )
    assert not first.replayed and again.replayed
    assert again.transaction_id == first.transaction_id
    assert balances(session, alice, bob) == [(45, 0), (5, 0)]


def test_same_key_with_a_different_request_is_refused(session: Session, book: Book) -> None:
    alice, bob = (book.wallet(session, m) for m in book.members[:2])
    mint(session, book, alice, 50, "m1")
    pay(session, book, alice, bob, 5, "k")
    with pytest.raises(Conflict) as caught:
        pay(session, book, alice, bob, 6, "k")
    assert caught.value.code == "idempotency_key_reused"
    assert balances(session, alice, bob) == [(45, 0), (5, 0)]


def test_overdraft_is_refused_and_changes_nothing(session: Session, book: Book) -> None:
    alice, bob = (book.wallet(session, m) for m in book.members[:2])
    mint(session, book, alice, 10, "m1")
    before = tx_count(session)
    with pytest.raises(Conflict) as caught:
        pay(session, book, alice, bob, 11, "t")
    assert caught.value.code == "insufficient_funds"
    assert caught.value.extra == {"account_id": alice.id}
    assert tx_count(session) == before
    assert balances(session, alice, bob) == [(10, 0), (0, 0)]
    # The session is still usable after a refusal.
    pay(session, book, alice, bob, 10, "t2")
    assert balances(session, alice, bob) == [(0, 0), (10, 0)]


@pytest.mark.parametrize(
    ("legs", "message"),
    [
        (((1, 5), (2, -4)), "sum to zero"),
        (((1, 5),), "2 to"),
        (((1, 0), (2, 0)), "non-zero"),
        (((1, 10**16), (2, -(10**16))), "within range"),
    ],
)
def test_unbalanced_or_malformed_entries_are_refused_before_the_database(
    session: Session, book: Book, legs: tuple[tuple[int, int], ...], message: str
) -> None:
    entry = Entry(
        community_id=book.community.id,
        kind=TxKind.TRANSFER,
        key="bad",
        legs=tuple(Leg(account, book.gold.id, amount) for account, amount in legs),
    )
    with pytest.raises(InvalidInput, match=message) as caught:
        ledger.post(session, entry)
    assert caught.value.code == "unbalanced_transaction"


def test_keys_and_amounts_are_validated(session: Session, book: Book) -> None:
    alice, bob = (book.wallet(session, m) for m in book.members[:2])
    with pytest.raises(InvalidInput) as caught:
        pay(session, book, alice, bob, 1, "")
    assert caught.value.code == "invalid_key"
    with pytest.raises(InvalidInput) as caught:
        pay(session, book, alice, bob, 1, "x" * 201)
    assert caught.value.code == "invalid_key"
    with pytest.raises(InvalidInput) as caught:
        pay(session, book, alice, bob, 0, "k")
    assert caught.value.code == "invalid_amount"
    with pytest.raises(InvalidInput) as caught:
        pay(session, book, alice, alice, 1, "k")
    assert caught.value.code == "same_account"


def test_memo_and_subject_lengths_are_checked_before_any_write(session: Session, book: Book) -> None:
    # SQLite does not enforce the columns' lengths: the service does, the same on both backends.
    alice, bob = (book.wallet(session, m) for m in book.members[:2])
    mint(session, book, alice, 10, "memo-fund")

    def entry(key: str, **kw: object) -> Entry:
        return Entry(
            community_id=book.community.id,
            kind=TxKind.TRANSFER,
            key=key,
            legs=(Leg(alice.id, book.gold.id, -1), Leg(bob.id, book.gold.id, 1)),
            **kw,  # type: ignore[arg-type]
        )

    with pytest.raises(InvalidInput) as caught:
        ledger.post(session, entry("long-memo", memo="備" * 281))
    assert caught.value.code == "memo_too_long"
    for subject_type in ("", "x" * 33):
        with pytest.raises(InvalidInput) as caught:
            ledger.post(
                session, entry(f"subject-{len(subject_type)}", subject_type=subject_type, subject_id=1)
            )
        assert caught.value.code == "invalid_subject"
    assert (
        session.scalar(
            select(func.count())
            .select_from(LedgerTransaction)
            .where(LedgerTransaction.idempotency_key.in_(["long-memo", "subject-0", "subject-33"]))
        )
        == 0
    )
    # At the limits, both are written as given.
    ledger.post(session, entry("full-memo", memo="備" * 280, subject_type="x" * 32, subject_id=1))
    row = session.scalars(
        select(LedgerTransaction).where(LedgerTransaction.idempotency_key == "full-memo")
    ).one()
    assert (len(row.memo), row.subject_type) == (280, "x" * 32)


def test_an_account_of_another_chip_or_community_is_not_found(session: Session, book: Book) -> None:
    alice = book.wallet(session, book.members[0])
    alice_star = book.wallet(session, book.members[0], book.star)
    mint(session, book, alice, 10, "m1")
    with pytest.raises(NotFound) as caught:
        # The star account claimed as a gold leg.
        pay(session, book, alice, alice_star, 1, "t")
    assert caught.value.code == "account_not_found"
    other = make_community(session)
    foreign = make_chip(session, other)
    stranger = ledger.open_account(session, foreign, book.members[1].id)
    entry = Entry(
        community_id=book.community.id,
        kind=TxKind.TRANSFER,
        key="x",
        legs=(Leg(stranger.id, foreign.id, -1), Leg(alice.id, foreign.id, 1)),
    )
    with pytest.raises(NotFound):
        ledger.post(session, entry)
    with pytest.raises(NotFound):
        ledger.post(session, _with_legs(entry, 999_999_999))


def _with_legs(entry: Entry, missing: int) -> Entry:
    return Entry(
        community_id=entry.community_id,
        kind=entry.kind,
        key="missing",
        legs=(Leg(missing, 1, -1), Leg(missing - 1, 1, 1)),
    )


def test_frozen_account_and_chip_refuse_movement_but_not_corrections(session: Session, book: Book) -> None:
    alice, bob = (book.wallet(session, m) for m in book.members[:2])
    mint(session, book, alice, 20, "m1")
    paid = pay(session, book, alice, bob, 5, "t1")
    bob.frozen = True
    session.flush()
    with pytest.raises(Conflict) as caught:
        pay(session, book, alice, bob, 1, "t2")
    assert caught.value.code == "account_frozen"
    # A moderator's reversal still reaches the frozen wallet.
    ledger.reverse(session, paid, key="rev", actor_id=book.owner.id)
    assert balances(session, alice, bob) == [(20, 0), (0, 0)]
    bob.frozen = False
    book.gold.frozen = True
    session.flush()
    with pytest.raises(Conflict) as caught:
        pay(session, book, alice, bob, 1, "t3")
    assert caught.value.code == "chip_frozen"
    with pytest.raises(Conflict) as caught:
        ledger.place_hold(session, account_id=alice.id, amount=1, key="h")
    assert caught.value.code == "chip_frozen"
    book.gold.frozen = False
    alice.frozen = True
    session.flush()
    with pytest.raises(Conflict) as caught:
        ledger.place_hold(session, account_id=alice.id, amount=1, key="h")
    assert caught.value.code == "account_frozen"


def test_reversal_mirrors_the_original_once(session: Session, book: Book) -> None:
    alice, bob = (book.wallet(session, m) for m in book.members[:2])
    mint(session, book, alice, 20, "m1")
    paid = pay(session, book, alice, bob, 8, "t1")
    undo = ledger.reverse(session, paid, key="rev1", actor_id=book.owner.id, memo="mistake")
    assert balances(session, alice, bob) == [(20, 0), (0, 0)]
    reversal = session.get(LedgerTransaction, undo.transaction_id)
    assert reversal is not None and reversal.reverses_id == paid and reversal.memo == "mistake"
    # Retrying the same reversal replays it; a second, different reversal is refused.
    assert ledger.reverse(session, paid, key="rev1", actor_id=book.owner.id, memo="mistake").replayed
    with pytest.raises(Conflict) as caught:
        ledger.reverse(session, paid, key="rev2", actor_id=book.owner.id)
    assert caught.value.code == "already_reversed"
    with pytest.raises(Conflict) as caught:
        ledger.reverse(session, undo.transaction_id, key="rev3", actor_id=book.owner.id)
    assert caught.value.code == "reversal_not_reversible"
    with pytest.raises(NotFound):
        ledger.reverse(session, 10**12, key="rev4", actor_id=None)


def test_reversal_cannot_overdraw_a_wallet_that_spent_the_chips(session: Session, book: Book) -> None:
    alice, bob, carol = (book.wallet(session, m) for m in book.members)
    mint(session, book, alice, 10, "m1")
    paid = pay(session, book, alice, bob, 10, "t1")
    pay(session, book, bob, carol, 10, "t2")
    with pytest.raises(Conflict) as caught:
        ledger.reverse(session, paid, key="rev", actor_id=None)
    assert caught.value.code == "insufficient_funds"
    assert balances(session, alice, bob, carol) == [(0, 0), (0, 0), (10, 0)]


def test_hold_sets_chips_aside_until_captured_or_voided(session: Session, book: Book) -> None:
    alice, bob = (book.wallet(session, m) for m in book.members[:2])
    mint(session, book, alice, 100, "m1")
    hold = ledger.place_hold(session, account_id=alice.id, amount=60, key="h1", subject=("order", 7))
    assert (hold.status, hold.remaining, hold.subject_type, hold.subject_id) == (
        HoldStatus.PENDING,
        60,
        "order",
        7,
    )
    assert balances(session, alice) == [(100, 60)]
    # Only the available 40 can be spent freely.
    with pytest.raises(Conflict) as caught:
        pay(session, book, alice, bob, 41, "t1")
    assert caught.value.code == "insufficient_funds"
    # A partial capture spends held chips.
    capture = Entry(
        community_id=book.community.id,
        kind=TxKind.REDEEM,
        key="cap1",
        legs=(Leg(alice.id, book.gold.id, -25), Leg(bob.id, book.gold.id, 25)),
        holds=(HoldUse(hold.id, 25),),
    )
    ledger.post(session, capture)
    session.refresh(hold)
    assert (hold.status, hold.remaining) == (HoldStatus.PENDING, 35)
    assert balances(session, alice, bob) == [(75, 35), (25, 0)]
    # Voiding releases the rest; voiding again is a no-op.
    assert ledger.void_hold(session, hold.id).status == HoldStatus.VOIDED
    assert ledger.void_hold(session, hold.id).status == HoldStatus.VOIDED
    assert balances(session, alice) == [(75, 0)]
    # A settled hold cannot be captured.
    late = Entry(
        community_id=book.community.id,
        kind=TxKind.REDEEM,
        key="cap2",
        legs=(Leg(alice.id, book.gold.id, -1), Leg(bob.id, book.gold.id, 1)),
        holds=(HoldUse(hold.id, 1),),
    )
    with pytest.raises(Conflict) as caught:
        ledger.post(session, late)
    assert caught.value.code == "hold_not_pending"
    assert ledger.check_invariants(session, book.community.id).ok


def test_full_capture_posts_the_hold(session: Session, book: Book) -> None:
    alice, bob = (book.wallet(session, m) for m in book.members[:2])
    mint(session, book, alice, 10, "m1")
    hold = ledger.place_hold(session, account_id=alice.id, amount=10, key="h1")
    ledger.post(
        session,
        Entry(
            community_id=book.community.id,
            kind=TxKind.REDEEM,
            key="cap",
            legs=(Leg(alice.id, book.gold.id, -10), Leg(bob.id, book.gold.id, 10)),
            holds=(HoldUse(hold.id, 10),),
        ),
    )
    session.refresh(hold)
    assert (hold.status, hold.remaining, hold.resolved_at is not None) == (HoldStatus.POSTED, 0, True)
    assert balances(session, alice, bob) == [(0, 0), (10, 0)]


def test_capture_must_name_a_hold_on_an_account_it_debits(session: Session, book: Book) -> None:
    alice, bob, carol = (book.wallet(session, m) for m in book.members)
    mint(session, book, carol, 10, "m1")
    mint(session, book, alice, 10, "m2")
    hold = ledger.place_hold(session, account_id=carol.id, amount=5, key="h1")
    entry = Entry(
        community_id=book.community.id,
        kind=TxKind.REDEEM,
        key="cap",
        legs=(Leg(alice.id, book.gold.id, -5), Leg(bob.id, book.gold.id, 5)),
        holds=(HoldUse(hold.id, 5),),
    )
    with pytest.raises(Conflict) as caught:
        ledger.post(session, entry)
    assert caught.value.code == "hold_not_pending"
    with pytest.raises(InvalidInput):
        ledger.post(session, replace(entry, holds=(HoldUse(hold.id, 0),)))


def test_hold_is_idempotent_and_refuses_what_is_not_available(session: Session, book: Book) -> None:
    alice = book.wallet(session, book.members[0])
    mint(session, book, alice, 10, "m1")
    first = ledger.place_hold(session, account_id=alice.id, amount=4, key="h1")
    assert ledger.place_hold(session, account_id=alice.id, amount=4, key="h1").id == first.id
    with pytest.raises(Conflict) as caught:
        ledger.place_hold(session, account_id=alice.id, amount=5, key="h1")
    assert caught.value.code == "idempotency_key_reused"
    with pytest.raises(Conflict) as caught:
        ledger.place_hold(session, account_id=alice.id, amount=7, key="h2")
    assert caught.value.code == "insufficient_funds"
    with pytest.raises(InvalidInput):
        ledger.place_hold(session, account_id=alice.id, amount=0, key="h3")
    with pytest.raises(NotFound):
        ledger.place_hold(session, account_id=10**12, amount=1, key="h4")
    with pytest.raises(NotFound):
        ledger.void_hold(session, 10**12)
    assert balances(session, alice) == [(10, 4)]


def test_expired_holds_are_released(session: Session, book: Book) -> None:
    alice = book.wallet(session, book.members[0])
    mint(session, book, alice, 10, "m1")
    now = utcnow()
    old = ledger.place_hold(
        session, account_id=alice.id, amount=3, key="h1", expires_at=now - timedelta(minutes=1)
    )
    fresh = ledger.place_hold(
        session, account_id=alice.id, amount=2, key="h2", expires_at=now + timedelta(hours=1)
    )
    forever = ledger.place_hold(session, account_id=alice.id, amount=1, key="h3")
    assert ledger.expire_holds(session, now) == [old.id]
    assert ledger.expire_holds(session, now) == []
    assert [session.get(type(old), h.id).status for h in (old, fresh, forever)] == [  # type: ignore[union-attr]
        HoldStatus.EXPIRED,
        HoldStatus.PENDING,
        HoldStatus.PENDING,
    ]
    assert balances(session, alice) == [(10, 3)]
    assert ledger.check_invariants(session, book.community.id).ok


def test_batch_is_all_or_nothing(session: Session, book: Book) -> None:
    alice, bob, carol = (book.wallet(session, m) for m in book.members)
    mint(session, book, alice, 10, "m1")

    def entry(key: str, a: LedgerAccount, b: LedgerAccount, amount: int) -> Entry:
        return Entry(
            community_id=book.community.id,
            kind=TxKind.TRANSFER,
            key=key,
            legs=(Leg(a.id, book.gold.id, -amount), Leg(b.id, book.gold.id, amount)),
        )

    # bob may spend what alice pays him earlier in the same batch...
    done = ledger.post_batch(session, [entry("b1", alice, bob, 6), entry("b2", bob, carol, 6)])
    assert [p.replayed for p in done] == [False, False]
    assert balances(session, alice, bob, carol) == [(4, 0), (0, 0), (6, 0)]
    # ...but one overdraft refuses the whole batch.
    before = tx_count(session)
    with pytest.raises(Conflict) as caught:
        ledger.post_batch(session, [entry("b3", carol, bob, 6), entry("b4", alice, bob, 5)])
    assert caught.value.code == "insufficient_funds"
    assert tx_count(session) == before
    assert balances(session, alice, bob, carol) == [(4, 0), (0, 0), (6, 0)]
    # A retried batch replays; a batch overlapping old keys with new content is refused.
    again = ledger.post_batch(session, [entry("b1", alice, bob, 6), entry("b2", bob, carol, 6)])
    assert [p.transaction_id for p in again] == [p.transaction_id for p in done]
    assert all(p.replayed for p in again)
    with pytest.raises(Conflict) as caught:
        ledger.post_batch(session, [entry("b1", alice, bob, 6), entry("b9", alice, bob, 1)])
    assert caught.value.code == "idempotency_key_reused"
    with pytest.raises(InvalidInput):
        ledger.post_batch(session, [entry("b5", alice, bob, 1), entry("b5", alice, bob, 1)])
    assert ledger.post_batch(session, []) == []
    assert ledger.check_invariants(session, book.community.id).ok


def test_large_batch_uses_set_based_writes_and_verifies(session: Session, book: Book) -> None:
    wallets = [book.wallet(session, m) for m in book.members]
    entries = [
        Entry(
            community_id=book.community.id,
            kind=TxKind.MINT,
            key=f"airdrop-{i}",
            legs=(
                Leg(book.gold_issuance.id, book.gold.id, -(i + 1)),
                Leg(wallets[i % 3].id, book.gold.id, i + 1),
            ),
        )
        for i in range(30)
    ]
    ledger.post_batch(session, entries)
    assert sum(b for b, _ in balances(session, *wallets)) == sum(range(1, 31))
    report = ledger.check_invariants(session, book.community.id)
    assert report.ok, report.problems


def test_open_account_is_one_per_member_and_chip(session: Session, book: Book) -> None:
    first = ledger.open_account(session, book.gold, book.members[0].id)
    assert ledger.open_account(session, book.gold, book.members[0].id).id == first.id
    assert ledger.open_account(session, book.star, book.members[0].id).id != first.id


def test_invariant_audit_reports_problems(session: Session, book: Book) -> None:
    alice = book.wallet(session, book.members[0])
    mint(session, book, alice, 10, "m1")
    # Corrupt the cached balance behind the ledger's back: the audit must notice.
    session.execute(
        LedgerAccount.__table__.update().where(LedgerAccount.id == alice.id).values(balance=11, held=1)
    )
    report = ledger.check_invariants(session, book.community.id)
    assert not report.ok
    text = " ".join(report.problems)
    assert "cached balance 11 != postings 10" in text
    assert "cached held 1 != pending holds 0" in text
    assert "chain broken" in text


def test_audit_reports_an_overdraft_the_check_constraint_would_have_refused(
    session: Session, book: Book
) -> None:
    alice = book.wallet(session, book.members[0])
    # Switch the CHECK off inside this rolled-back transaction to plant what it normally refuses.
    if IS_POSTGRES:
        session.execute(text("ALTER TABLE ledger_accounts DROP CONSTRAINT ck_ledger_accounts_no_overdraft"))
    else:
        session.execute(text("PRAGMA ignore_check_constraints = ON"))
    try:
        session.execute(LedgerAccount.__table__.update().where(LedgerAccount.id == alice.id).values(held=3))
        report = ledger.check_invariants(session, book.community.id, chains=False)
    finally:
        if not IS_POSTGRES:
            session.execute(text("PRAGMA ignore_check_constraints = OFF"))
    assert f"account {alice.id}: overdrawn (balance 0, held 3)" in report.problems


def test_verifying_a_missing_account_is_not_found(session: Session) -> None:
    with pytest.raises(NotFound) as caught:
        ledger.verify_account(session, 10**12)
    assert caught.value.code == "account_not_found"


@needs_postgres()
def test_concurrent_first_use_opens_one_account(committed_engine: Engine) -> None:
    """Two first uses race: the loser's insert hits the unique key and it returns the winner's row."""
    with session_scope(committed_engine) as s:
        owner = make_user(s)
        chip = make_chip(s, make_community(s, owner))
        chip_id, owner_id = chip.id, owner.id
    winner = Session(committed_engine, expire_on_commit=False)
    chip_a = winner.get(Chip, chip_id)
    assert chip_a is not None
    first = ledger.open_account(winner, chip_a, owner_id)  # inserted, not committed yet
    result: list[int] = []

    def loser() -> None:
        with session_scope(committed_engine) as s:
            chip_b = s.get(Chip, chip_id)
            assert chip_b is not None
            result.append(ledger.open_account(s, chip_b, owner_id).id)  # waits on the unique key

    thread = threading.Thread(target=loser)
    thread.start()
    time.sleep(0.5)
    winner.commit()
    winner.close()
    thread.join(timeout=30)
    assert result == [first.id]


def test_domain_errors_carry_stable_codes() -> None:
    from core.ledger import errors

    codes = {
        errors.insufficient(1).code,
        errors.key_reused().code,
        errors.account_frozen(1).code,
        errors.chip_frozen(1).code,
        errors.account_missing(1).code,
        errors.unbalanced("x").code,
        errors.hold_unavailable(1).code,
        errors.already_reversed(1).code,
    }
    assert len(codes) == 8
    assert all(isinstance(e, DomainError) for e in (errors.insufficient(1), errors.unbalanced("x")))


def test_hold_expiry_task_releases_each_due_hold_in_its_own_unit(committed_engine: Engine) -> None:
    from core.ledger import tasks

    with session_scope(committed_engine) as s:
        owner = make_user(s)
        chip = make_chip(s, make_community(s, owner))
        account = ledger.open_account(s, chip, owner.id)
        ledger.transfer(
            s,
            community_id=chip.community_id,
            chip_id=chip.id,
            source=ledger.issuance_account(s, chip.id).id,
            target=account.id,
            amount=10,
            key=f"expiry-task-{chip.id}",
            kind=TxKind.MINT,
        )
        due = ledger.place_hold(
            s,
            account_id=account.id,
            amount=4,
            key=f"due-{chip.id}",
            expires_at=utcnow() - timedelta(seconds=1),
        )
        later = ledger.place_hold(
            s,
            account_id=account.id,
            amount=3,
            key=f"later-{chip.id}",
            expires_at=utcnow() + timedelta(hours=1),
        )
        account_id, due_id, later_id = account.id, due.id, later.id
    assert tasks.expire_holds() >= 1
    with session_scope(committed_engine) as s:
        assert ledger.expire_hold(s, due_id) is False  # already settled
        assert ledger.expire_hold(s, later_id) is False  # not due yet
        assert ledger.expire_hold(s, 10**12) is False
        statuses = [s.get(LedgerHold, h).status for h in (due_id, later_id)]  # type: ignore[union-attr]
        assert statuses == [HoldStatus.EXPIRED, HoldStatus.PENDING]
        acct = s.get(LedgerAccount, account_id)
        assert acct is not None and (acct.balance, acct.held) == (10, 3)


def test_a_batch_touching_many_wallets_updates_them_all(session: Session, book: Book) -> None:
    members = [book.members[0], book.members[1], book.members[2]]
    from tests.factories import add_member

    members += [add_member(session, book.community) for _ in range(9)]
    wallets = [book.wallet(session, m) for m in members]
    entries = [
        Entry(
            community_id=book.community.id,
            kind=TxKind.MINT,
            key=f"wide-{i}",
            legs=(Leg(book.gold_issuance.id, book.gold.id, -(i + 1)), Leg(w.id, book.gold.id, i + 1)),
        )
        for i, w in enumerate(wallets)
    ]
    ledger.post_batch(session, entries)
    assert [b for b, _ in balances(session, *wallets)] == list(range(1, 13))
    assert ledger.check_invariants(session, book.community.id).ok


@needs_postgres()
def test_a_request_racing_another_with_its_key_is_refused(committed_engine: Engine) -> None:
    """Same key, no account in common, in flight together: the later ones get a 409, not a 500.

    Sharing no account, they do not wait on each other's locks: the later ones find no
    key yet, and their insert waits on the unique key until the first commits.
    """
    with session_scope(committed_engine) as s:
        owner = make_user(s)
        community = make_community(s, owner)
        chips = [make_chip(s, community, add_member(s, community)) for _ in range(3)]
        wallets = [ledger.open_account(s, chip, owner.id).id for chip in chips]
        issuances = [ledger.issuance_account(s, chip.id).id for chip in chips]
        chip_ids, community_id = [chip.id for chip in chips], community.id
    key = f"race-key-{chip_ids[0]}"

    def entry(i: int) -> Entry:
        return Entry(
            community_id=community_id,
            kind=TxKind.MINT,
            key=key,
            legs=(Leg(issuances[i], chip_ids[i], -1), Leg(wallets[i], chip_ids[i], 1)),
        )

    first = Session(committed_engine)
    ledger.post(first, entry(0))  # holds the key, uncommitted
    outcome: list[str] = []

    def second(batch: bool) -> None:
        try:
            with session_scope(committed_engine) as s:
                # Minting to another wallet under the same key, through either write path.
                if batch:
                    ledger.post_batch(s, [entry(1)])
                else:
                    ledger.post(s, entry(2))
            outcome.append("posted")
        except Conflict as exc:
            outcome.append(exc.code)

    threads = [threading.Thread(target=second, args=(batch,)) for batch in (True, False)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(0.5)
    first.commit()
    first.close()
    for thread in threads:
        thread.join(30)
    assert outcome == ["idempotency_key_reused", "idempotency_key_reused"]
    with session_scope(committed_engine) as s:
        assert ledger.check_invariants(s, community_id).ok


@needs_postgres()
def test_a_connection_lost_mid_call_is_an_error_and_the_next_unit_reconnects(
    committed_engine: Engine,
) -> None:
    with session_scope(committed_engine) as s:
        owner = make_user(s)
        chip = make_chip(s, make_community(s, owner))
        target = ledger.open_account(s, chip, owner.id).id
        issuance = ledger.issuance_account(s, chip.id).id
        chip_id, community_id = chip.id, chip.community_id

    def mint(s: Session, key: str) -> ledger.Posted:
        return ledger.transfer(
            s, community_id=community_id, chip_id=chip_id, source=issuance, target=target, amount=1, key=key
        )

    doomed = Session(committed_engine)
    pid = doomed.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with committed_engine.connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        admin.commit()
    with pytest.raises(DBAPIError):
        mint(doomed, f"lost-{chip_id}")
    doomed.close()
    with session_scope(committed_engine) as s:
        assert not mint(s, f"lost-{chip_id}").replayed  # the lost attempt wrote nothing
    with session_scope(committed_engine) as s:
        account = s.get(LedgerAccount, target)
        assert account is not None and account.balance == 1


def add_member_to(session: Session, chip: Chip) -> User:
    from tests.factories import add_member

    community = session.get(Community, chip.community_id)
    assert community is not None
    return add_member(session, community)


def test_wallet_ids_opens_what_is_missing_and_carries_a_wallet_freeze(session: Session, book: Book) -> None:
    """The batch endpoint's wallet lookup: existing wallets by id, missing ones opened in one
    statement (a wallet-wide freeze carries over), nothing for nobody."""
    has_one, newcomer, frozen = book.members
    existing = book.wallet(session, has_one).id
    session.execute(
        update(Membership)
        .where(Membership.community_id == book.community.id, Membership.user_id == frozen.id)
        .values(wallet_frozen=True)
    )
    assert ledger.find_wallet(session, book.gold.id, newcomer.id) is None

    ids = ledger.wallet_ids(session, book.gold, [has_one.id, newcomer.id, frozen.id, newcomer.id])

    assert set(ids) == {has_one.id, newcomer.id, frozen.id}
    assert ids[has_one.id] == existing
    for user in (newcomer, frozen):
        account = session.get(LedgerAccount, ids[user.id])
        assert account is not None
        assert (account.owner_id, account.chip_id, account.kind) == (
            user.id,
            book.gold.id,
            AccountKind.MEMBER,
        )
        assert account.frozen is (user is frozen)
    # Asked again, the same accounts: nothing opened twice.
    assert ledger.wallet_ids(session, book.gold, [newcomer.id, frozen.id]) == {
        newcomer.id: ids[newcomer.id],
        frozen.id: ids[frozen.id],
    }
    assert ledger.wallet_ids(session, book.gold, []) == {}

"""Hash chains, receipts' hashes and daily digests: history that cannot be rewritten unnoticed.

To prove detection, a test switches the append-only guard off inside its own
(rolled-back) transaction, rewrites a posting, and checks that verification fails.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from core.clock import utcnow
from core.errors import Conflict
from core.ledger import chain
from core.ledger import service as ledger
from core.models import LedgerPosting, LedgerTransaction
from tests.conftest import IS_POSTGRES
from tests.core.ledger.conftest import Book
from tests.core.ledger.test_ledger import mint, pay


def _rewrite(session: Session, statement: str) -> None:
    if IS_POSTGRES:
        # Run the pending deferred checks now: a table with pending trigger events cannot be altered.
        session.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))
        session.execute(text("ALTER TABLE ledger_postings DISABLE TRIGGER ledger_postings_append_only"))
        session.execute(text(statement))
        session.execute(text("ALTER TABLE ledger_postings ENABLE TRIGGER ledger_postings_append_only"))
    else:
        session.execute(text("DROP TRIGGER IF EXISTS ledger_postings_no_update"))
        session.execute(text(statement))


def test_every_posting_extends_its_accounts_chain(session: Session, book: Book) -> None:
    alice, bob = (book.wallet(session, m) for m in book.members[:2])
    mint(session, book, alice, 50, "m1")
    for i in range(5):
        pay(session, book, alice, bob, i + 1, f"t{i}")
    rows = session.scalars(
        select(LedgerPosting).where(LedgerPosting.account_id == alice.id).order_by(LedgerPosting.seq)
    ).all()
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5, 6]
    prev = chain.GENESIS
    for row in rows:
        tx = session.get(LedgerTransaction, row.transaction_id)
        assert tx is not None
        assert row.hash == chain.posting_hash(
            prev,
            transaction_id=row.transaction_id,
            leg=row.leg,
            account_id=row.account_id,
            chip_id=row.chip_id,
            amount=row.amount,
            seq=row.seq,
            balance_after=row.balance_after,
            kind=tx.kind.value,
            created_us=chain.micros(tx.created_at),
        )
        assert ledger.previous_hash(session, alice.id, row.seq) == prev
        prev = row.hash
    session.refresh(alice)
    assert alice.head_hash == prev and alice.seq == 6
    check = ledger.verify_account(session, alice.id)
    assert check.ok and check.postings == 6 and check.head_hash == prev


def test_verification_pages_through_long_chains(session: Session, book: Book) -> None:
    alice, bob = (book.wallet(session, m) for m in book.members[:2])
    mint(session, book, alice, 50, "m1")
    for i in range(7):
        pay(session, book, alice, bob, 1, f"t{i}")
    assert ledger.verify_account(session, alice.id, page=3).ok
    assert ledger.verify_account(session, bob.id, page=7).postings == 7


def test_rewritten_amount_is_detected(session: Session, book: Book) -> None:
    alice, bob = (book.wallet(session, m) for m in book.members[:2])
    mint(session, book, alice, 50, "m1")
    pay(session, book, alice, bob, 5, "t1")
    _rewrite(session, f"UPDATE ledger_postings SET amount = 6 WHERE account_id = {bob.id} AND seq = 1")
    check = ledger.verify_account(session, bob.id)
    assert not check.ok and check.first_bad_seq == 1 and check.reason == "running balance differs"


def test_rewritten_hash_and_gap_are_detected(session: Session, book: Book) -> None:
    alice, bob = (book.wallet(session, m) for m in book.members[:2])
    mint(session, book, alice, 50, "m1")
    pay(session, book, alice, bob, 5, "t1")
    pay(session, book, alice, bob, 5, "t2")
    _rewrite(
        session, f"UPDATE ledger_postings SET hash = '{'a' * 64}' WHERE account_id = {alice.id} AND seq = 2"
    )
    assert ledger.verify_account(session, alice.id).reason == "hash differs"
    _rewrite(session, f"UPDATE ledger_postings SET seq = 7 WHERE account_id = {bob.id} AND seq = 2")
    assert ledger.verify_account(session, bob.id).reason == "gap in the chain"


def test_account_head_must_match_its_postings(session: Session, book: Book) -> None:
    alice = book.wallet(session, book.members[0])
    mint(session, book, alice, 50, "m1")
    session.execute(text(f"UPDATE ledger_accounts SET head_hash = '{'b' * 64}' WHERE id = {alice.id}"))
    check = ledger.verify_account(session, alice.id)
    assert not check.ok and check.reason == "account head differs from its postings"


def test_daily_digest_pins_history(session: Session, book: Book) -> None:
    alice, bob = (book.wallet(session, m) for m in book.members[:2])
    mint(session, book, alice, 50, "m1")
    pay(session, book, alice, bob, 5, "t1")
    today = utcnow().date()
    with pytest.raises(Conflict) as caught:
        ledger.make_digest(session, book.community.id, today)
    assert caught.value.code == "day_not_over"
    tomorrow = utcnow() + timedelta(days=1, minutes=1)
    sealed = ledger.make_digest(session, book.community.id, today, now=tomorrow)
    assert (sealed.accounts, sealed.postings) == (3, 1 + 2 + 1)  # issuance, alice, bob
    assert len(sealed.digest) == 64 and len(sealed.detail["heads"]) == 3
    assert ledger.make_digest(session, book.community.id, today, now=tomorrow).id == sealed.id
    assert ledger.verify_digest(session, sealed)
    # The day before had no postings: its digest is of nothing, and stays verifiable.
    before = ledger.make_digest(session, book.community.id, today - timedelta(days=1))
    assert before.accounts == 0 and before.digest == chain.digest([])
    # Rewriting one old posting breaks the sealed day but not the empty one.
    _rewrite(
        session, f"UPDATE ledger_postings SET hash = '{'c' * 64}' WHERE account_id = {bob.id} AND seq = 1"
    )
    assert not ledger.verify_digest(session, sealed)
    assert ledger.verify_digest(session, before)

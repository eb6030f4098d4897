"""The database refuses a broken ledger even when the service is bypassed.

Rows are written with raw SQL here, as a buggy caller would. On PostgreSQL the
zero-sum check is a deferred constraint trigger: `SET CONSTRAINTS ALL IMMEDIATE`
makes it fire now instead of at commit (the test transaction never commits).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from core.clock import utcnow
from core.db import session_scope
from core.ledger import service as ledger
from core.models import LedgerAccount, LedgerPosting, LedgerTransaction, TxKind
from tests.conftest import IS_POSTGRES
from tests.core.ledger.conftest import Book
from tests.core.ledger.test_ledger import mint
from tests.factories import make_chip, make_community, make_user

_ids = itertools.count(10**9)
_seqs = itertools.count(10**6)  # chain positions no real posting takes


def _write_raw(
    session: Session,
    book: Book,
    legs: int,
    postings: list[tuple[Any, int]],
) -> int:
    """Insert a transaction and postings directly, then force the deferred checks.

    A posting's account is anything with an `id` and a `chip_id` (a forged one too)."""
    tx_id = next(_ids)
    tx = {
        "id": tx_id,
        "community_id": book.community.id,
        "kind": "transfer",
        "legs": legs,
        "idempotency_key": f"raw-{tx_id}",
        "request_hash": "0" * 64,
        "memo": "",
        "created_at": utcnow(),
    }
    rows = [
        {
            "transaction_id": tx_id,
            "legs": legs,
            "leg": leg,
            "account_id": account.id,
            "chip_id": account.chip_id,
            "amount": amount,
            "seq": next(_seqs),
            "balance_after": 0,
            "hash": "f" * 64,
        }
        for leg, (account, amount) in enumerate(postings)
    ]
    # The order each database's writers use: on SQLite the transaction row seals postings
    # already there; on PostgreSQL postings must find their transaction (migration 0010).
    if IS_POSTGRES:
        session.execute(LedgerTransaction.__table__.insert(), [tx])
    if rows:
        session.execute(LedgerPosting.__table__.insert(), rows)
    if not IS_POSTGRES:
        session.execute(LedgerTransaction.__table__.insert(), [tx])
    if IS_POSTGRES:
        session.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))
    return tx_id


@pytest.fixture
def savepoint(session: Session) -> Iterator[None]:
    """Each refused write happens inside a savepoint so the test can go on."""
    nested = session.begin_nested()
    yield
    if nested.is_active:
        nested.rollback()


def _refused(session: Session, book: Book, legs: int, postings: list[tuple[Any, int]]) -> str:
    nested = session.begin_nested()
    try:
        with pytest.raises(DBAPIError) as caught:
            _write_raw(session, book, legs, postings)
    finally:
        nested.rollback()
    return str(caught.value.orig)


def test_unbalanced_transaction_is_refused_by_the_database(session: Session, book: Book) -> None:
    a, b = (book.wallet(session, m) for m in book.members[:2])
    message = _refused(session, book, 2, [(a, 5), (b, -4)])
    assert "balance" in message


def test_legs_on_another_communitys_accounts_are_refused(session: Session, book: Book) -> None:
    """A transaction is recorded under one community: every leg must be one of its accounts."""
    a = book.wallet(session, book.members[0])
    other = make_community(session)
    foreign_chip = make_chip(session, other)
    stranger = ledger.open_account(session, foreign_chip, book.members[1].id)
    message = _refused(session, book, 4, [(a, 5), (book.gold_issuance, -5), (stranger, 1), (stranger, -1)])
    assert "communit" in message


def test_transaction_missing_a_declared_leg_is_refused(session: Session, book: Book) -> None:
    a, b = (book.wallet(session, m) for m in book.members[:2])
    assert "postings" in _refused(session, book, 3, [(a, 5), (b, -5)])
    assert "postings" in _refused(session, book, 2, [])


def test_a_balanced_raw_transaction_is_accepted(session: Session, book: Book) -> None:
    # The control case: the same helper with balanced legs passes every check.
    a, b = (book.wallet(session, m) for m in book.members[:2])
    nested = session.begin_nested()
    _write_raw(session, book, 2, [(a, 5), (b, -5)])
    nested.rollback()


def test_no_posting_can_be_added_to_a_sealed_transaction(session: Session, book: Book) -> None:
    a, b = (book.wallet(session, m) for m in book.members[:2])
    tx = mint(session, book, a, 10, "m1")
    for leg, legs in ((2, 2), (0, 2)):
        nested = session.begin_nested()
        with pytest.raises(DBAPIError):
            session.execute(
                LedgerPosting.__table__.insert(),
                [
                    {
                        "transaction_id": tx,
                        "legs": legs,
                        "leg": leg,
                        "account_id": b.id,
                        "chip_id": b.chip_id,
                        "amount": 1,
                        "seq": 99,
                        "balance_after": 1,
                        "hash": "e" * 64,
                    }
                ],
            )
            if IS_POSTGRES:
                session.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))
        nested.rollback()


def test_an_orphan_posting_fails_at_commit(committed_engine: Engine) -> None:
    """A posting naming a transaction (or leg count) that does not exist fails at commit."""
    with session_scope(committed_engine) as session:
        owner = make_user(session)
        community = make_community(session, owner)
        chip = make_chip(session, community)
        account = ledger.open_account(session, chip, owner.id)
        tx = ledger.transfer(
            session,
            community_id=community.id,
            chip_id=chip.id,
            source=ledger.issuance_account(session, chip.id).id,
            target=account.id,
            amount=5,
            key=f"orphan-{community.id}",
            kind=TxKind.MINT,
        ).transaction_id
    row = {
        "transaction_id": tx,
        "legs": 3,
        "leg": 2,
        "account_id": account.id,
        "chip_id": chip.id,
        "amount": 1,
        "seq": 99,
        "balance_after": 6,
        "hash": "e" * 64,
    }
    with pytest.raises(DBAPIError), session_scope(committed_engine) as session:
        session.execute(LedgerPosting.__table__.insert(), [row])
    with session_scope(committed_engine) as session:
        assert ledger.check_invariants(session, community.id).ok


def test_posting_chip_must_be_its_accounts_chip(session: Session, book: Book) -> None:
    a = book.wallet(session, book.members[0])
    star = book.wallet(session, book.members[1], book.star)
    nested = session.begin_nested()
    with pytest.raises(DBAPIError):
        session.execute(
            LedgerPosting.__table__.insert(),
            [
                {
                    "transaction_id": next(_ids),
                    "legs": 2,
                    "leg": 0,
                    "account_id": a.id,
                    "chip_id": star.chip_id,
                    "amount": 1,
                    "seq": 1,
                    "balance_after": 1,
                    "hash": "e" * 64,
                }
            ],
        )
    nested.rollback()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_postings SET amount = amount + 1",
        "DELETE FROM ledger_postings",
        "UPDATE ledger_transactions SET memo = 'rewritten'",
        "DELETE FROM ledger_transactions",
    ],
)
def test_history_is_append_only(session: Session, book: Book, statement: str) -> None:
    a = book.wallet(session, book.members[0])
    mint(session, book, a, 10, "m1")
    nested = session.begin_nested()
    with pytest.raises(DBAPIError) as caught:
        session.execute(text(statement))
    nested.rollback()
    assert "append-only" in str(caught.value.orig)


def test_member_balance_can_never_go_below_zero_or_below_held(session: Session, book: Book) -> None:
    a = book.wallet(session, book.members[0])
    mint(session, book, a, 10, "m1")
    for values in ({"balance": -1}, {"held": 11}, {"held": -1}):
        nested = session.begin_nested()
        with pytest.raises(DBAPIError):
            session.execute(LedgerAccount.__table__.update().where(LedgerAccount.id == a.id).values(**values))
        nested.rollback()
    # The issuance account is the one allowed below zero: it is minus the supply.
    session.refresh(book.gold_issuance)
    assert book.gold_issuance.balance == -10
    assert ledger.check_invariants(session, book.community.id).ok


def test_a_leg_on_an_account_that_does_not_exist_is_refused(session: Session, book: Book) -> None:
    """On PostgreSQL no foreign key guards this since migration 0010: the commit-time check does."""
    a = book.wallet(session, book.members[0])
    ghost = SimpleNamespace(id=10**12, chip_id=a.chip_id)
    _refused(session, book, 2, [(a, 5), (ghost, -5)])


def test_a_leg_must_hold_its_accounts_chip(session: Session, book: Book) -> None:
    """Two legs that balance per chip, one of them naming a chip its account does not hold."""
    a, b = (book.wallet(session, m) for m in book.members[:2])
    star = book.wallet(session, book.members[1], book.star)
    a_as_star = SimpleNamespace(id=a.id, chip_id=star.chip_id)
    _refused(session, book, 4, [(a, 5), (b, -5), (a_as_star, 1), (star, -1)])


def test_an_account_with_postings_cannot_be_deleted_or_rekeyed(session: Session, book: Book) -> None:
    a, b = (book.wallet(session, m) for m in book.members[:2])
    mint(session, book, a, 10, "keep")
    table = LedgerAccount.__table__
    for statement in (
        table.delete().where(table.c.id == a.id),
        table.update().where(table.c.id == a.id).values(id=10**12),
        table.update().where(table.c.id == a.id).values(chip_id=book.star.id),
    ):
        nested = session.begin_nested()
        with pytest.raises(DBAPIError):
            session.execute(statement)
            if IS_POSTGRES:
                session.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))
        nested.rollback()
    nested = session.begin_nested()
    with pytest.raises(DBAPIError):
        # (SQLite has no TRUNCATE; an unfiltered DELETE is its equivalent.)
        session.execute(
            text("TRUNCATE ledger_accounts CASCADE" if IS_POSTGRES else "DELETE FROM ledger_accounts")
        )
    nested.rollback()
    # An account nobody posted to can go, and balance updates never trip the guard.
    nested = session.begin_nested()
    session.execute(table.update().where(table.c.id == a.id).values(seq=table.c.seq))
    assert session.execute(table.delete().where(table.c.id == b.id)).rowcount == 1  # type: ignore[attr-defined]
    nested.rollback()


@pytest.mark.parametrize(
    ("function", "settings"),
    [
        # Custom plans re-planned the run check at every COMMIT once the tables had statistics
        # (about 8% of single-transfer throughput): migration 0010 pins generic plans.
        ("hearth_check_balanced", ["jit=off", "plan_cache_mode=force_generic_plan"]),
        ("hearth_post", ["jit=off", "plan_cache_mode=force_generic_plan"]),
        ("hearth_post_many", ["jit=off", "plan_cache_mode=force_generic_plan"]),
        ("hearth_postings_have_transactions", ["jit=off"]),
    ],
)
def test_ledger_functions_plan_generically_and_never_jit_compile(
    session: Session, function: str, settings: list[str]
) -> None:
    """A generic plan's cost grows with the ledger; past `jit_above_cost` every batch's COMMIT
    spent ~15 ms compiling its check (migration 0012). The function's own settings win over
    the server's and the session's."""
    if not IS_POSTGRES:
        pytest.skip("a PostgreSQL function setting")
    config = session.scalar(text("SELECT proconfig FROM pg_proc WHERE proname = :name"), {"name": function})
    assert sorted(config or []) == settings

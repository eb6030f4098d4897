"""The batch path: all or none, in order, with the same rows and chains as one entry at a time.

On PostgreSQL a batch is written by one statement and checked at commit by one query
per run of transaction ids (migration 0008); the raw-SQL tests at the end hold that
check to the same strictness as the per-transaction one.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from core.clock import utcnow
from core.db import session_scope
from core.errors import Conflict, NotFound
from core.ledger import repository
from core.ledger import service as ledger
from core.ledger.types import Entry, HoldUse, Leg
from core.models import HoldStatus, LedgerAccount, LedgerHold, LedgerPosting, LedgerTransaction, TxKind
from tests.conftest import IS_POSTGRES, needs_postgres
from tests.core.ledger.conftest import Book, balances
from tests.core.ledger.test_ledger import mint, tx_count
from tests.factories import add_member, make_chip, make_community, make_user


def transfer(
    book: Book, key: str, source: LedgerAccount, target: LedgerAccount, amount: int, **kw: object
) -> Entry:
    return Entry(
        community_id=book.community.id,
        kind=TxKind.TRANSFER,
        key=key,
        legs=(Leg(source.id, source.chip_id, -amount), Leg(target.id, target.chip_id, amount)),
        **kw,  # type: ignore[arg-type]
    )


def heads(session: Session, *accounts: LedgerAccount) -> list[tuple[int, int, str]]:
    out = []
    for account in accounts:
        session.refresh(account)
        out.append((account.balance, account.seq, account.head_hash))
    return out


def force_commit_checks(session: Session) -> None:
    """Run the deferred commit-time checks now (the test transaction never commits)."""
    if IS_POSTGRES:
        session.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))


def test_hot_accounts_repeated_in_one_batch_chain_in_order(session: Session, book: Book) -> None:
    """Three wallets and the issuance account, each named hundreds of times in one batch."""
    wallets = [book.wallet(session, m) for m in book.members]
    entries = [
        Entry(
            community_id=book.community.id,
            kind=TxKind.MINT,
            key=f"hot-mint-{i}",
            legs=(Leg(book.gold_issuance.id, book.gold.id, -100), Leg(w.id, book.gold.id, 100)),
        )
        for i, w in enumerate(wallets)
    ]
    # A ring: every wallet pays the next one, 200 times round, so each wallet's balance
    # goes down and up within the batch and its chain grows by 400 postings.
    entries += [
        transfer(book, f"hot-{i}", wallets[i % 3], wallets[(i + 1) % 3], 1 + i % 7) for i in range(600)
    ]
    posted = ledger.post_batch(session, entries)
    force_commit_checks(session)

    assert len({p.transaction_id for p in posted}) == len(entries)
    assert [p.transaction_id for p in posted] == sorted(p.transaction_id for p in posted)
    paid = [sum(1 + i % 7 for i in range(600) if i % 3 == n) for n in range(3)]
    received = [sum(1 + i % 7 for i in range(600) if (i + 1) % 3 == n) for n in range(3)]
    assert [b for b, _ in balances(session, *wallets)] == [100 - paid[n] + received[n] for n in range(3)]
    assert [a.seq for a in wallets] == [401, 401, 401]
    for account in (*wallets, book.gold_issuance):
        check = ledger.verify_account(session, account.id)
        assert check.ok, check
    report = ledger.check_invariants(session, book.community.id)
    assert report.ok, report.problems


def test_batch_and_single_writes_continue_one_chain(session: Session, book: Book) -> None:
    """Batches and single entries interleave on the same accounts; every chain still verifies."""
    alice, bob, carol = (book.wallet(session, m) for m in book.members)
    mint(session, book, alice, 500, "same-m")
    plan = [(alice, bob, 5), (bob, carol, 3), (carol, alice, 1), (alice, carol, 7)] * 5
    for round_no in range(2):
        ledger.post_batch(
            session, [transfer(book, f"same-{round_no}-b{i}", a, b, n) for i, (a, b, n) in enumerate(plan)]
        )
        for i, (a, b, n) in enumerate(plan[:4]):
            ledger.post(session, transfer(book, f"same-{round_no}-s{i}", a, b, n))
    force_commit_checks(session)
    # Per round alice pays 25 + 35 + 5 + 7 and gets 5 + 1; bob gets 25 + 5, pays 15 + 3.
    assert balances(session, alice, bob, carol) == [(500 - 2 * 66, 0), (2 * 12, 0), (2 * 54, 0)]
    assert [seq for _, seq, _ in heads(session, alice, bob, carol)] == [1 + 2 * 18, 2 * 12, 2 * 18]
    for account in (alice, bob, carol, book.gold_issuance):
        assert ledger.verify_account(session, account.id).ok
    assert ledger.check_invariants(session, book.community.id).ok


def test_a_whole_batch_replays_and_a_changed_one_is_refused(session: Session, book: Book) -> None:
    alice, bob = (book.wallet(session, m) for m in book.members[:2])
    mint(session, book, alice, 1000, "replay-m")
    entries = [transfer(book, f"replay-{i}", alice, bob, 1 + i) for i in range(20)]
    first = ledger.post_batch(session, entries)
    state = heads(session, alice, bob)
    count = tx_count(session)

    again = ledger.post_batch(session, entries)
    assert [p.transaction_id for p in again] == [p.transaction_id for p in first]
    assert all(p.replayed for p in again) and not any(p.replayed for p in first)
    assert tx_count(session) == count and heads(session, alice, bob) == state

    # The same keys with another amount, or a batch that reuses some keys beside new ones.
    changed = [*entries[:-1], transfer(book, "replay-19", alice, bob, 999)]
    partly = [*entries[:5], transfer(book, "replay-new", alice, bob, 1)]
    for batch in (changed, partly):
        with pytest.raises(Conflict) as caught:
            ledger.post_batch(session, batch)
        assert caught.value.code == "idempotency_key_reused"
    assert tx_count(session) == count and heads(session, alice, bob) == state
    force_commit_checks(session)


def test_one_overdraft_anywhere_refuses_the_whole_batch(session: Session, book: Book) -> None:
    alice, bob, carol = (book.wallet(session, m) for m in book.members)
    mint(session, book, alice, 100, "od-m")
    state, count = heads(session, alice, bob, carol), tx_count(session)
    entries = [transfer(book, f"od-{i}", alice, bob, 1) for i in range(40)]
    entries.insert(25, transfer(book, "od-bad", carol, bob, 1))  # carol has nothing
    with pytest.raises(Conflict) as caught:
        ledger.post_batch(session, entries)
    assert caught.value.code == "insufficient_funds"
    assert caught.value.extra == {"account_id": carol.id}
    assert tx_count(session) == count and heads(session, alice, bob, carol) == state
    # Nothing was half-written: the session goes on, and the good part alone posts.
    del entries[25]
    assert len(ledger.post_batch(session, entries)) == 40
    force_commit_checks(session)
    assert balances(session, alice, bob) == [(60, 0), (40, 0)]


def test_frozen_chips_and_wallets_refuse_the_batch_but_not_corrections(session: Session, book: Book) -> None:
    alice, bob = (book.wallet(session, m) for m in book.members[:2])
    mint(session, book, alice, 100, "fz-m")
    entries = [transfer(book, f"fz-{i}", alice, bob, 1) for i in range(12)]
    count = tx_count(session)

    bob.frozen = True
    with pytest.raises(Conflict) as caught:
        ledger.post_batch(session, entries)
    assert (caught.value.code, caught.value.extra) == ("account_frozen", {"account_id": bob.id})
    book.gold.frozen = True
    with pytest.raises(Conflict) as caught:
        ledger.post_batch(session, entries)
    assert (caught.value.code, caught.value.extra) == ("chip_frozen", {"chip_id": book.gold.id})
    assert tx_count(session) == count

    corrections = [transfer(book, f"fz-c{i}", alice, bob, 1, allow_frozen=True) for i in range(12)]
    assert len(ledger.post_batch(session, corrections)) == 12
    force_commit_checks(session)
    assert balances(session, alice, bob) == [(88, 0), (12, 0)]


def test_unknown_or_foreign_accounts_refuse_the_batch(session: Session, book: Book) -> None:
    alice, bob = (book.wallet(session, m) for m in book.members[:2])
    mint(session, book, alice, 100, "fa-m")
    other = make_community(session)
    stranger = ledger.open_account(session, make_chip(session, other), book.members[1].id)
    good = [transfer(book, f"fa-{i}", alice, bob, 1) for i in range(10)]
    wrong_chip = Entry(
        community_id=book.community.id,
        kind=TxKind.TRANSFER,
        key="fa-chip",
        legs=(Leg(alice.id, book.star.id, -1), Leg(bob.id, book.star.id, 1)),
    )
    for bad, account_id in (
        (transfer(book, "fa-foreign", stranger, stranger, 1), stranger.id),
        (wrong_chip, alice.id),
        (replace_leg(transfer(book, "fa-none", alice, bob, 1), 10**12), 10**12),
    ):
        with pytest.raises(NotFound) as caught:
            ledger.post_batch(session, [*good, bad])
        assert (caught.value.code, caught.value.extra) == ("account_not_found", {"account_id": account_id})
    assert balances(session, alice, bob) == [(100, 0), (0, 0)]


def replace_leg(entry: Entry, account_id: int) -> Entry:
    first, second = entry.legs
    return Entry(
        community_id=entry.community_id,
        kind=entry.kind,
        key=entry.key,
        legs=(first, Leg(account_id, second.chip_id, second.amount)),
    )


def test_holds_are_captured_inside_a_batch(session: Session, book: Book) -> None:
    alice, bob, carol = (book.wallet(session, m) for m in book.members)
    mint(session, book, alice, 100, "hb-m")
    hold = ledger.place_hold(session, account_id=alice.id, amount=30, key="hb-hold")
    # Alice's 70 available go first; then two captures spend the held 30 (10, then 20).
    entries = [transfer(book, f"hb-{i}", alice, bob, 7) for i in range(10)]
    entries.append(transfer(book, "hb-c1", alice, carol, 10, holds=(HoldUse(hold.id, 10),)))
    entries.append(transfer(book, "hb-c2", alice, carol, 20, holds=(HoldUse(hold.id, 20),)))
    ledger.post_batch(session, entries)
    force_commit_checks(session)
    session.refresh(hold)
    assert (hold.remaining, hold.status) == (0, HoldStatus.POSTED) and hold.resolved_at is not None
    assert balances(session, alice, bob, carol) == [(0, 0), (70, 0), (30, 0)]
    assert ledger.check_invariants(session, book.community.id).ok


def test_a_capture_larger_than_the_hold_refuses_the_batch(session: Session, book: Book) -> None:
    alice, bob = (book.wallet(session, m) for m in book.members[:2])
    mint(session, book, alice, 100, "hx-m")
    hold = ledger.place_hold(session, account_id=alice.id, amount=30, key="hx-hold")
    entries = [transfer(book, f"hx-{i}", alice, bob, 1) for i in range(10)]
    entries.append(transfer(book, "hx-c", alice, bob, 20, holds=(HoldUse(hold.id, 20),)))
    entries.append(transfer(book, "hx-d", alice, bob, 20, holds=(HoldUse(hold.id, 20),)))
    with pytest.raises(Conflict) as caught:
        ledger.post_batch(session, entries)
    assert (caught.value.code, caught.value.extra) == ("hold_not_pending", {"hold_id": hold.id})
    session.refresh(hold)
    assert (hold.remaining, hold.status) == (30, HoldStatus.PENDING)
    assert balances(session, alice, bob) == [(100, 30), (0, 0)]
    # A hold partly captured stays pending with what is left.
    ledger.post_batch(session, entries[:-1])
    session.refresh(hold)
    assert (hold.remaining, hold.status, hold.resolved_at) == (10, HoldStatus.PENDING, None)
    assert balances(session, alice, bob) == [(70, 10), (30, 0)]
    # (Scoped to this test's wallet: tests that commit, such as the trading races, leave holds.)
    assert (
        session.scalar(select(func.count()).select_from(LedgerHold).where(LedgerHold.account_id == alice.id))
        == 1
    )


def test_a_reversal_in_a_batch_is_refused_when_already_reversed(session: Session, book: Book) -> None:
    alice, bob = (book.wallet(session, m) for m in book.members[:2])
    tx = mint(session, book, alice, 10, "rv-m")
    ledger.reverse(session, tx, key="rv-1", actor_id=None)
    again = Entry(
        community_id=book.community.id,
        kind=TxKind.REVERSAL,
        key="rv-2",
        legs=(Leg(alice.id, book.gold.id, -10), Leg(book.gold_issuance.id, book.gold.id, 10)),
        reverses_id=tx,
        allow_frozen=True,
    )
    with pytest.raises(Conflict) as caught:
        ledger.post_batch(session, [transfer(book, "rv-x", book.gold_issuance, bob, 1), again])
    assert (caught.value.code, caught.value.extra) == ("already_reversed", {"transaction_id": tx})


def test_memos_and_keys_with_any_characters_survive_the_array_literals(session: Session, book: Book) -> None:
    alice, bob = (book.wallet(session, m) for m in book.members[:2])
    mint(session, book, alice, 100, "chars-m")
    odd = ['quote " here', "back\\slash", "comma, {brace} NULL", "", "NULL", "籌碼 打賞 ✓", "tab\tnew\nline"]
    entries = [
        transfer(book, f"chars-{i}-{'x' * i}", alice, bob, 1, memo=memo, subject_type=memo[:32] or None)
        for i, memo in enumerate(odd * 2)
    ]
    posted = ledger.post_batch(session, entries)
    rows = {
        tx.id: tx
        for tx in session.scalars(
            select(LedgerTransaction).where(LedgerTransaction.id.in_([p.transaction_id for p in posted]))
        )
    }
    for entry, done in zip(entries, posted, strict=True):
        row = rows[done.transaction_id]
        assert (row.memo, row.subject_type, row.idempotency_key) == (
            entry.memo,
            entry.subject_type,
            entry.key,
        )
        assert row.request_hash == ledger.request_hash(entry)
    assert all(p.replayed for p in ledger.post_batch(session, entries))


@pytest.mark.parametrize(
    "values",
    [
        [],
        [""],
        ["a", "b"],
        ['x","y'],
        ['"', '"'],
        ["\\", "\\\\"],
        [None, "a", None],
        ["NULL", "{}", "a,b"],
    ],
)
def test_text_array_literal_round_trips(session: Session, values: list[str | None]) -> None:
    literal = repository._text_array(values)
    if IS_POSTGRES:
        assert session.scalar(text("SELECT CAST(:v AS text[])"), {"v": literal}) == values
    assert literal.startswith("{") and literal.endswith("}")


def _reference_request_hash(entry: Entry) -> str:
    """The definition the stored hashes were made with (json.dumps of the canonical list)."""
    canonical = [
        entry.community_id,
        entry.kind.value,
        [[leg.account_id, leg.chip_id, leg.amount] for leg in entry.legs],
        [[use.hold_id, use.amount] for use in entry.holds],
        entry.actor_id,
        entry.memo,
        entry.subject_type,
        entry.subject_id,
        entry.reverses_id,
    ]
    return hashlib.sha256(json.dumps(canonical, separators=(",", ":")).encode()).hexdigest()


_ids = st.integers(min_value=1, max_value=2**62)
_maybe_id = st.none() | _ids


@settings(max_examples=300, deadline=None)
@given(
    community=_ids,
    kind=st.sampled_from(list(TxKind)),
    legs=st.lists(st.tuples(_ids, _ids, st.integers(-(10**15), 10**15)), min_size=2, max_size=5),
    holds=st.lists(st.tuples(_ids, _ids), max_size=3),
    actor=_maybe_id,
    memo=st.text(max_size=40),
    subject_type=st.none() | st.text(max_size=12),
    subject_id=_maybe_id,
    reverses=_maybe_id,
)
def test_request_hash_is_unchanged_for_any_entry(
    community: int,
    kind: TxKind,
    legs: list[tuple[int, int, int]],
    holds: list[tuple[int, int]],
    actor: int | None,
    memo: str,
    subject_type: str | None,
    subject_id: int | None,
    reverses: int | None,
) -> None:
    """Keys already used carry hashes made the old way: a retry must still match them."""
    entry = Entry(
        community_id=community,
        kind=kind,
        key="k",
        legs=tuple(Leg(*leg) for leg in legs),
        holds=tuple(HoldUse(*use) for use in holds),
        actor_id=actor,
        memo=memo,
        subject_type=subject_type,
        subject_id=subject_id,
        reverses_id=reverses,
    )
    assert ledger.request_hash(entry) == _reference_request_hash(entry)


@needs_postgres()
def test_batches_commit_and_verify(committed_engine: Engine) -> None:
    """Real commits: two batches in one transaction (the second names its own ids) and one alone."""
    with session_scope(committed_engine) as s:
        owner = make_user(s)
        community = make_community(s, owner)
        chip = make_chip(s, community)
        wallets = [ledger.open_account(s, chip, add_member(s, community).id) for _ in range(4)]
        issuance = ledger.issuance_account(s, chip.id)
        ids = [w.id for w in wallets]
        community_id, chip_id, issuance_id = community.id, chip.id, issuance.id

    def batch(tag: str) -> list[Entry]:
        return [
            Entry(
                community_id=community_id,
                kind=TxKind.MINT,
                key=f"commit-{community_id}-{tag}-{i}",
                legs=(Leg(issuance_id, chip_id, -(i + 1)), Leg(ids[i % 4], chip_id, i + 1)),
            )
            for i in range(50)
        ]

    with session_scope(committed_engine) as s:
        ledger.post_batch(s, batch("a"))
        ledger.post_batch(s, batch("b"))
    with session_scope(committed_engine) as s:
        ledger.post_batch(s, batch("c"))
    with session_scope(committed_engine) as s:
        report = ledger.check_invariants(s, community_id)
        assert report.ok, report.problems
        assert report.transactions == 150


# --- the commit-time check on runs of transactions (PostgreSQL, raw SQL) -------------------------

_raw_ids = itertools.count(2 * 10**9)


def _raw_run(session: Session, book: Book, transactions: list[list[tuple[LedgerAccount, int]]]) -> list[int]:
    """Insert transactions with consecutive ids (legs as given) and name them as a batch."""
    ids = [next(_raw_ids) for _ in transactions]
    for tx_id, legs in zip(ids, transactions, strict=True):
        _raw_transaction(session, book, tx_id, len(legs), legs)
    session.execute(
        text("SELECT set_config('hearth.ledger_batch', :hint, true)"), {"hint": f"{ids[0]}:{ids[-1]}"}
    )
    return ids


def _raw_transaction(
    session: Session, book: Book, tx_id: int, declared: int, legs: list[tuple[Any, int]]
) -> None:
    """A transaction and its postings; a leg's account is anything with an `id` and a `chip_id`."""
    # The transaction first, as PostgreSQL's writers do (postings must find it: migration 0010).
    session.execute(
        LedgerTransaction.__table__.insert(),
        [
            {
                "id": tx_id,
                "community_id": book.community.id,
                "kind": "transfer",
                "legs": declared,
                "idempotency_key": f"raw-run-{tx_id}",
                "request_hash": "0" * 64,
                "memo": "",
                "created_at": utcnow(),
            }
        ],
    )
    if legs:
        session.execute(
            LedgerPosting.__table__.insert(),
            [
                {
                    "transaction_id": tx_id,
                    "legs": declared,
                    "leg": leg,
                    "account_id": account.id,
                    "chip_id": account.chip_id,
                    "amount": amount,
                    "seq": 10**7 + tx_id * 10 + leg,
                    "balance_after": 0,
                    "hash": "f" * 64,
                }
                for leg, (account, amount) in enumerate(legs)
            ],
        )


def _check_now(session: Session) -> str | None:
    """Fire the deferred checks inside a savepoint; the error message, or None if they pass."""
    nested = session.begin_nested()
    try:
        session.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))
    except DBAPIError as exc:
        nested.rollback()
        return str(exc.orig)
    finally:
        # Back to checking at commit, for whatever the test writes next.
        session.execute(text("SET CONSTRAINTS ALL DEFERRED"))
    nested.commit()
    return None


pg_only = pytest.mark.skipif(not IS_POSTGRES, reason="the run check is PostgreSQL's deferred trigger")


@pg_only
@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("unbalanced", "does not balance"),
        ("missing_leg", "has 1 postings but declares 2"),
        ("foreign", "another community"),
        # Since migration 0010 no foreign key stands behind these two: the run check does.
        ("ghost", "another community or chip"),
        ("chip", "another community or chip"),
    ],
)
def test_one_bad_transaction_inside_a_run_is_refused(
    session: Session, book: Book, bad: str, message: str
) -> None:
    a, b = (book.wallet(session, m) for m in book.members[:2])
    stranger = ledger.open_account(session, make_chip(session, make_community(session)), book.members[1].id)
    star = book.wallet(session, book.members[1], book.star)
    good: tuple[int, list[tuple[Any, int]]] = (2, [(a, 5), (b, -5)])
    wrong = {
        "ghost": (2, [(a, 5), (SimpleNamespace(id=10**12, chip_id=a.chip_id), -5)]),
        "chip": (4, [(a, 5), (b, -5), (SimpleNamespace(id=a.id, chip_id=star.chip_id), 1), (star, -1)]),
        "unbalanced": (2, [(a, 5), (b, -4)]),
        "missing_leg": (2, [(a, 5)]),
        "foreign": (4, [(a, 5), (b, -5), (stranger, 1), (stranger, -1)]),
    }[bad]
    run = [good] * 5 + [wrong] + [good] * 5
    nested = session.begin_nested()
    ids = [next(_raw_ids) for _ in run]
    for tx_id, (declared, legs) in zip(ids, run, strict=True):
        _raw_transaction(session, book, tx_id, declared, legs)
    session.execute(text("SELECT set_config('hearth.ledger_batch', :h, true)"), {"h": f"{ids[0]}:{ids[-1]}"})
    error = _check_now(session)
    nested.rollback()
    assert error is not None and message in error and f"transaction {ids[5]} " in error


@pg_only
def test_a_valid_run_passes_and_is_checked_once(session: Session, book: Book) -> None:
    a, b = (book.wallet(session, m) for m in book.members[:2])
    nested = session.begin_nested()
    ids = _raw_run(session, book, [[(a, 5), (b, -5)]] * 20)
    assert _check_now(session) is None
    memo = session.scalar(text("SELECT current_setting('hearth.ledger_checked', true)"))
    assert memo is not None and memo.endswith(f":{ids[0]}:{ids[-1]}")
    nested.rollback()


@pg_only
def test_a_transaction_added_in_a_gap_of_a_checked_run_is_still_checked(session: Session, book: Book) -> None:
    """The memo covers only the gap-free part of a run: an id left free can never ride on it."""
    a, b = (book.wallet(session, m) for m in book.members[:2])
    nested = session.begin_nested()
    lo = next(_raw_ids)
    for _ in range(5):
        next(_raw_ids)
    for tx_id in (lo, lo + 1, lo + 3, lo + 4):  # lo + 2 left free
        _raw_transaction(session, book, tx_id, 2, [(a, 5), (b, -5)])
    session.execute(text("SELECT set_config('hearth.ledger_batch', :h, true)"), {"h": f"{lo}:{lo + 4}"})
    assert _check_now(session) is None
    assert session.scalar(text("SELECT current_setting('hearth.ledger_checked', true)")).endswith(
        f":{lo + 3}:{lo + 4}"
    )
    _raw_transaction(session, book, lo + 2, 2, [(a, 5), (b, -4)])
    error = _check_now(session)
    nested.rollback()
    assert error is not None and f"transaction {lo + 2} does not balance" in error


@pg_only
def test_a_checked_run_rolled_back_to_a_savepoint_leaves_no_memo(session: Session, book: Book) -> None:
    """Reusing the ids of a run that was checked and then rolled back gets checked afresh."""
    a, b = (book.wallet(session, m) for m in book.members[:2])
    outer = session.begin_nested()
    inner = session.begin_nested()
    ids = _raw_run(session, book, [[(a, 5), (b, -5)]] * 3)
    assert _check_now(session) is None
    inner.rollback()
    assert session.scalar(text("SELECT current_setting('hearth.ledger_checked', true)")) in (None, "")
    for tx_id in ids:
        _raw_transaction(session, book, tx_id, 2, [(a, 5), (b, -4)])
    session.execute(text("SELECT set_config('hearth.ledger_batch', :h, true)"), {"h": f"{ids[0]}:{ids[-1]}"})
    error = _check_now(session)
    outer.rollback()
    assert error is not None and f"transaction {ids[0]} does not balance" in error


_FORGE_MEMO = "SELECT set_config('hearth.ledger_checked', replace(:m, 'X', pg_current_xact_id()::text), true)"


@pg_only
def test_a_memo_from_another_transaction_or_out_of_range_skips_nothing(session: Session, book: Book) -> None:
    a, b = (book.wallet(session, m) for m in book.members[:2])
    nested = session.begin_nested()
    tx_id = next(_raw_ids)
    _raw_transaction(session, book, tx_id, 2, [(a, 5), (b, -4)])
    # X stands for this transaction's own id.
    for memo in (f"1:{tx_id}:{tx_id}", f"X:{tx_id + 1}:{tx_id + 9}", "garbage", ""):
        session.execute(
            text(_FORGE_MEMO),
            {"m": memo},
        )
        inner = session.begin_nested()
        error = _check_now(session)
        inner.rollback()
        assert error is not None and "does not balance" in error, memo
    nested.rollback()

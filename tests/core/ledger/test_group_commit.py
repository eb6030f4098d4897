"""Group commit (`core.ledger.group`): concurrent single entries share one COMMIT, each keeps its own answer.

Most of this needs PostgreSQL (the committer exists only there). To put several entries
into one batch on purpose, a test stalls the writer: another connection locks an
account, the writer's batch waits on it, and what is submitted meanwhile queues up
and is written together once the lock is released.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from core.db import make_engine, session_factory, session_scope
from core.errors import DomainError
from core.ledger import errors as err
from core.ledger import group
from core.ledger import service as ledger
from core.ledger.types import Entry, HoldUse, Leg, Posted
from core.models import LedgerAccount, LedgerTransaction, TxKind
from tests.conftest import DATABASE_URL, IS_POSTGRES, needs_postgres
from tests.factories import add_member, make_chip, make_community, make_user

FUNDING = 1_000


@dataclass
class World:
    community_id: int
    chip_id: int
    issuance: int
    wallets: list[int]  # funded with FUNDING each
    frozen_wallet: int  # funded, then frozen
    frozen_chip_id: int  # another chip of the community, frozen
    frozen_chip_wallets: tuple[int, int]


def make_world(engine: Engine, members: int = 6) -> World:
    with session_scope(engine) as session:
        owner = make_user(session)
        community = make_community(session, owner)
        users = [owner] + [add_member(session, community) for _ in range(members)]
        chip = make_chip(session, community)
        other = make_chip(session, community, users[1])
        wallets = [ledger.open_account(session, chip, u.id).id for u in users]
        other_wallets = (
            ledger.open_account(session, other, users[1].id).id,
            ledger.open_account(session, other, users[2].id).id,
        )
        issuance = ledger.issuance_account(session, chip.id).id
        other_issuance = ledger.issuance_account(session, other.id).id
        ledger.post_batch(
            session,
            [
                Entry(
                    community_id=community.id,
                    kind=TxKind.MINT,
                    key=f"group-fund-{uuid.uuid4()}",
                    legs=(Leg(issuance, chip.id, -FUNDING), Leg(w, chip.id, FUNDING)),
                )
                for w in wallets
            ]
            + [
                Entry(
                    community_id=community.id,
                    kind=TxKind.MINT,
                    key=f"group-fund-{uuid.uuid4()}",
                    legs=(Leg(other_issuance, other.id, -FUNDING), Leg(other_wallets[0], other.id, FUNDING)),
                )
            ],
        )
        frozen = session.get(LedgerAccount, wallets[-1])
        assert frozen is not None
        frozen.frozen = True
        other.frozen = True
        return World(community.id, chip.id, issuance, wallets[:-1], wallets[-1], other.id, other_wallets)


def pay(w: World, source: int, target: int, amount: int, key: str | None = None, **kw: object) -> Entry:
    chip = kw.pop("chip_id", w.chip_id)
    return Entry(
        community_id=w.community_id,
        kind=TxKind.TRANSFER,
        key=key or f"group-{uuid.uuid4()}",
        legs=(Leg(source, chip, -amount), Leg(target, chip, amount)),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def balance(engine: Engine, account_id: int) -> int:
    with session_scope(engine) as session:
        account = session.get(LedgerAccount, account_id)
        assert account is not None
        return account.balance


def audit(engine: Engine, community_id: int) -> None:
    with session_scope(engine) as session:
        report = ledger.check_invariants(session, community_id)
        assert report.ok, report.problems


def submit(committer: group.GroupCommitter, entry: Entry) -> Future[Posted]:
    ledger.validate(entry)
    return committer.submit(entry, ledger.request_hash(entry))


def outcome(future: Future[Posted]) -> Posted | str:
    """The Posted, or the error's stable code."""
    try:
        return future.result(30)
    except DomainError as exc:
        return exc.code


@contextlib.contextmanager
def stalled(engine: Engine, account_id: int) -> Iterator[Callable[[], None]]:
    """Lock `account_id` from another connection; yields a function that waits for a blocked writer."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1 FROM ledger_accounts WHERE id = :id FOR UPDATE"), {"id": account_id})

        def writer_blocked() -> None:
            _wait_for_lock_wait(engine, "hearth_post_many")

        yield writer_blocked
        conn.rollback()


def _wait_for_lock_wait(engine: Engine, query_part: str) -> None:
    deadline = time.monotonic() + 20
    with engine.connect() as probe:
        while time.monotonic() < deadline:
            waiting = probe.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query LIKE :q AND pid <> pg_backend_pid() AND datname = current_database()"
                ),
                {"q": f"%{query_part}%"},
            )
            probe.rollback()
            if waiting:
                return
            time.sleep(0.02)
    raise AssertionError("the committer never waited on the lock")


@pytest.fixture
def committer(committed_engine: Engine) -> Iterator[group.GroupCommitter]:
    one = group.GroupCommitter(committed_engine)  # one writer: batches as the tests arrange them
    yield one
    one.stop(10)


@pytest.fixture(autouse=True)
def _stop_registry_committers(committed_engine: Engine) -> Iterator[None]:
    yield
    group.stop(committed_engine, 10)


# --- without a committer ---------------------------------------------------------------------------


def test_sqlite_and_joined_sessions_post_in_the_session(session: Session, committed_engine: Engine) -> None:
    """No committer for SQLite, nor for a session inside an outer transaction (as in these tests)."""
    owner = make_user(session)
    community = make_community(session, owner)
    other = add_member(session, community)
    chip = make_chip(session, community)
    source = ledger.open_account(session, chip, owner.id)
    target = ledger.open_account(session, chip, other.id)
    ledger.transfer(
        session,
        community_id=community.id,
        chip_id=chip.id,
        source=ledger.issuance_account(session, chip.id).id,
        target=source.id,
        amount=10,
        key=f"joined-fund-{uuid.uuid4()}",
        kind=TxKind.MINT,
    )
    key = f"joined-{uuid.uuid4()}"
    kwargs = dict(community_id=community.id, chip_id=chip.id, source=source.id, target=target.id, key=key)
    first = group.post(session, ledger.transfer_entry(amount=3, **kwargs))  # type: ignore[arg-type]
    again = group.post(session, ledger.transfer_entry(amount=3, **kwargs))  # type: ignore[arg-type]
    assert (first.replayed, again.replayed, again.transaction_id) == (False, True, first.transaction_id)
    assert session.in_transaction()  # nothing was committed behind the caller's back
    with pytest.raises(DomainError) as bad:
        group.post(session, ledger.transfer_entry(amount=0, **{**kwargs, "key": "other"}))  # type: ignore[arg-type]
    assert bad.value.code == "invalid_amount"
    with pytest.raises(DomainError) as same:
        group.post(session, ledger.transfer_entry(amount=1, **{**kwargs, "target": source.id}))  # type: ignore[arg-type]
    assert same.value.code == "same_account"
    if not IS_POSTGRES:
        assert group.committer(committed_engine) is None
        with pytest.raises(ValueError, match="PostgreSQL"):
            group.GroupCommitter(committed_engine)


# --- one batch, one answer per entry -------------------------------------------------------------------


@needs_postgres()
def test_one_batch_answers_every_entry_on_its_own(
    committed_engine: Engine, committer: group.GroupCommitter
) -> None:
    w = make_world(committed_engine)
    a, b, c, d, e, f = w.wallets
    earlier = pay(w, e, f, 5)
    with session_scope(committed_engine) as session:
        earlier_id = ledger.post(session, earlier).transaction_id
    first_key = f"group-first-{uuid.uuid4()}"
    entries = {
        "ok": pay(w, a, b, 10, first_key),
        "insufficient": pay(w, c, b, FUNDING + 1),
        "frozen_account": pay(w, w.frozen_wallet, b, 1),
        "frozen_chip": pay(w, *w.frozen_chip_wallets, 1, chip_id=w.frozen_chip_id),
        "moderator_on_frozen": pay(w, w.frozen_wallet, b, 1, allow_frozen=True),
        "wrong_chip": pay(w, a, b, 1, chip_id=w.frozen_chip_id),
        "replay_of_earlier": earlier,
        "reuse_of_earlier": pay(w, e, f, 6, earlier.key),
        "same_key_in_batch": pay(w, a, b, 10, first_key),
        "same_key_other_body": pay(w, a, c, 10, first_key),
        # Only possible because "ok" paid b first: entries see the ones before them.
        "spends_what_ok_paid": pay(w, b, d, FUNDING + 11),
        "now_b_is_empty": pay(w, b, d, 1),
    }
    blocker = pay(w, d, e, 1)
    with stalled(committed_engine, d) as writer_blocked:
        first = submit(committer, blocker)
        writer_blocked()
        futures = {name: submit(committer, entry) for name, entry in entries.items()}
    assert not outcome(first).replayed  # type: ignore[union-attr]
    got = {name: outcome(future) for name, future in futures.items()}
    assert committer.stats() == {"commits": 2, "entries": 13, "entries_per_commit": 6.5}
    ok = got["ok"]
    assert isinstance(ok, Posted) and not ok.replayed
    assert got["insufficient"] == "insufficient_funds"
    assert got["frozen_account"] == "account_frozen"
    assert got["frozen_chip"] == "chip_frozen"
    assert isinstance(got["moderator_on_frozen"], Posted)
    assert got["wrong_chip"] == "account_not_found"
    assert got["replay_of_earlier"] == Posted(earlier_id, replayed=True)
    assert got["reuse_of_earlier"] == "idempotency_key_reused"
    assert got["same_key_in_batch"] == Posted(ok.transaction_id, replayed=True)
    assert got["same_key_other_body"] == "idempotency_key_reused"
    assert isinstance(got["spends_what_ok_paid"], Posted)
    assert got["now_b_is_empty"] == "insufficient_funds"
    assert balance(committed_engine, b) == 0
    assert balance(committed_engine, d) == FUNDING + FUNDING + 11 - 1
    audit(
        committed_engine, w.community_id
    )  # hash chains included: the set-based path chains like hearth_post


@needs_postgres()
def test_a_batch_answers_as_hearth_post_would_entry_after_entry(
    committed_engine: Engine, committer: group.GroupCommitter
) -> None:
    """The same random entries, on two identical worlds: one batch versus `hearth_post` one by one."""
    worlds = [make_world(committed_engine), make_world(committed_engine)]
    rng = random.Random(3)
    plans = []
    keys = [f"k{n}" for n in range(8)]
    for n in range(60):
        source, target = rng.sample(range(7), 2)
        wrong = rng.random() < 0.1  # a wallet of another chip: account_not_found (under a fresh key)
        key = f"wrong{n}" if wrong else rng.choice(keys)
        plans.append((source, target, rng.choice([1, 50, 400, 900, 1500]), key, wrong))
    answers = []
    for w, batched in zip(worlds, (True, False), strict=True):
        run = uuid.uuid4()
        wallets = [*w.wallets, w.frozen_wallet]
        built = [
            pay(
                w,
                wallets[source],
                wallets[target] if not wrong else w.frozen_chip_wallets[0],
                amount,
                f"{run}-{key}",
            )
            for source, target, amount, key, wrong in plans
        ]
        if batched:
            with stalled(committed_engine, w.issuance) as writer_blocked:
                blocker = submit(committer, pay(w, w.issuance, w.wallets[0], 1))
                writer_blocked()
                futures = [submit(committer, e) for e in built]
            outcome(blocker)
            got = [outcome(f) for f in futures]
        else:
            with session_scope(committed_engine) as session:
                ledger.transfer(
                    session,
                    community_id=w.community_id,
                    chip_id=w.chip_id,
                    source=w.issuance,
                    target=w.wallets[0],
                    amount=1,
                    key=f"{run}-blocker",
                )
            got = []
            for e in built:
                try:
                    with session_scope(committed_engine) as session:
                        got.append(ledger.post(session, e))
                except DomainError as exc:
                    got.append(exc.code)
        ids: dict[int, int] = {}
        normalised: list[object] = []
        for answer in got:  # transaction ids differ between the worlds: compare their order of appearance
            if isinstance(answer, Posted):
                ids.setdefault(answer.transaction_id, len(ids))
                normalised.append(("posted", ids[answer.transaction_id], answer.replayed))
            else:
                normalised.append(answer)
        balances = [balance(committed_engine, x) for x in wallets]
        answers.append((normalised, balances))
        audit(committed_engine, w.community_id)
    assert answers[0] == answers[1]
    codes = {a for a in answers[0][0] if isinstance(a, str)}
    assert {"insufficient_funds", "idempotency_key_reused", "account_frozen", "account_not_found"} <= codes


@needs_postgres()
def test_entries_beyond_plain_transfers_take_hearth_post_in_the_batch(
    committed_engine: Engine, committer: group.GroupCommitter
) -> None:
    """Hold captures, reversals and an account named twice: each still gets its own answer."""
    w = make_world(committed_engine)
    a, b, c, *_ = w.wallets
    with session_scope(committed_engine) as session:
        hold_id = ledger.place_hold(session, account_id=a, amount=30, key=f"group-hold-{uuid.uuid4()}").id
        original = ledger.post(session, pay(w, b, c, 7))
    captures = Entry(
        community_id=w.community_id,
        kind=TxKind.REDEEM,
        key=f"group-capture-{uuid.uuid4()}",
        legs=(Leg(a, w.chip_id, -30), Leg(c, w.chip_id, 30)),
        holds=(HoldUse(hold_id, 30),),
    )
    reversal = Entry(
        community_id=w.community_id,
        kind=TxKind.REVERSAL,
        key=f"group-reverse-{uuid.uuid4()}",
        legs=(Leg(b, w.chip_id, 7), Leg(c, w.chip_id, -7)),
        reverses_id=original.transaction_id,
        allow_frozen=True,
    )
    twice = Entry(
        community_id=w.community_id,
        kind=TxKind.TRANSFER,
        key=f"group-twice-{uuid.uuid4()}",
        legs=(Leg(a, w.chip_id, -5), Leg(b, w.chip_id, 3), Leg(a, w.chip_id, 2)),
    )
    with stalled(committed_engine, c) as writer_blocked:
        blocker = submit(committer, pay(w, c, a, 1))
        writer_blocked()
        futures = [submit(committer, e) for e in (captures, reversal, twice, pay(w, b, a, FUNDING * 5))]
    outcome(blocker)
    got = [outcome(f) for f in futures]
    assert [type(x) for x in got[:3]] == [Posted, Posted, Posted]
    assert got[3] == "insufficient_funds"
    assert committer.stats()["commits"] == 2
    assert balance(committed_engine, a) == FUNDING - 30 - 3 + 1
    audit(committed_engine, w.community_id)


# --- the same key from many callers ----------------------------------------------------------------


@needs_postgres()
def test_one_request_from_many_threads_and_two_processes_is_written_once(committed_engine: Engine) -> None:
    w = make_world(committed_engine)
    # Two engines, two committers: as two API processes would have.
    second = make_engine(DATABASE_URL)
    committers = [group.GroupCommitter(committed_engine, writers=2), group.GroupCommitter(second, writers=2)]
    entries = [pay(w, w.wallets[n % 3], w.wallets[3 + n % 3], 1 + n) for n in range(6)]
    results: list[tuple[int, Posted | str]] = []
    start = threading.Barrier(12)

    def client(n: int) -> None:
        start.wait()
        for index, entry in enumerate(entries):
            results.append((index, outcome(submit(committers[n % 2], entry))))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for one in committers:
        one.stop(10)
    second.dispose()
    for index in range(len(entries)):
        answers = [r for i, r in results if i == index]
        assert all(isinstance(r, Posted) for r in answers), answers
        assert len({r.transaction_id for r in answers}) == 1  # type: ignore[union-attr]
        assert sum(not r.replayed for r in answers) == 1  # type: ignore[union-attr]
    assert balance(committed_engine, w.wallets[0]) == FUNDING - 1 - 4
    audit(committed_engine, w.community_id)


@needs_postgres()
def test_a_key_raced_by_another_transaction_is_refused_after_a_retry(
    committed_engine: Engine, committer: group.GroupCommitter
) -> None:
    """Another process writes the same key for other accounts: our batch hits its unique index."""
    w = make_world(committed_engine)
    a, b, c, d, *_ = w.wallets
    key = f"group-race-{uuid.uuid4()}"
    theirs, ours = pay(w, a, b, 1, key), pay(w, c, d, 1, key)
    with committed_engine.connect() as conn:
        other = Session(bind=conn)
        ledger.post(other, theirs)  # written, not committed yet
        future = submit(committer, ours)
        _wait_for_lock_wait(committed_engine, "hearth_post_many")  # on the key's index entry
        other.commit()
        other.close()
    assert outcome(future) == "idempotency_key_reused"
    assert balance(committed_engine, c) == FUNDING
    audit(committed_engine, w.community_id)


@needs_postgres()
def test_a_poisoned_entry_fails_alone(committed_engine: Engine, committer: group.GroupCommitter) -> None:
    """A value the database refuses (an actor that is no user) spoils only its entry."""
    w = make_world(committed_engine)
    a, b, c, *_ = w.wallets
    good = [pay(w, a, b, 2), pay(w, b, c, 3)]
    poisoned = pay(w, c, a, 4, actor_id=-1)
    with stalled(committed_engine, c) as writer_blocked:
        blocker = submit(committer, pay(w, c, b, 1))
        writer_blocked()
        futures = [submit(committer, e) for e in (good[0], poisoned, good[1])]
    outcome(blocker)
    assert isinstance(outcome(futures[0]), Posted) and isinstance(outcome(futures[2]), Posted)
    with pytest.raises(Exception) as refused:
        futures[1].result(10)
    # SQLAlchemy's error, as the session path raises it, around the driver's: a foreign key violation.
    assert isinstance(refused.value, DBAPIError) and refused.value.orig.sqlstate == "23503"  # type: ignore[union-attr]
    assert [balance(committed_engine, x) for x in (a, b, c)] == [
        FUNDING - 2,
        FUNDING + 2 - 3 + 1,
        FUNDING + 3 - 1,
    ]
    audit(committed_engine, w.community_id)


@needs_postgres()
def test_amounts_must_be_integers(committed_engine: Engine, committer: group.GroupCommitter) -> None:
    w = make_world(committed_engine)
    with pytest.raises(TypeError, match="integers"):
        submit(committer, pay(w, w.wallets[0], w.wallets[1], 1.5))  # type: ignore[arg-type]


# --- connections that drop -------------------------------------------------------------------------


class _Cutter:
    """A loopback TCP proxy to PostgreSQL that cuts its first connection once, at a chosen message.

    `at=b"COMMIT"`: the COMMIT is forwarded (or not) and the connection cut before the reply;
    `at=b"hearth_post_many"`: cut before the batch's statement reaches the server. Later
    connections pass through untouched, until `refuse()`.
    """

    def __init__(self, at: bytes, *, forward: bool) -> None:
        self.at, self.forward = at, forward
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        first = True
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", 5432))
            cut = threading.Event()
            threading.Thread(target=self._pipe, args=(server, client, None, cut), daemon=True).start()
            threading.Thread(target=self._pipe, args=(client, server, first, cut), daemon=True).start()
            first = False

    def _pipe(self, src: socket.socket, dst: socket.socket, watch: bool | None, cut: threading.Event) -> None:
        try:
            while not cut.is_set():
                data = src.recv(65536)
                if not data:
                    break
                if watch and self.at in data:
                    self.cuts += 1
                    cut.set()  # from here the server's replies are dropped
                    if self.forward:
                        dst.sendall(data)
                        time.sleep(0.5)  # let the server finish; its reply is lost with the connection
                    break
                if watch is None and cut.is_set():
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def refuse(self) -> None:
        self.listener.close()


@needs_postgres()
@pytest.mark.parametrize(
    ("at", "forward"),
    [(b"COMMIT", True), (b"COMMIT", False), (b"hearth_post_many", False)],
    ids=["commit-reached-server", "commit-lost", "cut-before-the-statement"],
)
def test_a_cut_connection_is_reconnected_and_the_caller_sees_its_first_write(
    committed_engine: Engine, at: bytes, forward: bool
) -> None:
    w = make_world(committed_engine)
    a, b, *_ = w.wallets
    cutter = _Cutter(at, forward=forward)
    engine = make_engine(
        DATABASE_URL.replace("127.0.0.1:5432", f"127.0.0.1:{cutter.port}"), poolclass=NullPool
    )
    committer = group.GroupCommitter(engine)
    try:
        entry = pay(w, a, b, 7)
        posted = outcome(submit(committer, entry))
        assert cutter.cuts == 1
        # Whether or not the cut COMMIT happened, the caller's transfer is the first write, once.
        assert isinstance(posted, Posted) and not posted.replayed
        assert outcome(submit(committer, entry)) == Posted(posted.transaction_id, replayed=True)
    finally:
        committer.stop(10)
        engine.dispose()
        cutter.refuse()
    assert (balance(committed_engine, a), balance(committed_engine, b)) == (FUNDING - 7, FUNDING + 7)
    audit(committed_engine, w.community_id)


@needs_postgres()
def test_an_unreachable_database_answers_ledger_unavailable(committed_engine: Engine) -> None:
    w = make_world(committed_engine)
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there
    engine = make_engine(DATABASE_URL.replace("127.0.0.1:5432", f"127.0.0.1:{port}"), poolclass=NullPool)
    committer = group.GroupCommitter(engine, reconnect_delays=(0, 0.01))
    try:
        future = submit(committer, pay(w, w.wallets[0], w.wallets[1], 1))
        with pytest.raises(err.LedgerUnavailable) as gone:
            future.result(10)
        assert (gone.value.status_code, gone.value.code) == (503, "ledger_unavailable")
    finally:
        committer.stop(10)
        engine.dispose()


# --- waiting, stopping, forking --------------------------------------------------------------------


@needs_postgres()
def test_a_caller_that_times_out_gets_a_clear_error_and_its_key_decides(
    committed_engine: Engine, committer: group.GroupCommitter
) -> None:
    w = make_world(committed_engine)
    a, b, c, *_ = w.wallets
    entry = pay(w, a, b, 9)
    with stalled(committed_engine, c) as writer_blocked:
        blocker = submit(committer, pay(w, c, b, 1))
        writer_blocked()
        with pytest.raises(err.LedgerUnavailable) as late:
            committer.post(entry, ledger.request_hash(entry), timeout=0.2)
        assert late.value.code == "ledger_unavailable"
    outcome(blocker)
    # It timed out in the queue, so no writer takes it: the client's retry is the first write.
    again = committer.post(entry, ledger.request_hash(entry))
    assert not again.replayed
    assert balance(committed_engine, a) == FUNDING - 9


@needs_postgres()
def test_stopping_drains_every_accepted_entry(
    committed_engine: Engine, committer: group.GroupCommitter
) -> None:
    w = make_world(committed_engine)
    a, b, c, *_ = w.wallets
    with stalled(committed_engine, a) as writer_blocked:
        futures = [submit(committer, pay(w, a, b, 1))]
        writer_blocked()
        futures += [submit(committer, pay(w, b, c, n)) for n in range(1, 6)]
        stopping = threading.Thread(target=committer.stop)
        stopping.start()
        while not committer.stopped:
            time.sleep(0.01)
        with pytest.raises(group.CommitterStopped):
            submit(committer, pay(w, a, c, 1))
    stopping.join(10)
    assert not stopping.is_alive() and committer.stopped
    assert all(isinstance(outcome(f), Posted) for f in futures)
    assert balance(committed_engine, c) == FUNDING + 15
    committer.stop()  # a second stop is a no-op


@needs_postgres()
def test_the_process_registry_and_the_request_path(
    committed_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = make_world(committed_engine)
    a, b, *_ = w.wallets
    factory = session_factory(committed_engine)
    one = group.committer(committed_engine)
    assert one is not None and group.committer(committed_engine) is one
    with factory() as session:
        session.get(LedgerAccount, a)  # the request has read something: its transaction is open
        posted = group.post(
            session,
            ledger.transfer_entry(
                community_id=w.community_id,
                chip_id=w.chip_id,
                source=a,
                target=b,
                amount=2,
                key=f"reg-{uuid.uuid4()}",
            ),
        )
        assert not posted.replayed and one.stats()["commits"] == 1
        assert session.get(LedgerTransaction, posted.transaction_id) is not None  # readable at once
    group.stop(committed_engine)
    assert one.stopped
    fresh = group.committer(committed_engine)
    assert fresh is not None and fresh is not one
    # A committer stopped between the lookup and the hand-over: the entry is posted in the session.
    monkeypatch.setattr(group, "committer", lambda engine: one)
    with factory() as session:
        late = group.post(
            session,
            ledger.transfer_entry(
                community_id=w.community_id,
                chip_id=w.chip_id,
                source=a,
                target=b,
                amount=3,
                key=f"reg-{uuid.uuid4()}",
            ),
        )
        session.commit()
    assert not late.replayed
    assert balance(committed_engine, b) == FUNDING + 5


@needs_postgres()
def test_a_forked_child_starts_its_own_committer(committed_engine: Engine) -> None:
    w = make_world(committed_engine)
    parents = group.committer(committed_engine)
    assert parents is not None
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status only
        code = 1
        try:
            committed_engine.dispose(close=False)  # the parent's pooled connections are not ours
            child = group.committer(committed_engine)
            entry = pay(w, w.wallets[0], w.wallets[1], 4)
            if child is not parents and child is not None and parents in group._inherited:
                code = 0 if not child.post(entry, ledger.request_hash(entry)).replayed else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert balance(committed_engine, w.wallets[1]) == FUNDING + 4
    group.stop(committed_engine, 10)
    # What the child's fork hook did, here in-process on an engine of its own (the hook drops its
    # pool): the registry forgets, the pool is a new one, a new committer starts.
    own = make_engine(DATABASE_URL, poolclass=NullPool)
    inherited = group.committer(own)
    pool = own.pool
    group._after_fork_in_child()
    assert inherited in group._inherited and own.pool is not pool
    assert group.committer(own) is not inherited
    group._inherited.remove(inherited)
    inherited.stop(10)
    group.stop(own, 10)
    own.dispose()


@needs_postgres()
def test_stop_all_drains_and_then_posts_in_the_session(committed_engine: Engine) -> None:
    w = make_world(committed_engine)
    one = group.committer(committed_engine)
    assert one is not None
    try:
        group.stop_all()
        assert one.stopped and group.committer(committed_engine) is None
        with session_scope(committed_engine) as session:
            posted = group.post(
                session,
                ledger.transfer_entry(
                    community_id=w.community_id,
                    chip_id=w.chip_id,
                    source=w.wallets[0],
                    target=w.wallets[1],
                    amount=1,
                    key=f"after-exit-{uuid.uuid4()}",
                ),
            )
        assert not posted.replayed
    finally:
        group._exiting = False


# --- many threads, two committers, ordinary transactions, crossing accounts ------------------------


@needs_postgres()
def test_racing_committers_and_ordinary_transactions_never_deadlock(committed_engine: Engine) -> None:
    w = make_world(committed_engine)
    second = make_engine(DATABASE_URL)
    committers = [group.GroupCommitter(committed_engine, writers=2), group.GroupCommitter(second, writers=2)]
    wallets, hot = w.wallets, w.wallets[:2]
    failures: list[BaseException] = []
    refused: list[str] = []
    start = threading.Barrier(10)

    def client(seed: int) -> None:
        rng = random.Random(seed)
        start.wait()
        for _ in range(40):
            source = rng.choice(wallets)
            target = rng.choice(hot) if rng.random() < 0.7 else rng.choice(wallets)
            if source == target:
                continue
            entry = pay(w, source, target, rng.randint(1, 60))
            try:
                if seed < 8:
                    committers[seed % 2].post(entry, ledger.request_hash(entry))
                else:  # ordinary units of work on the same accounts, batches in both directions
                    with session_scope(committed_engine) as session:
                        ledger.post_batch(session, [entry, pay(w, target, source, rng.randint(1, 60))])
            except DomainError as exc:
                refused.append(exc.code)
            except BaseException as exc:
                failures.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for one in committers:
        one.stop(10)
    second.dispose()
    assert not failures, failures[:3]
    assert set(refused) <= {"insufficient_funds"}
    audit(committed_engine, w.community_id)


# --- the API ---------------------------------------------------------------------------------------


@needs_postgres()
def test_the_transfer_endpoint_goes_through_the_committer(committed_engine: Engine) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from tests.factories import auth, community_chip, fund

    with session_scope(committed_engine) as session:
        owner = make_user(session)
        community = make_community(session, owner)
        alice, bob = add_member(session, community), add_member(session, community)
        points = community_chip(session, community)
        fund(session, points, alice, 10)
        # Bob's wallet exists: a transfer that opens one is written in the request's session.
        ledger.open_account(session, points, bob.id)
        headers = auth(session, alice)
        chip_id, bob_id = points.id, bob.id
    app = create_app(session_maker=session_factory(committed_engine), dispatch_jobs=False)
    run = uuid.uuid4().hex[:8]

    def send(key: str, amount: int, to: int = bob_id) -> tuple[int, dict]:  # type: ignore[type-arg]
        r = client.post(
            f"/chips/{chip_id}/transfers",
            json={"to_user_id": to, "amount": amount, "memo": "tea"},
            headers={**headers, "Idempotency-Key": f"{run}-{key}"},
        )
        return r.status_code, r.json()

    with TestClient(app, raise_server_exceptions=False) as client:
        status, first = send("t-1", 4)
        assert status == 201, first
        assert sorted(p["amount"] for p in first["postings"]) == [-4, 4] and not first["replayed"]
        status, again = send("t-1", 4)
        assert (status, again["id"], again["replayed"]) == (200, first["id"], True)
        status, reused = send("t-1", 5)
        assert (status, reused["error"]) == (409, "idempotency_key_reused")
        status, poor = send("t-2", 99)
        assert (status, poor["error"]) == (409, "insufficient_funds")
    one = group.committer(committed_engine)
    assert one is not None and one.stats()["entries"] >= 4  # every attempt went through it

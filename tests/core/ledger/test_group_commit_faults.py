"""The group committer under faults: forks, bugs, lock waits, callers that give up, lost COMMITs.

Each test is a regression test of a review finding on `core.ledger.group` (each failed on the
code before its fix). Helpers (worlds, stalled writers, the cutting proxy) come from
test_group_commit.py.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from api.errors import is_transient_conflict
from core.db import make_engine
from core.ledger import errors as err
from core.ledger import group
from core.ledger import service as ledger
from core.ledger.types import Posted
from tests.conftest import DATABASE_URL, needs_postgres
from tests.core.ledger.test_group_commit import (
    FUNDING,
    _Cutter,
    _wait_for_lock_wait,
    audit,
    balance,
    make_world,
    outcome,
    pay,
    stalled,
    submit,
)

pytestmark = needs_postgres()

# Short lock waits keep these tests quick; the tests that hold a lock hold it far longer.
LOCK_WAIT = 0.4


@pytest.fixture
def committer(committed_engine: Engine) -> Iterator[group.GroupCommitter]:
    one = group.GroupCommitter(committed_engine, lock_timeout=LOCK_WAIT)
    yield one
    one.stop(10)


@pytest.fixture(autouse=True)
def _stop_registry_committers(committed_engine: Engine) -> Iterator[None]:
    yield
    group.stop(committed_engine, 10)


def refusal(future: Any) -> BaseException:
    error = future.exception(30)
    assert error is not None, "the entry was written"
    return error  # type: ignore[no-any-return]


# --- a forked child ------------------------------------------------------------------------------


def test_a_forked_childs_writer_never_uses_a_connection_the_parent_pooled(committed_engine: Engine) -> None:
    """The child's writer opened its own connection: the parent's pooled socket stays the parent's."""
    w = make_world(committed_engine)
    parents = group.committer(committed_engine)  # with and without one, the child must not share
    assert parents is not None
    with committed_engine.connect() as conn:  # leaves an idle connection in the engine's pool
        before = set(
            conn.exec_driver_sql(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            ).scalars()
        )
    pid = os.fork()
    if pid == 0:  # the child: no dispose() of its own, as in an application; exit status only
        code = 1
        try:
            child = group.committer(committed_engine)
            entry = pay(w, w.wallets[0], w.wallets[1], 1)
            assert child is not None and child is not parents
            posted = child.post(entry, ledger.request_hash(entry))
            backend = child._writers[0]._connection.dbapi_connection.info.backend_pid
            code = 3 if backend in before else 0 if not posted.replayed else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0  # 3: a backend of the parent's, shared
    # The parent's own connections still work.
    entry = pay(w, w.wallets[1], w.wallets[0], 1)
    assert not parents.post(entry, ledger.request_hash(entry)).replayed
    with committed_engine.connect() as conn:
        assert conn.scalar(text("SELECT 1")) == 1
    assert balance(committed_engine, w.wallets[0]) == FUNDING


# --- a bug in the writer -------------------------------------------------------------------------


@pytest.mark.parametrize("rollback_fails", [False, True], ids=["rolled-back", "connection-dropped"])
def test_an_entry_answered_with_an_unexpected_error_is_never_committed_later(
    committed_engine: Engine, monkeypatch: pytest.MonkeyPatch, rollback_fails: bool
) -> None:
    w = make_world(committed_engine)
    a, b, c, d, *_ = w.wallets
    real = group._execute
    calls = {"n": 0}

    def buggy(dbapi_connection: Any, items: Any) -> Any:
        rows = real(dbapi_connection, items)  # the batch is written, not committed...
        calls["n"] += 1
        if calls["n"] == 1:
            if rollback_fails:
                dbapi_connection.close()  # ... and its rollback will fail too
            raise RuntimeError("a bug after the statement ran")
        return rows

    monkeypatch.setattr(group, "_execute", buggy)
    committer = group.GroupCommitter(committed_engine)
    try:
        first = submit(committer, pay(w, a, b, 11))
        assert isinstance(refusal(first), RuntimeError)
        # The next batch commits on the same writer: only its own entry.
        assert isinstance(outcome(submit(committer, pay(w, c, d, 1))), Posted)
    finally:
        committer.stop(10)
    assert (balance(committed_engine, a), balance(committed_engine, b)) == (FUNDING, FUNDING)
    assert balance(committed_engine, d) == FUNDING + 1
    audit(committed_engine, w.community_id)


# --- database errors, as the API sees them --------------------------------------------------------


def test_a_refused_entry_gets_sqlalchemys_error_and_a_lock_timeout_is_retry_later(
    committed_engine: Engine, committer: group.GroupCommitter
) -> None:
    w = make_world(committed_engine)
    a, b, *_ = w.wallets
    with stalled(committed_engine, a):
        future = submit(committer, pay(w, a, b, 1))
        error = refusal(future)  # within the lock timeout, while the lock is still held
    # The API answers OperationalError with a transient SQLSTATE as 503 retry_later (a raw
    # psycopg error was a 500 internal_error).
    assert isinstance(error, OperationalError) and is_transient_conflict(error)
    assert balance(committed_engine, a) == FUNDING


# --- lock waits ------------------------------------------------------------------------------------


def test_an_account_locked_elsewhere_stalls_no_unrelated_transfer_for_long(
    committed_engine: Engine, committer: group.GroupCommitter
) -> None:
    """A transfer queued behind a batch that waits on another transaction's lock is written
    once the lock timeout ends that wait, long before the lock is released."""
    w = make_world(committed_engine)
    a, b, c, d, *_ = w.wallets
    with stalled(committed_engine, a) as writer_blocked:
        blocked = submit(committer, pay(w, a, b, 1))
        writer_blocked()
        unrelated = pay(w, c, d, 5)
        started = time.monotonic()
        posted = committer.post(unrelated, ledger.request_hash(unrelated), timeout=LOCK_WAIT * 10)
        waited = time.monotonic() - started
        assert isinstance(refusal(blocked), OperationalError)
        assert balance(committed_engine, d) == FUNDING + 5  # committed while `a` is still locked
    assert not posted.replayed and waited < LOCK_WAIT * 5
    assert balance(committed_engine, a) == FUNDING
    audit(committed_engine, w.community_id)


def _lock(conn: Connection, account_id: int) -> None:
    conn.execute(text("SELECT 1 FROM ledger_accounts WHERE id = :id FOR UPDATE"), {"id": account_id})


@pytest.mark.parametrize("probe_fails", [False, True], ids=["split", "one-by-one"])
def test_a_batch_that_times_out_on_a_lock_is_split_around_the_locked_account(
    committed_engine: Engine,
    committer: group.GroupCommitter,
    monkeypatch: pytest.MonkeyPatch,
    probe_fails: bool,
) -> None:
    w = make_world(committed_engine)
    a, b, c, d, e, f = w.wallets
    if probe_fails:  # finding the locked accounts fails: the entries are posted one by one

        def probe(dbapi_connection: Any, account_ids: list[int]) -> set[int]:
            raise psycopg.OperationalError("the probe failed")

        monkeypatch.setattr(group, "_lock_free_accounts", probe)
    with committed_engine.connect() as holds_f, committed_engine.connect() as holds_a:
        _lock(holds_f, f)
        first = submit(committer, pay(w, f, e, 1))
        _wait_for_lock_wait(committed_engine, "hearth_post_many")
        _lock(holds_a, a)  # a long transaction on `a`
        # Queued together, so written as one batch once `f` is free: it waits on `a`.
        entries = [pay(w, c, d, 2), pay(w, a, b, 3), pay(w, d, e, 4), pay(w, b, a, 5)]
        futures = [submit(committer, entry) for entry in entries]
        holds_f.rollback()
        assert isinstance(outcome(first), Posted)
        written, to_a, onward, from_b = futures
        assert isinstance(outcome(written), Posted) and isinstance(outcome(onward), Posted)
        for refused in (to_a, from_b):
            error = refusal(refused)
            assert isinstance(error, OperationalError) and is_transient_conflict(error)
        # All answered while `a` is still locked; then a batch whose every entry needs `a`.
        _lock(holds_f, f)
        second = submit(committer, pay(w, f, e, 1))
        _wait_for_lock_wait(committed_engine, "hearth_post_many")
        both = [submit(committer, entry) for entry in (pay(w, a, c, 6), pay(w, d, a, 7))]
        holds_f.rollback()
        assert isinstance(outcome(second), Posted)
        assert all(isinstance(refusal(future), OperationalError) for future in both)
        holds_a.rollback()
    assert [balance(committed_engine, x) for x in (a, b, c, d, e)] == [
        FUNDING,
        FUNDING,
        FUNDING - 2,
        FUNDING + 2 - 4,
        FUNDING + 4 + 2,
    ]
    audit(committed_engine, w.community_id)


# --- callers that give up ----------------------------------------------------------------------------


def test_an_entry_whose_caller_timed_out_in_the_queue_is_never_written(
    committed_engine: Engine, committer: group.GroupCommitter
) -> None:
    w = make_world(committed_engine)
    a, b, c, d, *_ = w.wallets
    given_up = pay(w, a, b, 9)
    with stalled(committed_engine, c) as writer_blocked:
        blocker = submit(committer, pay(w, c, d, 1))
        writer_blocked()
        with pytest.raises(err.LedgerUnavailable) as late:
            committer.post(given_up, ledger.request_hash(given_up), timeout=0.1)
        assert late.value.code == "ledger_unavailable"
        later = submit(committer, pay(w, c, d, 2))  # queued behind the given-up entry
    assert isinstance(outcome(blocker), Posted) and isinstance(outcome(later), Posted)
    assert balance(committed_engine, b) == FUNDING  # skipped by the writer
    retried = committer.post(given_up, ledger.request_hash(given_up))
    assert not retried.replayed and balance(committed_engine, b) == FUNDING + 9


def test_a_caller_whose_entry_is_being_written_waits_for_its_answer(
    committed_engine: Engine, committer: group.GroupCommitter
) -> None:
    w = make_world(committed_engine)
    a, b, *_ = w.wallets
    entry = pay(w, a, b, 3)
    with committed_engine.connect() as holds_a:
        _lock(holds_a, a)
        release = threading.Timer(LOCK_WAIT / 2, holds_a.rollback)  # within the lock timeout
        release.start()
        # The writer has taken the entry when the caller's 0.05 s run out: it waits for the answer.
        posted = committer.post(entry, ledger.request_hash(entry), timeout=0.05)
        release.join()
    assert not posted.replayed and balance(committed_engine, b) == FUNDING + 3


def test_a_caller_waits_for_a_running_entry_only_so_long_then_its_key_decides(
    committed_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group, "RUNNING_GRACE", 0.2)
    w = make_world(committed_engine)
    a, b, *_ = w.wallets
    entry = pay(w, a, b, 4)
    committer = group.GroupCommitter(committed_engine, lock_timeout=20)
    try:
        with stalled(committed_engine, a) as writer_blocked:
            with pytest.raises(err.LedgerUnavailable) as late:
                committer.post(entry, ledger.request_hash(entry), timeout=0.05)
            writer_blocked()  # the entry was not cancelled: the writer has it, waiting on the lock
        assert late.value.code == "ledger_unavailable"
        # Written once the lock went: the client's retry with the same key finds it.
        assert committer.post(entry, ledger.request_hash(entry)).replayed
    finally:
        committer.stop(10)
    assert balance(committed_engine, b) == FUNDING + 4


# --- connections cut -----------------------------------------------------------------------------


def test_a_lost_commit_whose_retry_fails_is_answered_as_unknown_not_as_refused(
    committed_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The COMMIT happened but its reply was lost; the retry then fails: the outcome is unknown."""
    w = make_world(committed_engine)
    a, b, *_ = w.wallets
    real = group._execute
    calls = {"n": 0}

    def retry_refused(dbapi_connection: Any, items: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:  # the retry on the new connection
            raise psycopg.errors.LockNotAvailable("canceling statement due to lock timeout")
        return real(dbapi_connection, items)

    monkeypatch.setattr(group, "_execute", retry_refused)
    cutter = _Cutter(b"COMMIT", forward=True)
    engine = make_engine(
        DATABASE_URL.replace("127.0.0.1:5432", f"127.0.0.1:{cutter.port}"), poolclass=NullPool
    )
    committer = group.GroupCommitter(engine)
    entry = pay(w, a, b, 7)
    try:
        error = refusal(submit(committer, entry))
        assert cutter.cuts == 1 and calls["n"] == 2
        assert isinstance(error, err.LedgerUnavailable) and error.code == "ledger_unavailable"
        # It was written: the client's retry with the same key finds it.
        assert outcome(submit(committer, entry)).replayed  # type: ignore[union-attr]
    finally:
        committer.stop(10)
        engine.dispose()
        cutter.refuse()
    assert balance(committed_engine, b) == FUNDING + 7


def test_a_connection_cut_while_the_writer_sets_it_up_is_replaced(committed_engine: Engine) -> None:
    w = make_world(committed_engine)
    cutter = _Cutter(b"SET lock_timeout", forward=False)  # (not the startup packet's `-c lock_timeout`)
    engine = make_engine(
        DATABASE_URL.replace("127.0.0.1:5432", f"127.0.0.1:{cutter.port}"), poolclass=NullPool
    )
    committer = group.GroupCommitter(engine, reconnect_delays=(0, 0.01, 0.05))
    try:
        posted = outcome(submit(committer, pay(w, w.wallets[0], w.wallets[1], 2)))
        assert cutter.cuts == 1 and isinstance(posted, Posted) and not posted.replayed
        # The writer's connection waits for locks at most its lock timeout.
        lock_timeout = committer._writers[0]._connection.dbapi_connection.execute("SHOW lock_timeout")
        assert lock_timeout.fetchone()[0] == "3s"
    finally:
        committer.stop(10)
        engine.dispose()
        cutter.refuse()


# --- the API ---------------------------------------------------------------------------------------


@dataclass
class _Payer:
    community_id: int
    chip_id: int
    bob_id: int
    wallet: int  # alice's, funded with 10
    headers: dict[str, str]  # alice's, with a fresh Idempotency-Key


def _alice_pays_bob(engine: Engine, *, bob_has_wallet: bool) -> _Payer:
    """A community where alice holds 10 points and may pay bob (committed, for the API)."""
    from core.db import session_scope
    from tests.factories import add_member, auth, community_chip, fund, make_community, make_user

    with session_scope(engine) as session:
        owner = make_user(session)
        community = make_community(session, owner)
        alice, bob = add_member(session, community), add_member(session, community)
        points = community_chip(session, community)
        fund(session, points, alice, 10)
        if bob_has_wallet:
            ledger.open_account(session, points, bob.id)
        return _Payer(
            community_id=community.id,
            chip_id=points.id,
            bob_id=bob.id,
            wallet=ledger.open_account(session, points, alice.id).id,
            headers={
                **auth(session, alice),
                "Idempotency-Key": f"locked-{os.getpid()}-{time.monotonic_ns()}",
            },
        )


def test_a_transfer_whose_wallet_stays_locked_is_answered_503_retry_later(committed_engine: Engine) -> None:
    """End to end, with the process's committer (its default lock timeout): 503, not a 500."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from core.db import session_factory

    # Bob's wallet exists too: a transfer that opens one is written in the request's session.
    w = _alice_pays_bob(committed_engine, bob_has_wallet=True)
    app = create_app(session_maker=session_factory(committed_engine), dispatch_jobs=False)
    body = {"to_user_id": w.bob_id, "amount": 4}
    with TestClient(app, raise_server_exceptions=False) as client, stalled(committed_engine, w.wallet):
        started = time.monotonic()
        response = client.post(f"/chips/{w.chip_id}/transfers", json=body, headers=w.headers)
        waited = time.monotonic() - started
    assert (response.status_code, response.json()["error"]) == (503, "retry_later")
    assert response.headers["Retry-After"] == "1"
    assert group.LOCK_TIMEOUT <= waited < group.LOCK_TIMEOUT + 5
    with TestClient(app, raise_server_exceptions=False) as client:  # the lock is gone: the retry goes through
        again = client.post(f"/chips/{w.chip_id}/transfers", json=body, headers=w.headers)
    assert again.status_code == 201 and not again.json()["replayed"]
    assert balance(committed_engine, w.wallet) == 10 - 4


def test_a_tip_whose_wallet_stays_locked_is_answered_503_after_the_engines_lock_timeout(
    committed_engine: Engine,
) -> None:
    """Writes in the request's own session (tips, redemption, trading, a transfer that opens a
    wallet) wait for a row lock at most the engine's lock timeout, then 503, nothing written."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from core.db import session_factory

    w = _alice_pays_bob(committed_engine, bob_has_wallet=False)
    engine = make_engine(DATABASE_URL, lock_timeout_s=0.5)
    with engine.connect() as conn:  # every connection of the engine carries the timeout
        assert conn.scalar(text("SHOW lock_timeout")) == "500ms"
    app = create_app(session_maker=session_factory(engine), dispatch_jobs=False)
    url = f"/communities/{w.community_id}/members/{w.bob_id}/tips"
    body = {"chip_id": w.chip_id, "amount": 3, "note": "謝謝"}
    try:
        with TestClient(app, raise_server_exceptions=False) as client, stalled(committed_engine, w.wallet):
            started = time.monotonic()
            response = client.post(url, json=body, headers=w.headers)
            waited = time.monotonic() - started
        assert (response.status_code, response.json()["error"]) == (503, "retry_later"), response.text
        assert 0.5 <= waited < 5
        assert balance(committed_engine, w.wallet) == 10
        with TestClient(
            app, raise_server_exceptions=False
        ) as client:  # the lock is gone: the retry goes through
            again = client.post(url, json=body, headers=w.headers)
        assert again.status_code == 201, again.text
        assert balance(committed_engine, w.wallet) == 10 - 3
    finally:
        engine.dispose()


def test_engines_wait_for_locks_at_most_the_configured_time() -> None:
    from core.config import get_settings

    engine = make_engine(DATABASE_URL, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            shown = conn.scalar(text("SHOW lock_timeout"))
        assert shown == f"{round(get_settings().db_lock_timeout_s)}s"
        forever = make_engine(DATABASE_URL, poolclass=NullPool, lock_timeout_s=0)
        with forever.connect() as conn:
            assert conn.scalar(text("SHOW lock_timeout")) == "0"
        forever.dispose()
    finally:
        engine.dispose()

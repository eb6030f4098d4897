"""Group commit gathering: a writer waits, boundedly, for the entries of the callers active now.

The callers' activity is seeded directly (`_callers`: thread -> last submission) so that the
tests never depend on how fast threads run; the gathering bounds are long (seconds) where a
test proves that the writer stopped waiting because its batch was complete, not because the
bound ran out.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from core.ledger import group
from core.ledger.types import Posted
from tests.conftest import needs_postgres
from tests.core.ledger.test_group_commit import audit, balance, make_world, outcome, pay, stalled, submit

pytestmark = needs_postgres()

FAKE_CALLER = -1  # never a real thread's ident


@pytest.fixture
def gathering(committed_engine: Engine) -> Iterator[group.GroupCommitter]:
    one = group.GroupCommitter(committed_engine, gather=30.0, active_window=3600.0)
    yield one
    one.stop(10)


def _others_active(committer: group.GroupCommitter, count: int, streaming: bool = True) -> None:
    """`count` other caller threads submitted a moment ago (in a stream: their next entries are expected)."""
    for n in range(count):
        committer._callers[FAKE_CALLER - n] = (time.monotonic(), streaming)


def _wait_until_taken(committer: group.GroupCommitter) -> None:
    deadline = time.monotonic() + 10
    while not committer._queue.empty():
        assert time.monotonic() < deadline, "the writer never took the entry"
        time.sleep(0.01)


def test_a_batch_waits_for_the_entries_of_the_callers_active_now(
    committed_engine: Engine, gathering: group.GroupCommitter
) -> None:
    w = make_world(committed_engine)
    _others_active(gathering, 3)
    gathering._callers[threading.get_ident()] = (time.monotonic(), True)  # this thread streams too: four
    first = submit(gathering, pay(w, w.wallets[0], w.wallets[1], 1))
    _wait_until_taken(gathering)
    time.sleep(0.2)
    assert not first.done(), "written before the active callers' entries came"
    rest = [submit(gathering, pay(w, w.wallets[n], w.wallets[n + 1], 1)) for n in (1, 2, 3)]
    # Complete at four entries: written long before the 30 s bound.
    assert all(isinstance(outcome(f), Posted) for f in [first, *rest])
    assert gathering.stats() == {"commits": 1, "entries": 4, "entries_per_commit": 4.0}
    assert balance(committed_engine, w.wallets[4]) == 1001
    audit(committed_engine, w.community_id)


def test_a_lone_caller_never_waits(committed_engine: Engine, gathering: group.GroupCommitter) -> None:
    w = make_world(committed_engine)
    for n in range(3):
        # One caller, one entry at a time: each is complete alone (30 s would fail outcome's wait).
        assert isinstance(
            outcome(submit(gathering, pay(w, w.wallets[0], w.wallets[1], 1, key=f"lone-{n}-{w.chip_id}"))),
            Posted,
        )
    assert gathering.stats()["commits"] == 3


def test_the_wait_is_bounded(committed_engine: Engine) -> None:
    w = make_world(committed_engine)
    committer = group.GroupCommitter(committed_engine, gather=0.2, active_window=3600.0)
    try:
        _others_active(committer, 2)  # they never submit
        started = time.monotonic()
        assert isinstance(outcome(submit(committer, pay(w, w.wallets[0], w.wallets[1], 5))), Posted)
        assert time.monotonic() - started >= 0.2
        assert committer.stats()["commits"] == 1
    finally:
        committer.stop(10)
    assert balance(committed_engine, w.wallets[1]) == 1005


def test_stopping_while_gathering_writes_the_batch(committed_engine: Engine) -> None:
    w = make_world(committed_engine)
    committer = group.GroupCommitter(committed_engine, gather=30.0, active_window=3600.0)
    _others_active(committer, 3)
    future = submit(committer, pay(w, w.wallets[0], w.wallets[1], 7))
    _wait_until_taken(committer)
    committer.stop(10)  # the stop sentinel ends the wait: the batch is written, then the writer ends
    assert isinstance(outcome(future), Posted)
    assert not any(writer.thread.is_alive() for writer in committer._writers)
    assert balance(committed_engine, w.wallets[1]) == 1007


def test_callers_idle_past_the_window_no_longer_count(committed_engine: Engine) -> None:
    committer = group.GroupCommitter(committed_engine, active_window=1.0)
    try:
        committer._callers[FAKE_CALLER] = (time.monotonic() - 60, True)  # idle for a minute
        committer._callers[FAKE_CALLER - 1] = (time.monotonic(), True)
        assert committer._active_callers() == 1
        assert FAKE_CALLER not in committer._callers  # forgotten
    finally:
        committer.stop(10)


def test_without_gathering_the_writer_takes_what_is_queued(committed_engine: Engine) -> None:
    w = make_world(committed_engine)
    committer = group.GroupCommitter(committed_engine, gather=0.0, active_window=3600.0)
    try:
        _others_active(committer, 5)
        assert isinstance(outcome(submit(committer, pay(w, w.wallets[0], w.wallets[1], 1))), Posted)
    finally:
        committer.stop(10)


def test_callers_count_only_while_they_submit_in_a_stream(
    committed_engine: Engine, gathering: group.GroupCommitter
) -> None:
    w = make_world(committed_engine)
    # Request threads that each submitted once (a pool under light load): nobody waits for them.
    _others_active(gathering, 3, streaming=False)
    assert isinstance(outcome(submit(gathering, pay(w, w.wallets[0], w.wallets[1], 1))), Posted)
    me = threading.get_ident()
    assert gathering._callers[me][1] is False  # a first entry starts no stream
    assert isinstance(outcome(submit(gathering, pay(w, w.wallets[0], w.wallets[1], 1))), Posted)
    assert gathering._callers[me][1] is True  # the next one, soon after, does
    assert gathering._active_callers() == 1


def test_a_writer_does_not_wait_for_callers_whose_entries_another_writer_holds(
    committed_engine: Engine,
) -> None:
    w = make_world(committed_engine)
    # Two writers; one caller besides this thread streams (its entry is the one held below).
    committer = group.GroupCommitter(
        committed_engine, writers=2, gather=30.0, active_window=3600.0, lock_timeout=60
    )
    try:
        _others_active(committer, 1)
        with stalled(committed_engine, w.wallets[0]) as writer_blocked:
            held = submit(committer, pay(w, w.wallets[0], w.wallets[1], 1))  # complete alone: 1 active caller
            writer_blocked()  # one writer holds it, waiting on the lock
            committer._callers[threading.get_ident()] = (time.monotonic(), True)  # now two stream
            # The other writer expects one entry, not two: the first caller's is already held.
            # (Counting it would wait out the 30 s bound and fail outcome's wait.)
            started = time.monotonic()
            assert isinstance(outcome(submit(committer, pay(w, w.wallets[2], w.wallets[3], 1))), Posted)
            assert time.monotonic() - started < 10
            assert not held.done()
        assert isinstance(outcome(held), Posted)
    finally:
        committer.stop(10)
    assert balance(committed_engine, w.wallets[3]) == 1001
    audit(committed_engine, w.community_id)

"""The expiry and decay beat tasks: one unit of work per wallet, nothing locked when nothing is due.

On PostgreSQL with real threads; a second session holds a wallet's row lock to stop the
task at a known wallet.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from core.chips import tasks as chip_tasks
from core.clock import utcnow
from core.db import get_engine, session_scope
from core.ledger import service as ledger
from core.models import Chip, LedgerAccount, LedgerTransaction, TxKind
from tests.conftest import needs_postgres
from tests.factories import add_member, fund, make_chip, make_community, make_user

pytestmark = needs_postgres()
PAUSE = 0.6


@contextmanager
def holding(engine: Engine, account_id: int) -> Iterator[None]:
    with Session(engine) as s:
        s.execute(select(LedgerAccount.id).where(LedgerAccount.id == account_id).with_for_update())
        yield
        s.rollback()


class Worker(threading.Thread):
    def __init__(self, work) -> None:  # type: ignore[no-untyped-def]
        super().__init__(daemon=True)
        self.work, self.result, self.error = work, None, None  # type: ignore[var-annotated]

    def run(self) -> None:
        try:
            self.result = self.work()
        except BaseException as exc:
            self.error = exc


def _two_chips(engine: Engine, **policy: object) -> tuple[list[int], list[int]]:
    """Two chips of one community, a member holding 1000 of each: (chip ids, wallet ids)."""
    with session_scope(engine) as s:
        owner = make_user(s)
        community = make_community(s, owner, slug=f"sweep-{uuid.uuid4().hex[:8]}")
        member = add_member(s, community)
        made = [make_chip(s, community, make_user(s), **policy) for _ in range(2)]
        wallets = [fund(s, chip, member, 1000).id for chip in made]
        return [c.id for c in made], wallets


@pytest.fixture
def decaying(committed_engine: Engine) -> Iterator[tuple[list[int], list[int]]]:
    """Two chips old enough for last month's demurrage; afterwards they stop decaying, so
    that other tests' sweeps over the whole database do not find them."""
    chip_ids, wallets = _two_chips(committed_engine, decay_bps=100)
    with session_scope(committed_engine) as s:
        for chip_id in chip_ids:
            chip = s.get(Chip, chip_id)
            assert chip is not None
            chip.created_at = utcnow() - timedelta(days=70)
    yield chip_ids, wallets
    with session_scope(committed_engine) as s:
        for chip_id in chip_ids:
            chip = s.get(Chip, chip_id)
            assert chip is not None
            chip.decay_bps = 0


def _swept(engine: Engine, chip_id: int, kind: TxKind) -> int:
    with session_scope(engine) as s:
        return int(
            s.scalar(
                select(func.count())
                .select_from(LedgerTransaction)
                .where(
                    LedgerTransaction.kind == kind,
                    LedgerTransaction.subject_type == "chip",
                    LedgerTransaction.subject_id == chip_id,
                )
            )
            or 0
        )


def _run_task_while_holding(engine: Engine, wallet: int, task, check) -> object:  # type: ignore[no-untyped-def]
    try:
        with holding(engine, wallet):
            worker = Worker(task)
            worker.start()
            time.sleep(PAUSE)
            check(worker)
        worker.join(20)
        assert not worker.is_alive() and worker.error is None, worker.error
        return worker.result
    finally:
        get_engine().dispose()  # the task's own engine


def test_decay_commits_wallet_by_wallet(
    committed_engine: Engine, decaying: tuple[list[int], list[int]]
) -> None:
    (first, second), wallets = decaying

    def while_blocked(worker: Worker) -> None:
        # The task waits on the second chip's wallet; the first chip's charge is committed.
        assert worker.is_alive()
        assert (
            _swept(committed_engine, first, TxKind.DECAY),
            _swept(committed_engine, second, TxKind.DECAY),
        ) == (
            1,
            0,
        )

    assert _run_task_while_holding(committed_engine, wallets[1], chip_tasks.apply_decay, while_blocked) == 2
    with session_scope(committed_engine) as s:
        for wallet_id in wallets:
            wallet = s.get(LedgerAccount, wallet_id)
            assert wallet is not None and wallet.balance == 990
        chip = s.get(Chip, first)
        assert chip is not None and ledger.check_invariants(s, chip.community_id).ok


def test_decay_with_nothing_due_locks_no_wallet(
    committed_engine: Engine, decaying: tuple[list[int], list[int]]
) -> None:
    (first, second), wallets = decaying
    assert chip_tasks.apply_decay() >= 2  # this month's run charged both
    get_engine().dispose()

    def while_blocked(worker: Worker) -> None:
        worker.join(5)  # not waiting on the locked wallet: it was charged this period already
        assert not worker.is_alive()

    assert _run_task_while_holding(committed_engine, wallets[0], chip_tasks.apply_decay, while_blocked) == 0
    assert (
        _swept(committed_engine, first, TxKind.DECAY),
        _swept(committed_engine, second, TxKind.DECAY),
    ) == (1, 1)


def test_expiry_commits_wallet_by_wallet(committed_engine: Engine) -> None:
    (first, second), wallets = _two_chips(committed_engine)
    with session_scope(committed_engine) as s:
        for chip_id in (first, second):
            chip = s.get(Chip, chip_id)
            assert chip is not None
            chip.expires_at = utcnow() - timedelta(minutes=1)

    def while_blocked(worker: Worker) -> None:
        assert worker.is_alive()
        assert _swept(committed_engine, first, TxKind.EXPIRY) == 1
        assert _swept(committed_engine, second, TxKind.EXPIRY) == 0
        with session_scope(committed_engine) as s:  # both chips were marked, each in its own unit
            assert all(c.expired for c in s.scalars(select(Chip).where(Chip.id.in_((first, second)))))

    assert _run_task_while_holding(committed_engine, wallets[1], chip_tasks.expire_chips, while_blocked) >= 2
    with session_scope(committed_engine) as s:
        for wallet_id in wallets:
            wallet = s.get(LedgerAccount, wallet_id)
            assert wallet is not None and wallet.balance == 0

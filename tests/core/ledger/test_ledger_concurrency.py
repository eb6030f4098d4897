"""Real threads, real commits: transfers, batches and hold captures race on the same accounts.

Every worker spends from and pays into a small set of wallets (two of them hot),
so row locks collide constantly. Afterwards: nothing deadlocked, no wallet is
overdrawn, every chip still sums to zero, and each account's chain verifies.
"""

from __future__ import annotations

import random
import threading
import uuid

from sqlalchemy import Engine, func, select

from core.db import session_scope
from core.errors import DomainError
from core.ledger import service as ledger
from core.ledger.types import Entry, HoldUse, Leg
from core.models import LedgerAccount, LedgerTransaction, TxKind
from tests.conftest import IS_POSTGRES
from tests.factories import add_member, make_chip, make_community, make_user

THREADS = 8
ROUNDS = 25 if IS_POSTGRES else 8


def test_racing_transfers_batches_and_captures_keep_the_ledger_sound(committed_engine: Engine) -> None:
    with session_scope(committed_engine) as session:
        owner = make_user(session)
        community = make_community(session, owner)
        chip = make_chip(session, community)
        users = [owner] + [add_member(session, community) for _ in range(5)]
        wallets = [ledger.open_account(session, chip, u.id).id for u in users]
        issuance = ledger.issuance_account(session, chip.id).id
        ledger.post_batch(
            session,
            [
                Entry(
                    community_id=community.id,
                    kind=TxKind.MINT,
                    key=f"race-fund-{uuid.uuid4()}",
                    legs=(Leg(issuance, chip.id, -50), Leg(w, chip.id, 50)),
                )
                for w in wallets
            ],
        )
    hot = wallets[:2]
    errors: list[BaseException] = []
    refused: list[str] = []
    start = threading.Barrier(THREADS)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        start.wait()
        for n in range(ROUNDS):
            src = rng.choice(wallets)
            dst = rng.choice(hot) if rng.random() < 0.8 else rng.choice(wallets)
            if src == dst:
                continue
            amount = rng.randint(1, 20)
            key = f"race-{seed}-{n}-{uuid.uuid4()}"
            try:
                with session_scope(committed_engine) as session:
                    op = rng.random()
                    if op < 0.5:
                        ledger.transfer(
                            session,
                            community_id=community.id,
                            chip_id=chip.id,
                            source=src,
                            target=dst,
                            amount=amount,
                            key=key,
                        )
                    elif op < 0.75:
                        # Opposite directions in one batch: lock order must still be global.
                        ledger.post_batch(
                            session,
                            [
                                Entry(
                                    community_id=community.id,
                                    kind=TxKind.TRANSFER,
                                    key=f"{key}-a",
                                    legs=(Leg(src, chip.id, -amount), Leg(dst, chip.id, amount)),
                                ),
                                Entry(
                                    community_id=community.id,
                                    kind=TxKind.TRANSFER,
                                    key=f"{key}-b",
                                    legs=(Leg(dst, chip.id, -1), Leg(src, chip.id, 1)),
                                ),
                            ],
                        )
                    else:
                        # Two ledger calls in one unit of work: lock both wallets first, in order.
                        ledger.lock_accounts(session, [src, dst])
                        hold = ledger.place_hold(session, account_id=src, amount=amount, key=f"{key}-h")
                        if rng.random() < 0.5:
                            ledger.void_hold(session, hold.id)
                        else:
                            ledger.post(
                                session,
                                Entry(
                                    community_id=community.id,
                                    kind=TxKind.REDEEM,
                                    key=f"{key}-c",
                                    legs=(Leg(src, chip.id, -amount), Leg(dst, chip.id, amount)),
                                    holds=(HoldUse(hold.id, amount),),
                                ),
                            )
            except DomainError as exc:
                refused.append(exc.code)
            except BaseException as exc:  # a deadlock or any database error fails the test
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert set(refused) <= {"insufficient_funds"}
    with session_scope(committed_engine) as session:
        report = ledger.check_invariants(session, community.id)
        assert report.ok, report.problems
        total = session.scalar(select(func.sum(LedgerAccount.balance)).where(LedgerAccount.id.in_(wallets)))
        assert total == 50 * len(wallets)
        moved = session.scalar(
            select(func.count())
            .select_from(LedgerTransaction)
            .where(LedgerTransaction.community_id == community.id)
        )
        assert moved and moved > len(wallets) + THREADS  # the race really ran

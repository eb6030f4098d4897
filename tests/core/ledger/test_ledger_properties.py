"""Stateful property test of the ledger: random sequences of operations against a model.

After every step: conservation per chip, cached balances equal the postings,
no member below zero or below what it holds, and the database agrees with a
plain-Python model. A refused operation must change nothing at all.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.errors import DomainError
from core.ledger import repository
from core.ledger import service as ledger
from core.ledger.types import Entry, HoldUse, Leg
from core.models import HoldStatus, LedgerAccount, LedgerHold, LedgerTransaction, TxKind
from tests.factories import add_member, make_chip, make_community, make_user

MEMBERS = 4


class LedgerMachine(RuleBasedStateMachine):
    holds = Bundle("holds")
    done = Bundle("done")  # (key, replay thunk) of operations that succeeded

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self.savepoint = session.begin_nested()
        self.counter = 0
        self.expected: dict[int, list[int]] = {}  # account id -> [balance, held]
        self.hold_left: dict[int, int] = {}
        self.posted: list[int] = []

    # --- setup ------------------------------------------------------------------

    @initialize()
    def open_book(self) -> None:
        s = self.session
        owner = make_user(s)
        self.community = make_community(s, owner)
        users = [add_member(s, self.community) for _ in range(MEMBERS)]
        self.chips = [make_chip(s, self.community), make_chip(s, self.community, users[0])]
        self.wallets: dict[int, list[LedgerAccount]] = {}
        for chip in self.chips:
            issuance = ledger.issuance_account(s, chip.id)
            self.expected[issuance.id] = [0, 0]
            self.wallets[chip.id] = [issuance] + [ledger.open_account(s, chip, u.id) for u in users]
            for account in self.wallets[chip.id][1:]:
                self.expected[account.id] = [0, 0]

    def key(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter}"

    def snapshot(self) -> Any:
        s = self.session
        accounts = s.execute(
            select(LedgerAccount.id, LedgerAccount.balance, LedgerAccount.held, LedgerAccount.seq).order_by(
                LedgerAccount.id
            )
        ).all()
        holds = s.execute(select(LedgerHold.id, LedgerHold.remaining, LedgerHold.status)).all()
        txs = s.scalar(select(func.count()).select_from(LedgerTransaction))
        return accounts, sorted(holds), txs

    def attempt(self, action: Any, apply: Any) -> Any:
        """Run `action`; on success apply the model change, on refusal prove nothing changed."""
        before = self.snapshot()
        try:
            result = action()
        except DomainError:
            assert self.snapshot() == before, "a refused operation changed the ledger"
            return None
        apply(result)
        return result

    def move(self, legs: list[tuple[LedgerAccount, int]]) -> None:
        for account, amount in legs:
            self.expected[account.id][0] += amount

    # --- operations ---------------------------------------------------------------

    @rule(chip=st.integers(0, 1), member=st.integers(1, MEMBERS), amount=st.integers(1, 60))
    def mint(self, chip: int, member: int, amount: int) -> None:
        chip_id = self.chips[chip].id
        src, dst = self.wallets[chip_id][0], self.wallets[chip_id][member]
        self.attempt(
            lambda: ledger.transfer(
                self.session,
                community_id=self.community.id,
                chip_id=chip_id,
                source=src.id,
                target=dst.id,
                amount=amount,
                key=self.key("mint"),
                kind=TxKind.MINT,
            ),
            lambda posted: (
                self.move([(src, -amount), (dst, amount)]),
                self.posted.append(posted.transaction_id),
            ),
        )

    @rule(
        target=done,
        chip=st.integers(0, 1),
        a=st.integers(0, MEMBERS),
        b=st.integers(1, MEMBERS),
        amount=st.integers(1, 80),
    )
    def transfer(self, chip: int, a: int, b: int, amount: int) -> Any:
        chip_id = self.chips[chip].id
        src, dst = self.wallets[chip_id][a], self.wallets[chip_id][b]
        if src.id == dst.id:
            return ("noop", None)
        key = self.key("pay")

        def act() -> Any:
            return ledger.transfer(
                self.session,
                community_id=self.community.id,
                chip_id=chip_id,
                source=src.id,
                target=dst.id,
                amount=amount,
                key=key,
            )

        result = self.attempt(
            act,
            lambda posted: (
                self.move([(src, -amount), (dst, amount)]),
                self.posted.append(posted.transaction_id),
            ),
        )
        return (key, act if result is not None else None)

    @rule(
        moves=st.lists(
            st.tuples(
                st.integers(0, 1), st.integers(1, MEMBERS), st.integers(1, MEMBERS), st.integers(1, 30)
            ),
            min_size=1,
            max_size=6,
        )
    )
    def batch(self, moves: list[tuple[int, int, int, int]]) -> None:
        entries, legs = [], []
        for chip, a, b, amount in moves:
            chip_id = self.chips[chip].id
            src, dst = self.wallets[chip_id][a], self.wallets[chip_id][b]
            if src.id == dst.id:
                continue
            entries.append(
                Entry(
                    community_id=self.community.id,
                    kind=TxKind.TRANSFER,
                    key=self.key("batch"),
                    legs=(Leg(src.id, chip_id, -amount), Leg(dst.id, chip_id, amount)),
                )
            )
            legs += [(src, -amount), (dst, amount)]
        if entries:
            self.attempt(
                lambda: ledger.post_batch(self.session, entries),
                lambda posted: (self.move(legs), self.posted.extend(p.transaction_id for p in posted)),
            )

    @rule(target=holds, chip=st.integers(0, 1), member=st.integers(1, MEMBERS), amount=st.integers(1, 40))
    def place_hold(self, chip: int, member: int, amount: int) -> Any:
        account = self.wallets[self.chips[chip].id][member]

        def apply(hold: LedgerHold) -> None:
            self.expected[account.id][1] += amount
            self.hold_left[hold.id] = amount

        hold = self.attempt(
            lambda: ledger.place_hold(
                self.session, account_id=account.id, amount=amount, key=self.key("hold")
            ),
            apply,
        )
        return (hold.id, account, self.chips[chip].id) if hold is not None else None

    @rule(hold=holds, to=st.integers(0, MEMBERS), amount=st.integers(1, 50))
    def capture(self, hold: Any, to: int, amount: int) -> None:
        if hold is None:
            return
        hold_id, account, chip_id = hold
        dst = self.wallets[chip_id][to]
        if dst.id == account.id:
            return

        def apply(posted: Any) -> None:
            self.expected[account.id][1] -= amount
            self.hold_left[hold_id] -= amount
            self.move([(account, -amount), (dst, amount)])
            self.posted.append(posted.transaction_id)

        self.attempt(
            lambda: ledger.post(
                self.session,
                Entry(
                    community_id=self.community.id,
                    kind=TxKind.REDEEM,
                    key=self.key("capture"),
                    legs=(Leg(account.id, chip_id, -amount), Leg(dst.id, chip_id, amount)),
                    holds=(HoldUse(hold_id, amount),),
                ),
            ),
            apply,
        )

    @rule(hold=consumes(holds))
    def void(self, hold: Any) -> None:
        if hold is None:
            return
        hold_id, account, _ = hold
        released = ledger.void_hold(self.session, hold_id)
        if self.hold_left.get(hold_id):
            self.expected[account.id][1] -= self.hold_left[hold_id]
            self.hold_left[hold_id] = 0
        assert released.status in (HoldStatus.VOIDED, HoldStatus.POSTED)

    @precondition(lambda self: bool(self.posted))
    @rule(pick=st.integers(0, 10**6))
    def reverse(self, pick: int) -> None:
        tx_id = self.posted[pick % len(self.posted)]
        legs = [
            (self.session.get(LedgerAccount, p.account_id), p.amount)
            for p in repository.postings_of(self.session, tx_id)
        ]
        self.attempt(
            lambda: ledger.reverse(self.session, tx_id, key=self.key("rev"), actor_id=None),
            lambda posted: self.move([(account, -amount) for account, amount in legs]),  # type: ignore[misc]
        )

    @rule(item=done)
    def retry(self, item: Any) -> None:
        _key, act = item
        if act is None:
            return
        before = self.snapshot()
        assert act().replayed
        assert self.snapshot() == before

    @rule(chip=st.integers(0, 1), member=st.integers(1, MEMBERS), frozen=st.booleans())
    def freeze(self, chip: int, member: int, frozen: bool) -> None:
        account = self.wallets[self.chips[chip].id][member]
        account.frozen = frozen
        self.session.flush()

    # --- invariants ------------------------------------------------------------------

    @invariant()
    def ledger_is_sound(self) -> None:
        if not hasattr(self, "community"):
            return
        report = ledger.check_invariants(self.session, self.community.id, chains=self.counter % 5 == 0)
        assert report.ok, report.problems
        rows = self.session.execute(
            select(LedgerAccount.id, LedgerAccount.balance, LedgerAccount.held).where(
                LedgerAccount.community_id == self.community.id
            )
        ).all()
        assert {r.id: [r.balance, r.held] for r in rows} == self.expected
        per_chip: dict[int, int] = defaultdict(int)
        for chip_id, accounts in self.wallets.items():
            for account in accounts:
                per_chip[chip_id] += self.expected[account.id][0]
        assert all(total == 0 for total in per_chip.values())

    def teardown(self) -> None:
        self.savepoint.rollback()
        # Rolled-back rows' ids are reused by the next example: forget the old objects.
        self.session.expunge_all()


@pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
def test_ledger_state_machine(session: Session) -> None:
    run_state_machine_as_test(
        lambda: LedgerMachine(session),
        settings=settings(
            max_examples=30,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )

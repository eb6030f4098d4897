"""The whole chip economy as a state machine, through the real services.

Random sequences of issue, mint, tip, earn, redeem, fulfil, cancel, order (which
matches), cancel order and reverse. After every step: conservation per chip,
cached balances equal the postings, no member below zero or below what it holds,
every pending hold backs exactly one open order or pending redemption, and stock
never goes below zero. A refused operation changes nothing at all.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.access import Actor
from core.chips import service as chips
from core.chips.schemas import ChipIn, MintIn, ReasonIn
from core.clock import utcnow
from core.earning import service as earning
from core.earning.schemas import ChallengeIn
from core.errors import DomainError
from core.ledger import service as ledger
from core.models import (
    Chip,
    ChipKind,
    HoldStatus,
    LedgerAccount,
    LedgerHold,
    LedgerTransaction,
    Membership,
    OrderStatus,
    RedemptionOffer,
    RedemptionOrder,
    Trade,
    TradeOrder,
    TradeOrderStatus,
    TradingPair,
    TxKind,
    User,
)
from core.redemption import service as redemption
from core.redemption.schemas import OfferIn, RedeemIn
from core.tipping import service as tipping
from core.tipping.schemas import TipIn
from core.trading import service as trading
from core.trading.schemas import OrderIn, PairIn
from tests.factories import add_member, make_community, make_user

MEMBERS = 4
amounts = st.integers(1, 40)
who = st.integers(0, MEMBERS - 1)


class EconomyMachine(RuleBasedStateMachine):
    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self.savepoint = session.begin_nested()
        self.n = 0

    def key(self) -> str:
        self.n += 1
        return f"k{self.n}"

    @initialize()
    def open_community(self) -> None:
        s = self.session
        self.owner = make_user(s)
        self.community = make_community(s, self.owner)
        self.members: list[User] = [add_member(s, self.community) for _ in range(MEMBERS)]
        # Old enough, and active, so that tipping limits do not hide the money paths.
        for membership in s.scalars(select(Membership).where(Membership.community_id == self.community.id)):
            membership.joined_at = utcnow() - timedelta(days=60)
        s.flush()
        self.gold = s.scalar(
            select(Chip).where(Chip.community_id == self.community.id, Chip.kind == ChipKind.COMMUNITY)
        )
        assert self.gold is not None
        self.personal: dict[int, int] = {}  # member index -> chip id
        self.offers: list[int] = []
        self.orders: list[int] = []  # redemption orders
        self.trade_orders: list[int] = []
        self.pair_id: int | None = None
        self.posted: list[int] = []
        # Everyone starts with community chips, so tips, orders and redemptions really happen.
        for i, member in enumerate(self.members):
            chips.mint(
                s, Actor(self.owner), self.gold.id, MintIn(amount=300, to_user_id=member.id), f"seed-{i}"
            )
        challenge = earning.create_challenge(
            s, Actor(self.owner), self.community.id, ChallengeIn(title="Say hello", reward=15)
        )
        self.challenge_id = challenge.id
        owner_offer = redemption.create_offer(
            s,
            Actor(self.owner),
            self.community.id,
            OfferIn(
                chip_id=self.gold.id, title="Sticker", kind="goods", price=12, stock=3, per_member_limit=2
            ),
        )
        self.offers.append(owner_offer.id)

    # --- helpers --------------------------------------------------------------------

    def snapshot(self) -> Any:
        s = self.session
        return (
            s.execute(
                select(LedgerAccount.id, LedgerAccount.balance, LedgerAccount.held).order_by(LedgerAccount.id)
            ).all(),
            s.execute(
                select(LedgerHold.id, LedgerHold.remaining, LedgerHold.status).order_by(LedgerHold.id)
            ).all(),
            s.scalar(select(func.count()).select_from(LedgerTransaction)),
            s.execute(select(RedemptionOrder.id, RedemptionOrder.status).order_by(RedemptionOrder.id)).all(),
            s.execute(select(RedemptionOffer.id, RedemptionOffer.stock).order_by(RedemptionOffer.id)).all(),
            s.execute(
                select(TradeOrder.id, TradeOrder.status, TradeOrder.filled).order_by(TradeOrder.id)
            ).all(),
        )

    def attempt(self, action: Any) -> Any:
        op = action.__qualname__.split(".")[1]
        before = self.snapshot()
        try:
            result = action()
        except DomainError as exc:
            event(f"{op}: refused ({exc.code})")
            assert self.snapshot() == before, f"a refused {op} changed something"
            return None
        event(f"{op}: done")
        return result

    def actor(self, i: int) -> Actor:
        return Actor(self.members[i])

    # --- operations -------------------------------------------------------------------

    @rule(i=who, cap=st.one_of(st.none(), st.integers(50, 500)))
    def issue(self, i: int, cap: int | None) -> None:
        out = self.attempt(
            lambda: chips.issue_chip(
                self.session,
                self.actor(i),
                self.community.id,
                ChipIn(name=f"Chip {i}", symbol=f"P{i}X", supply_cap=cap),
            )
        )
        if out is not None:
            self.personal[i] = out.id
            # The issuer hands their new chip out, as creators do.
            for member in self.members:
                chips.mint(
                    self.session,
                    self.actor(i),
                    out.id,
                    MintIn(amount=min(cap or 100, 100) // MEMBERS, to_user_id=member.id),
                    self.key(),
                )

    @rule(i=who, to=who, amount=st.integers(1, 200), community_chip=st.booleans())
    def mint(self, i: int, to: int, amount: int, community_chip: bool) -> None:
        if community_chip:
            chip_id, minter = self.gold.id, Actor(self.owner)
        elif i in self.personal:
            chip_id, minter = self.personal[i], self.actor(i)
        else:
            return
        out = self.attempt(
            lambda: chips.mint(
                self.session,
                minter,
                chip_id,
                MintIn(amount=amount, to_user_id=self.members[to].id),
                self.key(),
            )
        )
        if out is not None:
            self.posted.append(out.id)

    @rule(i=who, to=who, amount=amounts, personal=st.booleans())
    def tip(self, i: int, to: int, amount: int, personal: bool) -> None:
        chip_id = self.personal.get(to) if personal else self.gold.id
        if chip_id is None:
            return
        self.attempt(
            lambda: tipping.tip_member(
                self.session,
                self.actor(i),
                self.community.id,
                self.members[to].id,
                TipIn(chip_id=chip_id, amount=amount),
                self.key(),
            )
        )

    @rule(i=who, again=st.booleans())
    def earn(self, i: int, again: bool) -> None:
        completion = earning.award(self.session, Actor(self.owner), self.challenge_id, self.members[i].id)
        for _ in range(2 if again else 1):  # a job run twice pays once
            earning.grant(self.session, "challenge_completed", completion.id)

    @rule(i=who, price=st.integers(1, 30), stock=st.one_of(st.none(), st.integers(0, 3)))
    def list_offer(self, i: int, price: int, stock: int | None) -> None:
        if i not in self.personal:
            return
        out = self.attempt(
            lambda: redemption.create_offer(
                self.session,
                self.actor(i),
                self.community.id,
                OfferIn(chip_id=self.personal[i], title="1:1 call", kind="service", price=price, stock=stock),
            )
        )
        if out is not None:
            self.offers.append(out.id)

    @precondition(lambda self: bool(self.offers))
    @rule(i=who, pick=st.integers(0, 99), quantity=st.integers(1, 2))
    def redeem(self, i: int, pick: int, quantity: int) -> None:
        offer_id = self.offers[pick % len(self.offers)]
        out = self.attempt(
            lambda: redemption.redeem(
                self.session, self.actor(i), offer_id, RedeemIn(quantity=quantity), self.key()
            )
        )
        if out is not None:
            self.orders.append(out[0].id)

    def _order_parties(self, order_id: int) -> tuple[RedemptionOrder, Actor]:
        order = self.session.get(RedemptionOrder, order_id)
        offer = self.session.get(RedemptionOffer, order.offer_id) if order else None
        assert order is not None and offer is not None
        chip = self.session.get(Chip, offer.chip_id)
        assert chip is not None
        issuer = (
            Actor(self.owner) if chip.issuer_id is None else Actor(self.session.get(User, chip.issuer_id))
        )  # type: ignore[arg-type]
        return order, issuer

    @precondition(lambda self: bool(self.orders))
    @rule(pick=st.integers(0, 99))
    def fulfil(self, pick: int) -> None:
        _, issuer = self._order_parties(self.orders[pick % len(self.orders)])
        self.attempt(
            lambda: redemption.fulfil_order(self.session, issuer, self.orders[pick % len(self.orders)])
        )

    @precondition(lambda self: bool(self.orders))
    @rule(pick=st.integers(0, 99), by_member=st.booleans())
    def cancel(self, pick: int, by_member: bool) -> None:
        order, issuer = self._order_parties(self.orders[pick % len(self.orders)])
        actor = Actor(self.session.get(User, order.member_id)) if by_member else issuer  # type: ignore[arg-type]
        self.attempt(lambda: redemption.cancel_order(self.session, actor, order.id))

    @precondition(lambda self: self.pair_id is None and bool(self.personal))
    @rule()
    def open_pair(self) -> None:
        quote = next(iter(self.personal.values()))
        out = self.attempt(
            lambda: trading.create_pair(
                self.session,
                Actor(self.owner),
                self.community.id,
                PairIn(base_chip_id=self.gold.id, quote_chip_id=quote),
            )
        )
        if out is not None:
            self.pair_id = out.id

    @precondition(lambda self: self.pair_id is not None)
    @rule(i=who, buy=st.booleans(), price=st.integers(1, 5), amount=st.integers(1, 20))
    def order(self, i: int, buy: bool, price: int, amount: int) -> None:
        pair_id = self.pair_id
        assert pair_id is not None
        out = self.attempt(
            lambda: trading.place_order(
                self.session,
                self.actor(i),
                pair_id,
                OrderIn(side="buy" if buy else "sell", price=price, amount=amount),
                self.key(),
            )
        )
        if out is not None:
            self.trade_orders.append(out[0].order.id)

    @precondition(lambda self: bool(self.trade_orders))
    @rule(pick=st.integers(0, 99))
    def cancel_trade_order(self, pick: int) -> None:
        order = self.session.get(TradeOrder, self.trade_orders[pick % len(self.trade_orders)])
        assert order is not None
        owner = self.session.get(User, order.user_id)
        assert owner is not None
        self.attempt(lambda: trading.cancel_order(self.session, Actor(owner), order.id))

    @precondition(lambda self: bool(self.posted))
    @rule(pick=st.integers(0, 99))
    def reverse(self, pick: int) -> None:
        tx_id = self.posted[pick % len(self.posted)]
        self.attempt(
            lambda: chips.reverse(
                self.session, Actor(self.owner), tx_id, ReasonIn(reason="mistake"), self.key()
            )
        )

    # --- invariants ------------------------------------------------------------------------

    @invariant()
    def economy_is_sound(self) -> None:
        if not hasattr(self, "community"):
            return
        s = self.session
        report = ledger.check_invariants(s, self.community.id, chains=self.n % 7 == 0)
        assert report.ok, report.problems
        # Every pending hold backs exactly one live order, and every live order's hold is pending.
        pending = dict(
            s.execute(
                select(LedgerHold.id, LedgerHold.remaining)
                .join(LedgerAccount, LedgerAccount.id == LedgerHold.account_id)
                .where(
                    LedgerAccount.community_id == self.community.id, LedgerHold.status == HoldStatus.PENDING
                )
            ).all()
        )
        live = [
            *s.execute(
                select(RedemptionOrder.hold_id, RedemptionOrder.total).where(
                    RedemptionOrder.community_id == self.community.id,
                    RedemptionOrder.status == OrderStatus.PENDING,
                )
            ).all(),
            *s.execute(
                select(TradeOrder.hold_id, TradeOrder.id).where(
                    TradeOrder.community_id == self.community.id, TradeOrder.status == TradeOrderStatus.OPEN
                )
            ).all(),
        ]
        assert sorted(h for h, _ in live) == sorted(pending), "holds and live orders disagree"
        assert all(pending[hold_id] > 0 for hold_id, _ in live)
        for hold_id, total in s.execute(
            select(RedemptionOrder.hold_id, RedemptionOrder.total).where(
                RedemptionOrder.community_id == self.community.id,
                RedemptionOrder.status == OrderStatus.PENDING,
            )
        ):
            assert pending[hold_id] == total
        stocks = s.scalars(
            select(RedemptionOffer.stock).where(RedemptionOffer.community_id == self.community.id)
        )
        assert all(stock is None or stock >= 0 for stock in stocks)
        # Every fill is settled by exactly one TRADE transaction, and every TRADE settles a fill.
        trade_txs = set(
            s.scalars(
                select(LedgerTransaction.id).where(
                    LedgerTransaction.community_id == self.community.id,
                    LedgerTransaction.kind == TxKind.TRADE,
                )
            )
        )
        fills = list(
            s.scalars(
                select(Trade.transaction_id)
                .join(TradingPair, TradingPair.id == Trade.pair_id)
                .where(TradingPair.community_id == self.community.id)
            )
        )
        assert sorted(fills) == sorted(trade_txs)

    def teardown(self) -> None:
        self.savepoint.rollback()
        self.session.expunge_all()


@pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
def test_economy_state_machine(session: Session) -> None:
    run_state_machine_as_test(
        lambda: EconomyMachine(session),
        settings=settings(
            max_examples=25,
            stateful_step_count=30,
            deadline=None,
            # Shrinking a database-backed machine takes minutes; the failing steps are printed anyway.
            phases=[Phase.explicit, Phase.reuse, Phase.generate],
            suppress_health_check=list(HealthCheck),
        ),
    )

"""A bourse: one community, a pair STAR/GOLD, and members holding both chips."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import count

import pytest
from sqlalchemy.orm import Session

from core.access import Actor
from core.ledger import service as ledger
from core.models import Chip, Community, Side, User
from core.trading import service as trading
from core.trading.schemas import OrderIn, PairIn, PairOut, PlacedOut
from tests.factories import add_member, fund, make_chip, make_community, make_user

_keys = count(1)


@dataclass
class Bourse:
    community: Community
    owner: User
    members: list[User]
    base: Chip  # STAR, a creator's chip
    quote: Chip  # GOLD, the community chip
    pair: PairOut

    def wallet(self, session: Session, user: User, chip: Chip) -> tuple[int, int]:
        account = ledger.open_account(session, chip, user.id)
        session.refresh(account)
        return account.balance, account.held

    def place(
        self, session: Session, user: User, side: str, price: int, amount: int, key: str | None = None
    ) -> PlacedOut:
        placed, _ = trading.place_order(
            session,
            Actor(user),
            self.pair.id,
            OrderIn(side=Side(side), price=price, amount=amount),
            key or f"o{next(_keys)}",
        )
        return placed


@pytest.fixture
def bourse(session: Session) -> Bourse:
    owner = make_user(session)
    community = make_community(session, owner)
    members = [add_member(session, community) for _ in range(4)]
    base = make_chip(session, community, members[0], symbol="STAR")
    quote = make_chip(session, community, symbol="GOLD")
    for member in members:
        fund(session, base, member, 1_000)
        fund(session, quote, member, 10_000)
    pair = trading.create_pair(
        session, Actor(owner), community.id, PairIn(base_chip_id=base.id, quote_chip_id=quote.id)
    )
    return Bourse(community, owner, members, base, quote, pair)


def assert_invariants(session: Session, community_id: int) -> None:
    report = ledger.check_invariants(session, community_id)
    assert report.ok, report.problems

"""A market: one community, its community chip, a creator's personal chip, and funded members."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy.orm import Session

from core.access import Actor
from core.ledger import service as ledger
from core.models import Chip, Community, LedgerAccount, Role, Settlement, User
from core.redemption import service as redemption
from core.redemption.schemas import OfferIn, OfferOut
from tests.factories import add_member, fund, make_chip, make_community, make_user


@dataclass
class Market:
    community: Community
    owner: User
    creator: User
    members: list[User]
    gold: Chip  # the community chip (admins issue it)
    star: Chip  # the creator's personal chip

    def wallet(self, session: Session, user: User, chip: Chip) -> tuple[int, int]:
        """(balance, held) of the user's account in `chip`, read fresh."""
        account = ledger.open_account(session, chip, user.id)
        session.refresh(account)
        return account.balance, account.held

    def issuance(self, session: Session, chip: Chip) -> int:
        account: LedgerAccount = ledger.issuance_account(session, chip.id)
        session.refresh(account)
        return account.balance

    def offer(self, session: Session, chip: Chip | None = None, **fields: Any) -> OfferOut:
        chip = chip or self.star
        issuer = self.creator if chip.issuer_id is not None else self.owner
        data: dict[str, Any] = {
            "chip_id": chip.id,
            "title": "A signed poster",
            "kind": "goods",
            "price": 30,
            "settlement": Settlement.BURN,
            **fields,
        }
        return redemption.create_offer(session, Actor(issuer), self.community.id, OfferIn(**data))


@pytest.fixture
def market(session: Session) -> Market:
    owner = make_user(session)
    community = make_community(session, owner)
    creator = add_member(session, community)
    members = [add_member(session, community) for _ in range(3)]
    add_member(session, community, make_user(session), role=Role.MODERATOR)
    gold = make_chip(session, community, symbol="GOLD")
    star = make_chip(session, community, creator, symbol="STAR")
    for member in members:
        fund(session, star, member, 100)
        fund(session, gold, member, 100)
    return Market(community, owner, creator, members, gold, star)


def assert_invariants(session: Session, community_id: int) -> None:
    report = ledger.check_invariants(session, community_id)
    assert report.ok, report.problems

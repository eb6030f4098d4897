"""A small book: one community, two chips, three members with wallets."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlalchemy.orm import Session

from core.ledger import service as ledger
from core.models import Chip, Community, LedgerAccount, User
from tests.factories import add_member, make_chip, make_community, make_user


@dataclass
class Book:
    community: Community
    owner: User
    gold: Chip
    star: Chip
    members: list[User]
    gold_issuance: LedgerAccount
    star_issuance: LedgerAccount

    def wallet(self, session: Session, user: User, chip: Chip | None = None) -> LedgerAccount:
        return ledger.open_account(session, chip or self.gold, user.id)


@pytest.fixture
def book(session: Session) -> Book:
    owner = make_user(session)
    community = make_community(session, owner)
    members = [add_member(session, community) for _ in range(3)]
    gold = make_chip(session, community, symbol="GOLD")
    star = make_chip(session, community, members[0], symbol="STAR")
    return Book(
        community,
        owner,
        gold,
        star,
        members,
        ledger.issuance_account(session, gold.id),
        ledger.issuance_account(session, star.id),
    )


def balances(session: Session, *accounts: LedgerAccount) -> list[tuple[int, int]]:
    out = []
    for account in accounts:
        session.refresh(account)
        out.append((account.balance, account.held))
    return out

"""A community with an owner, an admin, a moderator, two members, and helpers to read the ledger."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.access import Actor
from core.chips import service as chips
from core.chips.schemas import MintIn
from core.ledger import service as ledger
from core.models import AccountKind, AuditLog, Chip, Community, LedgerAccount, LedgerTransaction, Role, User
from tests.factories import add_member, make_community, make_user

_keys = itertools.count(1)


def key() -> str:
    return f"k-{next(_keys)}"


@dataclass
class Town:
    community: Community
    owner: User
    admin: User
    mod: User
    alice: User
    bob: User


@pytest.fixture
def town(session: Session) -> Town:
    owner = make_user(session)
    community = make_community(session, owner)
    return Town(
        community,
        owner,
        add_member(session, community, role=Role.ADMIN),
        add_member(session, community, role=Role.MODERATOR),
        add_member(session, community),
        add_member(session, community),
    )


def balance(session: Session, chip: Chip, user: User) -> int:
    account = session.scalar(
        select(LedgerAccount).where(
            LedgerAccount.chip_id == chip.id,
            LedgerAccount.kind == AccountKind.MEMBER,
            LedgerAccount.owner_id == user.id,
        )
    )
    if account is None:
        return 0
    session.refresh(account)
    return account.balance


def circulating(session: Session, chip: Chip) -> int:
    issuance = ledger.issuance_account(session, chip.id)
    session.refresh(issuance)
    return -issuance.balance


def tx_count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(LedgerTransaction)) or 0)


def audit_actions(session: Session, community: Community) -> list[str]:
    return list(
        session.scalars(
            select(AuditLog.action).where(AuditLog.community_id == community.id).order_by(AuditLog.id)
        )
    )


def mint(session: Session, chip: Chip, by: User, amount: int, to: User | None = None) -> int:
    out = chips.mint(
        session, Actor(by), chip.id, MintIn(amount=amount, to_user_id=to.id if to else None), key()
    )
    return out.id


def assert_books_balance(session: Session, community: Community) -> None:
    report = ledger.check_invariants(session, community.id)
    assert report.ok, report.problems

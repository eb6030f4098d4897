"""Plain-function factories: build real rows through the real services."""

from __future__ import annotations

import itertools

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.access import Actor
from core.accounts import service as accounts
from core.accounts.schemas import TokenIn
from core.communities import service as communities
from core.communities.schemas import CommunityIn, InviteIn, JoinIn, MemberPatch
from core.models import (
    AccountKind,
    Chip,
    ChipKind,
    Community,
    Language,
    LedgerAccount,
    Membership,
    Role,
    TxKind,
    User,
    Visibility,
)

_seq = itertools.count(1)


def make_user(
    session: Session,
    *,
    name: str | None = None,
    language: Language = Language.EN,
    superuser: bool = False,
) -> User:
    n = next(_seq)
    return accounts.create_user(
        session,
        email=f"user{n}@example.com",
        password="correct horse battery",
        display_name=name or f"User {n}",
        language=language,
        is_superuser=superuser,
    )


def token_for(session: Session, user: User) -> str:
    return accounts.issue_token(session, user, TokenIn()).secret


def auth(session: Session, user: User) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(session, user)}"}


def make_community(
    session: Session,
    owner: User | None = None,
    *,
    visibility: Visibility = Visibility.PUBLIC,
    slug: str | None = None,
) -> Community:
    owner = owner or make_user(session)
    n = next(_seq)
    return communities.create_community(
        session,
        Actor(owner),
        CommunityIn(slug=slug or f"community-{n}", name=f"Community {n}", visibility=visibility),
    )


def add_member(
    session: Session,
    community: Community,
    user: User | None = None,
    *,
    role: Role = Role.MEMBER,
    tier: str = "free",
) -> User:
    """Join `user` (a new one by default) and set role/tier as the owner would."""
    user = user or make_user(session)
    if community.visibility == Visibility.PRIVATE:
        invite = communities.create_invite(
            session, Actor(_owner(session, community)), community.id, InviteIn()
        )
        communities.join(session, Actor(user), community.id, JoinIn(invite_code=invite.code))
    else:
        communities.join(session, Actor(user), community.id, JoinIn())
    if role != Role.MEMBER or tier != "free":
        communities.update_member(
            session,
            Actor(_owner(session, community)),
            community.id,
            user.id,
            MemberPatch(role=role if role != Role.MEMBER else None, tier=tier),
        )
    return user


def _owner(session: Session, community: Community) -> User:
    owner_id = session.scalar(
        select(Membership.user_id).where(
            Membership.community_id == community.id, Membership.role == Role.OWNER
        )
    )
    owner = session.get(User, owner_id)
    assert owner is not None
    return owner


def make_chip(
    session: Session,
    community: Community,
    issuer: User | None = None,
    *,
    symbol: str | None = None,
    **policy: object,
) -> Chip:
    """A chip and its issuance account, written directly (the chips service builds on the same rows).

    `issuer=None` makes the community chip; `policy` sets Chip columns (supply_cap, tippable...).
    Every community is created with its community chip, so `issuer=None` re-shapes that one.
    """
    if issuer is None:
        existing = session.scalar(
            select(Chip).where(Chip.community_id == community.id, Chip.kind == ChipKind.COMMUNITY)
        )
        if existing is not None:
            existing.symbol = symbol or existing.symbol
            for column, value in policy.items():
                setattr(existing, column, value)
            session.flush()
            return existing
    chip = Chip(
        community_id=community.id,
        kind=ChipKind.COMMUNITY if issuer is None else ChipKind.PERSONAL,
        issuer_id=issuer.id if issuer else None,
        name=f"Chip {next(_seq)}",
        symbol=symbol or f"C{next(_seq)}",
        **policy,
    )
    session.add(chip)
    session.flush()
    session.add(LedgerAccount(community_id=community.id, chip_id=chip.id, kind=AccountKind.ISSUANCE))
    session.flush()
    return chip


def fund(session: Session, chip: Chip, user: User, amount: int) -> LedgerAccount:
    """Mint `amount` of `chip` into `user`'s wallet straight through the ledger."""
    from core.ledger import service as ledger

    account = ledger.open_account(session, chip, user.id)
    ledger.transfer(
        session,
        community_id=chip.community_id,
        chip_id=chip.id,
        source=ledger.issuance_account(session, chip.id).id,
        target=account.id,
        amount=amount,
        key=f"test-fund-{next(_seq)}",
        kind=TxKind.MINT,
    )
    session.refresh(account)
    return account


def issue_chip(
    session: Session, community: Community, issuer: User, *, symbol: str | None = None, **policy: object
) -> Chip:
    """A personal chip issued through the chips service (validation, audit and all)."""
    from core.chips import service as chips
    from core.chips.schemas import ChipIn

    out = chips.issue_chip(
        session,
        Actor(issuer),
        community.id,
        ChipIn.model_validate({"name": f"Chip {next(_seq)}", "symbol": symbol or f"P{next(_seq)}", **policy}),
    )
    chip = session.get(Chip, out.id)
    assert chip is not None
    return chip


def community_chip(session: Session, community: Community) -> Chip:
    """The chip every community is created with."""
    chip = session.scalar(
        select(Chip).where(Chip.community_id == community.id, Chip.kind == ChipKind.COMMUNITY)
    )
    assert chip is not None
    return chip

"""All SQL for chips: policy reads over the ledger, locks, and the sweeps of the beat tasks."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Row,
    Select,
    and_,
    bindparam,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from core.db import in_param, in_values, is_postgres
from core.models import (
    AccountKind,
    Block,
    Chip,
    ChipKind,
    LedgerAccount,
    LedgerPosting,
    LedgerTransaction,
    Membership,
    MembershipStatus,
    Notification,
    TxKind,
    User,
)

REMINDER_KIND = "chip_expiring"


def lock_chip(session: Session, chip_id: int) -> Chip:
    """Re-read the chip under a row lock: mints of one chip queue here, so cap checks hold.

    FOR NO KEY UPDATE (PostgreSQL): opening a wallet inserts an account row, which takes
    FOR KEY SHARE on its chip; that must not wait on a mint. Nothing in the ledger locks
    chip rows, and everything here locks the chip before any account, so no cycle forms.
    """
    chip = session.scalar(
        select(Chip)
        .where(Chip.id == chip_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    assert chip is not None, "chips are never deleted"
    return chip


def lock_membership(session: Session, community_id: int, user_id: int) -> Membership | None:
    return session.scalar(
        select(Membership)
        .where(Membership.community_id == community_id, Membership.user_id == user_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )


def is_active_member(session: Session, community_id: int, user_id: int) -> bool:
    return (
        session.scalar(
            select(Membership.id).where(
                Membership.community_id == community_id,
                Membership.user_id == user_id,
                Membership.status == MembershipStatus.ACTIVE,
            )
        )
        is not None
    )


def ever_member(session: Session, community_id: int, user_id: int) -> bool:
    """Joined at some time (active, left or banned): their wallet may still hold chips."""
    return (
        session.scalar(
            select(Membership.id).where(
                Membership.community_id == community_id, Membership.user_id == user_id
            )
        )
        is not None
    )


def personal_chip_of(session: Session, community_id: int, issuer_id: int) -> Chip | None:
    return session.scalar(
        select(Chip).where(
            Chip.community_id == community_id, Chip.kind == ChipKind.PERSONAL, Chip.issuer_id == issuer_id
        )
    )


def community_chip(session: Session, community_id: int) -> Chip | None:
    return session.scalar(
        select(Chip).where(Chip.community_id == community_id, Chip.kind == ChipKind.COMMUNITY)
    )


def symbols_of(session: Session, community_id: int) -> set[str]:
    """The symbols of the community's chips, in capitals (symbols are unique ignoring case)."""
    return {s.upper() for s in session.scalars(select(Chip.symbol).where(Chip.community_id == community_id))}


def symbol_taken(session: Session, community_id: int, symbol: str) -> bool:
    found = session.scalar(
        select(Chip.id).where(Chip.community_id == community_id, func.upper(Chip.symbol) == symbol.upper())
    )
    return found is not None


def chips_of(community_id: int, *, kind: ChipKind | None, issuer_id: int | None) -> Select[Chip]:
    stmt = select(Chip).where(Chip.community_id == community_id)
    if kind is not None:
        stmt = stmt.where(Chip.kind == kind)
    if issuer_id is not None:
        stmt = stmt.where(Chip.issuer_id == issuer_id)
    return stmt


def active_member_ids(session: Session, community_id: int, user_ids: Iterable[int]) -> set[int]:
    """Which of `user_ids` are active members of the community (one query)."""
    return set(
        session.scalars(
            select(Membership.user_id).where(
                Membership.community_id == community_id,
                in_values(session, Membership.user_id, set(user_ids), BigInteger()),
                Membership.status == MembershipStatus.ACTIVE,
            )
        )
    )


@dataclass(frozen=True)
class PayeeFacts:
    """What a transfer from one wallet to `recipients` must know before it is written."""

    replay: bool  # the request's key is already in the ledger: a retry, answered by the ledger
    members: int  # how many of the recipients are active members of the community
    blocked: bool  # the payer and one of the recipients blocked each other (either way)


def payee_facts(
    session: Session, community_id: int, payer_id: int, recipients: set[int], key: str
) -> PayeeFacts:
    """The three preconditions of a transfer in one round trip (a request's statements cost
    more than the transfer's own write)."""
    row = session.execute(
        _payee_facts_statement(is_postgres(session)),
        {"community_id": community_id, "payer_id": payer_id, "recipients": list(recipients), "key": key},
    ).one()
    return PayeeFacts(replay=bool(row[0]), members=int(row[1]), blocked=bool(row[2]))


@functools.cache
def _payee_facts_statement(postgres: bool) -> Select[bool, int, bool]:
    """Built once per dialect (it is on every transfer's path)."""

    def among(column: Any) -> ColumnElement[bool]:
        return in_param(column, "recipients", BigInteger(), postgres=postgres)

    payer = bindparam("payer_id", type_=BigInteger())
    members = (
        select(func.count())
        .where(
            Membership.community_id == bindparam("community_id"),
            among(Membership.user_id),
            Membership.status == MembershipStatus.ACTIVE,
        )
        .scalar_subquery()
    )
    blocked = exists().where(
        or_(
            and_(Block.blocker_id == payer, among(Block.blocked_id)),
            and_(Block.blocked_id == payer, among(Block.blocker_id)),
        )
    )
    replay = exists().where(LedgerTransaction.idempotency_key == bindparam("key"))
    return select(replay, members, blocked)


def key_used(session: Session, key: str) -> bool:
    return session.scalar(select(exists().where(LedgerTransaction.idempotency_key == key))) is True


# Built once: the statement every chip-moving response is read with (building it per call
# cost as much client time as running it).
_TRANSACTION_WITH_POSTINGS = (
    select(
        LedgerTransaction.id,
        LedgerTransaction.community_id,
        LedgerTransaction.kind,
        LedgerTransaction.memo,
        LedgerTransaction.actor_id,
        LedgerTransaction.subject_type,
        LedgerTransaction.subject_id,
        LedgerTransaction.reverses_id,
        LedgerTransaction.created_at,
        LedgerPosting.leg,
        LedgerPosting.account_id,
        LedgerAccount.kind.label("account_kind"),
        LedgerAccount.owner_id,
        LedgerPosting.chip_id,
        Chip.symbol,
        LedgerPosting.amount,
    )
    .join(LedgerPosting, LedgerPosting.transaction_id == LedgerTransaction.id)
    .join(LedgerAccount, LedgerAccount.id == LedgerPosting.account_id)
    .join(Chip, Chip.id == LedgerPosting.chip_id)
    .where(LedgerTransaction.id == bindparam("transaction_id"))
    .order_by(LedgerPosting.leg)
)


def transaction_with_postings(session: Session, transaction_id: int) -> Sequence[Row[*tuple[Any, ...]]]:
    """One row per posting of the transaction, leg order, each carrying the transaction's
    columns, the posting's account kind and owner, and its chip's symbol."""
    return session.execute(_TRANSACTION_WITH_POSTINGS, {"transaction_id": transaction_id}).all()


def used_keys(session: Session, keys: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        found.update(
            session.scalars(
                select(LedgerTransaction.idempotency_key).where(LedgerTransaction.idempotency_key.in_(chunk))
            )
        )
    return found


def emitted_since(session: Session, issuance_id: int, since: datetime) -> int:
    """What MINT and EARN transactions took out of the issuance account since `since`.

    Issuers' mints and earning rules' grants share one emission limit per period.
    """
    total = session.scalar(
        select(func.coalesce(func.sum(LedgerPosting.amount), 0))
        .join(LedgerTransaction, LedgerTransaction.id == LedgerPosting.transaction_id)
        .where(
            LedgerPosting.account_id == issuance_id,
            LedgerPosting.amount < 0,
            LedgerTransaction.kind.in_((TxKind.MINT, TxKind.EARN)),
            LedgerTransaction.created_at >= since,
        )
    )
    return -int(total or 0)


def member_totals(session: Session, chip_id: int) -> tuple[int, int]:
    """(sum of member balances, holders with a positive balance) of one chip."""
    row = session.execute(
        select(
            func.coalesce(func.sum(LedgerAccount.balance), 0),
            func.count().filter(LedgerAccount.balance > 0),
        ).where(LedgerAccount.chip_id == chip_id, LedgerAccount.kind == AccountKind.MEMBER)
    ).one()
    return int(row[0] or 0), int(row[1] or 0)


def member_accounts(
    session: Session, community_id: int, owner_id: int, chip_id: int | None = None
) -> list[LedgerAccount]:
    stmt = select(LedgerAccount).where(
        LedgerAccount.community_id == community_id,
        LedgerAccount.kind == AccountKind.MEMBER,
        LedgerAccount.owner_id == owner_id,
    )
    if chip_id is not None:
        stmt = stmt.where(LedgerAccount.chip_id == chip_id)
    return list(session.scalars(stmt.order_by(LedgerAccount.id).execution_options(populate_existing=True)))


def set_frozen(session: Session, account_ids: Sequence[int], frozen: bool) -> None:
    # Only the flag: a Core UPDATE never writes back a stale cached balance.
    session.execute(
        update(LedgerAccount)
        .where(LedgerAccount.id.in_(account_ids))
        .values(frozen=frozen)
        .execution_options(synchronize_session=False)
    )


# --- the beat tasks' sweeps -------------------------------------------------------------


def chips_to_remind(session: Session, now: datetime, until: datetime) -> list[Chip]:
    return list(
        session.scalars(
            select(Chip)
            .where(
                Chip.expires_at > now,
                Chip.expires_at <= until,
                Chip.expired.is_(False),
            )
            .order_by(Chip.id)
        )
    )


def holders_not_reminded(session: Session, chip_id: int) -> list[tuple[int, int, str]]:
    """(user id, balance, language) of holders who have no expiry reminder for this chip yet."""
    reminded = exists().where(
        Notification.user_id == LedgerAccount.owner_id,
        Notification.kind == REMINDER_KIND,
        Notification.subject_type == "chip",
        Notification.subject_id == chip_id,
    )
    rows = session.execute(
        select(LedgerAccount.owner_id, LedgerAccount.balance, User.language)
        .join(User, User.id == LedgerAccount.owner_id)
        .where(
            LedgerAccount.chip_id == chip_id,
            LedgerAccount.kind == AccountKind.MEMBER,
            LedgerAccount.balance > 0,
            ~reminded,
        )
        .order_by(LedgerAccount.owner_id)
    ).all()
    return [(int(uid or 0), int(balance), str(lang)) for uid, balance, lang in rows]


def _spendable_accounts() -> Select[int]:
    return select(LedgerAccount.id).where(
        LedgerAccount.kind == AccountKind.MEMBER,
        LedgerAccount.balance > LedgerAccount.held,
        LedgerAccount.frozen.is_(False),
    )


def chips_past_expiry(session: Session, now: datetime) -> list[int]:
    """Chips whose season ended and that are not yet marked or still have chips to sweep."""
    sweepable = exists(_spendable_accounts().where(LedgerAccount.chip_id == Chip.id))
    return list(
        session.scalars(
            select(Chip.id)
            .where(Chip.expires_at <= now, Chip.frozen.is_(False), Chip.expired.is_(False) | sweepable)
            .order_by(Chip.id)
        )
    )


def decaying_chips(session: Session, created_before: datetime) -> list[tuple[int, int]]:
    """(chip id, decay in basis points) of the chips whose demurrage runs."""
    return [
        (int(cid), int(bps))
        for cid, bps in session.execute(
            select(Chip.id, Chip.decay_bps)
            .where(
                Chip.decay_bps > 0,
                Chip.expired.is_(False),
                Chip.frozen.is_(False),
                Chip.created_at < created_before,
            )
            .order_by(Chip.id)
        )
    ]


def sweep_candidates(session: Session, chip_ids: Sequence[int]) -> list[tuple[int, int, int, int, int]]:
    """(chip, account, chain position, balance, held) of every spendable, unfrozen wallet of these chips.

    A plain read, no locks: the sweep re-reads each account under its lock.
    """
    if not chip_ids:
        return []
    rows = session.execute(
        select(
            LedgerAccount.chip_id,
            LedgerAccount.id,
            LedgerAccount.seq,
            LedgerAccount.balance,
            LedgerAccount.held,
        )
        .where(
            LedgerAccount.chip_id.in_(chip_ids),
            LedgerAccount.kind == AccountKind.MEMBER,
            LedgerAccount.balance > LedgerAccount.held,
            LedgerAccount.frozen.is_(False),
        )
        .order_by(LedgerAccount.chip_id, LedgerAccount.id)
    ).all()
    return [(int(c), int(a), int(q), int(b), int(h)) for c, a, q, b, h in rows]


def communities_with_ledger(session: Session) -> list[int]:
    return list(
        session.scalars(select(LedgerAccount.community_id).distinct().order_by(LedgerAccount.community_id))
    )

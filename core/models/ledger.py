"""The chip ledger: chip kinds, accounts, transactions, postings, holds, digests.

Append-only double entry in integer units. `ledger_transactions` and
`ledger_postings` are never updated or deleted (database triggers refuse it);
corrections are new, reversing transactions. A transaction declares how many
legs it has; postings reference `(transaction_id, legs)` and carry
`0 <= leg < legs` with `(transaction_id, leg)` unique, so no posting can ever
be added to a sealed transaction. The zero-sum rule per chip is checked by the
database at commit (see migration 0002).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.clock import utcnow
from core.models.base import Base, BigId, CreatedMixin, IdMixin, UTCDateTime, str_enum


class ChipKind(enum.StrEnum):
    COMMUNITY = "community"
    PERSONAL = "personal"


class EmissionPeriod(enum.StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class Chip(IdMixin, CreatedMixin, Base):
    """A kind of chip. Its issuance account's balance is minus the supply in circulation."""

    __tablename__ = "chips"
    __table_args__ = (
        UniqueConstraint("community_id", "symbol"),
        CheckConstraint("supply_cap IS NULL OR supply_cap > 0", name="cap_positive"),
        CheckConstraint("emission_limit IS NULL OR emission_limit > 0", name="emission_positive"),
        CheckConstraint("decay_bps >= 0 AND decay_bps <= 10000", name="decay_range"),
        CheckConstraint("(kind = 'community') = (issuer_id IS NULL)", name="issuer_matches_kind"),
        Index(
            "uq_chips_one_community_chip",
            "community_id",
            unique=True,
            sqlite_where=text("kind = 'community'"),
            postgresql_where=text("kind = 'community'"),
        ),
    )

    community_id: Mapped[int] = mapped_column(BigId, ForeignKey("communities.id"), index=True)
    kind: Mapped[ChipKind] = mapped_column(str_enum(ChipKind, "chip_kind"))
    issuer_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(60))
    symbol: Mapped[str] = mapped_column(String(12))
    description: Mapped[str] = mapped_column(Text, default="")
    supply_cap: Mapped[int | None] = mapped_column(BigInteger)
    emission_limit: Mapped[int | None] = mapped_column(BigInteger)
    emission_period: Mapped[EmissionPeriod] = mapped_column(
        str_enum(EmissionPeriod, "emission_period"), default=EmissionPeriod.DAY
    )
    # Season end: balances return to the issuer then (members are reminded first).
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Demurrage: basis points of each holder's balance returned to the issuer per month.
    decay_bps: Mapped[int] = mapped_column(Integer, default=0)
    transferable: Mapped[bool] = mapped_column(Boolean, default=True)
    tippable: Mapped[bool] = mapped_column(Boolean, default=True)
    redeemable: Mapped[bool] = mapped_column(Boolean, default=True)
    tradable: Mapped[bool] = mapped_column(Boolean, default=True)
    frozen: Mapped[bool] = mapped_column(Boolean, default=False)
    expired: Mapped[bool] = mapped_column(Boolean, default=False)


class AccountKind(enum.StrEnum):
    MEMBER = "member"
    ISSUANCE = "issuance"


class LedgerAccount(IdMixin, CreatedMixin, Base):
    """One chip kind held by one owner. `balance` and `held` are caches of the postings
    and the pending holds; the CHECK makes an overdraft impossible whatever the code does."""

    __tablename__ = "ledger_accounts"
    __table_args__ = (
        CheckConstraint("kind = 'issuance' OR (held >= 0 AND balance >= held)", name="no_overdraft"),
        CheckConstraint("kind = 'issuance' OR owner_id IS NOT NULL", name="member_has_owner"),
        # One account per (chip, kind, owner); the issuance account has no owner, and
        # one per chip (a partial index, since NULLs never collide in a unique one).
        UniqueConstraint("chip_id", "kind", "owner_id"),
        Index(
            "uq_ledger_accounts_one_issuance",
            "chip_id",
            unique=True,
            sqlite_where=text("kind = 'issuance'"),
            postgresql_where=text("kind = 'issuance'"),
        ),
        # Target of the postings' (account_id, chip_id) key: a posting's chip is its account's.
        UniqueConstraint("id", "chip_id"),
    )

    community_id: Mapped[int] = mapped_column(BigId, ForeignKey("communities.id"))
    chip_id: Mapped[int] = mapped_column(BigId, ForeignKey("chips.id"))
    kind: Mapped[AccountKind] = mapped_column(str_enum(AccountKind, "account_kind"))
    owner_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id"), index=True)
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    held: Mapped[int] = mapped_column(BigInteger, default=0)
    # The hash chain: `seq` postings so far, the last one's hash (64 zeros before any).
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    head_hash: Mapped[str] = mapped_column(String(64), default="0" * 64)
    frozen: Mapped[bool] = mapped_column(Boolean, default=False)


class TxKind(enum.StrEnum):
    MINT = "mint"
    BURN = "burn"
    TRANSFER = "transfer"
    TIP = "tip"
    EARN = "earn"
    CLAWBACK = "clawback"
    REDEEM = "redeem"
    TRADE = "trade"
    SWAP = "swap"
    REVERSAL = "reversal"
    DECAY = "decay"
    EXPIRY = "expiry"


class LedgerTransaction(IdMixin, Base):
    __tablename__ = "ledger_transactions"
    __table_args__ = (
        UniqueConstraint("id", "legs"),
        CheckConstraint("legs >= 2", name="two_legs"),
        Index("ix_ledger_transactions_community_time", "community_id", "created_at"),
    )

    # No foreign key on purpose (see migration 0002): the commit-time check pins it to
    # the community of the transaction's accounts, without locking the community row.
    community_id: Mapped[int] = mapped_column(BigId)
    kind: Mapped[TxKind] = mapped_column(str_enum(TxKind, "tx_kind"))
    legs: Mapped[int] = mapped_column(Integer)
    # A retry with the same key returns this transaction; a different request is refused.
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    actor_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id"))
    memo: Mapped[str] = mapped_column(String(280), default="")
    subject_type: Mapped[str | None] = mapped_column(String(32))
    subject_id: Mapped[int | None] = mapped_column(BigInteger)
    reverses_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("ledger_transactions.id"), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# On PostgreSQL migration 0010 replaces these with set-based checks (a row-by-row foreign
# key check cost two lookups and two row locks per posting); SQLite keeps them as declared.
# The schema comparison (`schema_filter`: the migrations test, autogenerate) skips them there.
POSTGRES_SET_BASED = frozenset(
    {
        "fk_ledger_postings_transaction_id_ledger_transactions",
        "fk_ledger_postings_account_id_ledger_accounts",
        "uq_ledger_transactions_id_legs",
    }
)


def schema_filter(dialect: str) -> Callable[..., bool]:
    """Alembic's `include_object` for a database of `dialect`: on PostgreSQL it skips the
    constraints migration 0010 replaced, so comparing models and schema stays exact."""

    def include(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
        return not (dialect == "postgresql" and name in POSTGRES_SET_BASED)

    return include


class LedgerPosting(IdMixin, Base):
    __tablename__ = "ledger_postings"
    __table_args__ = (
        ForeignKeyConstraint(
            ["transaction_id", "legs"],
            ["ledger_transactions.id", "ledger_transactions.legs"],
            deferrable=True,
            initially="DEFERRED",
        ),
        ForeignKeyConstraint(["account_id", "chip_id"], ["ledger_accounts.id", "ledger_accounts.chip_id"]),
        UniqueConstraint("transaction_id", "leg"),
        UniqueConstraint("account_id", "seq"),
        CheckConstraint("leg >= 0 AND leg < legs", name="leg_in_range"),
        CheckConstraint("amount <> 0", name="nonzero"),
    )

    transaction_id: Mapped[int] = mapped_column(BigInteger)
    legs: Mapped[int] = mapped_column(Integer)
    leg: Mapped[int] = mapped_column(Integer)
    account_id: Mapped[int] = mapped_column(BigInteger)
    chip_id: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
    # Position in the account's hash chain: hash = H(previous hash | this posting).
    seq: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class HoldStatus(enum.StrEnum):
    PENDING = "pending"
    POSTED = "posted"
    VOIDED = "voided"
    EXPIRED = "expired"


class LedgerHold(IdMixin, CreatedMixin, Base):
    """Chips set aside (a redemption, an open order) until posted or voided.

    `remaining` is what is still held; a partial capture (an order partly
    filled) lowers it. The account's `held` is the sum of its pending holds.
    """

    __tablename__ = "ledger_holds"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("remaining >= 0 AND remaining <= amount", name="remaining_range"),
        CheckConstraint("status = 'pending' OR remaining = 0", name="settled_empty"),
        Index(
            "ix_ledger_holds_pending_expiry",
            "expires_at",
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
    )

    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("ledger_accounts.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[HoldStatus] = mapped_column(
        str_enum(HoldStatus, "hold_status"), default=HoldStatus.PENDING
    )
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    subject_type: Mapped[str | None] = mapped_column(String(32))
    subject_id: Mapped[int | None] = mapped_column(BigInteger)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LedgerDigest(IdMixin, CreatedMixin, Base):
    """Once a day per community: one hash over every account's chain head at the day's end.

    Published digests pin history: rewriting any posting changes its account's
    head and so every later digest."""

    __tablename__ = "ledger_digests"
    __table_args__ = (UniqueConstraint("community_id", "day"),)

    community_id: Mapped[int] = mapped_column(BigId, ForeignKey("communities.id"))
    day: Mapped[date] = mapped_column(Date)
    digest: Mapped[str] = mapped_column(String(64))
    accounts: Mapped[int] = mapped_column(Integer)
    postings: Mapped[int] = mapped_column(BigInteger)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)

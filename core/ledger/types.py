"""What callers hand the ledger: entries made of legs, and what comes back."""

from __future__ import annotations

from dataclasses import dataclass

from core.models import TxKind


@dataclass(frozen=True, slots=True)
class Leg:
    """One posting: `amount` (signed, integer units) of `chip_id` on `account_id`."""

    account_id: int
    chip_id: int
    amount: int


@dataclass(frozen=True, slots=True)
class HoldUse:
    """Capture `amount` of a pending hold: the debit it pays for may spend held chips."""

    hold_id: int
    amount: int


@dataclass(frozen=True, slots=True)
class Entry:
    """One ledger transaction to write."""

    community_id: int
    kind: TxKind
    key: str
    legs: tuple[Leg, ...]
    actor_id: int | None = None
    memo: str = ""
    subject_type: str | None = None
    subject_id: int | None = None
    reverses_id: int | None = None
    holds: tuple[HoldUse, ...] = ()
    # Moderator corrections (reversals, clawbacks) still reach frozen chips and wallets.
    allow_frozen: bool = False


@dataclass(frozen=True, slots=True)
class Posted:
    transaction_id: int
    replayed: bool

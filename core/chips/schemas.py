from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints, field_validator

from core.clock import as_utc
from core.events.schemas import EARLIEST, LATEST
from core.models import AccountKind, ChipKind, EmissionPeriod, TxKind
from core.schemas import Id, Input, Output, StrictBool

MAX_AMOUNT = 10**15  # the ledger's own bound on one leg


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


# Stored upper-case, so the (community, symbol) unique key is case-insensitive.
Symbol = Annotated[
    str,
    BeforeValidator(_upper),
    StringConstraints(strip_whitespace=True, pattern=r"^[A-Z0-9]{2,12}$"),
]
ChipName = Annotated[str, StringConstraints(min_length=1, max_length=60)]
Description = Annotated[str, StringConstraints(max_length=2000)]
Amount = Annotated[int, Field(ge=1, le=MAX_AMOUNT, strict=True)]
Memo = Annotated[str, StringConstraints(max_length=280)]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=280)]


def bounded_utc(value: datetime) -> datetime:
    """Aware UTC within the events' range; ValueError (a 422) outside it.

    An offset near year 1 or 9999 would overflow converting to UTC, and the ledger adds
    days and periods to these instants.
    """
    try:
        utc = as_utc(value)
    except OverflowError as exc:
        raise ValueError("date out of range") from exc
    if not EARLIEST <= utc < LATEST:
        raise ValueError(f"dates must fall between {EARLIEST.year} and {LATEST.year}")
    return utc


_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _date_text(value: object) -> object:
    # Like the strict ints: 0 must not quietly become 1970-01-01. A date object is fine
    # (callers in Python); a datetime is not a day.
    if (isinstance(value, str) and _DAY.fullmatch(value)) or type(value) is date:
        return value
    raise ValueError("a date as YYYY-MM-DD")


def _bounded_day(value: date) -> date:
    if not EARLIEST.date() <= value < LATEST.date():
        raise ValueError(f"dates must fall between {EARLIEST.year} and {LATEST.year}")
    return value


Day = Annotated[date, BeforeValidator(_date_text), AfterValidator(_bounded_day)]


class ChipIn(Input):
    """A personal chip. `supply_cap` bounds the circulating supply; `emission_limit` what may be
    minted per `emission_period` (UTC day, ISO week from Monday, calendar month)."""

    name: ChipName
    symbol: Symbol
    description: Description = ""
    supply_cap: Amount | None = None
    emission_limit: Amount | None = None
    emission_period: EmissionPeriod = EmissionPeriod.DAY
    expires_at: datetime | None = Field(
        default=None,
        description="season end (naive = UTC, before 2200): balances return to the issuer then",
    )
    decay_bps: Annotated[int, Field(ge=0, le=10_000, strict=True)] = Field(
        default=0, description="basis points of each holder's balance returned to the issuer monthly"
    )
    transferable: StrictBool = True
    tippable: StrictBool = True
    redeemable: StrictBool = True
    tradable: StrictBool = True

    @field_validator("expires_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return bounded_utc(value) if value is not None else None


class ChipPatch(Input):
    """What an issuer may change after issuing. Holders keep what they were promised: a supply
    cap can be set or lowered (never below the circulating supply) but not raised or removed,
    and the symbol, season end and decay are fixed at issue."""

    name: ChipName | None = None
    description: Description | None = None
    supply_cap: Amount | None = None
    emission_limit: Amount | None = Field(default=None, description="null removes the per-period limit")
    emission_period: EmissionPeriod | None = None
    transferable: StrictBool | None = None
    tippable: StrictBool | None = None
    redeemable: StrictBool | None = None
    tradable: StrictBool | None = None


class MintIn(Input):
    amount: Amount
    to_user_id: Id | None = Field(default=None, description="default: the caller")
    memo: Memo = ""


class BurnIn(Input):
    amount: Amount
    memo: Memo = ""


class TransferIn(Input):
    to_user_id: Id
    amount: Amount
    memo: Memo = ""


MAX_BATCH_TRANSFERS = 1_000


class TransferBatchIn(Input):
    """Many transfers from the caller's wallet in one request, all or none (an airdrop, a payout)."""

    transfers: list[TransferIn] = Field(min_length=1, max_length=MAX_BATCH_TRANSFERS)


class ReasonIn(Input):
    reason: Reason


class WalletFreezeIn(Input):
    reason: Reason
    chip_id: Id | None = Field(default=None, description="only this chip's account; default: all of them")


class ChipOut(Output):
    id: int
    community_id: int
    kind: ChipKind
    issuer_id: int | None
    name: str
    symbol: str
    description: str
    supply_cap: int | None
    emission_limit: int | None
    emission_period: EmissionPeriod
    expires_at: datetime | None
    decay_bps: int
    transferable: bool
    tippable: bool
    redeemable: bool
    tradable: bool
    frozen: bool
    expired: bool
    created_at: datetime


class SupplyOut(Output):
    chip_id: int
    symbol: str
    circulating: int = Field(description="minus the issuance account's balance")
    held_by_members: int = Field(description="sum of member balances; equals `circulating`")
    supply_cap: int | None
    emission_limit: int | None
    emission_period: EmissionPeriod
    period_start: datetime
    minted_this_period: int = Field(description="sum of MINT transactions since period_start")
    mintable_now: int | None = Field(description="what one mint may add now; null = unlimited")
    holders: int = Field(description="member accounts with a positive balance")


class PostingOut(Output):
    leg: int
    account_id: int
    account_kind: AccountKind
    owner_id: int | None
    chip_id: int
    symbol: str
    amount: int


class TransactionOut(Output):
    id: int
    community_id: int
    kind: TxKind
    memo: str
    actor_id: int | None
    subject_type: str | None
    subject_id: int | None
    reverses_id: int | None
    created_at: datetime
    postings: list[PostingOut]
    replayed: bool = Field(default=False, description="true: a retry answered with the first result")


class BatchTransferOut(Output):
    """One transfer of a batch: its own ledger transaction, with its own receipt
    (`GET /ledger/transactions/{id}/receipt`)."""

    transaction_id: int
    to_user_id: int
    amount: int
    memo: str


class TransferBatchOut(Output):
    chip_id: int
    total: int = Field(description="the sum of the transfers' amounts, debited from the caller's wallet")
    transfers: list[BatchTransferOut] = Field(description="in the request's order")
    replayed: bool = Field(default=False, description="true: a retry answered with the first result")


class AccountStateOut(Output):
    account_id: int
    chip_id: int
    owner_id: int | None
    frozen: bool


class DigestIn(Input):
    day: Day = Field(description="a UTC day, YYYY-MM-DD")

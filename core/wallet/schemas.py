from __future__ import annotations

from datetime import date, datetime

from pydantic import Field

from core.models import AccountKind, ChipKind, TxKind
from core.schemas import Output


class BalanceOut(Output):
    account_id: int
    chip_id: int
    symbol: str
    name: str
    chip_kind: ChipKind
    issuer_id: int | None
    balance: int
    held: int = Field(description="set aside for pending redemptions and open orders")
    available: int = Field(description="balance - held: what can be spent now")
    frozen: bool = Field(description="this account is frozen by a moderator")
    chip_frozen: bool
    chip_expired: bool


class WalletOut(Output):
    community_id: int
    user_id: int
    balances: list[BalanceOut]


class HistoryItemOut(Output):
    posting_id: int
    transaction_id: int
    kind: TxKind
    chip_id: int
    symbol: str
    account_id: int
    amount: int = Field(description="signed: positive received, negative paid")
    balance_after: int
    seq: int
    memo: str
    actor_id: int | None
    subject_type: str | None
    subject_id: int | None
    created_at: datetime


class ReceiptPostingOut(Output):
    leg: int
    account_id: int
    account_kind: AccountKind
    owner_id: int | None
    chip_id: int
    symbol: str
    amount: int
    mine: bool
    # Chain facts: shown for the caller's own postings (and to moderators).
    seq: int | None = None
    balance_after: int | None = None
    hash: str | None = None
    prev_hash: str | None = None
    verified: bool | None = Field(default=None, description="the hash recomputed from its facts matches")


class ReceiptOut(Output):
    id: int
    community_id: int
    kind: TxKind
    memo: str
    actor_id: int | None
    subject_type: str | None
    subject_id: int | None
    reverses_id: int | None
    reversed_by_id: int | None
    created_at: datetime
    postings: list[ReceiptPostingOut]
    verified: bool = Field(description="every shown posting's hash verified")


class ChainCheckOut(Output):
    account_id: int
    chip_id: int
    symbol: str
    ok: bool
    postings: int
    head_hash: str
    first_bad_seq: int | None
    reason: str


class ChainVerifyOut(Output):
    user_id: int
    ok: bool
    accounts: list[ChainCheckOut]


class DigestOut(Output):
    id: int
    community_id: int
    day: date
    digest: str
    accounts: int
    postings: int
    created_at: datetime


class DigestVerifyOut(Output):
    day: date
    digest: str
    recomputed: str
    ok: bool

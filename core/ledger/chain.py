"""The hash chain: one definition, used to write postings and to verify them.

A posting's hash is SHA-256 over its predecessor's hash (64 zeros for an
account's first posting) and the posting's own facts, joined by "|":

    prev | transaction_id | leg | account_id | chip_id | amount | seq | balance_after | kind | created_us

`created_us` is the transaction's time in whole microseconds since the Unix
epoch. The PostgreSQL function `hearth_post` computes exactly this string.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

GENESIS = "0" * 64
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def micros(at: datetime) -> int:
    return (at - _EPOCH) // _US


def posting_hash(
    prev: str,
    *,
    transaction_id: int,
    leg: int,
    account_id: int,
    chip_id: int,
    amount: int,
    seq: int,
    balance_after: int,
    kind: str,
    created_us: int,
) -> str:
    parts = (prev, transaction_id, leg, account_id, chip_id, amount, seq, balance_after, kind, created_us)
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


def digest(lines: list[str]) -> str:
    """The daily digest: SHA-256 over the sorted "account_id:seq:head" lines, newline-joined."""
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()

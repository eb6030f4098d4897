"""Ledger errors, each with a stable code."""

from __future__ import annotations

from core.errors import Conflict, DomainError, InvalidInput, NotFound


def insufficient(account_id: int) -> Conflict:
    return Conflict(
        "not enough chips available in this wallet",
        code="insufficient_funds",
        extra={"account_id": account_id},
    )


def key_reused() -> Conflict:
    return Conflict(
        "this idempotency key was already used for a different request", code="idempotency_key_reused"
    )


def account_frozen(account_id: int) -> Conflict:
    return Conflict("this wallet is frozen", code="account_frozen", extra={"account_id": account_id})


def chip_frozen(chip_id: int) -> Conflict:
    return Conflict("this chip is frozen", code="chip_frozen", extra={"chip_id": chip_id})


def account_missing(account_id: int) -> NotFound:
    return NotFound("ledger account not found", code="account_not_found", extra={"account_id": account_id})


def unbalanced(detail: str) -> InvalidInput:
    return InvalidInput(detail, code="unbalanced_transaction")


def hold_unavailable(hold_id: int) -> Conflict:
    return Conflict(
        "this hold is no longer pending or holds less than asked",
        code="hold_not_pending",
        extra={"hold_id": hold_id},
    )


def already_reversed(transaction_id: int) -> Conflict:
    return Conflict(
        "this transaction was already reversed",
        code="already_reversed",
        extra={"transaction_id": transaction_id},
    )


class LedgerUnavailable(DomainError):
    """The ledger could not confirm a write in time (database unreachable, committer stuck).

    The write may or may not have happened: a retry with the same idempotency key
    returns the first result if it did and writes it once if it did not.
    """

    status_code = 503
    code = "ledger_unavailable"


def unavailable(why: str) -> LedgerUnavailable:
    return LedgerUnavailable(
        f"{why}; retry with the same Idempotency-Key: the transfer is written at most once"
    )

"""All SQL of the ledger.

Three write paths produce identical rows:

- `call_post` (PostgreSQL, one entry): one round trip to `hearth_post`, which
  locks, validates and writes inside the database and returns a status.
- `apply_entries` on PostgreSQL (batches): three round trips whatever the size
  of the batch: lock and read the accounts; look the keys up and reserve the
  transaction ids; then, after balances and hashes are computed in Python, one
  statement that writes every transaction, posting and account. It names the
  batch's ids in `hearth.ledger_batch`, so the commit-time check validates the
  batch with one query instead of one per transaction (migration 0008).
- `apply_entries` on SQLite: the same plan, written through SQLAlchemy.

All validate everything before writing anything, so a refused entry leaves
the session usable and the database untouched.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import BigInteger, Table, Text, bindparam, func, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from core.db import dialect_insert, in_values, is_postgres
from core.ledger import chain
from core.ledger import errors as err
from core.ledger.types import Entry, Posted
from core.models import (
    AccountKind,
    Chip,
    HoldStatus,
    LedgerAccount,
    LedgerHold,
    LedgerPosting,
    LedgerTransaction,
    Membership,
)

_ACCOUNTS = cast(Table, LedgerAccount.__table__)
_HOLDS = cast(Table, LedgerHold.__table__)
_POSTINGS = cast(Table, LedgerPosting.__table__)
_TRANSACTIONS = cast(Table, LedgerTransaction.__table__)


# --- the PostgreSQL single-entry path ---------------------------------------------

_CALL_POST = (
    "SELECT status, tx_id, detail FROM hearth_post("
    "%(community)s, %(kind)s, %(key)s, %(request_hash)s, %(actor)s, %(memo)s, %(subject_type)s, "
    "%(subject_id)s, %(reverses)s, %(accounts)s, %(chips)s, %(amounts)s, %(holds)s, %(hold_amounts)s, "
    "%(allow_frozen)s)"
)


def call_post(session: Session, entry: Entry, request_hash: str) -> Posted:
    try:
        status, tx_id, detail = _fetch_one(session, _CALL_POST, _post_params(entry, request_hash))
    except IntegrityError as exc:
        # The same key, with other accounts, is being written by another transaction that
        # committed while we waited on its key: a different request under a used key.
        if "idempotency_key" in str(exc.orig):
            raise err.key_reused() from exc
        raise  # pragma: no cover - any other violation is a bug, not a user error
    return _status_to_result(status, tx_id, detail)


def _post_params(entry: Entry, request_hash: str) -> dict[str, Any]:
    return {
        "community": entry.community_id,
        "kind": entry.kind.value,
        "key": entry.key,
        "request_hash": request_hash,
        "actor": entry.actor_id,
        "memo": entry.memo,
        "subject_type": entry.subject_type,
        "subject_id": entry.subject_id,
        "reverses": entry.reverses_id,
        "accounts": [leg.account_id for leg in entry.legs],
        "chips": [leg.chip_id for leg in entry.legs],
        "amounts": [leg.amount for leg in entry.legs],
        "holds": [use.hold_id for use in entry.holds],
        "hold_amounts": [use.amount for use in entry.holds],
        "allow_frozen": entry.allow_frozen,
    }


def _fetch_one(session: Session, sql: str, params: dict[str, Any]) -> tuple[Any, ...]:
    """The first row of `sql`, run by the driver (see `_driver_execute`)."""
    rows = _driver_execute(session, sql, params)
    assert rows
    return tuple(rows[0])


def _driver_execute(session: Session, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The rows of `sql`, run by the driver on the session's own connection and transaction.

    These are the hottest statements of the ledger. Skipping SQLAlchemy's statement and
    result machinery for them saves about 150 µs of CPU per statement (measured: about a
    fifth of the client's cost of a whole single transfer), and each statement is
    prepared on first use. Driver errors still surface as SQLAlchemy's, and a dropped
    connection is invalidated exactly as SQLAlchemy would.
    """
    connection = session.connection()
    dbapi_connection: Any = connection.connection.dbapi_connection  # psycopg.Connection
    cursor = dbapi_connection.cursor()
    dbapi_error = connection.dialect.loaded_dbapi.Error
    try:
        cursor.execute(sql, params, prepare=True)
        return cursor.fetchall() if cursor.description is not None else []
    except dbapi_error as exc:
        disconnected = connection.dialect.is_disconnect(exc, dbapi_connection, cursor)
        if disconnected:
            connection.invalidate(exc)
        raise DBAPIError.instance(
            sql,
            params,
            exc,
            dbapi_error,
            hide_parameters=connection.engine.hide_parameters,
            connection_invalidated=disconnected,
            dialect=connection.dialect,
        ) from exc
    finally:
        cursor.close()


def _status_to_result(status: str, tx_id: int | None, detail: int | None) -> Posted:
    if status == "ok":
        assert tx_id is not None
        return Posted(tx_id, replayed=False)
    if status == "replay":
        assert tx_id is not None
        return Posted(tx_id, replayed=True)
    detail_id = int(detail or 0)
    raise {
        "key_conflict": lambda: err.key_reused(),
        "insufficient_funds": lambda: err.insufficient(detail_id),
        "account_frozen": lambda: err.account_frozen(detail_id),
        "chip_frozen": lambda: err.chip_frozen(detail_id),
        "account_not_found": lambda: err.account_missing(detail_id),
        "hold_not_pending": lambda: err.hold_unavailable(detail_id),
        "already_reversed": lambda: err.already_reversed(detail_id),
    }[status]()


# --- batches (and SQLite) ---------------------------------------------------------------


@dataclass(slots=True)
class _Acct:
    id: int
    community_id: int
    chip_id: int
    kind: AccountKind
    balance: int
    held: int
    seq: int
    head_hash: str
    frozen: bool
    chip_frozen: bool
    touched: bool = False


@dataclass(slots=True)
class _Hold:
    id: int
    account_id: int
    remaining: int
    status: HoldStatus
    used: int = 0


_TX_COLUMNS = (
    "id",
    "community_id",
    "kind",
    "legs",
    "idempotency_key",
    "request_hash",
    "actor_id",
    "memo",
    "subject_type",
    "subject_id",
    "reverses_id",
)
_POSTING_COLUMNS = (
    "transaction_id",
    "legs",
    "leg",
    "account_id",
    "chip_id",
    "amount",
    "seq",
    "balance_after",
    "hash",
)


@dataclass
class _Plan:
    """The rows a batch writes, as tuples in `_TX_COLUMNS` / `_POSTING_COLUMNS` order."""

    transactions: list[tuple[Any, ...]] = field(default_factory=list)
    postings: list[tuple[Any, ...]] = field(default_factory=list)

    def columns(self, rows: list[tuple[Any, ...]], names: tuple[str, ...]) -> dict[str, tuple[Any, ...]]:
        """The rows column by column (PostgreSQL receives each column as one array)."""
        return dict(zip(names, zip(*rows, strict=True), strict=True))

    def dicts(self, rows: list[tuple[Any, ...]], names: tuple[str, ...]) -> list[dict[str, Any]]:
        return [dict(zip(names, row, strict=True)) for row in rows]


def find_keys(session: Session, keys: Sequence[str]) -> dict[str, tuple[int, str]]:
    rows = session.execute(
        select(LedgerTransaction.idempotency_key, LedgerTransaction.id, LedgerTransaction.request_hash).where(
            in_values(session, LedgerTransaction.idempotency_key, keys, Text())
        )
    )
    return {key: (tx_id, request_hash) for key, tx_id, request_hash in rows}


def lock_accounts(session: Session, account_ids: Iterable[int]) -> dict[int, _Acct]:
    """Lock the accounts in id order (deadlock-free) and read them with their chip's state."""
    stmt = (
        select(
            LedgerAccount.id,
            LedgerAccount.community_id,
            LedgerAccount.chip_id,
            LedgerAccount.kind,
            LedgerAccount.balance,
            LedgerAccount.held,
            LedgerAccount.seq,
            LedgerAccount.head_hash,
            LedgerAccount.frozen,
            Chip.frozen.label("chip_frozen"),
        )
        .join(Chip, Chip.id == LedgerAccount.chip_id)
        .where(in_values(session, LedgerAccount.id, sorted(account_ids), BigInteger()))
        .order_by(LedgerAccount.id)
        .with_for_update(of=LedgerAccount)
    )
    return {row.id: _Acct(*row) for row in session.execute(stmt)}


def _lock_holds(session: Session, entries: Sequence[Entry]) -> dict[int, _Hold]:
    hold_ids = sorted({use.hold_id for e in entries for use in e.holds})
    if not hold_ids:
        return {}
    stmt = (
        select(LedgerHold.id, LedgerHold.account_id, LedgerHold.remaining, LedgerHold.status)
        .where(LedgerHold.id.in_(hold_ids))
        .order_by(LedgerHold.id)
        .with_for_update()
    )
    return {row.id: _Hold(*row) for row in session.execute(stmt)}


def _already_reversed(session: Session, entries: Sequence[Entry]) -> int | None:
    targets = [e.reverses_id for e in entries if e.reverses_id is not None]
    if not targets:
        return None
    return session.scalar(
        select(LedgerTransaction.reverses_id).where(LedgerTransaction.reverses_id.in_(targets)).limit(1)
    )


def _replayed(
    entries: Sequence[Entry], hashes: Sequence[str], existing: dict[str, tuple[int, str]]
) -> list[Posted] | None:
    """The first results if this very batch was written before; reused keys otherwise are refused."""
    if not existing:
        return None
    if len(existing) == len(entries) and all(
        existing.get(e.key, (0, ""))[1] == h for e, h in zip(entries, hashes, strict=True)
    ):
        return [Posted(existing[e.key][0], replayed=True) for e in entries]
    raise err.key_reused()


def apply_entries(
    session: Session, entries: Sequence[Entry], hashes: Sequence[str], now: datetime
) -> list[Posted]:
    """Write `entries` atomically (all or none): PostgreSQL in three round trips, SQLite via SQLAlchemy."""
    if is_postgres(session):
        return _apply_postgres(session, entries, hashes, now)
    accounts = lock_accounts(session, {leg.account_id for e in entries for leg in e.legs})
    replayed = _replayed(entries, hashes, find_keys(session, [e.key for e in entries]))
    if replayed is not None:
        return replayed
    reversed_id = _already_reversed(session, entries)
    if reversed_id is not None:
        raise err.already_reversed(reversed_id)
    holds = _lock_holds(session, entries)
    # BEGIN IMMEDIATE makes this the only writer, so max(id) is stable.
    top = int(session.scalar(select(func.coalesce(func.max(LedgerTransaction.id), 0))) or 0)
    ids = list(range(top + 1, top + 1 + len(entries)))
    plan = _plan(entries, hashes, ids, accounts, holds, now)
    _write_sqlite(session, plan, accounts, holds, now)
    return [Posted(tx_id, replayed=False) for tx_id in ids]


# Lock (id order, deadlock-free) and read every account of the batch with its chip's state.
_LOCK_ACCOUNTS_PG = (
    "SELECT a.id, a.community_id, a.chip_id, a.kind, a.balance, a.held, a.seq, a.head_hash, a.frozen,"
    " c.frozen FROM ledger_accounts a JOIN chips c ON c.id = a.chip_id"
    " WHERE a.id = ANY (CAST(%(ids)s AS bigint[])) ORDER BY a.id FOR UPDATE OF a"
)

# The keys already used, and the batch's transaction ids, in one round trip. The keys are
# probed one by one: with the 1,000 keys of a batch known, `idempotency_key = ANY (...)` is
# planned as a sequential scan of every transaction (measured: 33 ms at 150,000 transactions,
# growing with the ledger) where the probes take about 3 ms; a lateral subquery can only probe.
# The ids come in one statement, so they are usually consecutive: the commit-time check then
# validates the batch as one run.
_KEYS_AND_IDS_PG = (
    "SELECT (SELECT array_agg(v ORDER BY v) FROM (SELECT nextval((SELECT pg_get_serial_sequence("
    "'ledger_transactions', 'id'))::regclass) AS v FROM generate_series(1, %(n)s)) AS s),"
    " array_agg(k.key), array_agg(t.id), array_agg(t.request_hash)"
    " FROM unnest(CAST(%(keys)s AS text[])) AS k(key)"
    " CROSS JOIN LATERAL (SELECT id, request_hash FROM ledger_transactions"
    " WHERE idempotency_key = k.key LIMIT 1) AS t"
)

# Every row of the batch in one statement; `hearth.ledger_batch` tells the commit-time
# check (migration 0008) which transaction ids to validate together.
_WRITE_BATCH_PG = (
    "WITH t AS (INSERT INTO ledger_transactions (id, community_id, kind, legs, idempotency_key, request_hash,"
    " actor_id, memo, subject_type, subject_id, reverses_id, created_at)"
    " SELECT u.*, CAST(%(now)s AS timestamptz) FROM unnest(CAST(%(id)s AS bigint[]),"
    " CAST(%(community_id)s AS bigint[]), CAST(%(kind)s AS text[]), CAST(%(legs)s AS integer[]),"
    " CAST(%(idempotency_key)s AS text[]), CAST(%(request_hash)s AS text[]), CAST(%(actor_id)s AS bigint[]),"
    " CAST(%(memo)s AS text[]), CAST(%(subject_type)s AS text[]), CAST(%(subject_id)s AS bigint[]),"
    " CAST(%(reverses_id)s AS bigint[])) AS u),"
    " p AS (INSERT INTO ledger_postings (transaction_id, legs, leg, account_id, chip_id, amount, seq,"
    " balance_after, hash)"
    " SELECT * FROM unnest(CAST(%(p_transaction_id)s AS bigint[]), CAST(%(p_legs)s AS integer[]),"
    " CAST(%(p_leg)s AS integer[]), CAST(%(p_account_id)s AS bigint[]), CAST(%(p_chip_id)s AS bigint[]),"
    " CAST(%(p_amount)s AS bigint[]), CAST(%(p_seq)s AS bigint[]), CAST(%(p_balance_after)s AS bigint[]),"
    " CAST(%(p_hash)s AS text[]))),"
    " a AS (UPDATE ledger_accounts a SET balance = u.balance, held = u.held, seq = u.seq, head_hash = u.head"
    " FROM unnest(CAST(%(a_id)s AS bigint[]), CAST(%(a_balance)s AS bigint[]), CAST(%(a_held)s AS bigint[]),"
    " CAST(%(a_seq)s AS bigint[]), CAST(%(a_head)s AS text[])) AS u(id, balance, held, seq, head)"
    " WHERE a.id = u.id)"
    " SELECT set_config('hearth.ledger_batch', %(batch)s, true)"
)

_TEXT_COLUMNS = frozenset({"kind", "idempotency_key", "request_hash", "memo", "subject_type", "hash"})


def _apply_postgres(
    session: Session, entries: Sequence[Entry], hashes: Sequence[str], now: datetime
) -> list[Posted]:
    # The driver does not autoflush: pending ORM rows (a hold placed just before) go first.
    session.flush()
    account_ids = sorted({leg.account_id for e in entries for leg in e.legs})
    accounts = {
        row[0]: _Acct(*row)
        for row in _driver_execute(session, _LOCK_ACCOUNTS_PG, {"ids": _int_array(account_ids)})
    }
    # Keys are checked under the account locks: a concurrent retry of the same request
    # touches the same accounts, so it waits above and then sees the first one's result.
    ids, found_keys, found_ids, found_hashes = _fetch_one(
        session, _KEYS_AND_IDS_PG, {"n": len(entries), "keys": _text_array(e.key for e in entries)}
    )
    existing = dict(zip(found_keys or (), zip(found_ids or (), found_hashes or (), strict=True), strict=True))
    replayed = _replayed(entries, hashes, existing)
    if replayed is not None:
        return replayed
    reversed_id = _already_reversed(session, entries)
    if reversed_id is not None:
        raise err.already_reversed(reversed_id)
    holds = _lock_holds(session, entries)
    plan = _plan(entries, hashes, ids, accounts, holds, now)
    touched = [a for a in accounts.values() if a.touched]
    params: dict[str, Any] = {
        column: _text_array(values) if column in _TEXT_COLUMNS else _int_array(values)
        for column, values in plan.columns(plan.transactions, _TX_COLUMNS).items()
    }
    for column, values in plan.columns(plan.postings, _POSTING_COLUMNS).items():
        params[f"p_{column}"] = _text_array(values) if column in _TEXT_COLUMNS else _int_array(values)
    params.update(
        now=now,
        a_id=_int_array(a.id for a in touched),
        a_balance=_int_array(a.balance for a in touched),
        a_held=_int_array(a.held for a in touched),
        a_seq=_int_array(a.seq for a in touched),
        a_head=_text_array(a.head_hash for a in touched),
        batch=f"{min(ids)}:{max(ids)}",
    )
    try:
        _driver_execute(session, _WRITE_BATCH_PG, params)
    except IntegrityError as exc:
        # A concurrent, different request took one of these keys between our check and here.
        if "idempotency_key" in str(exc.orig):
            raise err.key_reused() from exc
        raise  # pragma: no cover - any other violation is a bug, not a user error
    _settle_holds(session, holds, now)
    return [Posted(tx_id, replayed=False) for tx_id in ids]


def _plan(
    entries: Sequence[Entry],
    hashes: Sequence[str],
    ids: Sequence[int],
    accounts: dict[int, _Acct],
    holds: dict[int, _Hold],
    now: datetime,
) -> _Plan:
    """Validate the entries in order against the locked accounts and compute every row.

    Raises the first refusal; nothing is written until the whole batch passed. An entry
    may spend what an earlier entry of the batch paid in, as if they came one by one.
    """
    plan = _Plan()
    created_us = chain.micros(now)
    sha256 = hashlib.sha256
    add_posting = plan.postings.append
    for entry, request_hash, tx_id in zip(entries, hashes, ids, strict=True):
        _check_accounts(entry, accounts)
        for use in entry.holds:
            hold = holds.get(use.hold_id)
            if (
                hold is None
                or hold.status != HoldStatus.PENDING
                or hold.remaining < use.amount
                or hold.account_id not in accounts
            ):
                raise err.hold_unavailable(use.hold_id)
            hold.remaining -= use.amount
            hold.used += use.amount
            accounts[hold.account_id].held -= use.amount
        legs = entry.legs
        count = len(legs)
        kind = entry.kind.value
        # chain.posting_hash's string, built inline: this loop runs for every posting of a batch.
        tail = f"|{kind}|{created_us}"
        for leg_no, leg in enumerate(legs):
            acct = accounts[leg.account_id]
            amount = leg.amount
            balance = acct.balance = acct.balance + amount
            seq = acct.seq = acct.seq + 1
            acct.touched = True
            head = acct.head_hash = sha256(
                f"{acct.head_hash}|{tx_id}|{leg_no}|{acct.id}|{acct.chip_id}|{amount}|{seq}|{balance}{tail}".encode()
            ).hexdigest()
            add_posting((tx_id, count, leg_no, acct.id, acct.chip_id, amount, seq, balance, head))
        for leg in legs:
            acct = accounts[leg.account_id]
            if acct.balance < acct.held and acct.kind == AccountKind.MEMBER:
                raise err.insufficient(acct.id)
        plan.transactions.append(
            (
                tx_id,
                entry.community_id,
                kind,
                count,
                entry.key,
                request_hash,
                entry.actor_id,
                entry.memo,
                entry.subject_type,
                entry.subject_id,
                entry.reverses_id,
            )
        )
    return plan


def _check_accounts(entry: Entry, accounts: dict[int, _Acct]) -> None:
    for leg in entry.legs:
        acct = accounts.get(leg.account_id)
        if acct is None or acct.community_id != entry.community_id or acct.chip_id != leg.chip_id:
            raise err.account_missing(leg.account_id)
        if entry.allow_frozen:
            continue
        if acct.chip_frozen:
            raise err.chip_frozen(acct.chip_id)
        if acct.frozen:
            raise err.account_frozen(acct.id)


def _settle_holds(session: Session, holds: dict[int, _Hold], now: datetime) -> None:
    used = [h for h in holds.values() if h.used]
    if not used:
        return
    session.execute(
        update(_HOLDS)
        .where(_HOLDS.c.id == bindparam("b_id"))
        .values(
            remaining=bindparam("b_remaining"),
            status=bindparam("b_status"),
            resolved_at=bindparam("b_resolved"),
        ),
        [
            {
                "b_id": h.id,
                "b_remaining": h.remaining,
                "b_status": HoldStatus.POSTED if h.remaining == 0 else HoldStatus.PENDING,
                "b_resolved": now if h.remaining == 0 else None,
            }
            for h in used
        ],
    )


def _write_sqlite(
    session: Session, plan: _Plan, accounts: dict[int, _Acct], holds: dict[int, _Hold], now: datetime
) -> None:
    # Postings first: SQLite's insert trigger on ledger_transactions checks that a
    # transaction's postings are all present and balanced (the foreign key is deferred).
    session.execute(insert(_POSTINGS), plan.dicts(plan.postings, _POSTING_COLUMNS))
    transactions = plan.dicts(plan.transactions, _TX_COLUMNS)
    for row in transactions:
        row["created_at"] = now
    session.execute(insert(_TRANSACTIONS), transactions)
    session.execute(
        update(_ACCOUNTS)
        .where(_ACCOUNTS.c.id == bindparam("b_id"))
        .values(
            balance=bindparam("b_balance"),
            held=bindparam("b_held"),
            seq=bindparam("b_seq"),
            head_hash=bindparam("b_head"),
        ),
        [
            {"b_id": a.id, "b_balance": a.balance, "b_held": a.held, "b_seq": a.seq, "b_head": a.head_hash}
            for a in accounts.values()
            if a.touched
        ],
    )
    _settle_holds(session, holds, now)


def _int_array(values: Iterable[int | None]) -> str:
    """An integer array as one PostgreSQL literal: far cheaper to build than element-wise dumping."""
    return "{" + ",".join("NULL" if v is None else str(int(v)) for v in values) + "}"


def _text_array(values: Iterable[str | None]) -> str:
    """A text array as one PostgreSQL literal (every element quoted, so any string is safe).

    psycopg dumps a list of strings element by element with a regular expression each;
    for the keys, hashes and memos of a 1,000-entry batch that was a fifth of the
    client's CPU. Most columns (hashes, keys) need no escaping: they are joined at once.
    """
    values = values if isinstance(values, list | tuple) else list(values)
    if None not in values:
        joined = '","'.join(cast(Iterable[str], values))
        # Only the separators' quotes: no element has a quote or a backslash to escape.
        if "\\" not in joined and joined.count('"') == 2 * (len(values) - 1):
            return '{"' + joined + '"}' if values else "{}"
    return (
        "{"
        + ",".join(
            "NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values
        )
        + "}"
    )


# --- holds ----------------------------------------------------------------------------


def find_hold_by_key(session: Session, key: str) -> LedgerHold | None:
    return session.scalar(select(LedgerHold).where(LedgerHold.idempotency_key == key))


def reserve(session: Session, account_id: int, amount: int) -> bool:
    """Move `amount` from available to held in one conditional UPDATE; False if short or frozen."""
    result = session.execute(
        update(LedgerAccount)
        .where(
            LedgerAccount.id == account_id,
            LedgerAccount.kind == AccountKind.MEMBER,
            LedgerAccount.balance - LedgerAccount.held >= amount,
        )
        .values(held=LedgerAccount.held + amount)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def release(session: Session, account_id: int, amount: int) -> None:
    session.execute(
        update(LedgerAccount)
        .where(LedgerAccount.id == account_id)
        .values(held=LedgerAccount.held - amount)
        .execution_options(synchronize_session=False)
    )


def lock_hold(session: Session, hold_id: int) -> LedgerHold | None:
    return session.scalar(
        select(LedgerHold)
        .where(LedgerHold.id == hold_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def expired_hold_ids(session: Session, now: datetime, limit: int) -> list[int]:
    return list(
        session.scalars(
            select(LedgerHold.id)
            .where(LedgerHold.status == HoldStatus.PENDING, LedgerHold.expires_at <= now)
            .order_by(LedgerHold.expires_at, LedgerHold.id)
            .limit(limit)
        )
    )


# --- reading ----------------------------------------------------------------------------


def wallet_frozen(session: Session, community_id: int, owner_id: int) -> bool:
    """Whether a moderator froze the owner's whole wallet in the community."""
    return owner_id in frozen_wallet_owners(session, community_id, [owner_id])


def frozen_wallet_owners(session: Session, community_id: int, owner_ids: Iterable[int]) -> set[int]:
    """Which of the owners' whole wallets a moderator froze in the community (one query)."""
    return set(
        session.scalars(
            select(Membership.user_id).where(
                Membership.community_id == community_id,
                in_values(session, Membership.user_id, sorted(set(owner_ids)), BigInteger()),
                Membership.wallet_frozen.is_(True),
            )
        )
    )


def insert_wallets(session: Session, chip: Chip, owners: dict[int, bool], now: datetime) -> None:
    """Member accounts of `chip` for `owners` (id -> frozen), in one statement; an owner whose
    wallet a concurrent request created meanwhile keeps that one (ON CONFLICT DO NOTHING)."""
    rows = [
        {
            "community_id": chip.community_id,
            "chip_id": chip.id,
            "kind": AccountKind.MEMBER,
            "owner_id": owner_id,
            "balance": 0,
            "held": 0,
            "seq": 0,
            "head_hash": chain.GENESIS,
            "frozen": frozen,
            "created_at": now,
        }
        for owner_id, frozen in sorted(owners.items())
    ]
    session.execute(dialect_insert(session)(_ACCOUNTS).values(rows).on_conflict_do_nothing())


def account_row(session: Session, account_id: int) -> LedgerAccount | None:
    return session.get(LedgerAccount, account_id, populate_existing=True)


def postings_of(session: Session, transaction_id: int) -> list[LedgerPosting]:
    return list(
        session.scalars(
            select(LedgerPosting)
            .where(LedgerPosting.transaction_id == transaction_id)
            .order_by(LedgerPosting.leg)
        )
    )


def previous_hash(session: Session, account_id: int, seq: int) -> str:
    if seq <= 1:
        return chain.GENESIS
    found = session.scalar(
        select(LedgerPosting.hash).where(LedgerPosting.account_id == account_id, LedgerPosting.seq == seq - 1)
    )
    return found or chain.GENESIS


def chain_rows(session: Session, account_id: int, after_seq: int, limit: int) -> Sequence[Any]:
    """Postings of one account in chain order, with their transaction's kind and time."""
    return session.execute(
        select(
            LedgerPosting.transaction_id,
            LedgerPosting.leg,
            LedgerPosting.account_id,
            LedgerPosting.chip_id,
            LedgerPosting.amount,
            LedgerPosting.seq,
            LedgerPosting.balance_after,
            LedgerPosting.hash,
            LedgerTransaction.kind,
            LedgerTransaction.created_at,
        )
        .join(LedgerTransaction, LedgerTransaction.id == LedgerPosting.transaction_id)
        .where(LedgerPosting.account_id == account_id, LedgerPosting.seq > after_seq)
        .order_by(LedgerPosting.seq)
        .limit(limit)
    ).all()

"""All SQL of the ledger.

Two write paths produce identical rows:

- `call_post` (PostgreSQL, one entry): one round trip to `hearth_post`, which
  locks, validates and writes inside the database and returns a status.
- `apply_entries` (SQLite, and batches everywhere): locks and reads the
  accounts once, computes balances and hashes in Python, then writes every
  row with a few set-based statements.

Both validate everything before writing anything, so a refused entry leaves
the session usable and the database untouched.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import BigInteger, Table, Text, any_, bindparam, func, insert, select, text, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

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


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


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
    """One row of `sql`, run by the driver on the session's own connection and transaction.

    This is the hottest statement of the ledger. Skipping SQLAlchemy's statement and
    result machinery for it saves about 150 µs of CPU per transfer (measured: about a
    fifth of the client's cost of a whole unit of work), and the statement is prepared
    on first use. Driver errors still surface as SQLAlchemy's, and a dropped connection
    is invalidated exactly as SQLAlchemy would.
    """
    connection = session.connection()
    dbapi_connection: Any = connection.connection.dbapi_connection  # psycopg.Connection
    cursor = dbapi_connection.cursor()
    dbapi_error = connection.dialect.loaded_dbapi.Error
    try:
        cursor.execute(sql, params, prepare=True)
        row = cursor.fetchone()
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
    assert row is not None
    return tuple(row)


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


# --- the Python path ----------------------------------------------------------------


@dataclass
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


@dataclass
class _Hold:
    id: int
    account_id: int
    remaining: int
    status: HoldStatus
    used: int = 0


@dataclass
class _Plan:
    postings: list[dict[str, Any]] = field(default_factory=list)
    transactions: list[dict[str, Any]] = field(default_factory=list)


def _in_list(session: Session, column: Any, values: Sequence[Any], element: Any) -> Any:
    """`column IN values`; on PostgreSQL one array parameter (`= ANY`), not one per value.

    A batch names thousands of accounts and keys: thousands of placeholders cost
    more to build, send and plan than the query itself.
    """
    if is_postgres(session):
        return column == any_(sql_cast(bindparam(None, list(values), type_=ARRAY(element)), ARRAY(element)))
    return column.in_(values)


_FIND_KEYS_PG = text(
    "SELECT k.key, t.id, t.request_hash FROM unnest(CAST(:keys AS text[])) AS k(key)"
    " CROSS JOIN LATERAL (SELECT id, request_hash FROM ledger_transactions"
    " WHERE idempotency_key = k.key LIMIT 1) AS t"
)


def find_keys(session: Session, keys: Sequence[str]) -> dict[str, tuple[int, str]]:
    if is_postgres(session):
        # One index probe per key, whatever the planner thinks: with the 1,000 keys of a
        # batch known, `idempotency_key = ANY (:keys)` is planned as a sequential scan of
        # every transaction (measured: 33 ms at 150,000 transactions, growing with the
        # ledger) where the probes take about 3 ms. A lateral subquery can only probe.
        rows = session.execute(_FIND_KEYS_PG, {"keys": _text_array(keys)})
        return {key: (tx_id, request_hash) for key, tx_id, request_hash in rows}
    rows = session.execute(
        select(LedgerTransaction.idempotency_key, LedgerTransaction.id, LedgerTransaction.request_hash).where(
            _in_list(session, LedgerTransaction.idempotency_key, keys, Text())
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
        .where(_in_list(session, LedgerAccount.id, sorted(account_ids), BigInteger()))
        .order_by(LedgerAccount.id)
        .with_for_update(of=LedgerAccount)
    )
    return {row.id: _Acct(*row) for row in session.execute(stmt)}


def _lock_holds(session: Session, hold_ids: Iterable[int]) -> dict[int, _Hold]:
    stmt = (
        select(LedgerHold.id, LedgerHold.account_id, LedgerHold.remaining, LedgerHold.status)
        .where(LedgerHold.id.in_(sorted(hold_ids)))
        .order_by(LedgerHold.id)
        .with_for_update()
    )
    return {row.id: _Hold(*row) for row in session.execute(stmt)}


def _reserve_ids(session: Session, count: int) -> list[int]:
    if is_postgres(session):
        return list(
            session.scalars(
                text(
                    "SELECT nextval(pg_get_serial_sequence('ledger_transactions', 'id'))"
                    " FROM generate_series(1, :n)"
                ),
                {"n": count},
            )
        )
    # SQLite: BEGIN IMMEDIATE makes this the only writer, so max(id) is stable.
    top = session.scalar(select(func.coalesce(func.max(LedgerTransaction.id), 0)))
    return list(range(int(top or 0) + 1, int(top or 0) + 1 + count))


def _already_reversed(session: Session, entries: Sequence[Entry]) -> int | None:
    targets = [e.reverses_id for e in entries if e.reverses_id is not None]
    if not targets:
        return None
    return session.scalar(
        select(LedgerTransaction.reverses_id).where(LedgerTransaction.reverses_id.in_(targets)).limit(1)
    )


def apply_entries(
    session: Session, entries: Sequence[Entry], hashes: Sequence[str], now: datetime
) -> list[Posted]:
    """Write `entries` atomically (all or none) through the Python path."""
    accounts = lock_accounts(session, {leg.account_id for e in entries for leg in e.legs})
    # Keys are checked under the account locks: a concurrent retry of the same request
    # touches the same accounts, so it waits here and then sees the first one's result.
    existing = find_keys(session, [e.key for e in entries])
    if existing:
        if len(existing) == len(entries) and all(
            existing.get(e.key, (0, ""))[1] == h for e, h in zip(entries, hashes, strict=True)
        ):
            return [Posted(existing[e.key][0], replayed=True) for e in entries]
        raise err.key_reused()
    reversed_id = _already_reversed(session, entries)
    if reversed_id is not None:
        raise err.already_reversed(reversed_id)
    holds = _lock_holds(session, {u.hold_id for e in entries for u in e.holds})

    plan = _Plan()
    ids = _reserve_ids(session, len(entries))
    created_us = chain.micros(now)
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
        for leg_no, leg in enumerate(entry.legs):
            acct = accounts[leg.account_id]
            acct.balance += leg.amount
            acct.seq += 1
            acct.touched = True
            acct.head_hash = chain.posting_hash(
                acct.head_hash,
                transaction_id=tx_id,
                leg=leg_no,
                account_id=acct.id,
                chip_id=acct.chip_id,
                amount=leg.amount,
                seq=acct.seq,
                balance_after=acct.balance,
                kind=entry.kind.value,
                created_us=created_us,
            )
            plan.postings.append(
                {
                    "transaction_id": tx_id,
                    "legs": len(entry.legs),
                    "leg": leg_no,
                    "account_id": acct.id,
                    "chip_id": acct.chip_id,
                    "amount": leg.amount,
                    "seq": acct.seq,
                    "balance_after": acct.balance,
                    "hash": acct.head_hash,
                }
            )
        for leg in entry.legs:
            acct = accounts[leg.account_id]
            if acct.kind == AccountKind.MEMBER and acct.balance < acct.held:
                raise err.insufficient(acct.id)
        plan.transactions.append(
            {
                "id": tx_id,
                "community_id": entry.community_id,
                "kind": entry.kind.value,
                "legs": len(entry.legs),
                "idempotency_key": entry.key,
                "request_hash": request_hash,
                "actor_id": entry.actor_id,
                "memo": entry.memo,
                "subject_type": entry.subject_type,
                "subject_id": entry.subject_id,
                "reverses_id": entry.reverses_id,
                "created_at": now,
            }
        )
    _write(session, plan, accounts, holds, now)
    return [Posted(tx_id, replayed=False) for tx_id in ids]


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


def _write(
    session: Session, plan: _Plan, accounts: dict[int, _Acct], holds: dict[int, _Hold], now: datetime
) -> None:
    # Postings first: SQLite's insert trigger on ledger_transactions checks that a
    # transaction's postings are all present and balanced (the foreign key is deferred).
    _bulk_insert(session, LedgerPosting, plan.postings)
    try:
        _bulk_insert(session, LedgerTransaction, plan.transactions)
    except IntegrityError as exc:
        # A concurrent, different request took one of these keys between our check and here.
        if "idempotency_key" in str(exc.orig):
            raise err.key_reused() from exc
        raise  # pragma: no cover - any other violation is a bug, not a user error
    touched = [a for a in accounts.values() if a.touched]
    if any(h.used for h in holds.values()):
        session.execute(
            update(_ACCOUNTS).where(_ACCOUNTS.c.id == bindparam("b_id")).values(held=bindparam("b_held")),
            [{"b_id": a.id, "b_held": a.held} for a in accounts.values()],
        )
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
                for h in holds.values()
                if h.used
            ],
        )
    if is_postgres(session) and len(touched) > 8:
        # One statement instead of one UPDATE per account (a batch touches thousands).
        session.execute(
            text(
                "UPDATE ledger_accounts a SET balance = u.balance, seq = u.seq, head_hash = u.head"
                " FROM unnest(CAST(:ids AS bigint[]), CAST(:balances AS bigint[]), CAST(:seqs AS bigint[]),"
                " CAST(:heads AS text[])) AS u(id, balance, seq, head) WHERE a.id = u.id"
            ),
            {
                "ids": _int_array(a.id for a in touched),
                "balances": _int_array(a.balance for a in touched),
                "seqs": _int_array(a.seq for a in touched),
                "heads": _text_array(a.head_hash for a in touched),
            },
        )
        return
    session.execute(
        update(_ACCOUNTS)
        .where(_ACCOUNTS.c.id == bindparam("b_id"))
        .values(balance=bindparam("b_balance"), seq=bindparam("b_seq"), head_hash=bindparam("b_head")),
        [{"b_id": a.id, "b_balance": a.balance, "b_seq": a.seq, "b_head": a.head_hash} for a in touched],
    )


_PG_ARRAY_TYPES = {"BIGINT": "bigint", "INTEGER": "integer"}
_INT_TYPES = frozenset(_PG_ARRAY_TYPES.values())


def _int_array(values: Iterable[int | None]) -> str:
    """An integer array as one PostgreSQL literal: far cheaper to build than element-wise dumping."""
    return "{" + ",".join("NULL" if v is None else str(int(v)) for v in values) + "}"


def _text_array(values: Iterable[str | None]) -> str:
    """A text array as one PostgreSQL literal (every element quoted, so any string is safe).

    psycopg dumps a list of strings element by element with a regular expression each;
    for the keys, hashes and memos of a 1,000-entry batch that was a fifth of the
    client's CPU.
    """
    return (
        "{"
        + ",".join(
            "NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values
        )
        + "}"
    )


def _bulk_insert(session: Session, model: type[Any], rows: list[dict[str, Any]]) -> None:
    if is_postgres(session) and len(rows) > 8:
        # One statement for thousands of rows: the columns travel as arrays.
        cols = list(rows[0])
        types = {c: _pg_type(model, c) for c in cols}
        casts = ", ".join(f"CAST(:{c} AS {types[c]}[])" for c in cols)
        session.execute(
            text(f"INSERT INTO {model.__tablename__} ({', '.join(cols)}) SELECT * FROM unnest({casts})"),
            {c: _array_literal(types[c], [r[c] for r in rows]) for c in cols},
        )
        return
    session.execute(insert(model.__table__), rows)


def _array_literal(pg_type: str, values: list[Any]) -> Any:
    if pg_type in _INT_TYPES:
        return _int_array(values)
    if pg_type == "text":
        return _text_array(values)
    return values


def _pg_type(model: type[Any], column: str) -> str:
    sql_type = str(model.__table__.c[column].type.compile(dialect=_pg_dialect()))
    return "text" if sql_type.startswith("VARCHAR") else _PG_ARRAY_TYPES.get(sql_type, sql_type.lower())


def _pg_dialect() -> Any:
    from sqlalchemy.dialects import postgresql

    return postgresql.dialect()


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
    found = session.scalar(
        select(Membership.wallet_frozen).where(
            Membership.community_id == community_id, Membership.user_id == owner_id
        )
    )
    return bool(found)


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

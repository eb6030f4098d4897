"""Ledger rules: validate an entry, then write it through the fastest safe path.

Callers (chips, tipping, earning, redemption, trading) build `Entry`s; this
module checks them first (legs, zero sum per chip, keys), and the database
checks again. Nothing here commits: the request or task owns the transaction.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy import BigInteger, Select, bindparam, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.clock import utcnow
from core.db import in_param, is_postgres
from core.errors import Conflict, InvalidInput, NotFound
from core.ledger import chain
from core.ledger import errors as err
from core.ledger import repository as repo
from core.ledger.types import Entry, HoldUse, Leg, Posted
from core.models import (
    AccountKind,
    Chip,
    HoldStatus,
    LedgerAccount,
    LedgerDigest,
    LedgerHold,
    LedgerPosting,
    LedgerTransaction,
    TxKind,
)

MAX_LEGS = 20_000
MAX_AMOUNT = 10**15  # far below 2**63, so no sum of a batch can overflow
# The most of one chip that may ever be in circulation (checked by `core.chips` before anything
# leaves an issuance account): with legs of at most MAX_AMOUNT, no balance comes near 2**63.
MAX_SUPPLY = 10**18
KEY_MAX = 200
# The columns' lengths (`LedgerTransaction`): checked here, because SQLite does not enforce them.
MEMO_MAX = 280
SUBJECT_TYPE_MAX = 32

__all__ = ["Entry", "HoldUse", "Leg", "Posted"]


# --- validation ------------------------------------------------------------------------

CLIENT_KEY_RE = re.compile(r"[A-Za-z0-9._:-]{1,120}")


def client_key(scope: str, actor_id: int, key: str | None) -> str:
    """The ledger-wide key for a client's `Idempotency-Key`: scoped to an operation and a caller.

    Every request that moves chips sends one: a fresh key per operation, the same key
    when it retries. Two members choosing the same key never collide.
    """
    if not key:
        raise InvalidInput(
            "send an `Idempotency-Key` header (a fresh one per operation, the same one on retry)",
            code="idempotency_key_required",
        )
    if not CLIENT_KEY_RE.fullmatch(key):
        raise InvalidInput(
            "an idempotency key is 1 to 120 characters of A-Z a-z 0-9 . _ : -", code="invalid_idempotency_key"
        )
    return f"{scope}:{actor_id}:{key}"


def request_hash(entry: Entry) -> str:
    """What a retry must repeat exactly for its key to be accepted.

    SHA-256 of the compact JSON of `[community_id, kind, [[account, chip, amount], ...],
    [[hold, amount], ...], actor_id, memo, subject_type, subject_id, reverses_id]`. The
    hashes of keys already used are stored, so this string may never change; it is
    built by hand (json.dumps only for the strings) because batches hash every entry.
    """
    legs = ",".join([f"[{leg.account_id},{leg.chip_id},{leg.amount}]" for leg in entry.legs])
    holds = ",".join([f"[{use.hold_id},{use.amount}]" for use in entry.holds])
    canonical = (
        f"[{entry.community_id},{_json(entry.kind.value)},[{legs}],[{holds}],{_json(entry.actor_id)},"
        f"{_json(entry.memo)},{_json(entry.subject_type)},{_json(entry.subject_id)},{_json(entry.reverses_id)}]"
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _json(value: str | int | None) -> str:
    """`json.dumps(value)` for the scalars of `request_hash` (ensure_ascii, as it always was)."""
    if value is None:
        return "null"
    if isinstance(value, str):
        # Printable ASCII without quotes or backslashes is what json.dumps leaves as it is.
        if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
            return f'"{value}"'
        return json.dumps(value)
    return str(int(value))


def validate(entry: Entry) -> None:
    if not entry.key or len(entry.key) > KEY_MAX:
        raise InvalidInput(f"an idempotency key of 1 to {KEY_MAX} characters is required", code="invalid_key")
    if len(entry.memo) > MEMO_MAX:
        raise InvalidInput(f"a memo is at most {MEMO_MAX} characters", code="memo_too_long")
    if entry.subject_type is not None and not 0 < len(entry.subject_type) <= SUBJECT_TYPE_MAX:
        raise InvalidInput(f"a subject type is 1 to {SUBJECT_TYPE_MAX} characters", code="invalid_subject")
    if len(entry.legs) < 2 or len(entry.legs) > MAX_LEGS:
        raise err.unbalanced(f"a transaction needs 2 to {MAX_LEGS} legs")
    sums: dict[int, int] = defaultdict(int)
    for leg in entry.legs:
        if leg.amount == 0 or abs(leg.amount) > MAX_AMOUNT:
            raise err.unbalanced("every leg moves a non-zero amount within range")
        sums[leg.chip_id] += leg.amount
    if any(total != 0 for total in sums.values()):
        raise err.unbalanced("the legs of each chip must sum to zero")
    for use in entry.holds:
        if use.amount <= 0:
            raise err.unbalanced("a hold capture moves a positive amount")


# --- writing ------------------------------------------------------------------------------


def post(session: Session, entry: Entry) -> Posted:
    """Write one transaction; a retry with the same key returns the first result."""
    validate(entry)
    digest = request_hash(entry)
    if is_postgres(session):
        return repo.call_post(session, entry, digest)
    return repo.apply_entries(session, [entry], [digest], utcnow())[0]


def post_batch(session: Session, entries: Sequence[Entry]) -> list[Posted]:
    """Write many transactions at once, all or none; accounts are locked once, in id order."""
    if not entries:
        return []
    for entry in entries:
        validate(entry)
    if len({e.key for e in entries}) != len(entries):
        raise InvalidInput("keys within a batch must differ", code="invalid_key")
    return repo.apply_entries(session, entries, [request_hash(e) for e in entries], utcnow())


def transfer_entry(
    *,
    community_id: int,
    chip_id: int,
    source: int,
    target: int,
    amount: int,
    key: str,
    kind: TxKind = TxKind.TRANSFER,
    actor_id: int | None = None,
    memo: str = "",
    subject: tuple[str, int] | None = None,
) -> Entry:
    """The two-leg entry of a transfer from `source` to `target`, after its own checks."""
    if amount <= 0:
        raise InvalidInput("the amount must be positive", code="invalid_amount")
    if source == target:
        raise InvalidInput("a wallet cannot pay itself", code="same_account")
    return Entry(
        community_id=community_id,
        kind=kind,
        key=key,
        legs=(Leg(source, chip_id, -amount), Leg(target, chip_id, amount)),
        actor_id=actor_id,
        memo=memo,
        subject_type=subject[0] if subject else None,
        subject_id=subject[1] if subject else None,
    )


def transfer(
    session: Session,
    *,
    community_id: int,
    chip_id: int,
    source: int,
    target: int,
    amount: int,
    key: str,
    kind: TxKind = TxKind.TRANSFER,
    actor_id: int | None = None,
    memo: str = "",
    subject: tuple[str, int] | None = None,
) -> Posted:
    return post(
        session,
        transfer_entry(
            community_id=community_id,
            chip_id=chip_id,
            source=source,
            target=target,
            amount=amount,
            key=key,
            kind=kind,
            actor_id=actor_id,
            memo=memo,
            subject=subject,
        ),
    )


def reverse(
    session: Session, transaction_id: int, *, key: str, actor_id: int | None, memo: str = ""
) -> Posted:
    """Undo a transaction with its mirror image. The original stays; it can be reversed once."""
    original = session.get(LedgerTransaction, transaction_id)
    if original is None:
        raise NotFound("transaction not found", code="transaction_not_found")
    if original.kind == TxKind.REVERSAL:
        raise Conflict("a reversal cannot itself be reversed", code="reversal_not_reversible")
    legs = tuple(Leg(p.account_id, p.chip_id, -p.amount) for p in repo.postings_of(session, transaction_id))
    return post(
        session,
        Entry(
            community_id=original.community_id,
            kind=TxKind.REVERSAL,
            key=key,
            legs=legs,
            actor_id=actor_id,
            memo=memo or f"reversal of #{transaction_id}",
            subject_type=original.subject_type,
            subject_id=original.subject_id,
            reverses_id=transaction_id,
            allow_frozen=True,
        ),
    )


def lock_accounts(session: Session, account_ids: Sequence[int]) -> None:
    """Lock every account a multi-step unit of work will touch, at once, in id order.

    One ledger call locks what it touches; a unit of work that makes several
    (place a hold, then capture it into another wallet; match several orders)
    must call this first with all of them, or two such units can each hold one
    account the other needs next and deadlock.
    """
    repo.lock_accounts(session, account_ids)


def lock_key(session: Session, key: str) -> None:
    """Serialise units of work that use the same idempotency key, until the transaction ends.

    Call it before looking a key up in a table of your own (orders, swaps,
    redemptions): a retry that arrives while the first attempt is still in flight
    then waits for it and finds its result, instead of racing it into a unique
    violation. SQLite needs nothing: it has one writer at a time.
    """
    if is_postgres(session):
        session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key})


# --- holds ----------------------------------------------------------------------------------


def place_hold(
    session: Session,
    *,
    account_id: int,
    amount: int,
    key: str,
    expires_at: datetime | None = None,
    subject: tuple[str, int] | None = None,
) -> LedgerHold:
    """Set `amount` aside from the account's available chips (pending until posted or voided)."""
    if amount <= 0 or amount > MAX_AMOUNT:
        raise InvalidInput("the amount must be positive", code="invalid_amount")
    digest = hashlib.sha256(
        json.dumps([account_id, amount, subject and list(subject)], separators=(",", ":")).encode()
    ).hexdigest()
    account = _lock_account(session, account_id)
    existing = repo.find_hold_by_key(session, key)
    if existing is not None:
        if existing.request_hash != digest:
            raise err.key_reused()
        return existing
    chip = session.get(Chip, account.chip_id)
    assert chip is not None
    if chip.frozen:
        raise err.chip_frozen(chip.id)
    if account.frozen:
        raise err.account_frozen(account.id)
    if not repo.reserve(session, account_id, amount):
        raise err.insufficient(account_id)
    hold = LedgerHold(
        account_id=account_id,
        amount=amount,
        remaining=amount,
        status=HoldStatus.PENDING,
        idempotency_key=key,
        request_hash=digest,
        subject_type=subject[0] if subject else None,
        subject_id=subject[1] if subject else None,
        expires_at=expires_at,
    )
    session.add(hold)
    session.flush()
    return hold


def void_hold(session: Session, hold_id: int, *, status: HoldStatus = HoldStatus.VOIDED) -> LedgerHold:
    """Release what is left of a pending hold. Voiding a settled hold is a no-op (idempotent)."""
    return _release(session, hold_id, status)[0]


def _release(session: Session, hold_id: int, status: HoldStatus) -> tuple[LedgerHold, bool]:
    hold = session.get(LedgerHold, hold_id)
    if hold is None:
        raise NotFound("hold not found", code="hold_not_found")
    # Lock order is always account, then hold (as in posting), so this cannot deadlock with a capture.
    _lock_account(session, hold.account_id)
    locked = repo.lock_hold(session, hold_id)
    assert locked is not None
    if locked.status != HoldStatus.PENDING:
        return locked, False
    repo.release(session, locked.account_id, locked.remaining)
    locked.remaining = 0
    locked.status = status
    locked.resolved_at = utcnow()
    session.flush()
    return locked, True


def due_holds(session: Session, now: datetime | None = None, *, limit: int = 500) -> list[int]:
    """Pending holds whose time is up, oldest first (a short read; expire each in its own unit)."""
    return repo.expired_hold_ids(session, now or utcnow(), limit)


def expire_hold(session: Session, hold_id: int, now: datetime | None = None) -> bool:
    """Release one hold whose time is up; False if it was settled or extended meanwhile.

    One hold per unit of work: a sweep holding many wallets' locks at once would
    lock them out of id order and could deadlock with the members' own payments.
    """
    hold = session.get(LedgerHold, hold_id)
    if hold is None or hold.expires_at is None or hold.expires_at > (now or utcnow()):
        return False
    return _release(session, hold_id, HoldStatus.EXPIRED)[1]


def expire_holds(session: Session, now: datetime | None = None, *, limit: int = 500) -> list[int]:
    """Expire due holds one after another in this session (tests, the CLI); tasks use
    `due_holds` and `expire_hold` with a unit of work per hold."""
    return [hold_id for hold_id in due_holds(session, now, limit=limit) if expire_hold(session, hold_id, now)]


def _lock_account(session: Session, account_id: int) -> LedgerAccount:
    account = session.scalar(
        select(LedgerAccount)
        .where(LedgerAccount.id == account_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if account is None:
        raise err.account_missing(account_id)
    return account


# --- accounts -----------------------------------------------------------------------------


def _wallets(chip_id: int) -> Select[LedgerAccount]:
    return select(LedgerAccount).where(
        LedgerAccount.chip_id == chip_id, LedgerAccount.kind == AccountKind.MEMBER
    )


def find_wallet(session: Session, chip_id: int, owner_id: int) -> LedgerAccount | None:
    """The owner's wallet account for the chip, if they have one yet."""
    return session.scalar(_wallets(chip_id).where(LedgerAccount.owner_id == owner_id))


def existing_wallet_ids(session: Session, chip_id: int, owner_ids: Iterable[int]) -> dict[int, int]:
    """Owner id -> wallet account id for `chip_id`, for the owners who have one: one query."""
    owners = list(set(owner_ids))
    if not owners:
        return {}
    statement = _wallet_ids_statement(is_postgres(session))
    rows = session.execute(statement, {"chip_id": chip_id, "owners": owners})
    # (A member account always has an owner: `ck_ledger_accounts_member_has_owner`.)
    return {owner: account for owner, account in rows if owner is not None}


@functools.cache
def _wallet_ids_statement(postgres: bool) -> Select[int | None, int]:
    """Built once per dialect: every transfer reads its wallets with it."""
    return select(LedgerAccount.owner_id, LedgerAccount.id).where(
        LedgerAccount.chip_id == bindparam("chip_id"),
        LedgerAccount.kind == AccountKind.MEMBER,
        in_param(LedgerAccount.owner_id, "owners", BigInteger(), postgres=postgres),
    )


def wallet_ids(session: Session, chip: Chip, owner_ids: Iterable[int]) -> dict[int, int]:
    """Owner id -> wallet account id for `chip`: `open_account` for many owners (an airdrop, a
    trade's counterparties). The wallets that exist in one query, the missing ones opened by
    `open_wallets`. Ids only, no ORM objects: for 1,000 recipients, loading their account objects
    cost more client time than writing the batch.
    """
    wanted = set(owner_ids)
    found = existing_wallet_ids(session, chip.id, wanted)
    missing = wanted - found.keys()
    if missing:
        found.update(open_wallets(session, chip, missing))
    return found


def open_wallets(session: Session, chip: Chip, owners: set[int]) -> dict[int, int]:
    """Open wallets for `owners` (who have none yet) in one statement and return their ids; a
    wallet-wide freeze carries over, and one a concurrent request opened meanwhile is kept."""
    _insert_wallets(session, chip, owners)
    return existing_wallet_ids(session, chip.id, owners)


def _insert_wallets(session: Session, chip: Chip, owners: set[int]) -> None:
    """New wallets for `owners` in one statement; a moderator's wallet-wide freeze carries over."""
    frozen = repo.frozen_wallet_owners(session, chip.community_id, owners)
    repo.insert_wallets(session, chip, {owner: owner in frozen for owner in owners}, utcnow())


def open_account(session: Session, chip: Chip, owner_id: int) -> LedgerAccount:
    """The owner's wallet account for `chip`, created on first use."""
    found = find_wallet(session, chip.id, owner_id)
    if found is not None:
        return found
    try:
        with session.begin_nested():
            account = LedgerAccount(
                community_id=chip.community_id,
                chip_id=chip.id,
                kind=AccountKind.MEMBER,
                owner_id=owner_id,
                frozen=repo.wallet_frozen(session, chip.community_id, owner_id),
            )
            session.add(account)
    except IntegrityError:
        # A concurrent first use created it between our look and our insert.
        return open_account(session, chip, owner_id)
    return account


def issuance_account(session: Session, chip_id: int) -> LedgerAccount:
    found = session.scalar(
        select(LedgerAccount).where(
            LedgerAccount.chip_id == chip_id, LedgerAccount.kind == AccountKind.ISSUANCE
        )
    )
    assert found is not None, "every chip is created with its issuance account"
    return found


# --- verification ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainCheck:
    account_id: int
    ok: bool
    postings: int
    head_hash: str
    first_bad_seq: int | None = None
    reason: str = ""


def verify_account(session: Session, account_id: int, *, page: int = 5000) -> ChainCheck:
    """Recompute the account's hash chain and balance from its postings."""
    account = repo.account_row(session, account_id)
    if account is None:
        raise err.account_missing(account_id)
    prev, balance, seq = chain.GENESIS, 0, 0
    while True:
        rows = repo.chain_rows(session, account_id, seq, page)
        for row in rows:
            balance += row.amount
            expected = chain.posting_hash(
                prev,
                transaction_id=row.transaction_id,
                leg=row.leg,
                account_id=row.account_id,
                chip_id=row.chip_id,
                amount=row.amount,
                seq=row.seq,
                balance_after=row.balance_after,
                kind=str(row.kind),
                created_us=chain.micros(row.created_at),
            )
            if row.seq != seq + 1:
                return ChainCheck(account_id, False, seq, prev, row.seq, "gap in the chain")
            if row.balance_after != balance:
                return ChainCheck(account_id, False, seq, prev, row.seq, "running balance differs")
            if row.hash != expected:
                return ChainCheck(account_id, False, seq, prev, row.seq, "hash differs")
            prev, seq = row.hash, row.seq
        if len(rows) < page:
            break
    if (account.seq, account.head_hash, account.balance) != (seq, prev, balance):
        return ChainCheck(account_id, False, seq, prev, None, "account head differs from its postings")
    return ChainCheck(account_id, True, seq, prev)


@dataclass(frozen=True)
class InvariantReport:
    ok: bool
    problems: list[str]
    accounts: int
    transactions: int


def check_invariants(
    session: Session, community_id: int | None = None, *, chains: bool = True
) -> InvariantReport:
    """The whole-ledger audit: conservation, caches, no overdraft, holds, and (optionally) chains."""
    problems: list[str] = []

    def scoped(stmt, column):  # type: ignore[no-untyped-def]
        return stmt if community_id is None else stmt.where(column == community_id)

    unbalanced = session.execute(
        scoped(
            select(LedgerPosting.chip_id, func.sum(LedgerPosting.amount))
            .join(LedgerAccount, LedgerAccount.id == LedgerPosting.account_id)
            .group_by(LedgerPosting.chip_id)
            .having(func.sum(LedgerPosting.amount) != 0),
            LedgerAccount.community_id,
        )
    ).all()
    problems += [f"chip {chip} sums to {total}, not zero" for chip, total in unbalanced]
    bad_tx = session.execute(
        scoped(
            select(LedgerPosting.transaction_id)
            .join(LedgerTransaction, LedgerTransaction.id == LedgerPosting.transaction_id)
            .group_by(LedgerPosting.transaction_id, LedgerPosting.chip_id, LedgerTransaction.legs)
            .having(func.sum(LedgerPosting.amount) != 0),
            LedgerTransaction.community_id,
        )
    ).all()
    problems += [f"transaction {row[0]} is unbalanced" for row in bad_tx]
    sums = (
        select(LedgerPosting.account_id, func.sum(LedgerPosting.amount).label("total"))
        .group_by(LedgerPosting.account_id)
        .subquery()
    )
    holds = (
        select(LedgerHold.account_id, func.sum(LedgerHold.remaining).label("held"))
        .where(LedgerHold.status == HoldStatus.PENDING)
        .group_by(LedgerHold.account_id)
        .subquery()
    )
    accounts = session.execute(
        scoped(
            select(
                LedgerAccount.id,
                LedgerAccount.kind,
                LedgerAccount.balance,
                LedgerAccount.held,
                func.coalesce(sums.c.total, 0),
                func.coalesce(holds.c.held, 0),
            )
            .outerjoin(sums, sums.c.account_id == LedgerAccount.id)
            .outerjoin(holds, holds.c.account_id == LedgerAccount.id),
            LedgerAccount.community_id,
        )
    ).all()
    for account_id, kind, balance, held, total, pending in accounts:
        if balance != total:
            problems.append(f"account {account_id}: cached balance {balance} != postings {total}")
        if held != pending:
            problems.append(f"account {account_id}: cached held {held} != pending holds {pending}")
        if kind == AccountKind.MEMBER and (balance < 0 or held < 0 or balance < held):
            problems.append(f"account {account_id}: overdrawn (balance {balance}, held {held})")
    if chains:
        for account_id, *_ in accounts:
            check = verify_account(session, account_id)
            if not check.ok:
                problems.append(
                    f"account {account_id}: chain broken at {check.first_bad_seq}: {check.reason}"
                )
    tx_count = session.scalar(
        scoped(select(func.count()).select_from(LedgerTransaction), LedgerTransaction.community_id)
    )
    return InvariantReport(not problems, problems, len(accounts), int(tx_count or 0))


# --- digests and receipts ------------------------------------------------------------------


def heads_at(session: Session, community_id: int, until: datetime) -> list[tuple[int, int, str]]:
    """Each account's (id, seq, hash) as of `until`: its last posting made before then."""
    last = (
        select(LedgerPosting.account_id, func.max(LedgerPosting.seq).label("seq"))
        .join(LedgerTransaction, LedgerTransaction.id == LedgerPosting.transaction_id)
        .where(LedgerTransaction.community_id == community_id, LedgerTransaction.created_at < until)
        .group_by(LedgerPosting.account_id)
        .subquery()
    )
    rows = session.execute(
        select(LedgerPosting.account_id, LedgerPosting.seq, LedgerPosting.hash)
        .join(last, (last.c.account_id == LedgerPosting.account_id) & (last.c.seq == LedgerPosting.seq))
        .order_by(LedgerPosting.account_id)
    ).all()
    return [(int(a), int(s), str(h)) for a, s, h in rows]


def previous_hash(session: Session, account_id: int, seq: int) -> str:
    """The hash a posting chains from (what a receipt shows next to its own hash)."""
    return repo.previous_hash(session, account_id, seq)


def day_end(day: date) -> datetime:
    from core.clock import as_utc

    return as_utc(datetime.combine(day + timedelta(days=1), time.min))


def make_digest(
    session: Session, community_id: int, day: date, *, now: datetime | None = None
) -> LedgerDigest:
    """Seal `day` (UTC) for a community once it is over; sealing twice returns the first seal."""
    if day_end(day) > (now or utcnow()):
        raise Conflict("a day can be sealed only once it is over", code="day_not_over")
    existing = session.scalar(
        select(LedgerDigest).where(LedgerDigest.community_id == community_id, LedgerDigest.day == day)
    )
    if existing is not None:
        return existing
    heads = heads_at(session, community_id, day_end(day))
    lines = [f"{account}:{seq}:{head}" for account, seq, head in heads]
    row = LedgerDigest(
        community_id=community_id,
        day=day,
        digest=chain.digest(lines),
        accounts=len(heads),
        postings=sum(seq for _, seq, _ in heads),
        detail={"heads": lines},
    )
    session.add(row)
    session.flush()
    return row


def verify_digest(session: Session, digest: LedgerDigest) -> bool:
    """Recompute a published digest from today's ledger: False means history was rewritten."""
    heads = heads_at(session, digest.community_id, day_end(digest.day))
    return chain.digest([f"{a}:{s}:{h}" for a, s, h in heads]) == digest.digest

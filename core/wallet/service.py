"""Wallet reads: balances, history, receipts, chain and digest verification.

Nothing here writes chips. A member sees their own wallet; a moderator of the community
may see any member's. Receipts are shown to the transaction's participants and to
moderators; the chain facts (hash, previous hash, seq) of a posting are shown to its
owner (and moderators), with `verified` recomputed here, not read from a cache.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.access import Actor, CommunityContext, community_context, context_via
from core.chips import repository as chips_repo
from core.clock import as_utc
from core.errors import InvalidInput, NotFound, PermissionDenied
from core.ledger import chain
from core.ledger import repository as ledger_repo
from core.ledger import service as ledger
from core.models import (
    AccountKind,
    Chip,
    LedgerAccount,
    LedgerDigest,
    LedgerPosting,
    LedgerTransaction,
    Role,
    TxKind,
)
from core.pagination import paginate, paginate_by_time
from core.schemas import PageOut
from core.wallet.schemas import (
    BalanceOut,
    ChainCheckOut,
    ChainVerifyOut,
    DigestOut,
    DigestVerifyOut,
    HistoryItemOut,
    ReceiptOut,
    ReceiptPostingOut,
    WalletOut,
)


def _wallet_context(
    session: Session, actor: Actor, community_id: int, user_id: int | None
) -> tuple[CommunityContext, int]:
    ctx = community_context(session, actor, community_id)
    ctx.require_member()
    owner = user_id or actor.id
    if owner != actor.id and not ctx.is_staff:
        raise PermissionDenied("only moderators may see another member's wallet", code="wallet_private")
    return ctx, owner


def balances(session: Session, actor: Actor, community_id: int, user_id: int | None = None) -> WalletOut:
    _, owner = _wallet_context(session, actor, community_id, user_id)
    rows = session.execute(
        select(LedgerAccount, Chip)
        .join(Chip, Chip.id == LedgerAccount.chip_id)
        .where(
            LedgerAccount.community_id == community_id,
            LedgerAccount.kind == AccountKind.MEMBER,
            LedgerAccount.owner_id == owner,
        )
        .order_by(Chip.kind, Chip.symbol)
        .execution_options(populate_existing=True)
    ).all()
    return WalletOut(
        community_id=community_id,
        user_id=owner,
        balances=[
            BalanceOut(
                account_id=account.id,
                chip_id=chip.id,
                symbol=chip.symbol,
                name=chip.name,
                chip_kind=chip.kind,
                issuer_id=chip.issuer_id,
                balance=account.balance,
                held=account.held,
                available=account.balance - account.held,
                frozen=account.frozen,
                chip_frozen=chip.frozen,
                chip_expired=chip.expired,
            )
            for account, chip in rows
        ],
    )


def history(
    session: Session,
    actor: Actor,
    community_id: int,
    *,
    user_id: int | None = None,
    chip_id: int | None = None,
    kind: TxKind | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: int = 20,
) -> PageOut[HistoryItemOut]:
    """The member's postings, newest first; `since` inclusive, `until` exclusive."""
    _, owner = _wallet_context(session, actor, community_id, user_id)
    try:
        since = as_utc(since) if since else None
        until = as_utc(until) if until else None
    except OverflowError as exc:
        raise InvalidInput("`from`/`to` is out of range", code="invalid_range") from exc
    if since and until and since >= until:
        raise InvalidInput("`from` must be before `to`", code="invalid_range")
    stmt = (
        select(LedgerPosting)
        .join(LedgerAccount, LedgerAccount.id == LedgerPosting.account_id)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerPosting.transaction_id)
        .where(
            LedgerAccount.community_id == community_id,
            LedgerAccount.kind == AccountKind.MEMBER,
            LedgerAccount.owner_id == owner,
        )
    )
    if chip_id is not None:
        stmt = stmt.where(LedgerPosting.chip_id == chip_id)
    if kind is not None:
        stmt = stmt.where(LedgerTransaction.kind == kind)
    if since is not None:
        stmt = stmt.where(LedgerTransaction.created_at >= since)
    if until is not None:
        stmt = stmt.where(LedgerTransaction.created_at < until)
    page = paginate_by_time(
        session, stmt, LedgerTransaction.created_at, LedgerPosting.id, cursor=cursor, limit=limit
    )
    postings: list[LedgerPosting] = page.items
    txs = _by_id(session, LedgerTransaction, {p.transaction_id for p in postings})
    symbols = _symbols(session, {p.chip_id for p in postings})
    items = [
        HistoryItemOut(
            posting_id=p.id,
            transaction_id=p.transaction_id,
            kind=txs[p.transaction_id].kind,
            chip_id=p.chip_id,
            symbol=symbols[p.chip_id],
            account_id=p.account_id,
            amount=p.amount,
            balance_after=p.balance_after,
            seq=p.seq,
            memo=txs[p.transaction_id].memo,
            actor_id=txs[p.transaction_id].actor_id,
            subject_type=txs[p.transaction_id].subject_type,
            subject_id=txs[p.transaction_id].subject_id,
            created_at=txs[p.transaction_id].created_at,
        )
        for p in postings
    ]
    return page.with_items(items).out()


def _by_id(session: Session, model: type[LedgerTransaction], ids: set[int]) -> dict[int, LedgerTransaction]:
    if not ids:
        return {}
    return {row.id: row for row in session.scalars(select(model).where(model.id.in_(ids)))}


def _symbols(session: Session, chip_ids: set[int]) -> dict[int, str]:
    if not chip_ids:
        return {}
    return {
        cid: sym for cid, sym in session.execute(select(Chip.id, Chip.symbol).where(Chip.id.in_(chip_ids)))
    }


# --- receipts and verification -------------------------------------------------------------


def posting_verified(
    posting: LedgerPosting, *, prev_hash: str, kind: TxKind | str, created_at: datetime
) -> bool:
    """Recompute one posting's hash from its facts and its predecessor's hash."""
    expected = chain.posting_hash(
        prev_hash,
        transaction_id=posting.transaction_id,
        leg=posting.leg,
        account_id=posting.account_id,
        chip_id=posting.chip_id,
        amount=posting.amount,
        seq=posting.seq,
        balance_after=posting.balance_after,
        kind=str(kind),
        created_us=chain.micros(as_utc(created_at)),
    )
    return expected == posting.hash


def receipt(session: Session, actor: Actor, transaction_id: int) -> ReceiptOut:
    missing = NotFound("transaction not found", code="transaction_not_found")
    tx = session.get(LedgerTransaction, transaction_id)
    if tx is None:
        raise missing
    ctx = context_via(session, actor, tx.community_id, missing)
    ctx.require_member()
    postings = ledger_repo.postings_of(session, tx.id)
    accounts = {
        a.id: a
        for a in session.scalars(
            select(LedgerAccount).where(LedgerAccount.id.in_({p.account_id for p in postings}))
        )
    }

    def is_mine(p: LedgerPosting) -> bool:
        account = accounts[p.account_id]
        return account.kind == AccountKind.MEMBER and account.owner_id == actor.id

    if not ctx.is_staff and not any(is_mine(p) for p in postings):
        raise missing
    symbols = _symbols(session, {p.chip_id for p in postings})
    out = []
    for p in postings:
        account = accounts[p.account_id]
        row = ReceiptPostingOut(
            leg=p.leg,
            account_id=p.account_id,
            account_kind=account.kind,
            owner_id=account.owner_id,
            chip_id=p.chip_id,
            symbol=symbols[p.chip_id],
            amount=p.amount,
            mine=is_mine(p),
        )
        if row.mine or ctx.is_staff:
            prev = ledger.previous_hash(session, p.account_id, p.seq)
            row.seq = p.seq
            row.balance_after = p.balance_after
            row.hash = p.hash
            row.prev_hash = prev
            row.verified = posting_verified(p, prev_hash=prev, kind=tx.kind, created_at=tx.created_at)
        out.append(row)
    reversed_by = session.scalar(select(LedgerTransaction.id).where(LedgerTransaction.reverses_id == tx.id))
    return ReceiptOut(
        id=tx.id,
        community_id=tx.community_id,
        kind=tx.kind,
        memo=tx.memo,
        actor_id=tx.actor_id,
        subject_type=tx.subject_type,
        subject_id=tx.subject_id,
        reverses_id=tx.reverses_id,
        reversed_by_id=reversed_by,
        created_at=tx.created_at,
        postings=out,
        verified=all(r.verified for r in out if r.verified is not None),
    )


def verify_chain(
    session: Session,
    actor: Actor,
    community_id: int,
    *,
    user_id: int | None = None,
    chip_id: int | None = None,
) -> ChainVerifyOut:
    """Recompute the hash chain and running balance of each of the member's accounts."""
    _, owner = _wallet_context(session, actor, community_id, user_id)
    accounts = chips_repo.member_accounts(session, community_id, owner, chip_id)
    symbols = _symbols(session, {a.chip_id for a in accounts})
    checks = []
    for account in accounts:
        check = ledger.verify_account(session, account.id)
        checks.append(
            ChainCheckOut(
                account_id=account.id,
                chip_id=account.chip_id,
                symbol=symbols[account.chip_id],
                ok=check.ok,
                postings=check.postings,
                head_hash=check.head_hash,
                first_bad_seq=check.first_bad_seq,
                reason=check.reason,
            )
        )
    return ChainVerifyOut(user_id=owner, ok=all(c.ok for c in checks), accounts=checks)


# --- digests -----------------------------------------------------------------------------------


def list_digests(
    session: Session, actor: Actor, community_id: int, *, cursor: str | None, limit: int
) -> PageOut[DigestOut]:
    community_context(session, actor, community_id).require_member()
    stmt = select(LedgerDigest).where(LedgerDigest.community_id == community_id)
    return (
        paginate(session, stmt, LedgerDigest.id, cursor=cursor, limit=limit)
        .map(DigestOut.model_validate)
        .out()
    )


def seal_digest(session: Session, actor: Actor, community_id: int, day: date) -> DigestOut:
    """Seal a finished day now instead of waiting for the nightly job (moderators)."""
    community_context(session, actor, community_id).require_role(Role.MODERATOR)
    return DigestOut.model_validate(ledger.make_digest(session, community_id, day))


def verify_digest(session: Session, actor: Actor, community_id: int, day: date) -> DigestVerifyOut:
    """Recompute a sealed day's digest from today's ledger: a mismatch means history changed."""
    community_context(session, actor, community_id).require_member()
    digest = session.scalar(
        select(LedgerDigest).where(LedgerDigest.community_id == community_id, LedgerDigest.day == day)
    )
    if digest is None:
        raise NotFound("no digest was sealed for this day", code="digest_not_found")
    heads = ledger.heads_at(session, community_id, ledger.day_end(day))
    recomputed = chain.digest([f"{a}:{s}:{h}" for a, s, h in heads])
    return DigestVerifyOut(
        day=day, digest=digest.digest, recomputed=recomputed, ok=recomputed == digest.digest
    )

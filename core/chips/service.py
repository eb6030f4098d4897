"""Chip rules: who issues, mints, burns, transfers and freezes, and the policy sweeps.

Every movement goes through `core.ledger.service`; this module decides whether it may
happen and builds the entry. A refused request raises before anything is written.
Mint policy (cap, emission per period) is one function, `headroom`, shared with earning:
both read it with the chip's issuance account locked (`ledger.lock_accounts`), so mints and
earn grants queue on the same row and together never pass the cap. A mint looks its
idempotency key up first: a retry of a mint that reached the cap is still answered with its
first transaction, never refused by the cap it itself used up.

The expiry and decay sweeps are one unit of work per wallet: the caller lists what is due
in one read and hands each item its own transaction (`unit`), so a sweep never holds one
wallet's lock while it waits for another's.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import audit
from core.access import Actor, CommunityContext, community_context, context_via, row_context
from core.chips import repository as repo
from core.chips.schemas import (
    AccountStateOut,
    BatchTransferOut,
    BurnIn,
    ChipIn,
    ChipOut,
    ChipPatch,
    MintIn,
    PostingOut,
    ReasonIn,
    SupplyOut,
    TransactionOut,
    TransferBatchIn,
    TransferBatchOut,
    TransferIn,
    WalletFreezeIn,
)
from core.clock import utcnow
from core.communities import repository as community_repo
from core.errors import Conflict, DomainError, InvalidInput, NotFound, PermissionDenied
from core.ledger import group as ledger_group
from core.ledger import repository as ledger_repo
from core.ledger import service as ledger
from core.ledger.types import Entry, Leg, Posted
from core.models import (
    AccountKind,
    Chip,
    ChipKind,
    EmissionPeriod,
    Language,
    LedgerAccount,
    LedgerPosting,
    LedgerTransaction,
    MembershipStatus,
    Notification,
    Role,
    TxKind,
)
from core.pagination import paginate
from core.redemption import access as redemption_access
from core.schemas import PageOut, refuse_nulls
from core.social import errors as social_errors
from core.tipping import service as tipping

log = logging.getLogger(__name__)

REMIND_BEFORE = timedelta(days=7)
_AUDITED = [
    "name",
    "symbol",
    "kind",
    "issuer_id",
    "supply_cap",
    "emission_limit",
    "emission_period",
    "expires_at",
    "decay_bps",
    "transferable",
    "tippable",
    "redeemable",
    "tradable",
    "frozen",
    "expired",
]


# --- keys and loading ---------------------------------------------------------------------


def ledger_key(actor: Actor, client_key: str | None) -> str:
    """All chip-moving chips endpoints share one namespace per caller, so a key reused for a
    different operation is refused like a key reused with a different body."""
    return ledger.client_key("chips", actor.id, client_key)


def _missing_chip() -> NotFound:
    return NotFound("chip not found", code="chip_not_found")


def load_chip(session: Session, actor: Actor, chip_id: int) -> tuple[Chip, CommunityContext]:
    return row_context(session, actor, Chip, chip_id, _missing_chip())


def _require_recipients(session: Session, community_id: int, user_ids: set[int]) -> None:
    strangers = sorted(user_ids - repo.active_member_ids(session, community_id, user_ids))
    if len(user_ids) == 1 and strangers:
        raise InvalidInput("the recipient is not a member of this community", code="recipient_not_member")
    if strangers:
        raise InvalidInput(
            f"not members of this community: {', '.join(map(str, strangers[:20]))}",
            code="recipient_not_member",
        )


def _require_payable(session: Session, actor: Actor, chip: Chip, recipients: set[int], key: str) -> None:
    """What a transfer (single or batched) from the actor's wallet to `recipients` needs. A retry
    skips the checks: the ledger answers it with the first result or refuses the reused key."""
    if actor.id in recipients:
        raise InvalidInput("a wallet cannot pay itself", code="same_account")
    facts = repo.payee_facts(session, chip.community_id, actor.id, recipients, key)
    if facts.replay:
        return
    if facts.members < len(recipients):
        _require_recipients(session, chip.community_id, recipients)
    if facts.blocked:
        raise social_errors.blocked()
    if not chip.transferable:
        raise Conflict("this chip cannot be transferred", code="chip_not_transferable")
    _require_live(chip)


def _require_live(chip: Chip) -> None:
    if chip.expired:
        raise Conflict("this chip's season has ended", code="chip_expired")


# --- issuing --------------------------------------------------------------------------------


def issue_chip(session: Session, actor: Actor, community_id: int, data: ChipIn) -> ChipOut:
    ctx = community_context(session, actor, community_id)
    ctx.require_member()
    if data.expires_at is not None and data.expires_at <= utcnow():
        raise InvalidInput("a chip's season must end in the future", code="expiry_in_past")
    # The issuer's membership row serialises their issuing: one personal chip per member.
    repo.lock_membership(session, community_id, actor.id)
    if repo.personal_chip_of(session, community_id, actor.id) is not None:
        raise Conflict("you already issued a chip in this community", code="chip_already_issued")
    if repo.symbol_taken(session, community_id, data.symbol):
        raise Conflict("this symbol is taken in this community", code="symbol_taken")
    chip = Chip(
        community_id=community_id,
        kind=ChipKind.PERSONAL,
        issuer_id=actor.id,
        **data.model_dump(),
    )
    session.add(chip)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:  # a concurrent issuer took the symbol
        raise Conflict("this symbol is taken in this community", code="symbol_taken") from exc
    session.add(LedgerAccount(community_id=community_id, chip_id=chip.id, kind=AccountKind.ISSUANCE))
    session.flush()
    audit.record(
        session, actor, "chip.issue", chip, community_id=community_id, after=audit.snapshot(chip, _AUDITED)
    )
    return ChipOut.model_validate(chip)


def update_chip(session: Session, actor: Actor, chip_id: int, patch: ChipPatch) -> ChipOut:
    """Change a chip's policy (its issuer; the community chip: owners and admins). Audited."""
    chip, ctx = load_chip(session, actor, chip_id)
    _require_minter(ctx, chip)
    changes = patch.model_dump(exclude_unset=True)
    refuse_nulls(changes, [name for name in changes if name != "emission_limit"])
    chip = repo.lock_chip(session, chip.id)
    if "supply_cap" in changes:
        cap = changes["supply_cap"]
        if chip.supply_cap is not None and cap > chip.supply_cap:
            raise Conflict("a chip's supply cap can be lowered, never raised", code="supply_cap_raised")
        # Mints and earn grants read the cap under the issuance account's lock: take it too.
        ledger.lock_accounts(session, [ledger.issuance_account(session, chip.id).id])
        circulating = headroom(session, chip).circulating
        if cap < circulating:
            raise Conflict(
                f"{circulating} are already in circulation: the cap cannot go below that",
                code="supply_cap_below_circulating",
            )
    audit.apply_changes(
        session, actor, "chip.update", chip, changes, _AUDITED, community_id=chip.community_id
    )
    return ChipOut.model_validate(chip)


def get_chip(session: Session, actor: Actor, chip_id: int) -> ChipOut:
    chip, _ = load_chip(session, actor, chip_id)
    return ChipOut.model_validate(chip)


def list_chips(
    session: Session,
    actor: Actor,
    community_id: int,
    *,
    kind: ChipKind | None,
    issuer_id: int | None,
    cursor: str | None,
    limit: int,
) -> PageOut[ChipOut]:
    community_context(session, actor, community_id)
    stmt = repo.chips_of(community_id, kind=kind, issuer_id=issuer_id)
    page = paginate(session, stmt, Chip.id, cursor=cursor, limit=limit, descending=False)
    return page.map(ChipOut.model_validate).out()


# --- policy -----------------------------------------------------------------------------------


def period_start(period: EmissionPeriod, now: datetime) -> datetime:
    """Start of the emission period holding `now` (UTC day, ISO week from Monday, month)."""
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == EmissionPeriod.WEEK:
        return day - timedelta(days=day.weekday())
    if period == EmissionPeriod.MONTH:
        return day.replace(day=1)
    return day


@dataclass(frozen=True)
class Headroom:
    circulating: int
    minted: int
    since: datetime
    mintable: int | None


def headroom(session: Session, chip: Chip, now: datetime | None = None) -> Headroom:
    """What the policy lets the issuer (or an earning rule) mint now, read from the ledger.

    Circulating is what left the issuance account for good (-its balance); the emission of
    the period counts MINT and EARN outflows alike. A caller that acts on the answer must
    hold the issuance account's lock (`ledger.lock_accounts`) while it reads and posts.
    """
    now = now or utcnow()
    issuance = ledger_repo.account_row(session, ledger.issuance_account(session, chip.id).id)
    assert issuance is not None
    circulating = -issuance.balance
    since = period_start(chip.emission_period, now)
    minted = repo.emitted_since(session, issuance.id, since)
    limits = []
    if chip.supply_cap is not None:
        limits.append(chip.supply_cap - circulating)
    if chip.emission_limit is not None:
        limits.append(chip.emission_limit - minted)
    if not limits:
        return Headroom(circulating, minted, since, None)  # no policy limit: only the ceiling
    return Headroom(circulating, minted, since, max(0, min(*limits, ledger.MAX_SUPPLY - circulating)))


def _check_ceiling(circulating: int, amount: int) -> None:
    """Refuse to take one chip's circulation past `ledger.MAX_SUPPLY`, whatever its policy."""
    if circulating + amount > ledger.MAX_SUPPLY:
        raise Conflict(
            "this would take the chip's supply above the most any chip may have in circulation",
            code="supply_limit_exceeded",
            extra={"max_supply": ledger.MAX_SUPPLY, "circulating": circulating},
        )


def check_policy(session: Session, chip: Chip, amount: int, now: datetime | None = None) -> None:
    """Refuse an issuance of `amount` that the cap, the emission limit or the ceiling does not allow.

    Call it with the chip's issuance account locked.
    """
    room = headroom(session, chip, now)
    if chip.supply_cap is not None and room.circulating + amount > chip.supply_cap:
        raise Conflict(
            "this mint would take the supply above the chip's cap",
            code="supply_cap_exceeded",
            extra={"supply_cap": chip.supply_cap, "circulating": room.circulating},
        )
    _check_ceiling(room.circulating, amount)
    if chip.emission_limit is not None and room.minted + amount > chip.emission_limit:
        raise Conflict(
            f"this mint would exceed the chip's emission for this {chip.emission_period.value}",
            code="emission_limit_exceeded",
            extra={"emission_limit": chip.emission_limit, "minted": room.minted},
        )


def supply(session: Session, actor: Actor, chip_id: int) -> SupplyOut:
    chip, _ = load_chip(session, actor, chip_id)
    room = headroom(session, chip)
    held, holders = repo.member_totals(session, chip.id)
    return SupplyOut(
        chip_id=chip.id,
        symbol=chip.symbol,
        circulating=room.circulating,
        held_by_members=held,
        supply_cap=chip.supply_cap,
        emission_limit=chip.emission_limit,
        emission_period=chip.emission_period,
        period_start=room.since,
        minted_this_period=room.minted,
        mintable_now=room.mintable,
        holders=holders,
    )


# --- moving chips -----------------------------------------------------------------------------


def _require_minter(ctx: CommunityContext, chip: Chip) -> None:
    ctx.require_member()
    if chip.kind == ChipKind.COMMUNITY:
        ctx.require_role(Role.ADMIN)
    elif chip.issuer_id != ctx.actor.id:
        raise PermissionDenied("only the chip's issuer mints it", code="not_issuer")


def mint(
    session: Session, actor: Actor, chip_id: int, data: MintIn, client_key: str | None
) -> TransactionOut:
    key = ledger_key(actor, client_key)
    chip, ctx = load_chip(session, actor, chip_id)
    _require_minter(ctx, chip)
    recipient = data.to_user_id or actor.id
    chip = repo.lock_chip(session, chip.id)
    issuance = ledger.issuance_account(session, chip.id)
    # Earn grants lock the issuance account, not the chip: lock it too before reading headroom.
    # (It is older than every wallet of its chip, so this keeps the ledger's id order.)
    ledger.lock_accounts(session, [issuance.id])
    if not repo.key_used(session, key):
        # A retry skips these checks: the ledger answers it with the first result or refuses it.
        _require_recipients(session, chip.community_id, {recipient})
        _require_live(chip)
        check_policy(session, chip, data.amount)
    target = ledger.open_account(session, chip, recipient)
    posted = ledger.transfer(
        session,
        community_id=chip.community_id,
        chip_id=chip.id,
        source=issuance.id,
        target=target.id,
        amount=data.amount,
        key=key,
        kind=TxKind.MINT,
        actor_id=actor.id,
        memo=data.memo,
        subject=("chip", chip.id),
    )
    return transaction_out(session, posted)


def burn(
    session: Session, actor: Actor, chip_id: int, data: BurnIn, client_key: str | None
) -> TransactionOut:
    """The holder returns chips to the issuance account: they leave circulation."""
    actor.require_personal()
    key = ledger_key(actor, client_key)
    chip, ctx = load_chip(session, actor, chip_id)
    ctx.require_member()
    source = ledger.open_account(session, chip, actor.id)
    posted = ledger.transfer(
        session,
        community_id=chip.community_id,
        chip_id=chip.id,
        source=source.id,
        target=ledger.issuance_account(session, chip.id).id,
        amount=data.amount,
        key=key,
        kind=TxKind.BURN,
        actor_id=actor.id,
        memo=data.memo,
        subject=("chip", chip.id),
    )
    return transaction_out(session, posted)


def transfer(
    session: Session, actor: Actor, chip_id: int, data: TransferIn, client_key: str | None
) -> TransactionOut:
    actor.require_personal()
    key = ledger_key(actor, client_key)
    chip, ctx = load_chip(session, actor, chip_id)
    ctx.require_member()
    _require_payable(session, actor, chip, {data.to_user_id}, key)
    owners = {actor.id, data.to_user_id}
    wallets = ledger.existing_wallet_ids(session, chip.id, owners)
    opens_wallet = len(wallets) < len(owners)
    if opens_wallet:
        wallets.update(ledger.open_wallets(session, chip, owners - wallets.keys()))
    # The transfer is the whole unit of work: on PostgreSQL it goes through the process's group
    # committer, which commits the session first and returns once the transfer is committed,
    # shared with concurrent requests' transfers. A wallet this request had to open is written
    # with the entry instead, in this session: were the committer to refuse the entry, the
    # wallet it committed first would be left behind, and a refused transfer writes nothing.
    entry = ledger.transfer_entry(
        community_id=chip.community_id,
        chip_id=chip.id,
        source=wallets[actor.id],
        target=wallets[data.to_user_id],
        amount=data.amount,
        key=key,
        kind=TxKind.TRANSFER,
        actor_id=actor.id,
        memo=data.memo,
    )
    posted = ledger.post(session, entry) if opens_wallet else ledger_group.post(session, entry)
    return transaction_out(session, posted)


def transfer_batch(
    session: Session, actor: Actor, chip_id: int, data: TransferBatchIn, client_key: str | None
) -> TransferBatchOut:
    """Many transfers from the caller's wallet, all or none, in one database transaction.

    Each transfer is its own ledger transaction (its own receipt, memo and reversal). The
    first one takes the request's key itself, so the key stays one per operation: reused
    for a single transfer, or the other way round, it is refused as any reused key is.
    The others take the key plus `/n` (a character client keys cannot contain), so no
    other request can ever name them. A retry returns the first result.
    """
    actor.require_personal()
    key = ledger_key(actor, client_key)
    chip, ctx = load_chip(session, actor, chip_id)
    ctx.require_member()
    recipients = {t.to_user_id for t in data.transfers}
    _require_payable(session, actor, chip, recipients, key)
    wallets = ledger.wallet_ids(session, chip, recipients | {actor.id})  # one read for every side
    source = wallets[actor.id]
    entries = [
        ledger.transfer_entry(
            community_id=chip.community_id,
            chip_id=chip.id,
            source=source,
            target=wallets[t.to_user_id],
            amount=t.amount,
            key=key if n == 0 else f"{key}/{n}",
            kind=TxKind.TRANSFER,
            actor_id=actor.id,
            memo=t.memo,
        )
        for n, t in enumerate(data.transfers)
    ]
    # In the request's session: one COMMIT for the whole batch, with the wallets it opened.
    posted = ledger.post_batch(session, entries)
    return TransferBatchOut(
        chip_id=chip.id,
        total=sum(t.amount for t in data.transfers),
        transfers=[
            BatchTransferOut(
                transaction_id=p.transaction_id, to_user_id=t.to_user_id, amount=t.amount, memo=t.memo
            )
            for p, t in zip(posted, data.transfers, strict=True)
        ],
        replayed=posted[0].replayed,
    )


def transaction_out(session: Session, posted: Posted) -> TransactionOut:
    """The transaction with its postings, as every chip-moving endpoint answers: one query."""
    rows = repo.transaction_with_postings(session, posted.transaction_id)
    tx = rows[0]
    return TransactionOut(
        id=tx.id,
        community_id=tx.community_id,
        kind=tx.kind,
        memo=tx.memo,
        actor_id=tx.actor_id,
        subject_type=tx.subject_type,
        subject_id=tx.subject_id,
        reverses_id=tx.reverses_id,
        created_at=tx.created_at,
        postings=[PostingOut.model_validate(r) for r in rows],  # the rows carry the fields' names
        replayed=posted.replayed,
    )


# --- moderation ---------------------------------------------------------------------------------


def set_chip_frozen(session: Session, actor: Actor, chip_id: int, data: ReasonIn, *, frozen: bool) -> ChipOut:
    chip, ctx = load_chip(session, actor, chip_id)
    ctx.require_role(Role.MODERATOR)
    chip = repo.lock_chip(session, chip.id)
    if chip.frozen != frozen:
        chip.frozen = frozen
        session.flush()
        audit.record(
            session,
            actor,
            "chip.freeze" if frozen else "chip.unfreeze",
            chip,
            community_id=chip.community_id,
            before={"frozen": not frozen},
            after={"frozen": frozen, "reason": data.reason},
        )
    return ChipOut.model_validate(chip)


def set_wallet_frozen(
    session: Session, actor: Actor, community_id: int, user_id: int, data: WalletFreezeIn, *, frozen: bool
) -> list[AccountStateOut]:
    """Freeze or thaw a member's accounts in this community (all chips, or one)."""
    ctx = community_context(session, actor, community_id)
    me = ctx.require_role(Role.MODERATOR)
    if not repo.ever_member(session, community_id, user_id):
        raise NotFound("member not found", code="member_not_found")
    # As for removing or banning: only members below one's own role (so never oneself); a
    # departed member's old role no longer protects them.
    target = community_repo.membership(session, community_id, user_id)
    active = target is not None and target.status == MembershipStatus.ACTIVE
    target_rank = target.role.rank if target is not None and active else Role.MEMBER.rank
    if target_rank >= me.role.rank:
        raise PermissionDenied(
            "you can only freeze or thaw the wallets of members below your role", code="insufficient_role"
        )
    if data.chip_id is not None:
        chip = session.get(Chip, data.chip_id)
        if chip is None or chip.community_id != community_id:
            raise _missing_chip()
        # Freezing must hold even for a chip the member has never touched.
        ledger.open_account(session, chip, user_id)
    elif target is not None and target.wallet_frozen != frozen:
        target.wallet_frozen = frozen  # so accounts opened later start frozen
        session.flush()
    accounts = repo.member_accounts(session, community_id, user_id, data.chip_id)
    changed = [a for a in accounts if a.frozen != frozen]
    if changed:
        repo.set_frozen(session, [a.id for a in changed], frozen)
        for account in changed:
            session.refresh(account)
            audit.record(
                session,
                actor,
                "ledger_account.freeze" if frozen else "ledger_account.unfreeze",
                account,
                community_id=community_id,
                before={"frozen": not frozen},
                after={"frozen": frozen, "owner_id": user_id, "reason": data.reason},
            )
    return [
        AccountStateOut(account_id=a.id, chip_id=a.chip_id, owner_id=a.owner_id, frozen=a.frozen)
        for a in repo.member_accounts(session, community_id, user_id, data.chip_id)
    ]


def _parties(session: Session, tx: LedgerTransaction) -> set[int]:
    """Who a transaction concerns: its actor, the owners of its wallets, and the issuer of a
    personal chip whose issuance account it touches (a mint, a burn, a redemption burned)."""
    rows = session.execute(
        select(LedgerAccount.kind, LedgerAccount.owner_id, Chip.kind, Chip.issuer_id)
        .join(LedgerPosting, LedgerPosting.account_id == LedgerAccount.id)
        .join(Chip, Chip.id == LedgerAccount.chip_id)
        .where(LedgerPosting.transaction_id == tx.id)
    ).all()
    found = {tx.actor_id} if tx.actor_id is not None else set()
    for account_kind, owner_id, chip_kind, issuer_id in rows:
        if owner_id is not None:
            found.add(owner_id)
        if account_kind == AccountKind.ISSUANCE and chip_kind == ChipKind.PERSONAL and issuer_id is not None:
            found.add(issuer_id)
    return found


def _check_reversal_ceiling(session: Session, tx: LedgerTransaction) -> None:
    """A reversal of what went into an issuance account (a burn, a redemption, a sweep) puts
    chips back into circulation: it too stays under `ledger.MAX_SUPPLY`.

    The transaction's accounts are locked first, all at once in id order (the ledger takes
    the same locks again when it posts), so the circulation read cannot change meanwhile.
    """
    postings = ledger_repo.postings_of(session, tx.id)
    issuance = {
        a.id
        for a in session.scalars(
            select(LedgerAccount).where(
                LedgerAccount.id.in_({p.account_id for p in postings}),
                LedgerAccount.kind == AccountKind.ISSUANCE,
            )
        )
    }
    drawn: dict[int, int] = defaultdict(int)
    for p in postings:
        if p.account_id in issuance:
            drawn[p.account_id] += p.amount
    drawn = {account_id: amount for account_id, amount in drawn.items() if amount > 0}
    if not drawn:
        return
    ledger.lock_accounts(session, [p.account_id for p in postings])
    for account_id, amount in drawn.items():
        account = ledger_repo.account_row(session, account_id)
        assert account is not None
        _check_ceiling(-account.balance, amount)


def reverse(
    session: Session, actor: Actor, transaction_id: int, data: ReasonIn, client_key: str | None
) -> TransactionOut:
    """A moderator undoes a transaction with its mirror image; the reason is the memo and audited.

    Nobody reverses a transaction they are a party to (`_parties`), owners included: a
    reversal moves chips back, and no one may move them back to themselves.
    """
    key = ledger_key(actor, client_key)
    missing = NotFound("transaction not found", code="transaction_not_found")
    tx = session.get(LedgerTransaction, transaction_id)
    if tx is None:
        raise missing
    ctx = context_via(session, actor, tx.community_id, missing)
    ctx.require_role(Role.MODERATOR)
    if actor.id in _parties(session, tx):
        raise PermissionDenied(
            "you cannot reverse a transaction you are a party to", code="cannot_reverse_own"
        )
    redeemed = tx.subject_id if tx.kind == TxKind.REDEEM and tx.subject_type == "redemption_order" else None
    if redeemed is not None:
        redemption_access.lock_order_member(session, redeemed)  # before the ledger's account locks
    if not repo.key_used(session, key):
        _check_reversal_ceiling(session, tx)  # a retry is answered by the ledger, as for a mint
    posted = ledger.reverse(session, tx.id, key=key, actor_id=actor.id, memo=data.reason)
    if not posted.replayed and redeemed is not None:
        # The member has their chips back: what the order bought goes too (a seat, a trial).
        redemption_access.withdraw(session, redeemed, actor.id, utcnow())
    if not posted.replayed and tx.kind == TxKind.TIP:
        # The tipper has their chips back: the reputation the tip earned goes too.
        tipping.withdraw_reversed_tip(session, tx.id)
    if not posted.replayed:
        audit.record(
            session,
            actor,
            "ledger.reverse",
            tx,
            community_id=tx.community_id,
            after={"reversal_id": posted.transaction_id, "reason": data.reason},
        )
    return transaction_out(session, posted)


# --- the beat tasks ---------------------------------------------------------------------------------

_REMINDER_TEXT = {
    Language.ZH_TW: (
        "籌碼即將到期",
        "你持有的 {balance} 枚 {symbol}（{name}）將於 {date} 到期，屆時未使用的籌碼會退回發行者。",
    ),
    Language.ZH_CN: (
        "筹码即将到期",
        "你持有的 {balance} 枚 {symbol}（{name}）将于 {date} 到期，届时未使用的筹码会退回发行者。",
    ),
    Language.EN: (
        "Chips expiring soon",
        "Your {balance} {symbol} ({name}) expire on {date}; unspent chips then return to the issuer.",
    ),
}


def reminder_texts(chip: Chip, balance: int) -> dict[str, dict[str, str]]:
    assert chip.expires_at is not None
    values = {
        "balance": balance,
        "symbol": chip.symbol,
        "name": chip.name,
        "date": chip.expires_at.strftime("%Y-%m-%d %H:%M UTC"),
    }
    return {
        lang.value: {"title": title, "body": body.format(**values)}
        for lang, (title, body) in _REMINDER_TEXT.items()
    }


def remind_expiring(session: Session, now: datetime | None = None) -> int:
    """Tell each holder once, `REMIND_BEFORE` ahead, that their chips expire. Returns how many."""
    now = now or utcnow()
    sent = 0
    for chip in repo.chips_to_remind(session, now, now + REMIND_BEFORE):
        for user_id, balance, language in repo.holders_not_reminded(session, chip.id):
            texts = reminder_texts(chip, balance)
            data = {
                "chip_id": chip.id,
                "symbol": chip.symbol,
                "name": chip.name,
                "balance": balance,
                "expires_at": chip.expires_at.isoformat() if chip.expires_at else None,
                "language": language,
                **texts.get(language, texts[Language.EN.value]),
                "texts": texts,
            }
            try:
                with session.begin_nested():
                    session.add(
                        Notification(
                            user_id=user_id,
                            community_id=chip.community_id,
                            kind=repo.REMINDER_KIND,
                            subject_type="chip",
                            subject_id=chip.id,
                            actor_id=None,
                            data=data,
                        )
                    )
            except IntegrityError:  # a concurrent run reminded them first
                continue
            sent += 1
    return sent


UnitOfWork = Callable[[], AbstractContextManager[Session]]


def _units(target: Session | UnitOfWork) -> UnitOfWork:
    """A factory of units of work (the beat task passes `session_scope`), or one session for all."""
    if isinstance(target, Session):
        return lambda: nullcontext(target)
    return target


def _sweep_key(kind: TxKind, chip_id: int, account_id: int, period: str | None, seq: int) -> str:
    """Decay is keyed by its period; expiry by the account's chain position (same state, same key)."""
    return f"{kind.value}:{chip_id}:{account_id}:{period if period is not None else seq}"


def _sweep_amount(balance: int, held: int, bps: int | None) -> int:
    """All that is spendable (`bps` None), or `bps` of the balance, never more than is spendable."""
    return min(balance if bps is None else balance * bps // 10_000, balance - held)


def _due_sweeps(
    session: Session, chip_ids: list[int], kind: TxKind, bps: dict[int, int | None], period: str | None
) -> list[tuple[int, int]]:
    """(chip id, account id) of the wallets to sweep, in one read, keys already used left out.

    Nothing is locked here: a wallet already swept for this period (or in this state), or
    one whose charge rounds down to nothing, is not locked at all, so an hourly run with
    nothing due touches no wallet.
    """
    found = repo.sweep_candidates(session, chip_ids)
    keys = {
        (c, a): _sweep_key(kind, c, a, period, seq)
        for c, a, seq, balance, held in found
        if _sweep_amount(balance, held, bps[c]) > 0
    }
    used = repo.used_keys(session, list(keys.values()))
    return [item for item, key in keys.items() if key not in used]


def _sweep_one(
    session: Session, chip_id: int, account_id: int, kind: TxKind, *, bps: int | None, period: str | None
) -> int:
    """Return one wallet's chips to the issuance account (1 if posted now, else 0).

    Locks the wallet and the issuance account together (id order), then re-reads them and
    the chip. `bps` None takes everything spendable.
    """
    issuance = ledger.issuance_account(session, chip_id)
    ledger.lock_accounts(session, [issuance.id, account_id])
    acct = ledger_repo.account_row(session, account_id)
    chip = session.get(Chip, chip_id, populate_existing=True)
    assert acct is not None and chip is not None
    if chip.frozen or acct.frozen:
        return 0
    if kind == TxKind.EXPIRY and not chip.expired:
        return 0
    if kind == TxKind.DECAY and chip.expired:
        return 0
    key = _sweep_key(kind, chip_id, account_id, period, acct.seq)
    if repo.key_used(session, key):
        return 0
    amount = _sweep_amount(acct.balance, acct.held, bps)
    if amount <= 0:
        return 0
    posted = ledger.post(
        session,
        Entry(
            community_id=chip.community_id,
            kind=kind,
            key=key,
            legs=(Leg(acct.id, chip_id, -amount), Leg(issuance.id, chip_id, amount)),
            memo="season ended" if kind == TxKind.EXPIRY else f"demurrage {period}",
            subject_type="chip",
            subject_id=chip_id,
        ),
    )
    return 0 if posted.replayed else 1


def _run_sweeps(
    run: UnitOfWork,
    chip_ids: list[int],
    kind: TxKind,
    *,
    bps: dict[int, int | None],
    period: str | None,
) -> int:
    with run() as s:
        due = _due_sweeps(s, chip_ids, kind, bps, period)
    posted = 0
    for chip_id, account_id in due:
        try:
            with run() as s:
                posted += _sweep_one(s, chip_id, account_id, kind, bps=bps[chip_id], period=period)
        except DomainError as exc:  # frozen meanwhile, say: a later run retries this wallet
            log.warning("%s of account %s skipped: %s", kind.value, account_id, exc.code)
    return posted


def _mark_expired(session: Session, chip_id: int, now: datetime) -> bool:
    """Mark the chip expired (once, audited); False when it is frozen or not due after all."""
    chip = repo.lock_chip(session, chip_id)
    if chip.frozen or chip.expires_at is None or chip.expires_at > now:
        return False
    if not chip.expired:
        chip.expired = True
        session.flush()
        audit.record(
            session, None, "chip.expire", chip, community_id=chip.community_id, after={"expired": True}
        )
    return True


def expire_chips(units: Session | UnitOfWork, now: datetime | None = None) -> int:
    """At season end mark the chip expired and return every spendable balance to its issuer.

    Keys carry the account's chain position, so a re-run in the same state replays, and
    chips that a hold or a freeze kept back are swept by a later run once released.
    Given a unit-of-work factory (the beat task passes `session_scope`), each listing read,
    each chip's marking and each wallet's sweep is its own short transaction.
    """
    now = now or utcnow()
    run = _units(units)
    with run() as s:
        due = repo.chips_past_expiry(s, now)
    expired = []
    for chip_id in due:
        with run() as s:
            if _mark_expired(s, chip_id, now):
                expired.append(chip_id)
    return _run_sweeps(run, expired, TxKind.EXPIRY, bps=dict.fromkeys(expired), period=None)


def decay_period(now: datetime) -> tuple[str, datetime]:
    """The month whose demurrage is due (the one just ended) and the start of the current one."""
    this_month = period_start(EmissionPeriod.MONTH, now)
    last_month = period_start(EmissionPeriod.MONTH, this_month - timedelta(days=1))
    return last_month.strftime("%Y-%m"), this_month


def apply_decay(units: Session | UnitOfWork, now: datetime | None = None) -> int:
    """Charge last month's demurrage once per account (chips older than this month only).

    One read lists the wallets still due for the period; each is charged in its own unit
    of work, so nothing is locked when nothing is due.
    """
    period, this_month = decay_period(now or utcnow())
    run = _units(units)
    with run() as s:
        bps: dict[int, int | None] = dict(repo.decaying_chips(s, this_month))
    return _run_sweeps(run, list(bps), TxKind.DECAY, bps=bps, period=period)


def seal_digests(session: Session, now: datetime | None = None) -> int:
    """Seal yesterday (UTC) for every community with a ledger; sealing twice keeps the first."""
    now = now or utcnow()
    yesterday = now.date() - timedelta(days=1)
    sealed = 0
    for community_id in repo.communities_with_ledger(session):
        ledger.make_digest(session, community_id, yesterday, now=now)
        sealed += 1
    return sealed

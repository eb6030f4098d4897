"""Wallet reads: balances, history, receipts that verify, chain checks, digests."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from core.access import Actor
from core.chips import service as chips
from core.chips.schemas import BurnIn, TransferIn
from core.clock import utcnow
from core.errors import Conflict, NotFound, PermissionDenied
from core.ledger import chain
from core.ledger import service as ledger
from core.models import LedgerDigest, LedgerPosting, LedgerTransaction, TxKind
from core.wallet import service as wallet
from tests.core.chips.conftest import Town, key, mint
from tests.factories import add_member, community_chip, issue_chip


def test_balances_show_available_and_held_per_chip(session: Session, town: Town) -> None:
    points = community_chip(session, town.community)
    tea = issue_chip(session, town.community, town.alice, symbol="TEA")
    mint(session, points, town.owner, 100, to=town.bob)
    mint(session, tea, town.alice, 20, to=town.bob)
    account = ledger.open_account(session, points, town.bob.id)
    ledger.place_hold(session, account_id=account.id, amount=30, key="h-1")
    out = wallet.balances(session, Actor(town.bob), town.community.id)
    rows = {b.symbol: (b.balance, b.held, b.available, b.chip_kind.value) for b in out.balances}
    assert rows == {points.symbol: (100, 30, 70, "community"), "TEA": (20, 0, 20, "personal")}
    assert wallet.balances(session, Actor(town.alice), town.community.id).balances == []


def test_members_see_only_their_own_wallet_moderators_any(session: Session, town: Town) -> None:
    points = community_chip(session, town.community)
    mint(session, points, town.owner, 5, to=town.bob)
    with pytest.raises(PermissionDenied) as exc:
        wallet.balances(session, Actor(town.alice), town.community.id, town.bob.id)
    assert exc.value.code == "wallet_private"
    with pytest.raises(PermissionDenied):
        wallet.history(session, Actor(town.alice), town.community.id, user_id=town.bob.id)
    seen = wallet.balances(session, Actor(town.mod), town.community.id, town.bob.id)
    assert [b.balance for b in seen.balances] == [5]
    assert wallet.history(session, Actor(town.mod), town.community.id, user_id=town.bob.id).items


def test_history_filters_and_pages_newest_first(session: Session, town: Town) -> None:
    points = community_chip(session, town.community)
    tea = issue_chip(session, town.community, town.alice, symbol="TEA")
    for n in range(5):
        mint(session, points, town.owner, n + 1, to=town.bob)
    mint(session, tea, town.alice, 7, to=town.bob)
    chips.burn(session, Actor(town.bob), points.id, BurnIn(amount=2), key())
    everything = wallet.history(session, Actor(town.bob), town.community.id, limit=100).items
    assert [i.amount for i in everything] == [-2, 7, 5, 4, 3, 2, 1]
    assert [i.kind for i in everything][:2] == [TxKind.BURN, TxKind.MINT]
    only_tea = wallet.history(session, Actor(town.bob), town.community.id, chip_id=tea.id).items
    assert [(i.symbol, i.amount) for i in only_tea] == [("TEA", 7)]
    burns = wallet.history(session, Actor(town.bob), town.community.id, kind=TxKind.BURN).items
    assert [i.amount for i in burns] == [-2]
    assert not wallet.history(
        session, Actor(town.bob), town.community.id, since=utcnow() + timedelta(minutes=1)
    ).items
    assert (
        len(
            wallet.history(
                session, Actor(town.bob), town.community.id, until=utcnow() + timedelta(minutes=1)
            ).items
        )
        == 7
    )
    # Pages of 3 walk the same list without gaps or repeats.
    seen, cursor = [], None
    while True:
        page = wallet.history(session, Actor(town.bob), town.community.id, cursor=cursor, limit=3)
        seen += [i.posting_id for i in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [i.posting_id for i in everything]


def test_a_receipt_verifies_the_callers_postings(session: Session, town: Town) -> None:
    points = community_chip(session, town.community)
    mint(session, points, town.owner, 10, to=town.alice)
    sent = chips.transfer(
        session, Actor(town.alice), points.id, TransferIn(to_user_id=town.bob.id, amount=4), key()
    )
    receipt = wallet.receipt(session, Actor(town.bob), sent.id)
    assert receipt.verified and receipt.kind == TxKind.TRANSFER
    mine = [p for p in receipt.postings if p.mine]
    theirs = [p for p in receipt.postings if not p.mine]
    assert [(p.amount, p.seq, p.prev_hash, p.verified) for p in mine] == [(4, 1, chain.GENESIS, True)]
    assert [(p.owner_id, p.hash, p.verified) for p in theirs] == [(town.alice.id, None, None)]
    alice = wallet.receipt(session, Actor(town.alice), sent.id)
    paid = next(p for p in alice.postings if p.mine)
    assert (paid.amount, paid.seq, paid.balance_after, paid.verified) == (-4, 2, 6, True)
    assert paid.prev_hash != chain.GENESIS
    # Moderators see every posting's chain facts; bystanders do not see the receipt at all.
    assert all(p.verified for p in wallet.receipt(session, Actor(town.mod), sent.id).postings)
    with pytest.raises(NotFound):
        wallet.receipt(session, Actor(town.admin), 10**12)
    with pytest.raises(NotFound):
        wallet.receipt(session, Actor(add_member(session, town.community)), sent.id)


def test_a_tampered_posting_is_detected(session: Session, town: Town) -> None:
    points = community_chip(session, town.community)
    mint(session, points, town.owner, 10, to=town.bob)
    tx_id = mint(session, points, town.owner, 5, to=town.bob)
    tx = session.get(LedgerTransaction, tx_id)
    assert tx is not None
    posting = session.scalars(
        select(LedgerPosting).where(LedgerPosting.transaction_id == tx_id, LedgerPosting.amount > 0)
    ).one()
    prev = ledger.previous_hash(session, posting.account_id, posting.seq)
    assert wallet.posting_verified(posting, prev_hash=prev, kind=tx.kind, created_at=tx.created_at)
    # Any changed fact breaks the hash: a rewritten predecessor, amount, kind or time.
    assert not wallet.posting_verified(
        posting, prev_hash=chain.GENESIS, kind=tx.kind, created_at=tx.created_at
    )
    assert not wallet.posting_verified(posting, prev_hash=prev, kind=TxKind.TIP, created_at=tx.created_at)
    assert not wallet.posting_verified(
        posting, prev_hash=prev, kind=tx.kind, created_at=tx.created_at + timedelta(microseconds=1)
    )
    forged = LedgerPosting(
        **{
            c: getattr(posting, c)
            for c in ("transaction_id", "leg", "account_id", "chip_id", "seq", "balance_after", "hash")
        },
        amount=500,
    )
    assert not wallet.posting_verified(forged, prev_hash=prev, kind=tx.kind, created_at=tx.created_at)
    # And the database refuses the rewrite in the first place.
    with pytest.raises(DBAPIError), session.begin_nested():
        session.execute(
            text("UPDATE ledger_postings SET hash = :h WHERE id = :id"), {"h": "f" * 64, "id": posting.id}
        )
    with pytest.raises(DBAPIError), session.begin_nested():
        session.execute(text("DELETE FROM ledger_postings WHERE id = :id"), {"id": posting.id})
    session.refresh(posting)
    assert wallet.posting_verified(posting, prev_hash=prev, kind=tx.kind, created_at=tx.created_at)


def test_chain_verification_of_ones_own_accounts(session: Session, town: Town) -> None:
    points = community_chip(session, town.community)
    tea = issue_chip(session, town.community, town.alice, symbol="TEA")
    mint(session, points, town.owner, 10, to=town.bob)
    mint(session, tea, town.alice, 3, to=town.bob)
    chips.burn(session, Actor(town.bob), tea.id, BurnIn(amount=1), key())
    out = wallet.verify_chain(session, Actor(town.bob), town.community.id)
    assert out.ok and {(c.symbol, c.postings) for c in out.accounts} == {(points.symbol, 1), ("TEA", 2)}
    only = wallet.verify_chain(session, Actor(town.bob), town.community.id, chip_id=tea.id)
    assert [c.symbol for c in only.accounts] == ["TEA"]
    with pytest.raises(PermissionDenied):
        wallet.verify_chain(session, Actor(town.alice), town.community.id, user_id=town.bob.id)


def test_digests_are_sealed_listed_and_verified(session: Session, town: Town) -> None:
    points = community_chip(session, town.community)
    mint(session, points, town.owner, 10, to=town.bob)
    today = utcnow().date()
    with pytest.raises(Conflict) as exc:
        wallet.seal_digest(session, Actor(town.mod), town.community.id, today)
    assert exc.value.code == "day_not_over"
    with pytest.raises(PermissionDenied):
        wallet.seal_digest(session, Actor(town.bob), town.community.id, today - timedelta(days=1))
    yesterday = wallet.seal_digest(session, Actor(town.mod), town.community.id, today - timedelta(days=1))
    assert yesterday.accounts == 0  # today's postings come after yesterday's seal
    digest = ledger.make_digest(session, town.community.id, today, now=utcnow() + timedelta(days=1))
    listed = wallet.list_digests(session, Actor(town.bob), town.community.id, cursor=None, limit=10).items
    assert [d.day for d in listed] == [today, today - timedelta(days=1)]
    check = wallet.verify_digest(session, Actor(town.bob), town.community.id, today)
    assert check.ok and check.recomputed == digest.digest and digest.accounts == 2
    # A digest that does not match the ledger (a forged seal, or rewritten history) fails.
    forged = replace_digest(session, digest, "0" * 64)
    bad = wallet.verify_digest(session, Actor(town.bob), town.community.id, forged.day)
    assert not bad.ok and bad.recomputed == check.recomputed
    with pytest.raises(NotFound) as missing:
        wallet.verify_digest(session, Actor(town.bob), town.community.id, today - timedelta(days=9))
    assert missing.value.code == "digest_not_found"


def replace_digest(session: Session, digest: LedgerDigest, value: str) -> LedgerDigest:
    # Digests are not append-only rows: a forged value stands in for a rewritten ledger.
    digest.digest = value
    session.flush()
    return digest

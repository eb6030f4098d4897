"""Issuing, minting within policy, burning, transfers, freezing and reversal (service level)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.access import Actor
from core.chips import service as chips
from core.chips.community import ensure_community_chip
from core.chips.schemas import BurnIn, ChipIn, ChipPatch, MintIn, ReasonIn, TransferIn, WalletFreezeIn
from core.clock import utcnow
from core.errors import Conflict, DomainError, InvalidInput, NotFound, PermissionDenied
from core.ledger import service as ledger
from core.models import AccountKind, AuditLog, Chip, ChipKind, EmissionPeriod, LedgerAccount, TxKind
from tests.core.chips.conftest import (
    Town,
    assert_books_balance,
    audit_actions,
    balance,
    circulating,
    key,
    mint,
    tx_count,
)
from tests.factories import community_chip, issue_chip, make_community, make_user


def chip_in(**fields: object) -> ChipIn:
    return ChipIn.model_validate({"name": "Tea leaves", "symbol": "TEA", **fields})


# --- the community chip -------------------------------------------------------------------------


def test_every_community_is_created_with_one_community_chip(session: Session) -> None:
    community = make_community(session, slug="tea-house-42")
    found = session.scalars(select(Chip).where(Chip.community_id == community.id)).all()
    assert [(c.kind, c.issuer_id, c.symbol) for c in found] == [(ChipKind.COMMUNITY, None, "TEAHOUSE42")]
    issuance = ledger.issuance_account(session, found[0].id)
    assert issuance.kind == AccountKind.ISSUANCE and issuance.balance == 0
    # Idempotent: asking again returns the same chip.
    assert ensure_community_chip(session, community).id == found[0].id


def test_owner_and_admins_mint_the_community_chip_moderators_do_not(session: Session, town: Town) -> None:
    points = community_chip(session, town.community)
    mint(session, points, town.owner, 100, to=town.alice)
    mint(session, points, town.admin, 50, to=town.alice)
    with pytest.raises(PermissionDenied) as exc:
        mint(session, points, town.mod, 1, to=town.alice)
    assert exc.value.code == "insufficient_role"
    with pytest.raises(PermissionDenied):
        mint(session, points, town.alice, 1)
    assert balance(session, points, town.alice) == 150
    assert circulating(session, points) == 150
    assert_books_balance(session, town.community)


# --- issuing ------------------------------------------------------------------------------------


def test_a_member_issues_one_personal_chip(session: Session, town: Town) -> None:
    out = chips.issue_chip(
        session,
        Actor(town.alice),
        town.community.id,
        chip_in(symbol="tea", supply_cap=1000, emission_limit=100, emission_period="week", decay_bps=50),
    )
    assert (out.kind, out.issuer_id, out.symbol) == (ChipKind.PERSONAL, town.alice.id, "TEA")
    assert (out.supply_cap, out.emission_limit, out.emission_period) == (1000, 100, EmissionPeriod.WEEK)
    assert ledger.issuance_account(session, out.id).kind == AccountKind.ISSUANCE
    assert "chip.issue" in audit_actions(session, town.community)
    with pytest.raises(Conflict) as exc:
        chips.issue_chip(session, Actor(town.alice), town.community.id, chip_in(symbol="OTHER"))
    assert exc.value.code == "chip_already_issued"


def test_symbols_are_unique_per_community_whatever_the_case(session: Session, town: Town) -> None:
    chips.issue_chip(session, Actor(town.alice), town.community.id, chip_in(symbol="TEA"))
    with pytest.raises(Conflict) as exc:
        chips.issue_chip(session, Actor(town.bob), town.community.id, chip_in(symbol="tea"))
    assert exc.value.code == "symbol_taken"
    points = community_chip(session, town.community)
    with pytest.raises(Conflict) as exc:
        chips.issue_chip(session, Actor(town.bob), town.community.id, chip_in(symbol=points.symbol.lower()))
    assert exc.value.code == "symbol_taken"
    # Another community may use the same symbol.
    elsewhere = make_community(session, town.bob)
    assert chips.issue_chip(session, Actor(town.bob), elsewhere.id, chip_in(symbol="TEA")).symbol == "TEA"


@pytest.mark.parametrize(
    "fields",
    [
        {"symbol": "T"},
        {"symbol": "THIRTEENCHARS"},
        {"symbol": "TE-A"},
        {"symbol": "茶葉"},
        {"name": ""},
        {"supply_cap": 0},
        {"supply_cap": "100"},
        {"emission_limit": -1},
        {"emission_period": "year"},
        {"decay_bps": 10_001},
        {"unknown": 1},
    ],
)
def test_invalid_chip_fields_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        chip_in(**fields)


def test_a_season_must_end_in_the_future_and_issuers_must_be_members(session: Session, town: Town) -> None:
    with pytest.raises(InvalidInput) as exc:
        chips.issue_chip(
            session, Actor(town.alice), town.community.id, chip_in(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert exc.value.code == "expiry_in_past"
    with pytest.raises(PermissionDenied) as denied:
        chips.issue_chip(session, Actor(make_user(session)), town.community.id, chip_in())
    assert denied.value.code == "not_a_member"


# --- minting ------------------------------------------------------------------------------------


def test_only_the_issuer_mints_a_personal_chip(session: Session, town: Town) -> None:
    tea = issue_chip(session, town.community, town.alice)
    mint(session, tea, town.alice, 10)
    mint(session, tea, town.alice, 5, to=town.bob)
    for stranger in (town.bob, town.owner, town.mod):
        with pytest.raises(PermissionDenied) as exc:
            mint(session, tea, stranger, 1)
        assert exc.value.code == "not_issuer"
    assert (balance(session, tea, town.alice), balance(session, tea, town.bob)) == (10, 5)
    outsider = make_user(session)
    with pytest.raises(InvalidInput) as bad:
        mint(session, tea, town.alice, 1, to=outsider)
    assert bad.value.code == "recipient_not_member"


def test_minting_stops_at_the_supply_cap(session: Session, town: Town) -> None:
    tea = issue_chip(session, town.community, town.alice, supply_cap=100)
    mint(session, tea, town.alice, 60, to=town.bob)
    before = tx_count(session)
    with pytest.raises(Conflict) as exc:
        mint(session, tea, town.alice, 41)
    assert exc.value.code == "supply_cap_exceeded"
    assert tx_count(session) == before and circulating(session, tea) == 60
    mint(session, tea, town.alice, 40)
    assert circulating(session, tea) == 100
    # Burning frees room under the cap again.
    chips.burn(session, Actor(town.bob), tea.id, BurnIn(amount=10), key())
    assert circulating(session, tea) == 90
    mint(session, tea, town.alice, 10)
    assert chips.supply(session, Actor(town.bob), tea.id).mintable_now == 0
    assert_books_balance(session, town.community)


def test_minting_stops_at_the_emission_limit_of_the_period(session: Session, town: Town) -> None:
    tea = issue_chip(session, town.community, town.alice, emission_limit=100, emission_period="day")
    mint(session, tea, town.alice, 70)
    with pytest.raises(Conflict) as exc:
        mint(session, tea, town.alice, 31)
    assert exc.value.code == "emission_limit_exceeded"
    mint(session, tea, town.alice, 30)
    # Burning does not give back emission: it counts what was minted, from the ledger.
    chips.burn(session, Actor(town.alice), tea.id, BurnIn(amount=50), key())
    with pytest.raises(Conflict):
        mint(session, tea, town.alice, 1)
    room = chips.headroom(session, tea)
    assert (room.minted, room.circulating, room.mintable) == (100, 50, 0)
    # Tomorrow is a new period: the same ledger rows are outside it.
    tomorrow = chips.headroom(session, tea, utcnow() + timedelta(days=1))
    assert (tomorrow.minted, tomorrow.mintable) == (0, 100)


def test_period_starts() -> None:
    at = datetime(2026, 11, 19, 15, 30, tzinfo=UTC)  # a Thursday
    assert chips.period_start(EmissionPeriod.DAY, at) == datetime(2026, 11, 19, tzinfo=UTC)
    assert chips.period_start(EmissionPeriod.WEEK, at) == datetime(2026, 11, 16, tzinfo=UTC)
    assert chips.period_start(EmissionPeriod.MONTH, at) == datetime(2026, 11, 1, tzinfo=UTC)
    assert chips.decay_period(at) == ("2026-10", datetime(2026, 11, 1, tzinfo=UTC))
    assert chips.decay_period(datetime(2026, 1, 3, tzinfo=UTC))[0] == "2025-12"


def test_a_retried_mint_returns_the_first_transaction_even_at_the_cap(session: Session, town: Town) -> None:
    tea = issue_chip(session, town.community, town.alice, supply_cap=10)
    first = chips.mint(session, Actor(town.alice), tea.id, MintIn(amount=10), "retry-1")
    again = chips.mint(session, Actor(town.alice), tea.id, MintIn(amount=10), "retry-1")
    assert (again.id, again.replayed, first.replayed) == (first.id, True, False)
    assert circulating(session, tea) == 10
    with pytest.raises(Conflict) as exc:
        chips.mint(session, Actor(town.alice), tea.id, MintIn(amount=9), "retry-1")
    assert exc.value.code == "idempotency_key_reused"
    # Keys are per caller: Bob's "retry-1" is his own.
    points = community_chip(session, town.community)
    assert not chips.mint(session, Actor(town.owner), points.id, MintIn(amount=1), "retry-1").replayed


@pytest.mark.parametrize(
    ("client_key", "code"),
    [
        (None, "idempotency_key_required"),
        ("", "idempotency_key_required"),
        ("has space", "invalid_idempotency_key"),
        ("x" * 121, "invalid_idempotency_key"),
    ],
)
def test_moving_chips_needs_a_valid_idempotency_key(
    session: Session, town: Town, client_key: str | None, code: str
) -> None:
    tea = issue_chip(session, town.community, town.alice)
    with pytest.raises(InvalidInput) as exc:
        chips.mint(session, Actor(town.alice), tea.id, MintIn(amount=1), client_key)
    assert exc.value.code == code


def test_an_expired_chip_cannot_be_minted_or_transferred(session: Session, town: Town) -> None:
    tea = issue_chip(session, town.community, town.alice)
    mint(session, tea, town.alice, 10)
    tea.expired = True
    session.flush()
    with pytest.raises(Conflict) as exc:
        mint(session, tea, town.alice, 1)
    assert exc.value.code == "chip_expired"
    with pytest.raises(Conflict) as exc:
        chips.transfer(
            session, Actor(town.alice), tea.id, TransferIn(to_user_id=town.bob.id, amount=1), key()
        )
    assert exc.value.code == "chip_expired"


def test_chips_of_hidden_communities_are_not_found(session: Session, town: Town) -> None:
    from core.models import Visibility

    private = make_community(session, town.owner, visibility=Visibility.PRIVATE)
    with pytest.raises(NotFound) as exc:
        chips.get_chip(session, Actor(town.alice), community_chip(session, private).id)
    assert exc.value.code == "chip_not_found"


# --- burning and transfers ---------------------------------------------------------------------


def test_transfers_move_transferable_chips_between_members(session: Session, town: Town) -> None:
    tea = issue_chip(session, town.community, town.alice)
    mint(session, tea, town.alice, 10)
    out = chips.transfer(
        session, Actor(town.alice), tea.id, TransferIn(to_user_id=town.bob.id, amount=4, memo="thanks"), key()
    )
    assert out.kind == TxKind.TRANSFER and sorted(p.amount for p in out.postings) == [-4, 4]
    assert (balance(session, tea, town.alice), balance(session, tea, town.bob)) == (6, 4)
    with pytest.raises(Conflict) as exc:
        chips.transfer(
            session, Actor(town.bob), tea.id, TransferIn(to_user_id=town.alice.id, amount=5), key()
        )
    assert exc.value.code == "insufficient_funds"
    with pytest.raises(InvalidInput) as same:
        chips.transfer(session, Actor(town.bob), tea.id, TransferIn(to_user_id=town.bob.id, amount=1), key())
    assert same.value.code == "same_account"

    locked = issue_chip(session, town.community, town.bob, transferable=False)
    mint(session, locked, town.bob, 5)
    with pytest.raises(Conflict) as exc:
        chips.transfer(
            session, Actor(town.bob), locked.id, TransferIn(to_user_id=town.alice.id, amount=1), key()
        )
    assert exc.value.code == "chip_not_transferable"
    assert_books_balance(session, town.community)


def test_burning_returns_chips_to_the_issuance_account(session: Session, town: Town) -> None:
    tea = issue_chip(session, town.community, town.alice)
    mint(session, tea, town.alice, 10, to=town.bob)
    out = chips.burn(session, Actor(town.bob), tea.id, BurnIn(amount=3), key())
    assert out.kind == TxKind.BURN
    assert (balance(session, tea, town.bob), circulating(session, tea)) == (7, 7)
    with pytest.raises(Conflict) as exc:
        chips.burn(session, Actor(town.bob), tea.id, BurnIn(amount=8), key())
    assert exc.value.code == "insufficient_funds"


def test_supply_is_read_from_the_ledger(session: Session, town: Town) -> None:
    tea = issue_chip(session, town.community, town.alice, supply_cap=1000, emission_limit=300)
    mint(session, tea, town.alice, 100, to=town.bob)
    mint(session, tea, town.alice, 50)
    chips.burn(session, Actor(town.bob), tea.id, BurnIn(amount=100), key())
    out = chips.supply(session, Actor(town.bob), tea.id)
    assert (out.circulating, out.held_by_members, out.minted_this_period, out.holders) == (50, 50, 150, 1)
    assert (out.supply_cap, out.emission_limit, out.mintable_now) == (1000, 300, 150)


# --- moderation ---------------------------------------------------------------------------------


def test_a_frozen_chip_refuses_movement_until_thawed(session: Session, town: Town) -> None:
    tea = issue_chip(session, town.community, town.alice)
    mint(session, tea, town.alice, 10)
    with pytest.raises(PermissionDenied):
        chips.set_chip_frozen(session, Actor(town.bob), tea.id, ReasonIn(reason="no"), frozen=True)
    assert chips.set_chip_frozen(
        session, Actor(town.mod), tea.id, ReasonIn(reason="scam"), frozen=True
    ).frozen
    before = tx_count(session)
    for attempt in (
        lambda: mint(session, tea, town.alice, 1),
        lambda: chips.transfer(
            session, Actor(town.alice), tea.id, TransferIn(to_user_id=town.bob.id, amount=1), key()
        ),
        lambda: chips.burn(session, Actor(town.alice), tea.id, BurnIn(amount=1), key()),
    ):
        with pytest.raises(Conflict) as exc:
            attempt()
        assert exc.value.code == "chip_frozen"
    assert tx_count(session) == before
    chips.set_chip_frozen(session, Actor(town.mod), tea.id, ReasonIn(reason="cleared"), frozen=False)
    chips.transfer(session, Actor(town.alice), tea.id, TransferIn(to_user_id=town.bob.id, amount=1), key())
    rows = session.scalars(
        select(AuditLog)
        .where(AuditLog.target_type == "chips", AuditLog.target_id == tea.id)
        .order_by(AuditLog.id)
    ).all()
    assert [(r.action, r.actor_user_id, (r.after or {}).get("reason")) for r in rows[1:]] == [
        ("chip.freeze", town.mod.id, "scam"),
        ("chip.unfreeze", town.mod.id, "cleared"),
    ]


def test_a_frozen_wallet_neither_pays_nor_receives(session: Session, town: Town) -> None:
    points = community_chip(session, town.community)
    mint(session, points, town.owner, 10, to=town.alice)
    mint(session, points, town.owner, 10, to=town.bob)
    frozen = chips.set_wallet_frozen(
        session,
        Actor(town.mod),
        town.community.id,
        town.bob.id,
        WalletFreezeIn(reason="stolen token"),
        frozen=True,
    )
    assert [a.frozen for a in frozen] == [True]
    for payer, payee in ((town.bob, town.alice), (town.alice, town.bob)):
        with pytest.raises(Conflict) as exc:
            chips.transfer(session, Actor(payer), points.id, TransferIn(to_user_id=payee.id, amount=1), key())
        assert exc.value.code == "account_frozen"
    assert (balance(session, points, town.alice), balance(session, points, town.bob)) == (10, 10)
    chips.set_wallet_frozen(
        session, Actor(town.mod), town.community.id, town.bob.id, WalletFreezeIn(reason="ok"), frozen=False
    )
    chips.transfer(session, Actor(town.bob), points.id, TransferIn(to_user_id=town.alice.id, amount=1), key())
    assert balance(session, points, town.bob) == 9
    actions = audit_actions(session, town.community)
    assert actions[-2:] == ["ledger_account.freeze", "ledger_account.unfreeze"]
    with pytest.raises(PermissionDenied):
        chips.set_wallet_frozen(
            session,
            Actor(town.alice),
            town.community.id,
            town.bob.id,
            WalletFreezeIn(reason="x"),
            frozen=True,
        )
    with pytest.raises(NotFound) as missing:
        chips.set_wallet_frozen(
            session,
            Actor(town.mod),
            town.community.id,
            make_user(session).id,
            WalletFreezeIn(reason="x"),
            frozen=True,
        )
    assert missing.value.code == "member_not_found"


def test_freezing_one_chip_account_covers_a_chip_never_held(session: Session, town: Town) -> None:
    tea = issue_chip(session, town.community, town.alice)
    out = chips.set_wallet_frozen(
        session,
        Actor(town.mod),
        town.community.id,
        town.bob.id,
        WalletFreezeIn(reason="x", chip_id=tea.id),
        frozen=True,
    )
    assert [(a.chip_id, a.frozen) for a in out] == [(tea.id, True)]
    with pytest.raises(Conflict) as exc:
        mint(session, tea, town.alice, 1, to=town.bob)
    assert exc.value.code == "account_frozen"


def test_only_moderators_reverse_and_every_reversal_is_audited(session: Session, town: Town) -> None:
    tea = issue_chip(session, town.community, town.alice)
    mint(session, tea, town.alice, 10)
    sent = chips.transfer(
        session, Actor(town.alice), tea.id, TransferIn(to_user_id=town.bob.id, amount=4), key()
    )
    with pytest.raises(PermissionDenied):
        chips.reverse(session, Actor(town.alice), sent.id, ReasonIn(reason="mistake"), key())
    out = chips.reverse(session, Actor(town.mod), sent.id, ReasonIn(reason="sent by mistake"), "rev-1")
    assert (out.kind, out.reverses_id, out.memo) == (TxKind.REVERSAL, sent.id, "sent by mistake")
    assert (balance(session, tea, town.alice), balance(session, tea, town.bob)) == (10, 0)
    # A retry replays without a second audit row; another key finds it already reversed.
    again = chips.reverse(session, Actor(town.mod), sent.id, ReasonIn(reason="sent by mistake"), "rev-1")
    assert (again.id, again.replayed) == (out.id, True)
    with pytest.raises(Conflict) as exc:
        chips.reverse(session, Actor(town.mod), sent.id, ReasonIn(reason="again"), key())
    assert exc.value.code == "already_reversed"
    rows = session.scalars(
        select(AuditLog).where(
            AuditLog.community_id == town.community.id, AuditLog.action == "ledger.reverse"
        )
    ).all()
    assert [(r.target_id, r.actor_user_id, r.after) for r in rows] == [
        (sent.id, town.mod.id, {"reversal_id": out.id, "reason": "sent by mistake"})
    ]
    with pytest.raises(NotFound):
        chips.reverse(session, Actor(town.mod), 10**12, ReasonIn(reason="x"), key())
    assert_books_balance(session, town.community)


def test_a_reversal_that_would_overdraw_is_refused_and_changes_nothing(session: Session, town: Town) -> None:
    tea = issue_chip(session, town.community, town.alice)
    minted = mint(session, tea, town.alice, 10, to=town.bob)
    chips.burn(session, Actor(town.bob), tea.id, BurnIn(amount=8), key())
    before = tx_count(session)
    with pytest.raises(Conflict) as exc:
        chips.reverse(session, Actor(town.mod), minted, ReasonIn(reason="fraud"), key())
    assert exc.value.code == "insufficient_funds"
    assert tx_count(session) == before
    assert not session.scalars(
        select(AuditLog).where(
            AuditLog.community_id == town.community.id, AuditLog.action == "ledger.reverse"
        )
    ).all()


def test_issuance_accounts_are_not_member_wallets(session: Session, town: Town) -> None:
    tea = issue_chip(session, town.community, town.alice)
    accounts = session.scalars(select(LedgerAccount).where(LedgerAccount.chip_id == tea.id)).all()
    assert [(a.kind, a.owner_id) for a in accounts] == [(AccountKind.ISSUANCE, None)]


def test_a_frozen_wallet_covers_chips_it_first_touches_later(session: Session, town: Town) -> None:
    points = community_chip(session, town.community)
    mint(session, points, town.owner, 10, to=town.bob)
    chips.set_wallet_frozen(
        session, Actor(town.mod), town.community.id, town.bob.id, WalletFreezeIn(reason="x"), frozen=True
    )
    tea = issue_chip(session, town.community, town.alice)  # issued after the freeze
    mint(session, tea, town.alice, 10)
    before = tx_count(session)
    with pytest.raises(Conflict) as exc:
        chips.transfer(
            session, Actor(town.alice), tea.id, TransferIn(to_user_id=town.bob.id, amount=1), key()
        )
    assert exc.value.code == "account_frozen"
    assert tx_count(session) == before
    # Freezing or thawing one chip leaves the wallet-wide freeze as it is.
    chips.set_wallet_frozen(
        session,
        Actor(town.mod),
        town.community.id,
        town.bob.id,
        WalletFreezeIn(reason="x", chip_id=tea.id),
        frozen=False,
    )
    bean = issue_chip(session, town.community, town.admin)
    mint(session, bean, town.admin, 10)
    with pytest.raises(Conflict):
        chips.transfer(
            session, Actor(town.admin), bean.id, TransferIn(to_user_id=town.bob.id, amount=1), key()
        )
    thawed = chips.set_wallet_frozen(
        session, Actor(town.mod), town.community.id, town.bob.id, WalletFreezeIn(reason="ok"), frozen=False
    )
    assert not any(a.frozen for a in thawed)
    coffee = issue_chip(session, town.community, town.mod)
    mint(session, coffee, town.mod, 10)
    chips.transfer(session, Actor(town.mod), coffee.id, TransferIn(to_user_id=town.bob.id, amount=2), key())
    assert balance(session, coffee, town.bob) == 2
    # Another community's wallet of the same member is not frozen by this one.
    elsewhere = make_community(session, town.owner)
    chips.set_wallet_frozen(
        session, Actor(town.mod), town.community.id, town.bob.id, WalletFreezeIn(reason="x"), frozen=True
    )
    other = community_chip(session, elsewhere)
    assert not ledger.open_account(session, other, town.bob.id).frozen


def test_the_issuer_changes_a_chips_policy_within_what_holders_were_promised(
    session: Session, town: Town
) -> None:
    tea = issue_chip(session, town.community, town.alice, supply_cap=100, emission_limit=50)
    mint(session, tea, town.alice, 40)
    out = chips.update_chip(
        session,
        Actor(town.alice),
        tea.id,
        ChipPatch(name="Oolong 烏龍", tippable=False, supply_cap=60, emission_limit=None),
    )
    assert (out.name, out.tippable, out.supply_cap, out.emission_limit) == ("Oolong 烏龍", False, 60, None)
    assert out.transferable and out.symbol == tea.symbol  # untouched fields stay
    for patch, code in (
        (ChipPatch(supply_cap=61), "supply_cap_raised"),
        (ChipPatch(supply_cap=39), "supply_cap_below_circulating"),
        (ChipPatch.model_validate({"name": None}), "invalid_input"),
        (ChipPatch.model_validate({"supply_cap": None}), "invalid_input"),
    ):
        with pytest.raises(DomainError) as exc:
            chips.update_chip(session, Actor(town.alice), tea.id, patch)
        assert exc.value.code == code
    with pytest.raises(PermissionDenied):
        chips.update_chip(session, Actor(town.bob), tea.id, ChipPatch(name="mine"))
    with pytest.raises(Conflict) as capped:  # the lowered cap binds the next mint
        mint(session, tea, town.alice, 21)
    assert capped.value.code == "supply_cap_exceeded"
    mint(session, tea, town.alice, 20)
    # The community chip: admins change it, moderators do not.
    points = community_chip(session, town.community)
    assert (
        chips.update_chip(session, Actor(town.admin), points.id, ChipPatch(supply_cap=1_000)).supply_cap
        == 1_000
    )
    with pytest.raises(PermissionDenied):
        chips.update_chip(session, Actor(town.mod), points.id, ChipPatch(description="x"))
    row = session.scalars(
        select(AuditLog).where(
            AuditLog.target_type == "chips", AuditLog.target_id == tea.id, AuditLog.action == "chip.update"
        )
    ).one()
    assert (row.before or {})["supply_cap"] == 100 and (row.after or {})["supply_cap"] == 60
    assert (row.before or {})["tippable"] is True and (row.after or {})["tippable"] is False

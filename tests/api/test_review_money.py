"""Regressions of the money review: who may reverse and freeze, the supply ceiling, refused transfers."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from core import jobs
from core.db import session_factory, session_scope
from core.earning import service as earning
from core.ledger import group
from core.ledger import service as ledger
from core.ledger.types import Entry, Leg
from core.models import (
    AuditLog,
    Chip,
    Community,
    LedgerAccount,
    LedgerTransaction,
    Membership,
    Role,
    TxKind,
    User,
)
from tests.conftest import needs_postgres
from tests.core.tipping.helpers import age, channel, thread
from tests.factories import add_member, auth, community_chip, fund, make_chip, make_community, make_user


def _err(r, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    assert (r.status_code, r.json().get("error")) == (status, code), (r.status_code, r.text)


def _keyed(session: Session, user: User, key: str) -> dict[str, str]:
    return {**auth(session, user), "Idempotency-Key": key}


def _balance(client: TestClient, session: Session, community: Community, user: User, chip_id: int) -> int:
    owner_view = client.get(f"/communities/{community.id}/wallet", headers=auth(session, user)).json()
    return sum(b["balance"] for b in owner_view["balances"] if b["chip_id"] == chip_id)


def _reversals(session: Session, community: Community) -> int:
    return int(
        session.scalar(
            select(func.count()).where(
                LedgerTransaction.community_id == community.id, LedgerTransaction.kind == TxKind.REVERSAL
            )
        )
        or 0
    )


# --- 1. nobody reverses a transaction they are a party to -------------------------------------------


def test_a_moderator_cannot_reverse_their_own_payment_for_delivered_goods(
    client: TestClient, session: Session
) -> None:
    owner = make_user(session)
    community = make_community(session, owner)
    seller, mod = add_member(session, community), add_member(session, community, role=Role.MODERATOR)
    star = make_chip(session, community, seller, symbol="STAR")
    fund(session, star, mod, 100)
    session.commit()
    offer = client.post(
        f"/communities/{community.id}/redemption/offers",
        headers=auth(session, seller),
        json={"chip_id": star.id, "title": "call", "kind": "goods", "price": 50, "settlement": "issuer"},
    ).json()
    order = client.post(f"/redemption/offers/{offer['id']}/redeem", headers=_keyed(session, mod, "k")).json()
    done = client.post(f"/redemption/orders/{order['id']}/fulfil", headers=auth(session, seller)).json()
    assert done["status"] == "fulfilled", done
    url = f"/ledger/transactions/{done['transaction_id']}/reverse"

    _err(
        client.post(url, json={"reason": "mine"}, headers=_keyed(session, mod, "rv")),
        403,
        "cannot_reverse_own",
    )
    # Nothing moved; the seller is a party too. The owner, a party to neither side, may reverse it.
    assert _balance(client, session, community, mod, star.id) == 50
    assert _balance(client, session, community, seller, star.id) == 50
    assert _reversals(session, community) == 0
    order_now = client.get(f"/redemption/orders/{order['id']}", headers=auth(session, mod)).json()
    assert order_now["status"] == "fulfilled"

    by_owner = client.post(url, json={"reason": "chargeback"}, headers=_keyed(session, owner, "rv-o"))
    assert by_owner.status_code == 201, by_owner.text
    assert _balance(client, session, community, mod, star.id) == 100


def test_nobody_reverses_a_tip_or_a_mint_they_are_a_party_to(client: TestClient, session: Session) -> None:
    owner = make_user(session)
    community = make_community(session, owner)
    mod = add_member(session, community, role=Role.MODERATOR)
    other_mod = add_member(session, community, role=Role.MODERATOR)
    alice = add_member(session, community)
    points = community_chip(session, community)
    fund(session, points, mod, 100)
    fund(session, points, alice, 100)
    tea = make_chip(session, community, mod, symbol="TEA")
    session.commit()

    sent = client.post(
        f"/communities/{community.id}/members/{alice.id}/tips",
        json={"chip_id": points.id, "amount": 30},
        headers=_keyed(session, mod, "t1"),
    ).json()
    received = client.post(
        f"/communities/{community.id}/members/{mod.id}/tips",
        json={"chip_id": points.id, "amount": 20},
        headers=_keyed(session, alice, "t2"),
    ).json()
    minted = client.post(
        f"/chips/{tea.id}/mint",
        json={"amount": 5, "to_user_id": alice.id},
        headers=_keyed(session, mod, "m1"),
    ).json()
    # An owner's own mint is theirs too: no role above a party lets them undo it.
    owner_mint = client.post(
        f"/chips/{points.id}/mint",
        json={"amount": 7, "to_user_id": alice.id},
        headers=_keyed(session, owner, "m2"),
    ).json()
    alice_burn = client.post(
        f"/chips/{tea.id}/burn", json={"amount": 2}, headers=_keyed(session, alice, "b1")
    ).json()
    cases = [
        (mod, sent["transaction_id"]),  # the tipper
        (mod, received["transaction_id"]),  # the recipient
        (mod, minted["id"]),  # the minter (and the chip's issuer)
        (mod, alice_burn["id"]),  # the issuer of the chip burned back into its issuance account
        (owner, owner_mint["id"]),  # the actor, whatever their role
    ]
    for n, (who, tx_id) in enumerate(cases):
        r = client.post(
            f"/ledger/transactions/{tx_id}/reverse",
            json={"reason": "mine"},
            headers=_keyed(session, who, f"r{n}"),
        )
        _err(r, 403, "cannot_reverse_own")
    assert _reversals(session, community) == 0
    assert not session.scalars(
        select(AuditLog).where(AuditLog.community_id == community.id, AuditLog.action == "ledger.reverse")
    ).all()
    assert _balance(client, session, community, mod, points.id) == 90
    # Someone who is not a party still may.
    r = client.post(
        f"/ledger/transactions/{sent['transaction_id']}/reverse",
        json={"reason": "sent by mistake"},
        headers=_keyed(session, other_mod, "r-other"),
    )
    assert r.status_code == 201, r.text
    assert _balance(client, session, community, mod, points.id) == 120


def test_a_reversed_tip_leaves_the_recipients_reputation(client: TestClient, session: Session) -> None:
    owner = make_user(session)
    community = make_community(session, owner)
    alice, bob = add_member(session, community), add_member(session, community)
    mod = add_member(session, community, role=Role.MODERATOR)
    age(session, community, alice)
    thread(session, alice, channel(session, owner, community))  # a tipper who posted earns points
    points = community_chip(session, community)
    fund(session, points, alice, 100)
    session.commit()
    tips_url = f"/communities/{community.id}/members/{bob.id}/tips"
    first = client.post(
        tips_url, json={"chip_id": points.id, "amount": 10}, headers=_keyed(session, alice, "a")
    )
    kept = client.post(
        tips_url, json={"chip_id": points.id, "amount": 10}, headers=_keyed(session, alice, "b")
    )
    assert (first.json()["reputation_points"], kept.json()["reputation_points"]) == (10, 5)
    rep_url = f"/communities/{community.id}/members/{bob.id}/reputation"
    rep = client.get(rep_url, headers=auth(session, bob)).json()
    assert (rep["points"], rep["tips_received"]) == (15, 2)

    url = f"/ledger/transactions/{first.json()['transaction_id']}/reverse"
    done = client.post(url, json={"reason": "stolen card"}, headers=_keyed(session, mod, "rv"))
    assert done.status_code == 201, done.text
    rep = client.get(rep_url, headers=auth(session, bob)).json()
    assert (rep["points"], rep["tips_received"]) == (5, 1)
    board = client.get(
        f"/communities/{community.id}/reputation/leaderboard", headers=auth(session, bob)
    ).json()
    assert [(e["user_id"], e["points"], e["tips_received"]) for e in board] == [(bob.id, 5, 1)]
    received = client.get(f"/communities/{community.id}/tips/received", headers=auth(session, bob)).json()
    assert [t["discounted"] for t in received["items"]] == [False, True]

    # A retry of the reversal, or another attempt, takes nothing back a second time.
    again = client.post(url, json={"reason": "stolen card"}, headers=_keyed(session, mod, "rv"))
    assert again.status_code == 200 and again.json()["replayed"] is True
    _err(client.post(url, json={"reason": "x"}, headers=_keyed(session, mod, "rv2")), 409, "already_reversed")
    rep = client.get(rep_url, headers=auth(session, bob)).json()
    assert (rep["points"], rep["tips_received"]) == (5, 1)


# --- 2. a moderator freezes only the wallets of members below them ------------------------------------


def test_wallets_are_frozen_only_by_someone_above_their_owner(client: TestClient, session: Session) -> None:
    owner = make_user(session)
    community = make_community(session, owner)
    admin = add_member(session, community, role=Role.ADMIN)
    mod, other_mod = (add_member(session, community, role=Role.MODERATOR) for _ in range(2))
    alice = add_member(session, community)
    points = community_chip(session, community)
    session.commit()

    def freeze(who: User, whose: User, action: str = "freeze", **body: object):  # type: ignore[no-untyped-def]
        return client.post(
            f"/communities/{community.id}/members/{whose.id}/wallet/{action}",
            json={"reason": "r", **body},
            headers=auth(session, who),
        )

    for target in (owner, admin, other_mod, mod):
        _err(freeze(mod, target), 403, "insufficient_role")
        _err(freeze(mod, target, chip_id=points.id), 403, "insufficient_role")
        _err(freeze(mod, target, "unfreeze"), 403, "insufficient_role")
    _err(freeze(admin, owner), 403, "insufficient_role")
    _err(freeze(owner, owner), 403, "insufficient_role")
    frozen_flags = session.scalars(
        select(Membership.wallet_frozen).where(Membership.community_id == community.id)
    ).all()
    assert not any(frozen_flags)
    assert not session.scalars(
        select(AuditLog).where(
            AuditLog.community_id == community.id, AuditLog.action == "ledger_account.freeze"
        )
    ).all()

    assert freeze(mod, alice).status_code == 200
    assert freeze(admin, other_mod, chip_id=points.id).status_code == 200
    assert freeze(owner, admin).status_code == 200
    # The admin's frozen wallet is thawed by the owner, never by the admin or a moderator.
    _err(freeze(mod, admin, "unfreeze"), 403, "insufficient_role")
    assert freeze(owner, admin, "unfreeze").status_code == 200


# --- 3. no chip's supply passes the ceiling (it overflowed 64-bit balances: a 500) --------------------


def _premint(session: Session, chip_id: int, wallet_owner: User, circulating: int) -> None:
    """Put `circulating` of the chip into one wallet in one ledger batch (legs of MAX_AMOUNT at most)."""
    chip = session.get(Chip, chip_id)
    assert chip is not None
    issuance = ledger.issuance_account(session, chip.id).id
    wallet = ledger.open_account(session, chip, wallet_owner.id).id
    amounts = [ledger.MAX_AMOUNT] * (circulating // ledger.MAX_AMOUNT)
    if circulating % ledger.MAX_AMOUNT:
        amounts.append(circulating % ledger.MAX_AMOUNT)
    ledger.post_batch(
        session,
        [
            Entry(
                community_id=chip.community_id,
                kind=TxKind.MINT,
                key=f"premint-{chip.id}-{n}",
                legs=(Leg(issuance, chip.id, -amount), Leg(wallet, chip.id, amount)),
            )
            for n, amount in enumerate(amounts)
        ],
    )
    session.commit()


def test_mints_earnings_and_reversals_stop_at_the_supply_ceiling(
    client: TestClient, session: Session, recorded_jobs: list[jobs.Job]
) -> None:
    owner = make_user(session)
    community = make_community(session, owner)
    whale, member = add_member(session, community), add_member(session, community)
    mod = add_member(session, community, role=Role.MODERATOR)
    points = community_chip(session, community)
    _premint(session, points.id, whale, ledger.MAX_SUPPLY - 3)
    mint_url = f"/chips/{points.id}/mint"

    refused = client.post(
        mint_url,
        json={"amount": ledger.MAX_AMOUNT, "to_user_id": member.id},
        headers=_keyed(session, owner, "m1"),
    )
    _err(refused, 409, "supply_limit_exceeded")
    _err(
        client.post(
            mint_url, json={"amount": 4, "to_user_id": member.id}, headers=_keyed(session, owner, "m2")
        ),
        409,
        "supply_limit_exceeded",
    )
    # Up to the ceiling exactly, and then not one more.
    ok = client.post(
        mint_url, json={"amount": 3, "to_user_id": member.id}, headers=_keyed(session, owner, "m3")
    )
    assert ok.status_code == 201, ok.text
    _err(
        client.post(
            mint_url, json={"amount": 1, "to_user_id": member.id}, headers=_keyed(session, owner, "m4")
        ),
        409,
        "supply_limit_exceeded",
    )
    assert client.post(
        mint_url, json={"amount": 3, "to_user_id": member.id}, headers=_keyed(session, owner, "m3")
    ).json()["replayed"]
    supply = client.get(f"/chips/{points.id}/supply", headers=auth(session, owner)).json()
    assert supply["circulating"] == ledger.MAX_SUPPLY

    # An earn grant at the ceiling is skipped (as at a cap), writing nothing.
    rule = client.post(
        f"/communities/{community.id}/earn-rules",
        json={"name": "Onboarding", "trigger": "onboarding_completed", "amount": 1},
        headers=auth(session, owner),
    )
    assert rule.status_code == 201, rule.text
    recorded_jobs.clear()
    assert (
        client.post(
            f"/communities/{community.id}/onboarding/complete", headers=auth(session, member)
        ).status_code
        == 202
    )
    [job] = [j for j in recorded_jobs if j.name == "hearth.earning.grant"]
    assert earning.grant(session, *job.args) == []
    session.commit()
    assert _balance(client, session, community, member, points.id) == 3

    # A reversal of a burn puts chips back into circulation: refused at the ceiling too.
    burnt = client.post(
        f"/chips/{points.id}/burn", json={"amount": 2}, headers=_keyed(session, member, "b1")
    ).json()
    assert (
        client.post(
            mint_url, json={"amount": 2, "to_user_id": whale.id}, headers=_keyed(session, owner, "m5")
        ).status_code
        == 201
    )
    url = f"/ledger/transactions/{burnt['id']}/reverse"
    _err(
        client.post(url, json={"reason": "r"}, headers=_keyed(session, mod, "rv1")),
        409,
        "supply_limit_exceeded",
    )
    assert _reversals(session, community) == 0
    assert _balance(client, session, community, member, points.id) == 1
    # Below the ceiling again, the same reversal goes through.
    assert (
        client.post(
            f"/chips/{points.id}/burn", json={"amount": 2}, headers=_keyed(session, whale, "b2")
        ).status_code
        == 201
    )
    done = client.post(url, json={"reason": "r"}, headers=_keyed(session, mod, "rv2"))
    assert done.status_code == 201, done.text
    assert _balance(client, session, community, member, points.id) == 3
    report = ledger.check_invariants(session, community.id)
    assert report.ok, report.problems


def test_a_supply_already_past_the_ceiling_is_refused_more_not_a_server_error(
    client: TestClient, session: Session
) -> None:
    owner = make_user(session)
    community = make_community(session, owner)
    issuer = add_member(session, community)
    star = make_chip(session, community, issuer, symbol="STAR")
    # What 9,223 mints of MAX_AMOUNT reached before the ceiling existed: one more overflowed int64.
    _premint(session, star.id, issuer, 9_223 * ledger.MAX_AMOUNT)
    r = client.post(
        f"/chips/{star.id}/mint", json={"amount": ledger.MAX_AMOUNT}, headers=_keyed(session, issuer, "m")
    )
    _err(r, 409, "supply_limit_exceeded")


# --- 4. a refused transfer writes nothing, not even the wallet it would have opened ---------------------


@needs_postgres()
def test_a_refused_transfer_leaves_no_new_wallet_behind_with_the_committer(committed_engine: Engine) -> None:
    from api.app import create_app

    with session_scope(committed_engine) as s:
        owner = make_user(s)
        community = make_community(s, owner)
        alice, bob, carol, dave = (add_member(s, community) for _ in range(4))
        points = community_chip(s, community)
        fund(s, points, alice, 10)
        fund(s, points, bob, 1)
        headers = {u.id: auth(s, u) for u in (alice, bob, carol)}
        chip_id, alice_id, bob_id, carol_id, dave_id = points.id, alice.id, bob.id, carol.id, dave.id
    app = create_app(session_maker=session_factory(committed_engine), dispatch_jobs=False)
    run = uuid.uuid4().hex[:8]

    def wallets(user_id: int) -> list[tuple[int, int]]:
        with committed_engine.connect() as conn:
            rows = conn.execute(
                select(LedgerAccount.balance, LedgerAccount.seq).where(
                    LedgerAccount.chip_id == chip_id, LedgerAccount.owner_id == user_id
                )
            ).all()
        return [(balance, seq) for balance, seq in rows]

    one = group.committer(committed_engine)
    assert one is not None
    base = one.stats()["entries"]
    with TestClient(app, raise_server_exceptions=False) as client:

        def send(sender: int, key: str, amount: int, to: int):  # type: ignore[no-untyped-def]
            return client.post(
                f"/chips/{chip_id}/transfers",
                json={"to_user_id": to, "amount": amount},
                headers={**headers[sender], "Idempotency-Key": f"{run}-{key}"},
            )

        # Between two existing wallets: through the committer, as before.
        assert send(alice_id, "k1", 1, bob_id).status_code == 201
        assert one.stats()["entries"] == base + 1
        # Refused, to a member without a wallet (too much, or a key reused): nothing is left.
        _err(send(alice_id, "k2", 99, dave_id), 409, "insufficient_funds")
        _err(send(alice_id, "k1", 1, dave_id), 409, "idempotency_key_reused")
        # Refused, from a member without a wallet: nor is the sender's.
        _err(send(carol_id, "k3", 1, alice_id), 409, "insufficient_funds")
        assert wallets(dave_id) == [] and wallets(carol_id) == []
        # Accepted: the new wallet and its first entry commit together; a retry replays it.
        first = send(alice_id, "k4", 4, dave_id)
        assert first.status_code == 201, first.text
        again = send(alice_id, "k4", 4, dave_id)
        assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])
        assert wallets(dave_id) == [(4, 1)]
    assert (
        one.stats()["entries"] == base + 2
    )  # the retry went through it; the entries that opened wallets did not
    assert wallets(alice_id)[0][0] == 5 and wallets(bob_id) == [(2, 2)]

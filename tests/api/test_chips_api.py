"""Chips over HTTP: issuing, minting with Idempotency-Key, supply, freezing, reversal."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.clock import utcnow
from core.models import AuditLog, Role
from tests.factories import add_member, auth, community_chip, make_community, make_user


def setup(session: Session):  # type: ignore[no-untyped-def]
    owner = make_user(session)
    community = make_community(session, owner)
    alice = add_member(session, community)
    bob = add_member(session, community)
    mod = add_member(session, community, role=Role.MODERATOR)
    return community, owner, alice, bob, mod


def issue(client: TestClient, session: Session, community_id: int, user, **fields):  # type: ignore[no-untyped-def]
    body = {"name": "Tea leaves", "symbol": "TEA", **fields}
    return client.post(f"/communities/{community_id}/chips", json=body, headers=auth(session, user))


def with_key(session: Session, user, key: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {**auth(session, user), "Idempotency-Key": key}


def test_issue_list_and_read_chips(client: TestClient, session: Session) -> None:
    community, owner, alice, bob, _ = setup(session)
    r = issue(client, session, community.id, alice, symbol="tea", supply_cap=1000, decay_bps=100)
    assert r.status_code == 201, r.text
    chip = r.json()
    assert (chip["symbol"], chip["kind"], chip["issuer_id"], chip["supply_cap"]) == (
        "TEA",
        "personal",
        alice.id,
        1000,
    )
    assert issue(client, session, community.id, alice, symbol="MORE").json()["error"] == "chip_already_issued"
    assert issue(client, session, community.id, bob, symbol="Tea").json()["error"] == "symbol_taken"
    bad = issue(client, session, community.id, bob, symbol="T!")
    assert bad.status_code == 422
    past = issue(
        client,
        session,
        community.id,
        bob,
        symbol="BOB",
        expires_at=(utcnow() - timedelta(days=1)).isoformat(),
    )
    assert (past.status_code, past.json()["error"]) == (422, "expiry_in_past")
    listed = client.get(f"/communities/{community.id}/chips", headers=auth(session, bob)).json()["items"]
    assert [c["kind"] for c in listed] == ["community", "personal"]
    only = client.get(
        f"/communities/{community.id}/chips", params={"kind": "personal"}, headers=auth(session, bob)
    ).json()["items"]
    assert [c["id"] for c in only] == [chip["id"]]
    assert client.get(f"/chips/{chip['id']}", headers=auth(session, owner)).json()["name"] == "Tea leaves"
    assert client.get("/chips/999999999", headers=auth(session, owner)).json()["error"] == "chip_not_found"


def test_mint_is_idempotent_and_policed(client: TestClient, session: Session) -> None:
    community, _, alice, bob, _ = setup(session)
    chip = issue(client, session, community.id, alice, supply_cap=100, emission_limit=80).json()
    url = f"/chips/{chip['id']}/mint"
    body = {"amount": 50, "to_user_id": bob.id, "memo": "welcome"}
    first = client.post(url, json=body, headers=with_key(session, alice, "mint-1"))
    assert first.status_code == 201, first.text
    again = client.post(url, json=body, headers=with_key(session, alice, "mint-1"))
    assert again.status_code == 200
    assert (again.json()["id"], again.json()["replayed"], first.json()["replayed"]) == (
        first.json()["id"],
        True,
        False,
    )
    reused = client.post(url, json={**body, "amount": 51}, headers=with_key(session, alice, "mint-1"))
    assert (reused.status_code, reused.json()["error"]) == (409, "idempotency_key_reused")
    missing = client.post(url, json=body, headers=auth(session, alice))
    assert (missing.status_code, missing.json()["error"]) == (422, "idempotency_key_required")
    over = client.post(url, json={"amount": 31}, headers=with_key(session, alice, "mint-2"))
    assert (over.status_code, over.json()["error"]) == (409, "emission_limit_exceeded")
    assert (
        client.post(url, json={"amount": 30}, headers=with_key(session, alice, "mint-3")).status_code == 201
    )
    supply = client.get(f"/chips/{chip['id']}/supply", headers=auth(session, bob)).json()
    assert (
        supply["circulating"],
        supply["held_by_members"],
        supply["minted_this_period"],
        supply["holders"],
    ) == (
        80,
        80,
        80,
        2,
    )
    assert supply["mintable_now"] == 0
    not_issuer = client.post(url, json={"amount": 1}, headers=with_key(session, bob, "mint-4"))
    assert (not_issuer.status_code, not_issuer.json()["error"]) == (403, "not_issuer")
    as_string = client.post(url, json={"amount": "1"}, headers=with_key(session, alice, "mint-5"))
    assert as_string.status_code == 422


def test_supply_cap_is_a_stable_409_with_its_figures(client: TestClient, session: Session) -> None:
    community, _, alice, _, _ = setup(session)
    chip = issue(client, session, community.id, alice, supply_cap=10).json()
    assert (
        client.post(
            f"/chips/{chip['id']}/mint", json={"amount": 4}, headers=with_key(session, alice, "c-0")
        ).status_code
        == 201
    )
    r = client.post(f"/chips/{chip['id']}/mint", json={"amount": 7}, headers=with_key(session, alice, "c-1"))
    assert (r.status_code, r.json()["error"]) == (409, "supply_cap_exceeded")
    # The client learns how much room is left: the cap and what already circulates.
    assert r.json()["details"] == {"supply_cap": 10, "circulating": 4}


def test_transfer_and_burn(client: TestClient, session: Session) -> None:
    community, owner, alice, bob, _ = setup(session)
    points = community_chip(session, community)
    r = client.post(
        f"/chips/{points.id}/mint",
        json={"amount": 10, "to_user_id": alice.id},
        headers=with_key(session, owner, "o-1"),
    )
    assert r.status_code == 201, r.text
    sent = client.post(
        f"/chips/{points.id}/transfers",
        json={"to_user_id": bob.id, "amount": 4, "memo": "for the tea"},
        headers=with_key(session, alice, "t-1"),
    )
    assert sent.status_code == 201, sent.text
    assert sorted((p["owner_id"], p["amount"]) for p in sent.json()["postings"]) == sorted(
        [(alice.id, -4), (bob.id, 4)]
    )
    burnt = client.post(f"/chips/{points.id}/burn", json={"amount": 1}, headers=with_key(session, bob, "b-1"))
    assert (burnt.status_code, burnt.json()["kind"]) == (201, "burn")
    poor = client.post(f"/chips/{points.id}/burn", json={"amount": 99}, headers=with_key(session, bob, "b-2"))
    assert (poor.status_code, poor.json()["error"]) == (409, "insufficient_funds")
    outsider = make_user(session)
    r = client.post(
        f"/chips/{points.id}/transfers",
        json={"to_user_id": outsider.id, "amount": 1},
        headers=with_key(session, alice, "t-2"),
    )
    assert (r.status_code, r.json()["error"]) == (422, "recipient_not_member")


def test_a_transfer_answers_with_its_whole_transaction(client: TestClient, session: Session) -> None:
    """The response is read back in one query: every field of the transaction and of each
    posting, in leg order, whether a wallet was opened for it or both existed, and on a retry."""
    from core.ledger import service as ledger

    community, owner, alice, bob, _ = setup(session)
    points = community_chip(session, community)
    client.post(
        f"/chips/{points.id}/mint",
        json={"amount": 10, "to_user_id": alice.id},
        headers=with_key(session, owner, "m"),
    )
    first = client.post(
        f"/chips/{points.id}/transfers",
        json={"to_user_id": bob.id, "amount": 4, "memo": "茶錢 for the tea"},
        headers=with_key(session, alice, "t-1"),
    )  # bob had no wallet: it is opened with the transfer
    second = client.post(
        f"/chips/{points.id}/transfers",
        json={"to_user_id": bob.id, "amount": 1},
        headers=with_key(session, alice, "t-2"),
    )  # both wallets exist
    wallets = ledger.existing_wallet_ids(session, points.id, {alice.id, bob.id})
    assert set(wallets) == {alice.id, bob.id}
    for response, amount, memo in ((first, 4, "茶錢 for the tea"), (second, 1, "")):
        assert response.status_code == 201, response.text
        body = response.json()
        assert isinstance(body["id"], int) and body["created_at"]
        assert {k: v for k, v in body.items() if k not in ("id", "created_at")} == {
            "community_id": community.id,
            "kind": "transfer",
            "memo": memo,
            "actor_id": alice.id,
            "subject_type": None,
            "subject_id": None,
            "reverses_id": None,
            "replayed": False,
            "postings": [
                {
                    "leg": 0,
                    "account_id": wallets[alice.id],
                    "account_kind": "member",
                    "owner_id": alice.id,
                    "chip_id": points.id,
                    "symbol": points.symbol,
                    "amount": -amount,
                },
                {
                    "leg": 1,
                    "account_id": wallets[bob.id],
                    "account_kind": "member",
                    "owner_id": bob.id,
                    "chip_id": points.id,
                    "symbol": points.symbol,
                    "amount": amount,
                },
            ],
        }
    assert first.json()["id"] != second.json()["id"]
    again = client.post(
        f"/chips/{points.id}/transfers",
        json={"to_user_id": bob.id, "amount": 4, "memo": "茶錢 for the tea"},
        headers=with_key(session, alice, "t-1"),
    )
    assert again.status_code == 200
    assert again.json() == {**first.json(), "replayed": True}


def test_moderators_freeze_and_thaw(client: TestClient, session: Session) -> None:
    community, owner, alice, bob, mod = setup(session)
    points = community_chip(session, community)
    client.post(
        f"/chips/{points.id}/mint",
        json={"amount": 10, "to_user_id": alice.id},
        headers=with_key(session, owner, "o"),
    )
    denied = client.post(f"/chips/{points.id}/freeze", json={"reason": "x"}, headers=auth(session, alice))
    assert (denied.status_code, denied.json()["error"]) == (403, "insufficient_role")
    assert client.post(
        f"/chips/{points.id}/freeze", json={"reason": "audit"}, headers=auth(session, mod)
    ).json()["frozen"]

    def pay(key: str):  # type: ignore[no-untyped-def]
        return client.post(
            f"/chips/{points.id}/transfers",
            json={"to_user_id": bob.id, "amount": 1},
            headers=with_key(session, alice, key),
        )

    assert pay("p-1").json()["error"] == "chip_frozen"
    client.post(f"/chips/{points.id}/unfreeze", json={"reason": "ok"}, headers=auth(session, mod))
    assert pay("p-2").status_code == 201
    frozen = client.post(
        f"/communities/{community.id}/members/{alice.id}/wallet/freeze",
        json={"reason": "compromised"},
        headers=auth(session, mod),
    )
    assert frozen.status_code == 200 and [a["frozen"] for a in frozen.json()] == [True]
    assert pay("p-3").json()["error"] == "account_frozen"
    client.post(
        f"/communities/{community.id}/members/{alice.id}/wallet/unfreeze",
        json={"reason": "restored"},
        headers=auth(session, mod),
    )
    assert pay("p-4").status_code == 201
    actions = session.scalars(
        select(AuditLog.action)
        .where(AuditLog.community_id == community.id, AuditLog.action.like("%freeze"))
        .order_by(AuditLog.id)
    ).all()
    assert actions == ["chip.freeze", "chip.unfreeze", "ledger_account.freeze", "ledger_account.unfreeze"]


def test_reversal_is_for_moderators_and_audited(client: TestClient, session: Session) -> None:
    community, owner, alice, _, mod = setup(session)
    points = community_chip(session, community)
    minted = client.post(
        f"/chips/{points.id}/mint",
        json={"amount": 10, "to_user_id": alice.id},
        headers=with_key(session, owner, "o"),
    ).json()
    url = f"/ledger/transactions/{minted['id']}/reverse"
    denied = client.post(url, json={"reason": "mine"}, headers=with_key(session, alice, "r-1"))
    assert (denied.status_code, denied.json()["error"]) == (403, "insufficient_role")
    no_reason = client.post(url, json={"reason": ""}, headers=with_key(session, mod, "r-2"))
    assert no_reason.status_code == 422
    done = client.post(url, json={"reason": "minted twice"}, headers=with_key(session, mod, "r-3"))
    assert done.status_code == 201, done.text
    assert (done.json()["kind"], done.json()["reverses_id"], done.json()["memo"]) == (
        "reversal",
        minted["id"],
        "minted twice",
    )
    replay = client.post(url, json={"reason": "minted twice"}, headers=with_key(session, mod, "r-3"))
    assert (replay.status_code, replay.json()["id"]) == (200, done.json()["id"])
    twice = client.post(url, json={"reason": "minted twice"}, headers=with_key(session, mod, "r-4"))
    assert (twice.status_code, twice.json()["error"]) == (409, "already_reversed")
    rows = session.scalars(
        select(AuditLog).where(AuditLog.community_id == community.id, AuditLog.action == "ledger.reverse")
    ).all()
    assert [(r.actor_user_id, r.target_id, r.after) for r in rows] == [
        (mod.id, minted["id"], {"reversal_id": done.json()["id"], "reason": "minted twice"})
    ]
    wallet = client.get(f"/communities/{community.id}/wallet", headers=auth(session, alice)).json()
    assert [b["balance"] for b in wallet["balances"]] == [0]
    stranger = make_user(session)
    hidden = client.post(url, json={"reason": "x"}, headers=with_key(session, stranger, "r-5"))
    assert (hidden.status_code, hidden.json()["error"]) == (403, "not_a_member")


def test_private_community_chips_are_hidden(client: TestClient, session: Session) -> None:
    from core.models import Visibility

    owner = make_user(session)
    private = make_community(session, owner, visibility=Visibility.PRIVATE)
    chip = community_chip(session, private)
    stranger = make_user(session)
    r = client.get(f"/chips/{chip.id}/supply", headers=auth(session, stranger))
    assert (r.status_code, r.json()["error"]) == (404, "chip_not_found")
    r = client.get(f"/communities/{private.id}/chips", headers=auth(session, stranger))
    assert r.status_code == 404


def test_api_keys_cannot_spend_a_members_chips(client: TestClient, session: Session) -> None:
    from core.access import Actor
    from core.accounts import service as accounts
    from core.accounts.schemas import ApiKeyIn
    from core.ledger import service as ledger
    from tests.factories import fund

    community, owner, alice, _, _ = setup(session)
    points = community_chip(session, community)
    fund(session, points, owner, 10)
    issued = accounts.create_api_key(
        session,
        Actor(owner),
        community.id,
        ApiKeyIn(name="bot", scopes=["read", "write"]),  # type: ignore[list-item]
    )
    bot = {"Authorization": f"Bearer {issued.secret}"}
    sent = client.post(
        f"/chips/{points.id}/transfers",
        json={"to_user_id": alice.id, "amount": 4},
        headers={**bot, "Idempotency-Key": "k-t"},
    )
    assert (sent.status_code, sent.json()["error"]) == (403, "api_key_not_allowed")
    burnt = client.post(
        f"/chips/{points.id}/burn", json={"amount": 1}, headers={**bot, "Idempotency-Key": "k-b"}
    )
    assert (burnt.status_code, burnt.json()["error"]) == (403, "api_key_not_allowed")
    wallet = ledger.open_account(session, points, owner.id)
    session.refresh(wallet)
    assert wallet.balance == 10
    # The personal login still spends.
    ok = client.post(
        f"/chips/{points.id}/transfers",
        json={"to_user_id": alice.id, "amount": 4},
        headers=with_key(session, owner, "k-t"),
    )
    assert ok.status_code == 201, ok.text


def test_the_issuer_patches_a_chips_policy(client: TestClient, session: Session) -> None:
    community, _, alice, bob, _ = setup(session)
    chip = issue(client, session, community.id, alice, supply_cap=500).json()
    r = client.patch(
        f"/chips/{chip['id']}",
        json={"description": "每週茶會 weekly tea", "tradable": False, "supply_cap": 300},
        headers=auth(session, alice),
    )
    assert r.status_code == 200, r.text
    assert (r.json()["description"], r.json()["tradable"], r.json()["supply_cap"]) == (
        "每週茶會 weekly tea",
        False,
        300,
    )
    raised = client.patch(f"/chips/{chip['id']}", json={"supply_cap": 400}, headers=auth(session, alice))
    assert (raised.status_code, raised.json()["error"]) == (409, "supply_cap_raised")
    other = client.patch(f"/chips/{chip['id']}", json={"name": "mine"}, headers=auth(session, bob))
    assert other.status_code == 403
    unknown = client.patch(f"/chips/{chip['id']}", json={"symbol": "NEW"}, headers=auth(session, alice))
    assert unknown.status_code == 422
    assert client.get(f"/chips/{chip['id']}", headers=auth(session, bob)).json()["symbol"] == "TEA"


def test_an_api_key_sees_only_its_own_communitys_chips(client: TestClient, session: Session) -> None:
    """A chip is read with its community's context in one query: another community's chip is
    "chip not found" to a key, as a private community's chip is to an outsider."""
    from core.access import Actor
    from core.accounts import service as accounts
    from core.accounts.schemas import ApiKeyIn

    community, owner, _, _, _ = setup(session)
    elsewhere = make_community(session, owner)
    issued = accounts.create_api_key(
        session,
        Actor(owner),
        community.id,
        ApiKeyIn(name="bot", scopes=["read"]),  # type: ignore[list-item]
    )
    bot = {"Authorization": f"Bearer {issued.secret}"}
    own = client.get(f"/chips/{community_chip(session, community).id}/supply", headers=bot)
    assert own.status_code == 200, own.text
    other = client.get(f"/chips/{community_chip(session, elsewhere).id}/supply", headers=bot)
    assert (other.status_code, other.json()["error"]) == (404, "chip_not_found")

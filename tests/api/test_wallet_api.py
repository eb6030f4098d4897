"""Wallets over HTTP: balances, history filters and pages, receipts, chain checks, digests."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from core.clock import utcnow
from core.ledger import service as ledger
from core.models import Role
from tests.factories import add_member, auth, community_chip, make_community, make_user


def key_headers(session: Session, user, key: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {**auth(session, user), "Idempotency-Key": key}


def test_wallet_balances_history_and_privacy(client: TestClient, session: Session) -> None:
    owner = make_user(session)
    community = make_community(session, owner)
    alice = add_member(session, community)
    bob = add_member(session, community)
    mod = add_member(session, community, role=Role.MODERATOR)
    points = community_chip(session, community)
    tea = client.post(
        f"/communities/{community.id}/chips",
        json={"name": "Tea", "symbol": "TEA"},
        headers=auth(session, alice),
    ).json()
    for n in range(4):
        r = client.post(
            f"/chips/{points.id}/mint",
            json={"amount": 10 + n, "to_user_id": bob.id},
            headers=key_headers(session, owner, f"m-{n}"),
        )
        assert r.status_code == 201, r.text
    client.post(
        f"/chips/{tea['id']}/mint",
        json={"amount": 5, "to_user_id": bob.id},
        headers=key_headers(session, alice, "t"),
    )
    account = ledger.open_account(session, points, bob.id)
    ledger.place_hold(session, account_id=account.id, amount=6, key="hold-w")

    me = client.get(f"/communities/{community.id}/wallet", headers=auth(session, bob)).json()
    assert me["user_id"] == bob.id
    rows = {b["symbol"]: (b["balance"], b["held"], b["available"], b["name"]) for b in me["balances"]}
    assert rows == {points.symbol: (46, 6, 40, points.name), "TEA": (5, 0, 5, "Tea")}

    url = f"/communities/{community.id}/wallet/history"
    everything = client.get(url, headers=auth(session, bob)).json()["items"]
    assert [i["amount"] for i in everything] == [5, 13, 12, 11, 10]
    first = client.get(url, params={"limit": 2}, headers=auth(session, bob)).json()
    second = client.get(
        url, params={"limit": 2, "cursor": first["next_cursor"]}, headers=auth(session, bob)
    ).json()
    assert [i["amount"] for i in first["items"] + second["items"]] == [5, 13, 12, 11]
    by_chip = client.get(url, params={"chip_id": tea["id"]}, headers=auth(session, bob)).json()["items"]
    assert [i["symbol"] for i in by_chip] == ["TEA"]
    by_kind = client.get(url, params={"kind": "burn"}, headers=auth(session, bob)).json()["items"]
    assert by_kind == []
    future = (utcnow() + timedelta(hours=1)).replace(tzinfo=None).isoformat()
    assert client.get(url, params={"from": future}, headers=auth(session, bob)).json()["items"] == []
    assert len(client.get(url, params={"to": future}, headers=auth(session, bob)).json()["items"]) == 5
    backwards = client.get(url, params={"from": future, "to": future}, headers=auth(session, bob))
    assert (backwards.status_code, backwards.json()["error"]) == (422, "invalid_range")
    bad_cursor = client.get(url, params={"cursor": "nope"}, headers=auth(session, bob))
    assert bad_cursor.json()["error"] == "invalid_cursor"

    peek = client.get(
        f"/communities/{community.id}/wallet", params={"user_id": bob.id}, headers=auth(session, alice)
    )
    assert (peek.status_code, peek.json()["error"]) == (403, "wallet_private")
    seen = client.get(
        f"/communities/{community.id}/wallet", params={"user_id": bob.id}, headers=auth(session, mod)
    )
    assert seen.status_code == 200 and len(seen.json()["balances"]) == 2
    outsider = make_user(session)
    r = client.get(f"/communities/{community.id}/wallet", headers=auth(session, outsider))
    assert (r.status_code, r.json()["error"]) == (403, "not_a_member")


def test_receipts_chain_checks_and_digests(client: TestClient, session: Session) -> None:
    owner = make_user(session)
    community = make_community(session, owner)
    alice = add_member(session, community)
    bob = add_member(session, community)
    points = community_chip(session, community)
    client.post(
        f"/chips/{points.id}/mint",
        json={"amount": 9, "to_user_id": alice.id},
        headers=key_headers(session, owner, "m"),
    )
    sent = client.post(
        f"/chips/{points.id}/transfers",
        json={"to_user_id": bob.id, "amount": 3},
        headers=key_headers(session, alice, "t"),
    ).json()
    receipt = client.get(f"/ledger/transactions/{sent['id']}/receipt", headers=auth(session, bob)).json()
    assert receipt["verified"] and receipt["kind"] == "transfer"
    mine = [p for p in receipt["postings"] if p["mine"]]
    assert [(p["amount"], p["seq"], p["verified"], len(p["hash"]), len(p["prev_hash"])) for p in mine] == [
        (3, 1, True, 64, 64)
    ]
    assert all(p["hash"] is None for p in receipt["postings"] if not p["mine"])
    stranger = add_member(session, community)
    hidden = client.get(f"/ledger/transactions/{sent['id']}/receipt", headers=auth(session, stranger))
    assert (hidden.status_code, hidden.json()["error"]) == (404, "transaction_not_found")

    check = client.get(f"/communities/{community.id}/wallet/verify", headers=auth(session, alice)).json()
    assert check["ok"] and [a["postings"] for a in check["accounts"]] == [2]

    today = utcnow().date()
    digests = f"/communities/{community.id}/ledger/digests"
    early = client.post(digests, json={"day": today.isoformat()}, headers=auth(session, owner))
    assert (early.status_code, early.json()["error"]) == (409, "day_not_over")
    denied = client.post(digests, json={"day": str(today - timedelta(days=1))}, headers=auth(session, alice))
    assert denied.status_code == 403
    sealed = client.post(digests, json={"day": str(today - timedelta(days=1))}, headers=auth(session, owner))
    assert sealed.status_code == 201, sealed.text
    listed = client.get(digests, headers=auth(session, bob)).json()["items"]
    assert [d["day"] for d in listed] == [str(today - timedelta(days=1))]
    verified = client.get(f"{digests}/{today - timedelta(days=1)}/verify", headers=auth(session, bob)).json()
    assert verified["ok"] and verified["recomputed"] == verified["digest"] == sealed.json()["digest"]
    missing = client.get(f"{digests}/{today - timedelta(days=5)}/verify", headers=auth(session, bob))
    assert (missing.status_code, missing.json()["error"]) == (404, "digest_not_found")

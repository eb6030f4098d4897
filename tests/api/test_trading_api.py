"""Trading over HTTP: pairs, guard rails, orders and the book, swap offers."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from core import jobs
from core.ledger import service as ledger
from core.models import Chip, Community, User
from tests.factories import add_member, auth, fund, make_chip, make_community, make_user


def _setup(session: Session) -> tuple[Community, User, list[User], Chip, Chip]:
    owner = make_user(session)
    community = make_community(session, owner)
    members = [add_member(session, community) for _ in range(3)]
    base = make_chip(session, community, members[0], symbol="STAR")
    quote = make_chip(session, community, symbol="GOLD")
    for member in members:
        fund(session, base, member, 100)
        fund(session, quote, member, 1000)
    return community, owner, members, base, quote


def _pair(
    client: TestClient, session: Session, community: Community, owner: User, base: Chip, quote: Chip
) -> dict[str, Any]:
    r = client.post(
        f"/communities/{community.id}/trading/pairs",
        json={"base_chip_id": base.id, "quote_chip_id": quote.id},
        headers=auth(session, owner),
    )
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def _order(client: TestClient, session: Session, pair_id: int, user: User, key: str, **body: Any) -> Any:
    return client.post(
        f"/trading/pairs/{pair_id}/orders", json=body, headers={**auth(session, user), "Idempotency-Key": key}
    )


def _wallet(session: Session, chip: Chip, user: User) -> tuple[int, int]:
    account = ledger.open_account(session, chip, user.id)
    session.refresh(account)
    return account.balance, account.held


def test_order_book_flow(client: TestClient, session: Session) -> None:
    community, owner, (a, b, c), base, quote = _setup(session)
    member_try = client.post(
        f"/communities/{community.id}/trading/pairs",
        json={"base_chip_id": base.id, "quote_chip_id": quote.id},
        headers=auth(session, a),
    )
    assert member_try.status_code == 403
    pair = _pair(client, session, community, owner, base, quote)
    sell = _order(client, session, pair["id"], a, "s1", side="sell", price=5, amount=10)
    assert sell.status_code == 201 and sell.json()["trades"] == []
    assert _order(client, session, pair["id"], a, "s1", side="sell", price=5, amount=10).status_code == 200
    buy = _order(client, session, pair["id"], b, "b1", side="buy", price=7, amount=4)
    assert buy.status_code == 201
    assert [(t["price"], t["amount"]) for t in buy.json()["trades"]] == [(5, 4)]
    assert _wallet(session, quote, b) == (980, 0)  # paid 20 at 5, not 28 at 7

    book = client.get(f"/trading/pairs/{pair['id']}/book", headers=auth(session, c)).json()
    assert book["asks"] == [{"price": 5, "amount": 6, "orders": 1}] and book["last_price"] == 5
    trades = client.get(f"/trading/pairs/{pair['id']}/trades", headers=auth(session, c)).json()
    assert [t["amount"] for t in trades["items"]] == [4]
    mine = client.get(
        f"/communities/{community.id}/trading/orders?status=open", headers=auth(session, a)
    ).json()
    assert [o["id"] for o in mine["items"]] == [sell.json()["order"]["id"]]
    not_mine = client.post(f"/trading/orders/{sell.json()['order']['id']}/cancel", headers=auth(session, b))
    assert not_mine.status_code == 404
    cancelled = client.post(f"/trading/orders/{sell.json()['order']['id']}/cancel", headers=auth(session, a))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert _wallet(session, base, a) == (96, 0)
    no_key = client.post(
        f"/trading/pairs/{pair['id']}/orders",
        json={"side": "buy", "price": 1, "amount": 1},
        headers=auth(session, a),
    )
    assert no_key.status_code == 422 and no_key.json()["error"] == "idempotency_key_required"
    assert ledger.check_invariants(session, community.id).ok


def test_guard_rails_and_halt(client: TestClient, session: Session) -> None:
    community, owner, (a, b, _), base, quote = _setup(session)
    pair = _pair(client, session, community, owner, base, quote)
    denied = client.patch(
        f"/trading/pairs/{pair['id']}/guards", json={"price_band_bps": 1000}, headers=auth(session, a)
    )
    assert denied.status_code == 403
    guards = client.patch(
        f"/trading/pairs/{pair['id']}/guards",
        json={"price_band_bps": 1000, "daily_limit": 20, "breaker_bps": 5000},
        headers=auth(session, owner),
    )
    assert guards.status_code == 200 and guards.json()["price_band_bps"] == 1000
    _order(client, session, pair["id"], a, "1", side="sell", price=10, amount=5)
    _order(client, session, pair["id"], b, "2", side="buy", price=10, amount=5)
    far = _order(client, session, pair["id"], a, "3", side="sell", price=12, amount=1)
    assert far.status_code == 422 and far.json()["error"] == "price_out_of_band"
    assert far.json()["details"] == {"min": 9, "max": 11, "reference": 10}
    over = _order(client, session, pair["id"], a, "4", side="sell", price=10, amount=16)
    assert over.status_code == 409 and over.json()["error"] == "daily_limit_exceeded"
    assert over.json()["details"] == {"limit": 20, "used": 5}
    assert client.post(f"/trading/pairs/{pair['id']}/halt", headers=auth(session, a)).status_code == 403
    halted = client.post(f"/trading/pairs/{pair['id']}/halt", headers=auth(session, owner))
    assert halted.json()["halted"] is True
    stopped = _order(client, session, pair["id"], a, "5", side="sell", price=10, amount=1)
    assert stopped.status_code == 409 and stopped.json()["error"] == "pair_halted"
    resumed = client.post(f"/trading/pairs/{pair['id']}/resume", headers=auth(session, owner))
    assert resumed.json()["halted"] is False
    assert _order(client, session, pair["id"], a, "5", side="sell", price=10, amount=1).status_code == 201
    listed = client.get(f"/communities/{community.id}/trading/pairs", headers=auth(session, b)).json()
    assert [p["id"] for p in listed["items"]] == [pair["id"]]


def test_swap_offers(client: TestClient, session: Session, recorded_jobs: list[jobs.Job]) -> None:
    community, _, (a, b, c), base, quote = _setup(session)
    body = {
        "taker_id": b.id,
        "give_chip_id": base.id,
        "give_amount": 10,
        "want_chip_id": quote.id,
        "want_amount": 30,
    }
    url = f"/communities/{community.id}/swaps"
    made = client.post(url, json=body, headers={**auth(session, a), "Idempotency-Key": "sw"})
    assert made.status_code == 201, made.text
    swap = made.json()
    assert (
        client.post(url, json=body, headers={**auth(session, a), "Idempotency-Key": "sw"}).status_code == 200
    )
    assert _wallet(session, base, a) == (100, 10)
    assert client.post(f"/swaps/{swap['id']}/accept", headers=auth(session, c)).status_code == 404
    assert client.post(f"/swaps/{swap['id']}/accept", headers=auth(session, a)).status_code == 403
    accepted = client.post(f"/swaps/{swap['id']}/accept", headers=auth(session, b))
    assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"
    assert _wallet(session, base, a) == (90, 0) and _wallet(session, quote, a) == (1030, 0)
    assert _wallet(session, base, b) == (110, 0) and _wallet(session, quote, b) == (970, 0)
    assert [j.args for j in recorded_jobs if j.name == "hearth.trading.swap_changed"] == [
        (swap["id"], "offered"),
        (swap["id"], "accepted"),
    ]

    second = client.post(url, json=body, headers={**auth(session, a), "Idempotency-Key": "sw2"}).json()
    declined = client.post(f"/swaps/{second['id']}/decline", headers=auth(session, b))
    assert declined.json()["status"] == "declined"
    third = client.post(url, json=body, headers={**auth(session, a), "Idempotency-Key": "sw3"}).json()
    assert (
        client.post(f"/swaps/{third['id']}/cancel", headers=auth(session, a)).json()["status"] == "cancelled"
    )
    again = client.post(f"/swaps/{third['id']}/accept", headers=auth(session, b))
    assert again.status_code == 409 and again.json()["error"] == "swap_not_open"
    assert _wallet(session, base, a) == (90, 0)
    listed = client.get(f"{url}?status=accepted", headers=auth(session, b)).json()
    assert [s["id"] for s in listed["items"]] == [swap["id"]]
    assert ledger.check_invariants(session, community.id).ok


def test_api_keys_cannot_spend_chips_on_trading(client: TestClient, session: Session) -> None:
    """Orders and swap offers spend a member's chips: a personal login only, never an API key."""
    from tests.api.test_channels import api_key

    community, owner, (a, _, _), base, quote = _setup(session)
    fund(session, base, owner, 100)
    fund(session, quote, owner, 1000)
    pair = _pair(client, session, community, owner, base, quote)
    bot = {**api_key(session, owner, community, ["read", "write"]), "Idempotency-Key": "bot-1"}

    placed = client.post(
        f"/trading/pairs/{pair['id']}/orders", json={"side": "buy", "price": 5, "amount": 2}, headers=bot
    )
    assert placed.status_code == 403 and placed.json()["error"] == "api_key_not_allowed"
    body = {
        "taker_id": a.id,
        "give_chip_id": quote.id,
        "give_amount": 10,
        "want_chip_id": base.id,
        "want_amount": 1,
    }
    offered = client.post(f"/communities/{community.id}/swaps", json=body, headers=bot)
    assert offered.status_code == 403 and offered.json()["error"] == "api_key_not_allowed"
    assert _wallet(session, quote, owner) == (1000, 0)

    # A swap offered to the owner: the bot cannot accept it; the owner, logged in, can.
    body = {
        "taker_id": owner.id,
        "give_chip_id": base.id,
        "give_amount": 5,
        "want_chip_id": quote.id,
        "want_amount": 20,
    }
    swap = client.post(
        f"/communities/{community.id}/swaps",
        json=body,
        headers={**auth(session, a), "Idempotency-Key": "to-owner"},
    ).json()
    denied = client.post(f"/swaps/{swap['id']}/accept", headers=bot)
    assert denied.status_code == 403 and denied.json()["error"] == "api_key_not_allowed"
    assert _wallet(session, quote, owner) == (1000, 0) and _wallet(session, base, a) == (100, 5)
    accepted = client.post(f"/swaps/{swap['id']}/accept", headers=auth(session, owner))
    assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"
    assert _wallet(session, quote, owner) == (980, 0)
    # Reading stays open to the key.
    assert client.get(f"/trading/pairs/{pair['id']}/book", headers=bot).status_code == 200
    assert ledger.check_invariants(session, community.id).ok

"""Redemption over HTTP: offers, redeem with Idempotency-Key, both sides' views, fulfil and cancel."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from core import jobs
from core.ledger import service as ledger
from core.models import Chip, Community, RedemptionOffer, Role, User
from tests.factories import add_member, auth, fund, make_chip, make_community, make_user

JOB = "hearth.redemption.order_changed"


def _setup(session: Session) -> tuple[Community, User, User, Chip]:
    owner = make_user(session)
    community = make_community(session, owner)
    creator = add_member(session, community)
    member = add_member(session, community)
    chip = make_chip(session, community, creator, symbol="STAR")
    fund(session, chip, member, 100)
    return community, creator, member, chip


def _offer(
    client: TestClient, session: Session, community: Community, creator: User, chip: Chip, **fields: Any
) -> dict[str, Any]:
    body = {"chip_id": chip.id, "title": "1:1 call", "kind": "call", "price": 40, "stock": 2, **fields}
    r = client.post(
        f"/communities/{community.id}/redemption/offers", json=body, headers=auth(session, creator)
    )
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def _wallet(session: Session, chip: Chip, user: User) -> tuple[int, int]:
    account = ledger.open_account(session, chip, user.id)
    session.refresh(account)
    return account.balance, account.held


def test_redeem_fulfil_flow(client: TestClient, session: Session, recorded_jobs: list[jobs.Job]) -> None:
    community, creator, member, chip = _setup(session)
    offer = _offer(client, session, community, creator, chip, settlement="issuer")
    h = {**auth(session, member), "Idempotency-Key": "call-1"}
    r = client.post(f"/redemption/offers/{offer['id']}/redeem", headers=h)
    assert r.status_code == 201, r.text
    order = r.json()
    assert (order["status"], order["total"], order["offer_title"]) == ("pending", 40, "1:1 call")
    retry = client.post(f"/redemption/offers/{offer['id']}/redeem", headers=h)
    assert retry.status_code == 200 and retry.json()["id"] == order["id"]
    reused = client.post(f"/redemption/offers/{offer['id']}/redeem", json={"quantity": 2}, headers=h)
    assert reused.status_code == 409 and reused.json()["error"] == "idempotency_key_reused"
    assert _wallet(session, chip, member) == (100, 40)
    assert [j.args for j in recorded_jobs if j.name == JOB] == [(order["id"], "requested")]

    mine = client.get(f"/communities/{community.id}/redemption/orders/mine", headers=auth(session, member))
    issued = client.get(
        f"/communities/{community.id}/redemption/orders/issued?status=pending", headers=auth(session, creator)
    )
    assert (
        [o["id"] for o in mine.json()["items"]] == [o["id"] for o in issued.json()["items"]] == [order["id"]]
    )

    denied = client.post(f"/redemption/orders/{order['id']}/fulfil", headers=auth(session, member))
    assert denied.status_code == 403 and denied.json()["error"] == "not_issuer"
    done = client.post(f"/redemption/orders/{order['id']}/fulfil", headers=auth(session, creator))
    assert done.status_code == 200 and done.json()["status"] == "fulfilled"
    assert _wallet(session, chip, member) == (60, 0)
    assert _wallet(session, chip, creator) == (40, 0)
    assert (order["id"], "fulfilled") in [j.args for j in recorded_jobs if j.name == JOB]
    assert ledger.check_invariants(session, community.id).ok


def test_redeem_needs_a_key_and_stock(client: TestClient, session: Session) -> None:
    community, creator, member, chip = _setup(session)
    other = add_member(session, community)
    fund(session, chip, other, 100)
    offer = _offer(client, session, community, creator, chip, stock=1)
    url = f"/redemption/offers/{offer['id']}/redeem"
    missing = client.post(url, headers=auth(session, member))
    assert missing.status_code == 422 and missing.json()["error"] == "idempotency_key_required"
    assert client.post(url, headers={**auth(session, member), "Idempotency-Key": "a"}).status_code == 201
    late = client.post(url, headers={**auth(session, other), "Idempotency-Key": "a"})
    assert late.status_code == 409 and late.json()["error"] == "out_of_stock"
    outsider = client.post(url, headers={**auth(session, make_user(session)), "Idempotency-Key": "z"})
    assert outsider.status_code == 403


def test_cancel_and_offer_management(client: TestClient, session: Session) -> None:
    community, creator, member, chip = _setup(session)
    offer = _offer(client, session, community, creator, chip, per_member_limit=1)
    url = f"/redemption/offers/{offer['id']}/redeem"
    order = client.post(url, headers={**auth(session, member), "Idempotency-Key": "k"}).json()
    limited = client.post(url, headers={**auth(session, member), "Idempotency-Key": "k2"})
    assert limited.status_code == 409 and limited.json()["error"] == "redemption_limit_reached"
    assert limited.json()["details"] == {"limit": 1, "used": 1}
    stranger = add_member(session, community, role=Role.MODERATOR)
    hidden = client.get(f"/redemption/orders/{order['id']}", headers=auth(session, stranger))
    assert hidden.status_code == 404 and hidden.json()["error"] == "order_not_found"
    cancelled = client.post(f"/redemption/orders/{order['id']}/cancel", headers=auth(session, member))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert _wallet(session, chip, member) == (100, 0)
    assert client.get(f"/redemption/offers/{offer['id']}", headers=auth(session, member)).json()["stock"] == 2

    patched = client.patch(
        f"/redemption/offers/{offer['id']}", json={"price": 50}, headers=auth(session, creator)
    )
    assert patched.status_code == 200 and patched.json()["price"] == 50
    assert (
        client.patch(
            f"/redemption/offers/{offer['id']}", json={"price": 1}, headers=auth(session, member)
        ).status_code
        == 403
    )
    withdrawn = client.delete(f"/redemption/offers/{offer['id']}", headers=auth(session, creator))
    assert withdrawn.status_code == 200 and withdrawn.json()["active"] is False
    listed = client.get(
        f"/communities/{community.id}/redemption/offers?active=true", headers=auth(session, member)
    )
    assert listed.json()["items"] == []
    inactive = client.post(url, headers={**auth(session, member), "Idempotency-Key": "k3"})
    assert inactive.status_code == 409 and inactive.json()["error"] == "offer_inactive"
    bad = client.post(
        f"/communities/{community.id}/redemption/offers",
        json={"chip_id": chip.id, "title": "x", "kind": "goods", "price": 0},
        headers=auth(session, creator),
    )
    assert bad.status_code == 422


def test_api_keys_cannot_redeem(client: TestClient, session: Session) -> None:
    """Redeeming spends the member's chips: a personal login only, never an API key."""
    from tests.api.test_channels import api_key

    community, creator, _, chip = _setup(session)
    owner = session.get(User, community.created_by)
    assert owner is not None
    fund(session, chip, owner, 100)
    offer = _offer(client, session, community, creator, chip)
    bot = {**api_key(session, owner, community, ["read", "write"]), "Idempotency-Key": "bot-1"}
    r = client.post(f"/redemption/offers/{offer['id']}/redeem", headers=bot)
    assert r.status_code == 403 and r.json()["error"] == "api_key_not_allowed"
    assert _wallet(session, chip, owner) == (100, 0)
    assert client.get(f"/redemption/offers/{offer['id']}", headers=bot).status_code == 200
    personal = client.post(
        f"/redemption/offers/{offer['id']}/redeem",
        headers={**auth(session, owner), "Idempotency-Key": "me-1"},
    )
    assert personal.status_code == 201, personal.text
    assert _wallet(session, chip, owner) == (100, 40)


def test_a_vip_trial_over_http_shows_on_the_membership(client: TestClient, session: Session) -> None:
    owner = make_user(session)
    community = make_community(session, owner)
    member = add_member(session, community)
    gold = make_chip(session, community, symbol="GOLD")
    fund(session, gold, member, 50)
    offers = f"/communities/{community.id}/redemption/offers"
    body = {"chip_id": gold.id, "title": "VIP week", "kind": "vip_trial", "access_ref": "vip", "price": 10}
    missing = client.post(offers, json=body, headers=auth(session, owner))
    assert missing.status_code == 422 and missing.json()["error"] == "trial_days_required"
    unknown = client.post(
        offers, json={**body, "trial_days": 7, "access_ref": "gold"}, headers=auth(session, owner)
    )
    assert unknown.status_code == 422 and unknown.json()["error"] == "unknown_tier"
    created = client.post(offers, json={**body, "trial_days": 7}, headers=auth(session, owner))
    assert created.status_code == 201 and created.json()["trial_days"] == 7
    h = {**auth(session, member), "Idempotency-Key": "vip-week"}
    order = client.post(f"/redemption/offers/{created.json()['id']}/redeem", headers=h).json()
    done = client.post(f"/redemption/orders/{order['id']}/fulfil", headers=auth(session, owner))
    assert done.status_code == 200, done.text
    assert done.json()["access"]["tier"] == "vip" and done.json()["member_id"] == member.id
    me = client.get(f"/communities/{community.id}/members/{member.id}", headers=auth(session, member)).json()
    assert (me["tier"], me["trial_tier"]) == ("free", "vip")
    assert me["trial_ends_at"] == done.json()["access"]["ends_at"]
    mine = client.get(f"/communities/{community.id}", headers=auth(session, member)).json()
    assert (mine["my_tier"], mine["my_trial_tier"]) == ("free", "vip")
    # What a member bought is theirs to show: other members see the tier, not the trial;
    # moderators see it (they answer the member's questions about access).
    other = add_member(session, community)
    moderator = add_member(session, community, role=Role.MODERATOR)
    member_url = f"/communities/{community.id}/members/{member.id}"
    seen = client.get(member_url, headers=auth(session, other)).json()
    assert (seen["tier"], seen["trial_tier"], seen["trial_ends_at"]) == ("free", None, None)
    listed = client.get(f"/communities/{community.id}/members", headers=auth(session, other)).json()
    [row] = [m for m in listed["items"] if m["user"]["id"] == member.id]
    assert (row["trial_tier"], row["trial_ends_at"]) == (None, None)
    staff_view = client.get(member_url, headers=auth(session, moderator)).json()
    assert staff_view["trial_tier"] == "vip" and staff_view["trial_ends_at"] == me["trial_ends_at"]
    listed = client.get(f"/communities/{community.id}/members", headers=auth(session, moderator)).json()
    [row] = [m for m in listed["items"] if m["user"]["id"] == member.id]
    assert row["trial_tier"] == "vip"
    again = client.post(
        f"/redemption/offers/{created.json()['id']}/redeem",
        json={"quantity": 2},
        headers={**auth(session, member), "Idempotency-Key": "vip-2"},
    )
    assert again.status_code == 422 and again.json()["error"] == "access_quantity"


def test_an_offer_that_cannot_be_granted_is_one_code_and_status_at_redeem(
    client: TestClient, session: Session
) -> None:
    """Listing refuses the cause (422 unknown_tier, ...); a listed offer that can no longer be
    granted (its tier gone, a trial without a length) is 409 offer_misconfigured when redeemed."""
    owner = make_user(session)
    community = make_community(session, owner)
    member = add_member(session, community)
    gold = make_chip(session, community, symbol="GOLD")
    fund(session, gold, member, 50)
    body = {"chip_id": gold.id, "title": "VIP week", "kind": "vip_trial", "access_ref": "vip", "price": 10}
    created = client.post(
        f"/communities/{community.id}/redemption/offers",
        json={**body, "trial_days": 7},
        headers=auth(session, owner),
    )
    assert created.status_code == 201, created.text
    offer = session.get(RedemptionOffer, created.json()["id"])
    assert offer is not None
    for ref, days in (("platinum", 7), ("vip", None)):  # a tier renamed away; a row from before trial_days
        offer.access_ref, offer.trial_days = ref, days
        session.flush()
        r = client.post(
            f"/redemption/offers/{offer.id}/redeem",
            headers={**auth(session, member), "Idempotency-Key": f"mis-{ref}"},
        )
        assert (r.status_code, r.json()["error"]) == (409, "offer_misconfigured"), r.text
    assert _wallet(session, gold, member) == (50, 0)

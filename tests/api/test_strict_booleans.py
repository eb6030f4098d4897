"""Flags in request bodies are JSON booleans: 1, "yes", "true" or "on" is refused (422), not read
as true. Query-string booleans keep pydantic's reading of "true"/"false" (a URL has only text)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.factories import add_member, auth, community_chip, make_chip, make_community, make_user

LOOSE = [1, 0, "yes", "true", "on"]


def _refused(r: Any, field: str) -> None:
    assert r.status_code == 422, r.text
    body = r.json()
    assert (body["error"], body["detail"]) == ("validation_error", "the request is invalid"), body
    assert any(e["loc"][-1] == field or field in e["loc"] for e in body["fields"]), body


@pytest.mark.parametrize("value", LOOSE)
def test_chip_flags_are_strict_booleans(client: TestClient, session: Session, value: object) -> None:
    owner = make_user(session)
    c = make_community(session, owner)
    alice = add_member(session, c)
    h = auth(session, alice)
    base = {"name": "Tea leaves", "symbol": "TEA"}
    for flag in ("transferable", "tippable", "redeemable", "tradable"):
        _refused(client.post(f"/communities/{c.id}/chips", json={**base, flag: value}, headers=h), flag)
    r = client.post(
        f"/communities/{c.id}/chips",
        json={**base, "transferable": False, "tippable": True, "redeemable": False, "tradable": True},
        headers=h,
    )
    assert r.status_code == 201, r.text
    chip = r.json()
    flags = ("transferable", "tippable", "redeemable", "tradable")
    assert [chip[f] for f in flags] == [False, True, False, True]
    for flag in flags:
        _refused(client.patch(f"/chips/{chip['id']}", json={flag: value}, headers=h), flag)
    r = client.patch(
        f"/chips/{chip['id']}",
        json={"transferable": True, "tippable": False, "redeemable": True, "tradable": False},
        headers=h,
    )
    assert r.status_code == 200, r.text
    assert [r.json()[f] for f in flags] == [True, False, True, False]


@pytest.mark.parametrize("value", LOOSE)
def test_offer_flags_are_strict_booleans(client: TestClient, session: Session, value: object) -> None:
    owner = make_user(session)
    c = make_community(session, owner)
    creator = add_member(session, c)
    chip = make_chip(session, c, creator, symbol="STAR")
    gold = community_chip(session, c)
    session.commit()
    h = auth(session, creator)
    offers = f"/communities/{c.id}/redemption/offers"
    call = {"chip_id": chip.id, "title": "1:1 call", "kind": "call", "price": 40}
    for flag in ("instant", "active"):
        _refused(client.post(offers, json={**call, flag: value}, headers=h), flag)
    r = client.post(offers, json={**call, "instant": False, "active": False}, headers=h)
    assert r.status_code == 201, r.text
    offer = r.json()
    assert (offer["instant"], offer["active"]) == (False, False)
    for flag in ("instant", "active"):
        _refused(client.patch(f"/redemption/offers/{offer['id']}", json={flag: value}, headers=h), flag)
    r = client.patch(f"/redemption/offers/{offer['id']}", json={"active": True}, headers=h)
    assert r.status_code == 200 and r.json()["active"] is True, r.text
    # `instant: true` as a JSON boolean still works (an access offer, by the community's owner).
    vip = {
        "chip_id": gold.id,
        "title": "VIP week",
        "kind": "vip_trial",
        "access_ref": "vip",
        "trial_days": 7,
        "price": 1,
    }
    h_owner = auth(session, owner)
    _refused(client.post(offers, json={**vip, "instant": value}, headers=h_owner), "instant")
    r = client.post(offers, json={**vip, "instant": True, "active": False}, headers=h_owner)
    assert r.status_code == 201 and (r.json()["instant"], r.json()["active"]) == (True, False), r.text
    r = client.patch(f"/redemption/offers/{r.json()['id']}", json={"instant": False}, headers=h_owner)
    assert r.status_code == 200 and r.json()["instant"] is False, r.text
    # The query-string filter is text and still reads "true"/"false".
    for text, active in (("true", True), ("false", False)):
        r = client.get(offers, params={"active": text}, headers=h_owner)
        assert r.status_code == 200, r.text
        assert r.json()["items"] and all(o["active"] is active for o in r.json()["items"]), r.text


@pytest.mark.parametrize("value", LOOSE)
def test_rule_flags_are_strict_booleans(client: TestClient, session: Session, value: object) -> None:
    owner = make_user(session)
    c = make_community(session, owner)
    h = auth(session, owner)
    rules = f"/communities/{c.id}/earn-rules"
    body = {"name": "r", "trigger": "post_created", "amount": 1}
    _refused(client.post(rules, json={**body, "active": value}, headers=h), "active")
    r = client.post(rules, json={**body, "active": False}, headers=h)
    assert r.status_code == 201 and r.json()["active"] is False, r.text
    rule = f"/earn-rules/{r.json()['id']}"
    for flag in ("active", "clear_caps"):
        _refused(client.patch(rule, json={flag: value}, headers=h), flag)
    r = client.patch(rule, json={"active": True, "clear_caps": False}, headers=h)
    assert r.status_code == 200 and r.json()["active"] is True, r.text
    r = client.patch(rule, json={"clear_caps": True}, headers=h)
    assert r.status_code == 200, r.text

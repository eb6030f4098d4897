"""GET /communities/{id}/recommendations and the not-interested feedback, over HTTP."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from core.models import Visibility
from recommender import repository as repo
from recommender.service import Recommender
from tests.api.test_channels import api_key
from tests.factories import add_member, auth, make_community, make_user
from tests.recommender.test_service import EMBEDDER, World, build_world


@pytest.fixture
def world(session: Session, app: FastAPI) -> World:
    # The hashing embedder, handed to the app the way a deployment configures its own.
    app.state.recommender = Recommender(EMBEDDER, check_every=0, max_fit_share=None)
    return build_world(session)


def _url(world: World) -> str:
    return f"/communities/{world.community.id}/recommendations"


def test_a_member_gets_items_with_reasons(client: TestClient, session: Session, world: World) -> None:
    r = client.get(
        _url(world), params={"kind": "event", "limit": 3}, headers=auth(session, world.users["mei"])
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["kind"] == "event" and body["personalised"] is True
    assert 1 <= len(body["items"]) <= 3
    first = body["items"][0]
    assert set(first) == {"id", "kind", "entity_id", "title", "score", "reason", "locked"}
    assert (
        first["id"] == repo.item_id("event", world.events["hike"])
        and first["entity_id"] == world.events["hike"]
    )
    assert first["title"] == "陽明山登山健行聚會"
    assert set(first["reason"]) == {"code", "params", "text"} and first["reason"]["text"]

    people = client.get(
        _url(world), params={"kind": "people"}, headers=auth(session, world.users["mei"])
    ).json()
    names = {i["entity_id"]: i["title"] for i in people["items"]}
    assert names and all(
        names[uid] == world_user.display_name
        for uid, world_user in ((u.id, u) for u in world.users.values())
        if uid in names
    )
    assert world.users["mei"].id not in names


def test_refusals_have_stable_codes(client: TestClient, session: Session, world: World) -> None:
    outsider = make_user(session)
    r = client.get(_url(world), headers=auth(session, outsider))
    assert (r.status_code, r.json()["error"]) == (403, "not_a_member")
    assert client.get(_url(world)).status_code == 401
    mei = auth(session, world.users["mei"])
    assert client.get(_url(world), params={"kind": "friends"}, headers=mei).status_code == 422
    assert client.get(_url(world), params={"limit": 0}, headers=mei).status_code == 422
    assert client.get(_url(world), params={"limit": 51}, headers=mei).status_code == 422
    assert (
        client.get("/communities/999999999/recommendations", headers=mei).json()["error"]
        == "community_not_found"
    )

    private = make_community(session, visibility=Visibility.PRIVATE)
    r = client.get(f"/communities/{private.id}/recommendations", headers=mei)
    assert (r.status_code, r.json()["error"]) == (404, "community_not_found")

    feedback = f"{_url(world)}/feedback"
    r = client.post(feedback, json={"target": "event:1"}, headers=auth(session, outsider))
    assert (r.status_code, r.json()["error"]) == (403, "not_a_member")
    for bad in ("event", "dm:3", "thread:0", "thread:-1", "m:abc", "event:1:2", "x" * 50):
        r = client.post(feedback, json={"target": bad}, headers=mei)
        assert r.status_code == 422, bad
    r = client.post(feedback, json={"target": "thread:1", "kind": "love_it"}, headers=mei)
    assert r.status_code == 422
    r = client.post(feedback, json={"target": "thread:999999999"}, headers=mei)
    assert (r.status_code, r.json()["error"]) == (404, "target_not_found")
    r = client.post(feedback, json={"target": repo.member_id(world.users["mei"].id)}, headers=mei)
    assert (r.status_code, r.json()["error"]) == (422, "invalid_target")
    elsewhere = add_member(session, make_community(session))
    r = client.post(feedback, json={"target": repo.member_id(elsewhere.id)}, headers=mei)
    assert (r.status_code, r.json()["error"]) == (404, "target_not_found")


def test_recommendations_and_feedback_need_a_personal_login(
    client: TestClient, session: Session, world: World
) -> None:
    """Like follows and blocks: reasons show whom a member follows and tips, so a community
    API key (an integration acting as the admin who made it) gets none of it."""
    target = {"target": f"event:{world.events['hike']}"}
    for scopes in (["read"], ["read", "write"]):
        key = api_key(session, world.users["owner"], world.community, scopes)
        r = client.get(_url(world), params={"kind": "thread"}, headers=key)
        assert (r.status_code, r.json()["error"]) == (403, "api_key_not_allowed")
        r = client.post(f"{_url(world)}/feedback", json=target, headers=key)
        assert r.status_code == 403 and r.json()["error"] in {"insufficient_scope", "api_key_not_allowed"}
        r = client.delete(f"{_url(world)}/feedback/{target['target']}", headers=key)
        assert r.status_code == 403 and r.json()["error"] in {"insufficient_scope", "api_key_not_allowed"}
    owner = auth(session, world.users["owner"])
    assert client.get(_url(world), params={"kind": "thread"}, headers=owner).status_code == 200


def test_not_interested_round_trip(client: TestClient, session: Session, world: World) -> None:
    mei = auth(session, world.users["mei"])
    target = repo.item_id("event", world.events["hike"])

    def event_ids() -> list[str]:
        return [
            i["id"] for i in client.get(_url(world), params={"kind": "event"}, headers=mei).json()["items"]
        ]

    assert target in event_ids()
    r = client.post(f"{_url(world)}/feedback", json={"target": target, "kind": "not_interested"}, headers=mei)
    assert r.status_code == 201 and r.json()["replayed"] is False
    r = client.post(f"{_url(world)}/feedback", json={"target": target}, headers=mei)
    assert r.status_code == 200 and r.json()["replayed"] is True
    assert target not in event_ids()
    assert client.delete(f"{_url(world)}/feedback/{target}", headers=mei).status_code == 204
    assert client.delete(f"{_url(world)}/feedback/{target}", headers=mei).status_code == 204
    assert target in event_ids()
    assert client.delete(f"{_url(world)}/feedback/nonsense", headers=mei).status_code == 422


def test_opted_out_member_gets_labelled_popular_results(
    client: TestClient, session: Session, world: World
) -> None:
    lin = auth(session, world.users["lin"])
    assert client.put("/me/recommendation-settings", json={"opted_out": True}, headers=lin).status_code == 200
    body = client.get(_url(world), params={"kind": "thread"}, headers=lin).json()
    assert body["personalised"] is False and body["items"]
    assert {i["reason"]["code"] for i in body["items"] if not i["locked"]} == {"not_personalised"}
    mei = auth(session, world.users["mei"])
    people = client.get(_url(world), params={"kind": "people", "limit": 50}, headers=mei).json()["items"]
    assert world.users["lin"].id not in [i["entity_id"] for i in people]


def test_feedback_on_a_hidden_item_is_the_same_404_as_on_no_item(
    client: TestClient, session: Session, world: World
) -> None:
    mei = auth(session, world.users["mei"])
    url = f"{_url(world)}/feedback"
    none = client.post(url, json={"target": "thread:999999999"}, headers=mei)
    staff = client.post(url, json={"target": repo.item_id("thread", world.threads["staff"])}, headers=mei)
    assert none.status_code == staff.status_code == 404
    assert none.json() == staff.json() and none.json()["error"] == "target_not_found"
    vip = client.post(url, json={"target": repo.item_id("event", world.events["viphike"])}, headers=mei)
    assert vip.status_code == 201  # a tier gate is an upgrade suggestion, no secret

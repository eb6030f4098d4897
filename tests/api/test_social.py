"""Follows, blocks and the recommendation opt-out over HTTP."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import jobs
from core.access import Actor
from core.conversation import dm_service
from core.conversation.schemas import ConversationIn
from core.models import Community, Embedding, EmbeddingEntity, Follow, Membership, User, Visibility
from recommender import hooks, service, store
from recommender import repository as repo
from recommender.embedder import HashingEmbedder
from tests.api.test_channels import api_key
from tests.factories import add_member, auth, make_community, make_user


def _follow(client: TestClient, session: Session, who: User, cid: int, whom: User) -> int:
    return client.post(f"/communities/{cid}/members/{whom.id}/follow", headers=auth(session, who)).status_code


def _follows(session: Session, community: Community) -> set[tuple[int, int]]:
    rows = session.execute(
        select(Follow.follower_id, Follow.followee_id).where(Follow.community_id == community.id)
    )
    return {(a, b) for a, b in rows}


def test_follow_is_idempotent_and_listed(client: TestClient, session: Session) -> None:
    community = make_community(session)
    ann, bob = add_member(session, community), add_member(session, community)
    url = f"/communities/{community.id}/members/{bob.id}/follow"
    first = client.post(url, headers=auth(session, ann))
    assert first.status_code == 201, first.text
    assert first.json()["replayed"] is False and first.json()["followee_id"] == bob.id
    again = client.post(url, headers=auth(session, ann))
    assert again.status_code == 200 and again.json()["replayed"] is True
    assert _follows(session, community) == {(ann.id, bob.id)}

    followers = client.get(
        f"/communities/{community.id}/members/{bob.id}/followers", headers=auth(session, bob)
    )
    assert [e["user"]["id"] for e in followers.json()["items"]] == [ann.id]
    following = client.get(
        f"/communities/{community.id}/members/{ann.id}/following", headers=auth(session, bob)
    )
    assert [e["user"]["id"] for e in following.json()["items"]] == [bob.id]

    assert client.delete(url, headers=auth(session, ann)).status_code == 204
    assert client.delete(url, headers=auth(session, ann)).status_code == 204  # nothing left: still fine
    assert _follows(session, community) == set()


def test_follow_refusals_have_stable_codes(client: TestClient, session: Session) -> None:
    community = make_community(session)
    ann = add_member(session, community)
    stranger = make_user(session)
    other = make_community(session)
    elsewhere = add_member(session, other)
    cases = [
        (ann, ann, 422, "cannot_follow_self"),
        (ann, stranger, 404, "member_not_found"),
        (ann, elsewhere, 404, "member_not_found"),
        (stranger, ann, 403, "not_a_member"),
    ]
    for who, whom, status, code in cases:
        r = client.post(f"/communities/{community.id}/members/{whom.id}/follow", headers=auth(session, who))
        assert (r.status_code, r.json()["error"]) == (status, code), (who.id, whom.id, r.text)
    r = client.post(f"/communities/{community.id}/members/{ann.id}/follow")
    assert r.status_code == 401


def test_api_keys_cannot_follow_or_block(client: TestClient, session: Session) -> None:
    owner = make_user(session)
    community = make_community(session, owner)
    bob = add_member(session, community)
    headers = api_key(session, owner, community, ["read", "write"])
    r = client.post(f"/communities/{community.id}/members/{bob.id}/follow", headers=headers)
    assert (r.status_code, r.json()["error"]) == (403, "api_key_not_allowed")
    r = client.post("/me/blocks", json={"user_id": bob.id}, headers=headers)
    assert (r.status_code, r.json()["error"]) == (403, "api_key_not_allowed")


def test_block_ends_follows_both_ways_in_every_community(client: TestClient, session: Session) -> None:
    one, two = make_community(session), make_community(session)
    ann, bob = make_user(session), make_user(session)
    for c in (one, two):
        add_member(session, c, ann)
        add_member(session, c, bob)
        assert _follow(client, session, ann, c.id, bob) == 201
        assert _follow(client, session, bob, c.id, ann) == 201

    r = client.post("/me/blocks", json={"user_id": bob.id}, headers=auth(session, ann))
    assert r.status_code == 201 and r.json()["user"]["id"] == bob.id
    assert _follows(session, one) == set() and _follows(session, two) == set()
    again = client.post("/me/blocks", json={"user_id": bob.id}, headers=auth(session, ann))
    assert again.status_code == 200 and again.json()["replayed"] is True

    # Neither may follow the other while the block stands, whoever blocked.
    for who, whom in ((ann, bob), (bob, ann)):
        r = client.post(f"/communities/{one.id}/members/{whom.id}/follow", headers=auth(session, who))
        assert (r.status_code, r.json()["error"]) == (403, "blocked")

    listed = client.get("/me/blocks", headers=auth(session, ann)).json()["items"]
    assert [b["user"]["id"] for b in listed] == [bob.id]
    assert client.get("/me/blocks", headers=auth(session, bob)).json()["items"] == []

    assert client.delete(f"/me/blocks/{bob.id}", headers=auth(session, ann)).status_code == 204
    assert _follow(client, session, bob, one.id, ann) == 201


def test_block_refusals(client: TestClient, session: Session) -> None:
    ann = make_user(session)
    r = client.post("/me/blocks", json={"user_id": ann.id}, headers=auth(session, ann))
    assert (r.status_code, r.json()["error"]) == (422, "cannot_block_self")
    r = client.post("/me/blocks", json={"user_id": 2**62}, headers=auth(session, ann))
    assert (r.status_code, r.json()["error"]) == (404, "user_not_found")
    r = client.post("/me/blocks", json={"user_id": "12"}, headers=auth(session, ann))
    assert r.status_code == 422


def test_opting_out_deletes_every_embedding_at_once(client: TestClient, session: Session) -> None:
    community = make_community(session)
    ann = add_member(session, community)
    bob = add_member(session, community)
    for user in (ann, bob):
        membership_id = session.scalar(
            select(Membership.id).where(
                Membership.user_id == user.id, Membership.community_id == community.id
            )
        )
        assert membership_id is not None
        for model_id in ("hashing@1:64", "old@0"):
            store.put(
                session,
                community.id,
                EmbeddingEntity.MEMBER,
                membership_id,
                model_id=model_id,
                text_hash="x" * 64,
                vector=np.ones(4, np.float32) / 2,
            )
    headers = auth(session, ann)
    before = client.get("/me/recommendation-settings", headers=headers).json()
    assert before == {"opted_out": False, "profiles_kept": 1}
    r = client.put("/me/recommendation-settings", json={"opted_out": True}, headers=headers)
    assert r.status_code == 200 and r.json() == {"opted_out": True, "profiles_kept": 0}
    session.expire_all()
    assert session.get(User, ann.id).recommendations_opt_out is True  # type: ignore[union-attr]

    def kept(user: User) -> int:
        return (
            session.scalar(
                select(func.count())
                .select_from(Embedding)
                .join(Membership, Membership.id == Embedding.entity_id)
                .where(Embedding.entity_type == EmbeddingEntity.MEMBER, Membership.user_id == user.id)
            )
            or 0
        )

    # store.put keeps one model per entity; the other member's row is untouched.
    assert kept(ann) == 0 and kept(bob) == 1
    r = client.put("/me/recommendation-settings", json={"opted_out": False}, headers=headers)
    assert r.json() == {"opted_out": False, "profiles_kept": 0}  # recomputed by the next embed job
    r = client.put("/me/recommendation-settings", json={"opted_out": "yes please"}, headers=headers)
    assert r.status_code == 422


def test_only_someone_one_could_have_met_can_be_blocked(client: TestClient, session: Session) -> None:
    """Blocking an arbitrary id must not reveal that the account exists, nor its name."""
    private = make_community(session, visibility=Visibility.PRIVATE)
    carol = add_member(session, private)
    carol.display_name = "Carol (private only)"
    session.flush()
    stranger = make_user(session)
    headers = auth(session, stranger)
    unreachable = client.post("/me/blocks", json={"user_id": carol.id}, headers=headers)
    unknown = client.post("/me/blocks", json={"user_id": 2**62}, headers=headers)
    assert unreachable.status_code == unknown.status_code == 404
    assert unreachable.json() == unknown.json()
    assert "Carol" not in unreachable.text

    # A co-member may block.
    dan = add_member(session, private)
    r = client.post("/me/blocks", json={"user_id": carol.id}, headers=auth(session, dan))
    assert r.status_code == 201 and r.json()["user"]["display_name"] == "Carol (private only)"
    # Someone met only in a DM conversation may be blocked too.
    public = make_community(session)
    erin, fay = add_member(session, public), add_member(session, public)
    dm_service.create_conversation(session, Actor(erin), public.id, ConversationIn(participant_ids=[fay.id]))
    membership = session.scalar(
        select(Membership).where(Membership.user_id == fay.id, Membership.community_id == public.id)
    )
    assert membership is not None
    session.delete(membership)
    session.flush()
    r = client.post("/me/blocks", json={"user_id": fay.id}, headers=auth(session, erin))
    assert r.status_code == 201


def test_opting_out_takes_the_member_out_of_the_saved_people_index(
    client: TestClient, session: Session, recorded_jobs: list[jobs.Job]
) -> None:
    """Through the API: the opt-out's after-commit embed job takes the vector off disk too."""
    embedder = HashingEmbedder(64)
    community = make_community(session)
    ann, bob = add_member(session, community), add_member(session, community)
    snapshot = repo.load_snapshot(session, community.id)
    store.sync(session, community.id, snapshot.texts(), embedder)
    service.write_indexes(session, community.id, embedder)
    assert ann.id in store.read_index(community.id, embedder.model_id, "people")  # type: ignore[operator]
    hooks.install()
    try:
        r = client.put("/me/recommendation-settings", json={"opted_out": True}, headers=auth(session, ann))
    finally:
        hooks.uninstall()
    assert r.status_code == 200
    queued = [job.args for job in recorded_jobs if job.name == hooks.EMBED_JOB]
    assert queued == [("user", ann.id)]
    changes = service.embed_entity(session, "user", ann.id, embedder)  # what the worker runs
    service.apply_index_changes(changes, embedder.model_id)
    people = store.read_index(community.id, embedder.model_id, "people")
    assert people is not None and ann.id not in people and bob.id in people

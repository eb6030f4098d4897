from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from core import jobs
from core.tipping import service as tipping
from tests.core.tipping.helpers import age, balance, channel, community_chip, thread
from tests.factories import add_member, auth, fund, make_community, make_user

TIP_JOB = "hearth.tipping.tip_received"


def test_tip_endpoints(client: TestClient, session: Session, recorded_jobs: list[jobs.Job]) -> None:
    owner = make_user(session)
    community = make_community(session, owner)
    alice, bob = add_member(session, community), add_member(session, community)
    age(session, community, alice)
    chip = community_chip(session, community)
    fund(session, chip, alice, 100)
    room = channel(session, owner, community)
    _, post_id = thread(session, bob, room)
    session.commit()
    recorded_jobs.clear()
    h = auth(session, alice)
    url = f"/communities/{community.id}/members/{bob.id}/tips"

    r = client.post(
        url, json={"chip_id": chip.id, "amount": 10, "note": "謝謝"}, headers={**h, "Idempotency-Key": "a1"}
    )
    assert r.status_code == 201, r.text
    tip = r.json()
    assert tip["amount"] == 10 and tip["recipient_id"] == bob.id and tip["note"] == "謝謝"
    assert [j for j in recorded_jobs if j.name == TIP_JOB] == [jobs.Job(TIP_JOB, (tip["id"],))]
    again = client.post(
        url, json={"chip_id": chip.id, "amount": 10, "note": "謝謝"}, headers={**h, "Idempotency-Key": "a1"}
    )
    # A retry answers 200 with the first tip, marked as replayed: nothing was paid twice.
    assert again.status_code == 200 and again.json()["id"] == tip["id"] and again.json()["replayed"] is True
    reused = client.post(url, json={"chip_id": chip.id, "amount": 9}, headers={**h, "Idempotency-Key": "a1"})
    assert reused.status_code == 409 and reused.json()["error"] == "idempotency_key_reused"
    assert balance(session, chip, alice) == 90

    missing = client.post(url, json={"chip_id": chip.id, "amount": 1}, headers=h)
    assert missing.status_code == 422 and missing.json()["error"] == "idempotency_key_required"
    self_tip = client.post(
        f"/communities/{community.id}/members/{alice.id}/tips",
        json={"chip_id": chip.id, "amount": 1},
        headers={**h, "Idempotency-Key": "a2"},
    )
    assert self_tip.status_code == 422 and self_tip.json()["error"] == "cannot_tip_self"
    broke = client.post(
        url, json={"chip_id": chip.id, "amount": 1000}, headers={**h, "Idempotency-Key": "a3"}
    )
    assert broke.status_code == 409 and broke.json()["error"] == "insufficient_funds"
    long_note = client.post(
        url, json={"chip_id": chip.id, "amount": 1, "note": "x" * 281}, headers={**h, "Idempotency-Key": "a4"}
    )
    assert long_note.status_code == 422

    on_post = client.post(
        f"/posts/{post_id}/tips",
        json={"chip_id": chip.id, "amount": 5},
        headers={**h, "Idempotency-Key": "p1"},
    )
    assert on_post.status_code == 201 and on_post.json()["post_id"] == post_id
    outsider = make_user(session)
    session.commit()
    hidden = client.post(
        f"/posts/{post_id}/tips",
        json={"chip_id": chip.id, "amount": 5},
        headers={**auth(session, outsider), "Idempotency-Key": "o1"},
    )
    assert hidden.status_code in (403, 404)

    sent = client.get(f"/communities/{community.id}/tips/sent?limit=1", headers=h).json()
    assert len(sent["items"]) == 1 and sent["next_cursor"]
    received = client.get(f"/communities/{community.id}/tips/received", headers=auth(session, bob)).json()
    assert [t["id"] for t in received["items"]] == [on_post.json()["id"], tip["id"]]
    rep = client.get(f"/communities/{community.id}/members/{bob.id}/reputation", headers=h).json()
    assert rep["tips_received"] == 2
    board = client.get(f"/communities/{community.id}/reputation/leaderboard", headers=h)
    assert board.status_code == 200


def test_policy_and_ring_endpoints(client: TestClient, session: Session) -> None:
    owner = make_user(session)
    community = make_community(session, owner)
    a, b = add_member(session, community), add_member(session, community)
    chip = community_chip(session, community)
    for user in (a, b):
        age(session, community, user)
        fund(session, chip, user, 100)
    session.commit()
    ho = auth(session, owner)
    r = client.patch(f"/communities/{community.id}/tipping/policy", json={"ring_min_tips": 1}, headers=ho)
    assert r.status_code == 200 and r.json()["ring_min_tips"] == 1
    denied = client.patch(
        f"/communities/{community.id}/tipping/policy", json={"ring_min_tips": 1}, headers=auth(session, a)
    )
    assert denied.status_code == 403
    for tipper, recipient, key in ((a, b, "x1"), (b, a, "x2")):
        r = client.post(
            f"/communities/{community.id}/members/{recipient.id}/tips",
            json={"chip_id": chip.id, "amount": 20},
            headers={**auth(session, tipper), "Idempotency-Key": key},
        )
        assert r.status_code == 201
    [report_id] = tipping.detect_rings(session, community.id)
    session.commit()
    listed = client.get(f"/communities/{community.id}/tip-rings?status=open", headers=ho).json()
    assert [r["id"] for r in listed["items"]] == [report_id]
    assert client.get(f"/communities/{community.id}/tip-rings", headers=auth(session, a)).status_code == 403
    r = client.patch(f"/tip-rings/{report_id}", json={"status": "dismissed"}, headers=ho)
    assert r.status_code == 200 and r.json()["status"] == "dismissed"
    r = client.patch(f"/tip-rings/{report_id}", json={"status": "confirmed"}, headers=ho)
    assert r.status_code == 409 and r.json()["error"] == "report_already_resolved"

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from core import jobs
from core.earning import service as earning
from tests.core.tipping.helpers import balance, community_chip
from tests.factories import add_member, auth, make_community, make_user

GRANT = "hearth.earning.grant"


def test_rules_grants_and_challenges(
    client: TestClient, session: Session, recorded_jobs: list[jobs.Job]
) -> None:
    owner = make_user(session)
    community = make_community(session, owner)
    member = add_member(session, community)
    chip = community_chip(session, community)
    session.commit()
    ho, hm = auth(session, owner), auth(session, member)

    r = client.post(
        f"/communities/{community.id}/earn-rules",
        json={"name": "Onboarding", "trigger": "onboarding_completed", "amount": 8},
        headers=ho,
    )
    assert r.status_code == 201, r.text
    rule = r.json()
    assert rule["chip_id"] == chip.id and rule["active"] is True
    assert (
        client.post(
            f"/communities/{community.id}/earn-rules",
            json={"name": "x", "trigger": "post_created", "amount": 1},
            headers=hm,
        ).status_code
        == 403
    )
    bad = client.post(
        f"/communities/{community.id}/earn-rules",
        json={"name": "x", "trigger": "nope", "amount": 1},
        headers=ho,
    )
    assert bad.status_code == 422
    listed = client.get(f"/communities/{community.id}/earn-rules", headers=hm).json()
    assert [x["id"] for x in listed["items"]] == [rule["id"]]
    r = client.patch(f"/earn-rules/{rule['id']}", json={"amount": 9, "daily_count_cap": 1}, headers=ho)
    assert r.status_code == 200 and r.json()["amount"] == 9

    recorded_jobs.clear()
    assert client.post(f"/communities/{community.id}/onboarding/complete", headers=hm).status_code == 202
    [job] = [j for j in recorded_jobs if j.name == GRANT]
    assert earning.grant(session, *job.args) and balance(session, chip, member) == 9
    session.commit()
    mine = client.get(f"/communities/{community.id}/earnings/mine", headers=hm).json()
    assert [(g["amount"], g["status"], g["trigger"]) for g in mine["items"]] == [
        (9, "granted", "onboarding_completed")
    ]

    r = client.delete(f"/earn-rules/{rule['id']}", headers=ho)
    assert r.status_code == 200 and r.json()["active"] is False

    r = client.post(
        f"/communities/{community.id}/challenges", json={"title": "First post", "reward": 4}, headers=ho
    )
    assert r.status_code == 201
    challenge = r.json()
    assert client.get(f"/communities/{community.id}/challenges", headers=hm).json()[0]["reward"] == 4
    claim = client.post(f"/challenges/{challenge['id']}/claims", json={"evidence": "done"}, headers=hm).json()
    assert claim["status"] == "claimed"
    pending = client.get(f"/challenges/{challenge['id']}/completions?status=claimed", headers=ho).json()
    assert [c["id"] for c in pending["items"]] == [claim["id"]]
    recorded_jobs.clear()
    r = client.patch(f"/challenge-completions/{claim['id']}", json={"decision": "approve"}, headers=ho)
    assert r.status_code == 200 and r.json()["status"] == "approved"
    assert [j.args[0] for j in recorded_jobs if j.name == GRANT] == ["challenge_completed"]
    other = add_member(session, community)
    session.commit()
    r = client.post(f"/challenges/{challenge['id']}/awards", json={"user_id": other.id}, headers=ho)
    assert r.status_code == 200 and r.json()["status"] == "approved"
    assert client.post(f"/challenges/{challenge['id']}/close", headers=ho).json()["active"] is False
    r = client.post(
        f"/challenges/{challenge['id']}/claims", headers=auth(session, add_member(session, community))
    )
    assert r.status_code == 409 and r.json()["error"] == "challenge_closed"

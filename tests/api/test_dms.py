from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import jobs
from core.access import Actor
from core.communities import service as communities
from core.communities.schemas import BanIn
from core.models import (
    AuditLog,
    Community,
    Conversation,
    ConversationParticipant,
    DirectMessage,
    Notification,
    Role,
    User,
)
from core.notifications import service as notifications
from tests.api.test_channels import api_key
from tests.factories import add_member, auth, make_community, make_user

MESSAGE_SENT = "hearth.notifications.message_sent"


@dataclass
class Town:
    community: Community
    users: dict[str, User] = field(default_factory=dict)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)

    def id(self, name: str) -> int:
        return self.users[name].id


@pytest.fixture
def town(session: Session) -> Town:
    owner = make_user(session, name="Owner")
    community = make_community(session, owner)
    town = Town(community)
    town.users["owner"] = owner
    town.users["admin"] = add_member(session, community, role=Role.ADMIN)
    town.users["moderator"] = add_member(session, community, role=Role.MODERATOR)
    for name in ("ann", "bob", "cat"):
        town.users[name] = add_member(session, community)
    superuser = make_user(session, superuser=True)
    town.users["superuser"] = add_member(session, community, superuser)
    town.users["outsider"] = make_user(session)
    for name, user in town.users.items():
        town.headers[name] = auth(session, user)
    return town


def start(client: TestClient, town: Town, who: str, others: list[str], **extra: Any) -> dict[str, Any]:
    r = client.post(
        f"/communities/{town.community.id}/conversations",
        json={"participant_ids": [town.id(n) for n in others], **extra},
        headers=town.headers[who],
    )
    assert r.status_code in {200, 201}, r.text
    return r.json()  # type: ignore[no-any-return]


def send(client: TestClient, town: Town, who: str, conversation_id: int, body: str) -> dict[str, Any]:
    r = client.post(
        f"/conversations/{conversation_id}/messages", json={"body": body}, headers=town.headers[who]
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def conversation_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Conversation)) or 0


def test_direct_conversation_is_created_once(client: TestClient, town: Town, session: Session) -> None:
    url = f"/communities/{town.community.id}/conversations"
    r = client.post(url, json={"participant_ids": [town.id("bob")]}, headers=town.headers["ann"])
    assert r.status_code == 201
    first = r.json()
    assert first["is_direct"] is True and first["title"] is None
    assert first["participant_ids"] == [town.id("ann"), town.id("bob")]
    assert "direct_key" not in first

    for who, ids in [
        ("ann", [town.id("bob")]),
        ("bob", [town.id("ann")]),  # from the other side
        ("ann", [town.id("bob"), town.id("bob"), town.id("ann")]),  # duplicates and self ignored
    ]:
        r = client.post(url, json={"participant_ids": ids}, headers=town.headers[who])
        assert r.status_code == 200 and r.json()["id"] == first["id"]
    assert conversation_count(session) == 1
    row = session.get(Conversation, first["id"])
    assert row is not None and row.direct_key == f"{town.community.id}:{town.id('ann')}:{town.id('bob')}"

    r = client.post(
        url, json={"participant_ids": [town.id("bob")], "title": "Us"}, headers=town.headers["ann"]
    )
    assert r.status_code == 422 and r.json()["error"] == "direct_conversation_title"
    other = start(client, town, "ann", ["cat"])
    assert other["id"] != first["id"] and conversation_count(session) == 2


def test_group_conversations_hold_at_most_ten(client: TestClient, town: Town, session: Session) -> None:
    extra = [add_member(session, town.community) for _ in range(7)]
    for i, user in enumerate(extra):
        town.users[f"extra{i}"] = user
    nine = ["bob", "cat", "moderator", *(f"extra{i}" for i in range(6))]
    group = start(client, town, "ann", nine, title="Hiking crew")
    assert group["is_direct"] is False and group["title"] == "Hiking crew"
    assert len(group["participant_ids"]) == 10 and group["participant_ids"][0] == town.id("ann")
    # Asking twice makes two groups: only 1:1 conversations are unique.
    assert (
        start(client, town, "ann", ["bob", "cat"])["id"] != start(client, town, "ann", ["bob", "cat"])["id"]
    )
    before = conversation_count(session)

    url = f"/communities/{town.community.id}/conversations"
    r = client.post(
        url, json={"participant_ids": [town.id(n) for n in [*nine, "extra6"]]}, headers=town.headers["ann"]
    )
    assert r.status_code == 422 and r.json()["error"] == "too_many_participants"
    r = client.post(url, json={"participant_ids": [town.id("ann")]}, headers=town.headers["ann"])
    assert r.status_code == 422 and r.json()["error"] == "participants_required"
    for payload in (
        {"participant_ids": []},
        {"participant_ids": [town.id("bob"), town.id("cat")], "title": "x" * 121},
        {"participant_ids": [town.id("bob")], "topic": "x"},
        {"participant_ids": "bob"},
    ):
        r = client.post(url, json=payload, headers=town.headers["ann"])
        assert r.status_code == 422 and r.json()["error"] == "validation_error", payload
    assert conversation_count(session) == before


def test_participants_must_be_active_members(client: TestClient, town: Town, session: Session) -> None:
    elsewhere = add_member(session, make_community(session))
    left = add_member(session, town.community)
    communities.leave(session, Actor(left), town.community.id)
    banned = add_member(session, town.community)
    communities.ban(session, Actor(town.users["owner"]), town.community.id, BanIn(user_id=banned.id))
    url = f"/communities/{town.community.id}/conversations"
    for bad in (elsewhere.id, left.id, banned.id, town.id("outsider"), 999_999):
        for ids in ([bad], [town.id("bob"), bad]):
            r = client.post(url, json={"participant_ids": ids}, headers=town.headers["ann"])
            assert r.status_code == 404 and r.json()["error"] == "member_not_found"
    # Nothing half-written: no conversation and no participant rows.
    assert conversation_count(session) == 0
    assert session.scalar(select(func.count()).select_from(ConversationParticipant)) == 0

    r = client.post(url, json={"participant_ids": [town.id("ann")]}, headers=town.headers["outsider"])
    assert r.status_code == 403 and r.json()["error"] == "not_a_member"
    r = client.post(url, json={"participant_ids": [town.id("ann")]}, headers=auth(session, left))
    assert r.status_code == 403 and r.json()["error"] == "not_a_member"


@pytest.mark.parametrize("who", ["owner", "admin", "moderator", "superuser", "cat", "outsider"])
def test_only_participants_know_a_conversation_exists(
    client: TestClient, town: Town, session: Session, recorded_jobs: list[jobs.Job], who: str
) -> None:
    conversation = start(client, town, "ann", ["bob"])
    send(client, town, "ann", conversation["id"], "our secret")
    recorded_jobs.clear()
    headers = town.headers[who]
    missing = 999_999
    for cid in (conversation["id"], missing):  # indistinguishable from a conversation that is not there
        for method, url, body in [
            ("GET", f"/conversations/{cid}", None),
            ("GET", f"/conversations/{cid}/messages", None),
            ("POST", f"/conversations/{cid}/messages", {"body": "let me in"}),
        ]:
            r = client.request(method, url, json=body, headers=headers)
            assert r.status_code == 404 and r.json() == {
                "error": "conversation_not_found",
                "detail": "conversation not found",
            }
    if who != "outsider":
        listed = client.get(f"/communities/{town.community.id}/conversations", headers=headers).json()
        assert listed["items"] == []
    assert recorded_jobs == []
    assert session.scalar(select(func.count()).select_from(DirectMessage)) == 1
    # Nothing about DMs reaches the audit log that managers read.
    assert (
        session.scalar(
            select(AuditLog.id).where(AuditLog.target_type.in_(["conversations", "direct_messages"]))
        )
        is None
    )


def test_api_keys_can_never_use_dms(client: TestClient, town: Town, session: Session) -> None:
    owner = town.users["owner"]
    conversation = start(client, town, "owner", ["ann"])
    read_key = api_key(session, owner, town.community, ["read"])
    write_key = api_key(session, owner, town.community, ["read", "write"])
    for method, url, body, key in [
        ("GET", f"/communities/{town.community.id}/conversations", None, read_key),
        ("GET", f"/conversations/{conversation['id']}", None, read_key),
        ("GET", f"/conversations/{conversation['id']}/messages", None, read_key),
        ("POST", f"/conversations/{conversation['id']}/messages", {"body": "hi"}, write_key),
        (
            "POST",
            f"/communities/{town.community.id}/conversations",
            {"participant_ids": [town.id("bob")]},
            write_key,
        ),
    ]:
        r = client.request(method, url, json=body, headers=key)
        assert r.status_code == 403 and r.json()["error"] == "api_key_not_allowed", url
    assert session.scalar(select(func.count()).select_from(DirectMessage)) == 0


def test_messages_flow_notify_once_and_order_by_activity(
    client: TestClient, town: Town, session: Session, recorded_jobs: list[jobs.Job]
) -> None:
    older = start(client, town, "ann", ["bob"])
    newer = start(client, town, "ann", ["bob", "cat"], title="Trio")
    listed = client.get(f"/communities/{town.community.id}/conversations", headers=town.headers["ann"]).json()
    assert [c["id"] for c in listed["items"]] == [newer["id"], older["id"]]

    message = send(client, town, "bob", older["id"], "**hi** <b>there</b>")
    assert message["sender_id"] == town.id("bob") and message["body"] == "**hi** <b>there</b>"
    bob = town.users["bob"]
    assert message["author"] == {"id": bob.id, "display_name": bob.display_name, "avatar_url": None}
    assert message["body_html"] == "<p><strong>hi</strong> &lt;b&gt;there&lt;/b&gt;</p>\n"
    assert recorded_jobs == [jobs.Job(MESSAGE_SENT, (message["id"],))]

    listed = client.get(
        f"/communities/{town.community.id}/conversations", params={"limit": 1}, headers=town.headers["ann"]
    ).json()
    assert [c["id"] for c in listed["items"]] == [older["id"]]
    assert listed["items"][0]["last_message_at"] is not None
    rest = client.get(
        f"/communities/{town.community.id}/conversations",
        params={"limit": 1, "cursor": listed["next_cursor"]},
        headers=town.headers["ann"],
    ).json()
    assert [c["id"] for c in rest["items"]] == [newer["id"]] and rest["next_cursor"] is None
    # Cat only sees the group.
    cats = client.get(f"/communities/{town.community.id}/conversations", headers=town.headers["cat"]).json()
    assert [c["id"] for c in cats["items"]] == [newer["id"]]
    r = client.get(
        f"/communities/{town.community.id}/conversations",
        params={"cursor": "garbage"},
        headers=town.headers["ann"],
    )
    assert r.status_code == 422 and r.json()["error"] == "invalid_cursor"

    for body in ("two", "three"):
        send(client, town, "ann", older["id"], body)
    page = client.get(f"/conversations/{older['id']}/messages?limit=2", headers=town.headers["bob"]).json()
    assert [m["body"] for m in page["items"]] == ["three", "two"]
    rest = client.get(
        f"/conversations/{older['id']}/messages",
        params={"limit": 2, "cursor": page["next_cursor"]},
        headers=town.headers["bob"],
    ).json()
    assert [m["body"] for m in rest["items"]] == ["**hi** <b>there</b>"] and rest["next_cursor"] is None
    assert len(recorded_jobs) == 3

    # The job tells the other participant, without the message text.
    session.expire_all()
    assert notifications.message_sent(session, message["id"]) == 1
    # Only this community's notifications: other tests' rows may share the subject id.
    notes = session.scalars(
        select(Notification).where(
            Notification.subject_id == message["id"], Notification.community_id == town.community.id
        )
    ).all()
    assert [(n.user_id, n.data) for n in notes] == [(town.id("ann"), {"conversation_id": older["id"]})]


@pytest.mark.parametrize("how", ["left", "banned"])
def test_former_members_can_no_longer_post(
    client: TestClient, town: Town, session: Session, recorded_jobs: list[jobs.Job], how: str
) -> None:
    conversation = start(client, town, "ann", ["bob"])
    group = start(client, town, "ann", ["bob", "cat"], title="trio")
    send(client, town, "bob", conversation["id"], "bye soon")
    recorded_jobs.clear()
    if how == "left":
        communities.leave(session, Actor(town.users["bob"]), town.community.id)
    else:
        communities.ban(session, Actor(town.users["owner"]), town.community.id, BanIn(user_id=town.id("bob")))
    r = client.post(
        f"/conversations/{conversation['id']}/messages", json={"body": "wait"}, headers=town.headers["bob"]
    )
    assert r.status_code == 403 and r.json()["error"] == "not_a_member"
    assert recorded_jobs == []
    assert session.scalar(select(func.count()).select_from(DirectMessage)) == 1
    # A 1:1 with someone who is gone is over; a group carries on without them.
    r = client.post(
        f"/conversations/{conversation['id']}/messages", json={"body": "hello?"}, headers=town.headers["ann"]
    )
    assert r.status_code == 409 and r.json()["error"] == "recipient_not_member"
    send(client, town, "ann", group["id"], "still here")
    assert len(recorded_jobs) == 1


def test_message_validation(
    client: TestClient, town: Town, session: Session, recorded_jobs: list[jobs.Job]
) -> None:
    conversation = start(client, town, "ann", ["bob"])
    url = f"/conversations/{conversation['id']}/messages"
    headers = town.headers["ann"]
    for payload in ({"body": ""}, {"body": "  "}, {"body": "x" * 20_001}, {"body": "hi", "urgent": True}, {}):
        r = client.post(url, json=payload, headers=headers)
        assert r.status_code == 422 and r.json()["error"] == "validation_error", payload
    r = client.post(url, content=b"{body: hi}", headers={**headers, "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "malformed_json"
    assert session.scalar(select(func.count()).select_from(DirectMessage)) == 0 and recorded_jobs == []
    assert len(send(client, town, "ann", conversation["id"], "x" * 20_000)["body"]) == 20_000

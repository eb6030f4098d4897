from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import jobs
from core.access import Actor
from core.communities import service as communities
from core.models import AuditLog, Mention, Notification, Post, PostRevision, Role, User
from core.notifications import service as notifications
from tests.api.test_channels import api_key, make_channel
from tests.factories import add_member, auth, make_community, make_user

POST_CREATED = "hearth.notifications.post_created"


@dataclass
class Forum:
    community_id: int
    channels: dict[str, int]
    users: dict[str, User] = field(default_factory=dict)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)


@pytest.fixture
def forum(session: Session) -> Forum:
    return build_forum(session)


def build_forum(session: Session) -> Forum:
    owner = make_user(session, name="Owner")
    community = make_community(session, owner)
    channels = {
        "general": make_channel(session, owner, community, "general"),
        "lounge": make_channel(session, owner, community, "lounge", min_tier="member"),
        "vip-room": make_channel(session, owner, community, "vip-room", min_tier="vip"),
        "announcements": make_channel(
            session, owner, community, "announcements", post_min_role=Role.MODERATOR
        ),
    }
    forum = Forum(community.id, channels)
    forum.users["owner"] = owner
    forum.users["author"] = add_member(session, community, tier="member")
    forum.users["reader"] = add_member(session, community, tier="free")
    forum.users["peer"] = add_member(session, community, tier="member")
    forum.users["vip"] = add_member(session, community, tier="vip")
    forum.users["moderator"] = add_member(session, community, role=Role.MODERATOR)
    forum.users["outsider"] = make_user(session)
    for name, user in forum.users.items():
        forum.headers[name] = auth(session, user)
    return forum


def new_thread(
    client: TestClient, forum: Forum, who: str = "author", channel: str = "general", **body: Any
) -> dict[str, Any]:
    payload = {"title": "Weekend hike?", "body": "Who is in?", **body}
    r = client.post(f"/channels/{forum.channels[channel]}/threads", json=payload, headers=forum.headers[who])
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def reply(
    client: TestClient, forum: Forum, thread_id: int, who: str = "reader", **body: Any
) -> dict[str, Any]:
    r = client.post(f"/threads/{thread_id}/posts", json={"body": "me!", **body}, headers=forum.headers[who])
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_thread_with_opening_post_renders_safe_markdown(
    client: TestClient, forum: Forum, recorded_jobs: list[jobs.Job]
) -> None:
    body = "**Trail** day\n\n<script>alert(1)</script> [x](javascript:alert(1))"
    thread = new_thread(client, forum, body=body)
    post = thread["opening_post"]
    assert thread["title"] == "Weekend hike?" and thread["reply_count"] == 0 and thread["locked"] is False
    assert post["is_opening"] is True and post["body"] == body
    assert post["author_id"] == forum.users["author"].id == thread["author_id"]
    author = forum.users["author"]
    card = {"id": author.id, "display_name": author.display_name, "avatar_url": None}
    assert thread["author"] == post["author"] == card
    assert "<strong>Trail</strong>" in post["body_html"]
    assert "<script>" not in post["body_html"] and "&lt;script&gt;" in post["body_html"]
    assert 'href="javascript' not in post["body_html"]
    assert recorded_jobs == [jobs.Job(POST_CREATED, (post["id"],))]

    r = client.get(f"/threads/{thread['id']}", headers=forum.headers["reader"])
    assert r.status_code == 200 and r.json()["opening_post"]["body"] == body
    r = client.get(f"/posts/{post['id']}", headers=forum.headers["reader"])
    assert r.status_code == 200 and r.json()["thread_id"] == thread["id"]


def test_post_min_role_gates_threads_and_replies(
    client: TestClient, forum: Forum, recorded_jobs: list[jobs.Job]
) -> None:
    url = f"/channels/{forum.channels['announcements']}/threads"
    r = client.post(url, json={"title": "News", "body": "..."}, headers=forum.headers["reader"])
    assert r.status_code == 403 and r.json()["error"] == "insufficient_role"
    assert recorded_jobs == []
    thread = new_thread(client, forum, who="moderator", channel="announcements")
    r = client.post(f"/threads/{thread['id']}/posts", json={"body": "hi"}, headers=forum.headers["reader"])
    assert r.status_code == 403 and r.json()["error"] == "insufficient_role"
    # Reading is open to everyone who can see the channel.
    assert client.get(f"/threads/{thread['id']}", headers=forum.headers["reader"]).status_code == 200
    reply(client, forum, thread["id"], who="owner")
    assert [j.name for j in recorded_jobs] == [POST_CREATED, POST_CREATED]


def test_replies_keep_counts_activity_and_order(client: TestClient, forum: Forum, session: Session) -> None:
    thread = new_thread(client, forum)
    tid = thread["id"]
    first = reply(client, forum, tid, body="one")
    second = reply(client, forum, tid, who="peer", body="two", reply_to_id=first["id"])
    third = reply(client, forum, tid, who="author", body="three", reply_to_id=thread["opening_post"]["id"])
    assert second["reply_to_id"] == first["id"] and third["is_opening"] is False

    got = client.get(f"/threads/{tid}", headers=forum.headers["reader"]).json()
    assert got["reply_count"] == 3
    assert datetime.fromisoformat(got["last_activity_at"]) > datetime.fromisoformat(
        thread["last_activity_at"]
    )

    page = client.get(f"/threads/{tid}/posts?limit=2", headers=forum.headers["reader"]).json()
    assert [p["body"] for p in page["items"]] == ["one", "two"] and page["next_cursor"]
    rest = client.get(
        f"/threads/{tid}/posts",
        params={"limit": 2, "cursor": page["next_cursor"]},
        headers=forum.headers["reader"],
    ).json()
    assert [p["body"] for p in rest["items"]] == ["three"] and rest["next_cursor"] is None

    other = new_thread(client, forum, title="Other")
    for bad in (other["opening_post"]["id"], 999_999):
        r = client.post(
            f"/threads/{tid}/posts", json={"body": "x", "reply_to_id": bad}, headers=forum.headers["reader"]
        )
        assert r.status_code == 404 and r.json()["error"] == "reply_to_not_found"
    assert session.scalar(select(Post.id).where(Post.body == "x")) is None
    assert client.get(f"/threads/{tid}", headers=forum.headers["reader"]).json()["reply_count"] == 3


def test_thread_list_filters_order_and_cursor(client: TestClient, forum: Forum) -> None:
    a = new_thread(client, forum, title="Hiking in Yangmingshan")
    b = new_thread(client, forum, who="peer", title="100% juice bar")
    c = new_thread(client, forum, who="reader", title="Night HIKING gear")
    reply(client, forum, a["id"])  # bumps a to the top
    url = f"/channels/{forum.channels['general']}/threads"
    headers = forum.headers["reader"]

    assert [t["id"] for t in client.get(url, headers=headers).json()["items"]] == [a["id"], c["id"], b["id"]]
    page = client.get(url, params={"limit": 2}, headers=headers).json()
    assert [t["id"] for t in page["items"]] == [a["id"], c["id"]]
    rest = client.get(url, params={"limit": 2, "cursor": page["next_cursor"]}, headers=headers).json()
    assert [t["id"] for t in rest["items"]] == [b["id"]] and rest["next_cursor"] is None

    hiking = client.get(url, params={"q": "hiking"}, headers=headers).json()["items"]
    assert {t["id"] for t in hiking} == {a["id"], c["id"]}
    percent = client.get(url, params={"q": "0%"}, headers=headers).json()["items"]
    assert [t["id"] for t in percent] == [b["id"]]  # "%" is literal, not a wildcard
    by_peer = client.get(url, params={"author_id": forum.users["peer"].id}, headers=headers).json()["items"]
    assert [t["id"] for t in by_peer] == [b["id"]]

    r = client.get(url, params={"cursor": "not-a-cursor"}, headers=headers)
    assert r.status_code == 422 and r.json()["error"] == "invalid_cursor"
    r = client.get(url, params={"limit": 0}, headers=headers)
    assert r.status_code == 422 and r.json()["error"] == "validation_error"


def test_edit_keeps_history_and_is_audited(
    client: TestClient, forum: Forum, session: Session, recorded_jobs: list[jobs.Job]
) -> None:
    thread = new_thread(client, forum)
    post = reply(client, forum, thread["id"], who="author", body="first draft")
    assert post["edited_at"] is None
    recorded_jobs.clear()

    r = client.patch(f"/posts/{post['id']}", json={"body": "second draft"}, headers=forum.headers["author"])
    assert r.status_code == 200 and r.json()["body"] == "second draft" and r.json()["edited_at"] is not None
    client.patch(f"/posts/{post['id']}", json={"body": "final"}, headers=forum.headers["author"])
    # The same body again is not an edit.
    client.patch(f"/posts/{post['id']}", json={"body": "final"}, headers=forum.headers["author"])

    for who in ("reader", "moderator", "owner"):
        r = client.patch(f"/posts/{post['id']}", json={"body": "hijacked"}, headers=forum.headers[who])
        assert r.status_code == 403 and r.json()["error"] == "not_author"

    r = client.get(f"/posts/{post['id']}/revisions", headers=forum.headers["author"])
    assert r.status_code == 200
    assert [rev["body"] for rev in r.json()["items"]] == ["second draft", "first draft"]
    assert all(
        rev["editor_id"] == forum.users["author"].id and rev["title"] is None for rev in r.json()["items"]
    )
    assert client.get(f"/posts/{post['id']}/revisions", headers=forum.headers["moderator"]).status_code == 200
    r = client.get(f"/posts/{post['id']}/revisions", headers=forum.headers["reader"])
    assert r.status_code == 403 and r.json()["error"] == "not_author"
    assert client.get(f"/posts/{post['id']}", headers=forum.headers["reader"]).json()["body"] == "final"

    edits = session.scalars(
        select(AuditLog)
        .where(AuditLog.action == "post.edit", AuditLog.target_id == post["id"])
        .order_by(AuditLog.id)
    ).all()
    assert [(e.before, e.after) for e in edits] == [
        ({"body": "first draft"}, {"body": "second draft"}),
        ({"body": "second draft"}, {"body": "final"}),
    ]
    assert all(e.community_id == forum.community_id for e in edits)
    assert recorded_jobs == []  # no new mentions, nobody to tell


def test_thread_title_edit_is_kept_as_a_revision(client: TestClient, forum: Forum) -> None:
    thread = new_thread(client, forum, title="Old title")
    opening = thread["opening_post"]
    r = client.patch(f"/threads/{thread['id']}", json={"title": "New title"}, headers=forum.headers["author"])
    assert r.status_code == 200 and r.json()["title"] == "New title"
    assert r.json()["opening_post"]["edited_at"] is not None
    r = client.patch(f"/posts/{opening['id']}", json={"body": "New body"}, headers=forum.headers["author"])
    assert r.status_code == 200
    revisions = client.get(f"/posts/{opening['id']}/revisions", headers=forum.headers["author"]).json()[
        "items"
    ]
    assert [(rev["title"], rev["body"]) for rev in revisions] == [
        ("New title", "Who is in?"),
        ("Old title", "Who is in?"),
    ]

    r = client.patch(
        f"/threads/{thread['id']}", json={"title": "Mine now"}, headers=forum.headers["moderator"]
    )
    assert r.status_code == 403 and r.json()["error"] == "not_author"
    r = client.patch(f"/threads/{thread['id']}", json={"title": "x" * 201}, headers=forum.headers["author"])
    assert r.status_code == 422 and r.json()["error"] == "validation_error"
    assert (
        client.get(f"/threads/{thread['id']}", headers=forum.headers["reader"]).json()["title"] == "New title"
    )


def test_soft_delete_hides_the_body_from_others(client: TestClient, forum: Forum, session: Session) -> None:
    thread = new_thread(client, forum)
    mine = reply(client, forum, thread["id"], who="peer", body=f"oops <@{forum.users['reader'].id}>")
    theirs = reply(client, forum, thread["id"], who="reader", body="rude words")

    r = client.delete(f"/posts/{theirs['id']}", headers=forum.headers["peer"])
    assert r.status_code == 403 and r.json()["error"] == "not_author"
    r = client.delete(f"/posts/{mine['id']}", headers=forum.headers["peer"])
    assert r.status_code == 200 and r.json()["deleted"] is True and r.json()["body"].startswith("oops")

    seen = client.get(f"/posts/{mine['id']}", headers=forum.headers["reader"]).json()
    assert (
        seen["deleted"] is True and seen["body"] == "" and seen["body_html"] == "" and seen["mentions"] == []
    )
    listed = client.get(f"/threads/{thread['id']}/posts", headers=forum.headers["reader"]).json()["items"]
    assert [(p["id"], p["body"]) for p in listed] == [(mine["id"], ""), (theirs["id"], "rude words")]
    staff_view = client.get(f"/posts/{mine['id']}", headers=forum.headers["moderator"]).json()
    assert staff_view["body"].startswith("oops")
    r = client.patch(f"/posts/{mine['id']}", json={"body": "back"}, headers=forum.headers["peer"])
    assert r.status_code == 409 and r.json()["error"] == "post_deleted"

    r = client.delete(f"/posts/{theirs['id']}", headers=forum.headers["moderator"])
    assert r.status_code == 200 and r.json()["deleted"] is True
    assert client.delete(f"/posts/{theirs['id']}", headers=forum.headers["moderator"]).status_code == 200
    assert client.get(f"/threads/{thread['id']}", headers=forum.headers["reader"]).json()["reply_count"] == 0

    # This community's only: tests on committed_engine leave audit rows of their own on PostgreSQL.
    deletes = session.scalars(
        select(AuditLog).where(AuditLog.action == "post.delete", AuditLog.community_id == forum.community_id)
    ).all()
    assert [d.target_id for d in deletes] == [theirs["id"]]  # self-deletion is not moderation
    assert deletes[0].before is not None and deletes[0].before["body"] == "rude words"
    assert deletes[0].actor_user_id == forum.users["moderator"].id


def test_deleting_the_opening_post_deletes_the_thread(client: TestClient, forum: Forum) -> None:
    thread = new_thread(client, forum)
    keep = new_thread(client, forum, title="Keep me")
    reply_post = reply(client, forum, thread["id"])
    r = client.delete(f"/posts/{thread['opening_post']['id']}", headers=forum.headers["author"])
    assert r.status_code == 200 and r.json()["deleted"] is True

    for url in (f"/threads/{thread['id']}", f"/threads/{thread['id']}/posts"):
        r = client.get(url, headers=forum.headers["reader"])
        assert r.status_code == 404 and r.json()["error"] == "thread_not_found"
    r = client.get(f"/posts/{reply_post['id']}", headers=forum.headers["reader"])
    assert r.status_code == 404 and r.json()["error"] == "post_not_found"
    listed = client.get(
        f"/channels/{forum.channels['general']}/threads", headers=forum.headers["reader"]
    ).json()
    assert [t["id"] for t in listed["items"]] == [keep["id"]]

    staff = client.get(f"/threads/{thread['id']}", headers=forum.headers["moderator"])
    assert staff.status_code == 200 and staff.json()["deleted"] is True
    r = client.post(
        f"/threads/{thread['id']}/posts", json={"body": "hello?"}, headers=forum.headers["moderator"]
    )
    assert r.status_code == 409 and r.json()["error"] == "thread_deleted"


def test_staff_lock_and_unlock_threads(client: TestClient, forum: Forum, session: Session) -> None:
    thread = new_thread(client, forum)
    post = reply(client, forum, thread["id"], who="author")
    tid = thread["id"]
    r = client.post(f"/threads/{tid}/lock", headers=forum.headers["author"])
    assert r.status_code == 403 and r.json()["error"] == "insufficient_role"

    r = client.post(f"/threads/{tid}/lock", headers=forum.headers["moderator"])
    assert r.status_code == 200 and r.json()["locked"] is True
    for who in ("reader", "moderator"):
        r = client.post(f"/threads/{tid}/posts", json={"body": "still here"}, headers=forum.headers[who])
        assert r.status_code == 409 and r.json()["error"] == "thread_locked"
    r = client.patch(f"/posts/{post['id']}", json={"body": "sneaky"}, headers=forum.headers["author"])
    assert r.status_code == 409 and r.json()["error"] == "thread_locked"
    r = client.put(f"/posts/{post['id']}/reactions/👍", headers=forum.headers["reader"])
    assert r.status_code == 409 and r.json()["error"] == "thread_locked"
    # Moderation is not blocked by the lock.
    assert client.delete(f"/posts/{post['id']}", headers=forum.headers["moderator"]).status_code == 200

    r = client.post(f"/threads/{tid}/unlock", headers=forum.headers["moderator"])
    assert r.status_code == 200 and r.json()["locked"] is False
    reply(client, forum, tid)
    actions = session.scalars(
        select(AuditLog.action)
        .where(AuditLog.target_type == "threads", AuditLog.target_id == tid)
        .order_by(AuditLog.id)
    ).all()
    assert actions == ["thread.lock", "thread.unlock"]


def test_mentions_only_reach_members_who_can_see_the_channel(
    client: TestClient, forum: Forum, session: Session, recorded_jobs: list[jobs.Job]
) -> None:
    other = make_community(session)
    stranger = add_member(session, other)
    departed = add_member(
        session, communities.get(session, Actor(forum.users["owner"]), forum.community_id).community
    )
    communities.leave(session, Actor(departed), forum.community_id)
    u = forum.users
    mentioned = [
        u["peer"].id,  # member tier: sees the lounge
        u["vip"].id,  # higher tier: sees it too
        u["moderator"].id,  # staff: sees everything
        u["reader"].id,  # free tier: cannot see the lounge
        u["outsider"].id,  # not a member
        stranger.id,  # member elsewhere
        departed.id,  # left
        987_654,  # nobody
    ]
    body = " ".join(f"<@{uid}>" for uid in mentioned) + f" and <@{u['peer'].id}> again"
    thread = new_thread(client, forum, channel="lounge", body=body)
    post_id = thread["opening_post"]["id"]
    expected = [u["peer"].id, u["vip"].id, u["moderator"].id]
    assert thread["opening_post"]["mentions"] == expected
    rows = session.scalars(
        select(Mention.user_id).where(Mention.post_id == post_id).order_by(Mention.id)
    ).all()
    assert rows == expected
    assert recorded_jobs == [jobs.Job(POST_CREATED, (post_id,))]

    # What the job does with them: only the visible mentions become notifications.
    session.expire_all()
    assert notifications.post_created(session, post_id) == 3
    notified = session.scalars(select(Notification.user_id).where(Notification.subject_id == post_id)).all()
    assert sorted(notified) == sorted(expected)

    recorded_jobs.clear()
    r = client.patch(
        f"/posts/{post_id}",
        json={"body": f"{body} <@{u['owner'].id}> <@{u['reader'].id}>"},
        headers=forum.headers["author"],
    )
    assert r.status_code == 200 and r.json()["mentions"] == [*expected, u["owner"].id]
    assert recorded_jobs == [jobs.Job(POST_CREATED, (post_id,))]
    recorded_jobs.clear()
    r = client.patch(f"/posts/{post_id}", json={"body": "no mentions now"}, headers=forum.headers["author"])
    assert r.status_code == 200 and recorded_jobs == []
    assert r.json()["mentions"] == [*expected, u["owner"].id]  # mentions are never taken back

    # Replies mention too, and a failed request enqueues nothing.
    r = client.post(
        f"/threads/{thread['id']}/posts", json={"body": "x" * 20_001}, headers=forum.headers["peer"]
    )
    assert r.status_code == 422 and recorded_jobs == []
    answer = reply(client, forum, thread["id"], who="peer", body=f"cc <@{u['vip'].id}>")
    assert answer["mentions"] == [u["vip"].id]
    assert recorded_jobs == [jobs.Job(POST_CREATED, (answer["id"],))]


def test_reactions_are_idempotent_and_counted(client: TestClient, forum: Forum, session: Session) -> None:
    thread = new_thread(client, forum)
    post_id = thread["opening_post"]["id"]
    url = f"/posts/{post_id}/reactions"
    for _ in range(2):
        r = client.put(f"{url}/👍", headers=forum.headers["reader"])
        assert r.status_code == 200 and r.json()["reactions"] == {"👍": 1}
        assert r.json()["my_reactions"] == ["👍"]
    client.put(f"{url}/👍", headers=forum.headers["peer"])
    # Only real emoji: shortcodes such as ":tada:" are refused (see test_conversation_fixes.py).
    r = client.put(f"{url}/🎉", headers=forum.headers["peer"])
    assert r.json()["reactions"] == {"👍": 2, "🎉": 1} and r.json()["my_reactions"] == ["👍", "🎉"]
    seen = client.get(f"/threads/{thread['id']}", headers=forum.headers["author"]).json()["opening_post"]
    assert seen["reactions"] == {"👍": 2, "🎉": 1} and seen["my_reactions"] == []

    for _ in range(2):
        r = client.delete(f"{url}/👍", headers=forum.headers["reader"])
        assert r.status_code == 200 and r.json()["reactions"] == {"👍": 1, "🎉": 1}
        assert r.json()["my_reactions"] == []

    for bad in ("a%20b", "x" * 33):
        r = client.put(f"{url}/{bad}", headers=forum.headers["reader"])
        assert r.status_code == 422 and r.json()["error"] == "validation_error"

    hidden = new_thread(client, forum, who="vip", channel="vip-room")
    r = client.put(f"/posts/{hidden['opening_post']['id']}/reactions/👍", headers=forum.headers["reader"])
    assert r.status_code == 404 and r.json()["error"] == "post_not_found"
    client.delete(f"/posts/{post_id}", headers=forum.headers["author"])
    r = client.put(f"{url}/👀", headers=forum.headers["moderator"])
    assert r.status_code == 409 and r.json()["error"] == "post_deleted"


def test_threads_in_hidden_channels_are_not_found(client: TestClient, forum: Forum) -> None:
    thread = new_thread(client, forum, who="vip", channel="vip-room")
    post_id = thread["opening_post"]["id"]
    reader = forum.headers["reader"]
    for method, url, code in [
        ("GET", f"/threads/{thread['id']}", "thread_not_found"),
        ("GET", f"/threads/{thread['id']}/posts", "thread_not_found"),
        ("POST", f"/threads/{thread['id']}/lock", "thread_not_found"),
        ("GET", f"/posts/{post_id}", "post_not_found"),
        ("GET", f"/posts/{post_id}/revisions", "post_not_found"),
        ("DELETE", f"/posts/{post_id}", "post_not_found"),
    ]:
        r = client.request(method, url, headers=reader)
        assert (r.status_code, r.json()["error"]) == (404, code), url
    r = client.post(f"/threads/{thread['id']}/posts", json={"body": "hi"}, headers=reader)
    assert r.status_code == 404 and r.json()["error"] == "thread_not_found"
    r = client.patch(f"/posts/{post_id}", json={"body": "hi"}, headers=reader)
    assert r.status_code == 404 and r.json()["error"] == "post_not_found"
    r = client.get(f"/threads/{thread['id']}", headers=forum.headers["outsider"])
    assert r.status_code == 404 and r.json()["error"] == "thread_not_found"
    assert client.get(f"/threads/{thread['id']}", headers=forum.headers["moderator"]).status_code == 200


def test_api_keys_act_for_their_owner(client: TestClient, forum: Forum, session: Session) -> None:
    owner = forum.users["owner"]
    community = communities.get(session, Actor(owner), forum.community_id).community
    read_key = api_key(session, owner, community, ["read"])
    write_key = api_key(session, owner, community, ["read", "write"])
    thread = new_thread(client, forum, channel="vip-room", who="vip")
    assert client.get(f"/threads/{thread['id']}", headers=read_key).status_code == 200
    r = client.post(f"/threads/{thread['id']}/posts", json={"body": "bot"}, headers=read_key)
    assert r.status_code == 403 and r.json()["error"] == "insufficient_scope"
    r = client.post(f"/threads/{thread['id']}/posts", json={"body": "bot"}, headers=write_key)
    assert r.status_code == 201 and r.json()["author_id"] == owner.id
    assert r.json()["author"] == {"id": owner.id, "display_name": "Owner", "avatar_url": None}


def test_validation_errors(client: TestClient, forum: Forum, session: Session) -> None:
    url = f"/channels/{forum.channels['general']}/threads"
    headers = forum.headers["author"]
    cases = [
        {"title": "t", "body": "b", "pinned": True},
        {"title": "x" * 201, "body": "b"},
        {"title": "t", "body": "x" * 20_001},
        {"title": "t", "body": "   \n  "},
        {"title": "", "body": "b"},
        {"title": "t", "body": "nul \x00 byte"},
        {"body": "no title"},
    ]
    for payload in cases:
        r = client.post(url, json=payload, headers=headers)
        assert r.status_code == 422 and r.json()["error"] == "validation_error", payload
    r = client.post(
        url, content=b'{"title": "t", "body": ', headers={**headers, "Content-Type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["error"] == "malformed_json"
    assert session.scalar(select(Post.id).where(Post.community_id == forum.community_id)) is None

    longest = new_thread(client, forum, title="x" * 200, body="    indented code\n" + "y" * 19_982)
    assert len(longest["opening_post"]["body"]) == 20_000
    assert longest["opening_post"]["body"].startswith("    indented")  # Markdown is kept as written
    tid, pid = longest["id"], longest["opening_post"]["id"]
    for method, path, payload in [
        ("POST", f"/threads/{tid}/posts", {"body": "b", "quote": "x"}),
        ("POST", f"/threads/{tid}/posts", {"body": "b", "reply_to_id": "first"}),
        ("PATCH", f"/posts/{pid}", {"body": "b", "title": "t"}),
        ("PATCH", f"/posts/{pid}", {}),
        ("PATCH", f"/threads/{tid}", {"title": "t", "body": "b"}),
    ]:
        r = client.request(method, path, json=payload, headers=headers)
        assert r.status_code == 422 and r.json()["error"] == "validation_error", (path, payload)
    assert session.scalar(select(PostRevision.id).where(PostRevision.post_id == pid)) is None


def test_mentions_render_as_names_and_cannot_be_forged(client: TestClient, session: Session) -> None:
    from tests.api.test_channels import make_channel

    owner = make_user(session, name="Owner")
    community = make_community(session, owner)
    channel = make_channel(session, owner, community, "general")
    mei = add_member(session, community, make_user(session, name="美美 <b>"))
    outsider = make_user(session, name="Outsider")
    body = f"嗨 <@{mei.id}> and <@{outsider.id}> <script>x</script>"
    r = client.post(
        f"/channels/{channel}/threads", json={"title": "t", "body": body}, headers=auth(session, owner)
    )
    assert r.status_code == 201, r.text
    html = r.json()["opening_post"]["body_html"]
    assert f'<span class="mention" data-user-id="{mei.id}">@美美 &lt;b&gt;</span>' in html
    # Not a member, so not mentioned: the token stays as escaped text.
    assert f"&lt;@{outsider.id}&gt;" in html and "Outsider" not in html
    assert "<script>" not in html

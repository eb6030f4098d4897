"""Regression tests for defects found in review: each one reproduced first, then fixed."""

from __future__ import annotations

import threading

from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from core.access import Actor
from core.communities import service as communities
from core.communities.schemas import BanIn, MemberPatch
from core.db import session_scope
from core.models import Notification, Post, Role, Thread, User
from core.notifications import service as notifications
from tests.api.test_channels import api_key, make_channel
from tests.api.test_events import make_event
from tests.api.test_threads import build_forum, new_thread, reply
from tests.factories import add_member, auth, make_community, make_user


def test_api_keys_cannot_transfer_ownership_or_hand_out_roles(client: TestClient, session: Session) -> None:
    owner = make_user(session)
    community = make_community(session, owner)
    member = add_member(session, community)
    key = api_key(session, owner, community, ["read", "write"])
    r = client.post(
        f"/communities/{community.id}/transfer-ownership", json={"user_id": member.id}, headers=key
    )
    assert r.status_code == 403 and r.json()["error"] == "api_key_not_allowed"
    r = client.patch(f"/communities/{community.id}/members/{member.id}", json={"role": "admin"}, headers=key)
    assert r.status_code == 403 and r.json()["error"] == "api_key_not_allowed"
    # Tier changes stay open to integrations (billing upgrades a member).
    r = client.patch(f"/communities/{community.id}/members/{member.id}", json={"tier": "vip"}, headers=key)
    assert r.status_code == 200 and r.json()["tier"] == "vip"
    r = client.get("/me", headers=key)
    assert r.status_code == 403 and r.json()["error"] == "api_key_not_allowed"


def test_a_departing_admins_keys_stay_dead_after_rejoining(client: TestClient, session: Session) -> None:
    owner = make_user(session)
    community = make_community(session, owner)
    admin = add_member(session, community, role=Role.ADMIN)
    key = api_key(session, admin, community, ["read"])
    assert client.get(f"/communities/{community.id}/members", headers=key).status_code == 200
    assert client.post(f"/communities/{community.id}/leave", headers=auth(session, admin)).is_success
    assert client.post(f"/communities/{community.id}/join", headers=auth(session, admin)).status_code == 201
    r = client.get(f"/communities/{community.id}/members", headers=key)
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"


def test_reply_notifications_respect_current_channel_rights(client: TestClient, session: Session) -> None:
    forum = build_forum(session)
    thread = new_thread(client, forum, who="vip", channel="vip-room", title="secret plan")
    owner = forum.users["owner"]
    vip = forum.users["vip"]
    communities.update_member(session, Actor(owner), forum.community_id, vip.id, MemberPatch(tier="free"))
    r = reply(client, forum, thread["id"], who="moderator", body=f"the VIP secret is 42 <@{vip.id}>")
    assert notifications.post_created(session, r["id"]) == 0
    assert session.scalar(select(func.count()).where(Notification.user_id == vip.id)) == 0
    # Still there for those who may see it.
    communities.update_member(session, Actor(owner), forum.community_id, vip.id, MemberPatch(tier="vip"))
    assert notifications.post_created(session, r["id"]) == 1


def test_banned_members_hear_nothing_more(client: TestClient, session: Session) -> None:
    forum = build_forum(session)
    thread = new_thread(client, forum, who="author")
    communities.ban(
        session, Actor(forum.users["owner"]), forum.community_id, BanIn(user_id=forum.users["author"].id)
    )
    r = reply(client, forum, thread["id"], who="reader")
    assert notifications.post_created(session, r["id"]) == 0


def test_attendee_notes_are_for_organisers_and_their_author(client: TestClient, session: Session) -> None:
    community = make_community(session)
    owner = session.get(User, community.created_by)
    assert owner is not None
    owner_headers = auth(session, owner)
    event_id = make_event(session, community)
    writer, other = add_member(session, community), add_member(session, community)
    r = client.post(
        f"/events/{event_id}/rsvp", json={"note": "allergic to nuts"}, headers=auth(session, writer)
    )
    assert r.status_code == 200
    client.post(f"/events/{event_id}/rsvp", headers=auth(session, other))

    def note_seen_by(headers: dict[str, str]) -> str:
        going = client.get(f"/events/{event_id}/attendees", headers=headers).json()["going"]
        return next(a["note"] for a in going if a["user"]["id"] == writer.id)

    assert note_seen_by(owner_headers) == "allergic to nuts"
    assert note_seen_by(auth(session, writer)) == "allergic to nuts"
    assert note_seen_by(auth(session, other)) == ""


def test_admin_only_channels_exclude_moderators(client: TestClient, session: Session) -> None:
    owner = make_user(session)
    community = make_community(session, owner)
    room = make_channel(session, owner, community, "admins", min_role=Role.ADMIN)
    moderator = add_member(session, community, role=Role.MODERATOR)
    admin = add_member(session, community, role=Role.ADMIN)
    path = f"/communities/{community.id}/channels/{room}"
    assert client.get(path, headers=auth(session, moderator)).status_code == 404
    assert client.get(path, headers=auth(session, admin)).status_code == 200


def test_concurrent_deletes_count_once(committed_engine: Engine) -> None:
    """Author and moderator delete the same reply at once: reply_count drops by one."""
    import uuid

    from core.conversation import service as conversation
    from core.conversation.schemas import ChannelIn, ReplyIn, ThreadIn

    with session_scope(committed_engine) as s:
        owner = make_user(s)
        community = make_community(s, owner, slug=f"del-{uuid.uuid4().hex[:8]}")
        author = add_member(s, community)
        channel = conversation.create_channel(
            s, Actor(owner), community.id, ChannelIn(slug="general", name="General")
        )
        thread = conversation.create_thread(s, Actor(author), channel.id, ThreadIn(title="t", body="b"))
        first = conversation.create_reply(s, Actor(author), thread.id, ReplyIn(body="one"))
        conversation.create_reply(s, Actor(author), thread.id, ReplyIn(body="two"))
        ids = (owner.id, author.id, thread.id, first.id)

    owner_id, author_id, thread_id, post_id = ids
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def delete(user_id: int) -> None:
        try:
            barrier.wait()
            with session_scope(committed_engine) as s:
                user = s.get(User, user_id)
                assert user is not None
                conversation.delete_post(s, Actor(user), post_id)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    workers = [threading.Thread(target=delete, args=(uid,)) for uid in (owner_id, author_id)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    with session_scope(committed_engine) as s:
        thread_row = s.get(Thread, thread_id)
        post = s.get(Post, post_id)
        assert thread_row is not None and post is not None
        assert post.deleted_at is not None and thread_row.reply_count == 1


def test_ban_ranks_use_current_roles(client: TestClient, session: Session) -> None:
    owner = make_user(session)
    community = make_community(session, owner)
    moderator = add_member(session, community, role=Role.MODERATOR)
    former_admin = add_member(session, community, role=Role.ADMIN)
    communities.leave(session, Actor(former_admin), community.id)
    # Having left, a former admin is no longer above a moderator.
    r = client.post(
        f"/communities/{community.id}/bans",
        json={"user_id": former_admin.id},
        headers=auth(session, moderator),
    )
    assert r.status_code == 201
    # A ban the owner imposed is not a moderator's to lift.
    troll = add_member(session, community)
    by_owner = client.post(
        f"/communities/{community.id}/bans", json={"user_id": troll.id}, headers=auth(session, owner)
    ).json()
    r = client.delete(f"/communities/{community.id}/bans/{by_owner['id']}", headers=auth(session, moderator))
    assert r.status_code == 403 and r.json()["error"] == "insufficient_role"
    assert client.delete(
        f"/communities/{community.id}/bans/{by_owner['id']}", headers=auth(session, owner)
    ).is_success


def test_no_replies_to_deleted_posts(client: TestClient, session: Session) -> None:
    forum = build_forum(session)
    thread = new_thread(client, forum)
    gone = reply(client, forum, thread["id"], who="reader")
    assert client.delete(f"/posts/{gone['id']}", headers=forum.headers["reader"]).is_success
    r = client.post(
        f"/threads/{thread['id']}/posts",
        json={"body": "re", "reply_to_id": gone["id"]},
        headers=forum.headers["peer"],
    )
    assert r.status_code == 409 and r.json()["error"] == "reply_to_deleted"


def test_edits_follow_current_posting_rights(client: TestClient, session: Session) -> None:
    forum = build_forum(session)
    thread = new_thread(client, forum, who="author")
    mine = reply(client, forum, thread["id"], who="reader")
    r = client.patch(
        f"/communities/{forum.community_id}/channels/{forum.channels['general']}",
        json={"post_min_role": "moderator"},
        headers=forum.headers["owner"],
    )
    assert r.status_code == 200, r.text
    r = client.patch(f"/posts/{mine['id']}", json={"body": "changed"}, headers=forum.headers["reader"])
    assert r.status_code == 403 and r.json()["error"] == "insufficient_role"

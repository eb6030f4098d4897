"""Deleted posts leave no notifications, real-emoji reactions, author summaries, DM mentions."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, event, func, select, text
from sqlalchemy.orm import Session

from core.access import Actor
from core.conversation import service as conversation
from core.conversation.schemas import ChannelIn, ReplyIn, ThreadIn
from core.db import session_factory, session_scope
from core.models import Notification, Reaction, User
from core.notifications import service as notifications
from tests.api.test_threads import Forum, build_forum, new_thread, reply
from tests.conftest import needs_postgres
from tests.factories import add_member, auth, make_community, make_user


@pytest.fixture
def forum(session: Session) -> Forum:
    return build_forum(session)


def run_post_jobs(session: Session, *post_ids: int) -> int:
    session.expire_all()
    return sum(notifications.post_created(session, pid) for pid in post_ids)


def post_notifications(session: Session, post_ids: list[int]) -> list[tuple[int, str, int]]:
    rows = session.execute(
        select(Notification.user_id, Notification.kind, Notification.subject_id)
        .where(Notification.subject_type == "post", Notification.subject_id.in_(post_ids))
        .order_by(Notification.id)
    )
    return [(user_id, kind, subject_id) for user_id, kind, subject_id in rows]


# --- 1. deleted content does not live on in notifications --------------------


def test_deleting_a_reply_deletes_its_notifications(
    client: TestClient, forum: Forum, session: Session
) -> None:
    u = forum.users
    thread = new_thread(client, forum)
    gone = reply(client, forum, thread["id"], who="peer", body=f"secret plan <@{u['reader'].id}>")
    kept = reply(client, forum, thread["id"], who="reader", body="unrelated")
    # gone: reader is mentioned, the thread's author hears of a reply; kept: the author again.
    assert run_post_jobs(session, gone["id"], kept["id"]) == 3
    r = client.get("/me/notifications", headers=forum.headers["reader"])
    assert [n["data"]["excerpt"] for n in r.json()["items"]] == [f"secret plan @{u['reader'].display_name}"]

    r = client.delete(f"/posts/{gone['id']}", headers=forum.headers["peer"])
    assert r.status_code == 200 and r.json()["deleted"] is True
    assert post_notifications(session, [gone["id"], kept["id"]]) == [(u["author"].id, "reply", kept["id"])]
    assert client.get("/me/notifications", headers=forum.headers["reader"]).json()["items"] == []
    # Run again (a retried job): a deleted post notifies nobody.
    assert run_post_jobs(session, gone["id"]) == 0


def test_moderator_deleting_a_reply_also_deletes_its_notifications(
    client: TestClient, forum: Forum, session: Session
) -> None:
    u = forum.users
    thread = new_thread(client, forum)
    rude = reply(client, forum, thread["id"], who="reader", body=f"rude words for <@{u['peer'].id}>")
    assert run_post_jobs(session, rude["id"]) == 2
    assert client.delete(f"/posts/{rude['id']}", headers=forum.headers["moderator"]).status_code == 200
    assert post_notifications(session, [rude["id"]]) == []


def test_deleting_the_opening_post_deletes_the_whole_threads_notifications(
    client: TestClient, forum: Forum, session: Session
) -> None:
    u = forum.users
    thread = new_thread(client, forum, body=f"hey <@{u['peer'].id}>")
    opening = thread["opening_post"]["id"]
    first = reply(client, forum, thread["id"], who="reader", body=f"hi <@{u['vip'].id}>")
    second = reply(client, forum, thread["id"], who="peer", body="me too", reply_to_id=first["id"])
    other = new_thread(client, forum, title="Other", body=f"<@{u['peer'].id}> look")
    other_opening = other["opening_post"]["id"]
    assert run_post_jobs(session, opening, first["id"], second["id"], other_opening) == 6

    r = client.delete(f"/posts/{opening}", headers=forum.headers["author"])
    assert r.status_code == 200 and r.json()["deleted"] is True
    everything = [opening, first["id"], second["id"], other_opening]
    assert post_notifications(session, everything) == [(u["peer"].id, "mention", other_opening)]


def test_notification_excerpt_names_mentions_instead_of_raw_tokens(
    client: TestClient, forum: Forum, session: Session
) -> None:
    u = forum.users
    peer, outsider = u["peer"], u["outsider"]
    body = f"<@{peer.id}> and <@987654> and <@{outsider.id}>: " + "x" * 200
    thread = new_thread(client, forum, body=body)
    assert run_post_jobs(session, thread["opening_post"]["id"]) == 1
    data = session.scalar(select(Notification.data).where(Notification.user_id == peer.id))
    assert data is not None
    # Unknown ids (and anyone the post does not really mention) are dropped, not shown raw.
    assert data["excerpt"] == (f"@{peer.display_name} and  and : " + "x" * 200)[:140]
    assert "<@" not in data["excerpt"] and len(data["excerpt"]) == 140
    assert outsider.display_name not in data["excerpt"]


@needs_postgres()
@pytest.mark.parametrize("first", ["job", "delete"])
@pytest.mark.parametrize("what", ["reply", "opening"])
def test_a_delete_racing_the_notification_job_leaves_no_notification(
    committed_engine: Engine, what: str, first: str
) -> None:
    """Job and delete overlap, either one first: no notification about the deleted post remains."""
    with session_scope(committed_engine) as s:
        owner = make_user(s)
        community = make_community(s, owner, slug=f"race-{uuid.uuid4().hex[:8]}")
        author, peer = add_member(s, community), add_member(s, community)
        channel = conversation.create_channel(
            s, Actor(owner), community.id, ChannelIn(slug="general", name="General")
        )
        thread = conversation.create_thread(s, Actor(author), channel.id, ThreadIn(title="t", body="b"))
        post = conversation.create_reply(s, Actor(peer), thread.id, ReplyIn(body=f"hi <@{owner.id}>"))
        deleter_id, delete_id = (peer.id, post.id) if what == "reply" else (author.id, thread.opening_post.id)
        post_id = post.id

    def job(s: Session) -> int:
        return notifications.post_created(s, post_id)

    def delete(s: Session) -> str:
        deleter = s.get(User, deleter_id)
        assert deleter is not None
        conversation.delete_post(s, Actor(deleter), delete_id)
        return "deleted"

    outcome: list[object] = []

    def in_background(work: Callable[[Session], object]) -> None:
        try:
            with session_scope(committed_engine) as s:
                s.execute(text("SET LOCAL lock_timeout = '20s'"))
                outcome.append(work(s))
        except BaseException as exc:  # surfaced below
            outcome.append(exc)

    held = session_factory(committed_engine)()
    if first == "job":
        assert job(held) == 2  # written, not committed yet
        worker = threading.Thread(target=in_background, args=(delete,))
    else:
        delete(held)
        worker = threading.Thread(target=in_background, args=(job,))
    worker.start()
    time.sleep(0.5)
    assert worker.is_alive()  # waiting for the first one's lock on the thread
    held.commit()
    held.close()
    worker.join(30)
    assert not worker.is_alive()
    assert outcome == (["deleted"] if first == "job" else [0])
    with session_scope(committed_engine) as s:
        left = s.scalar(
            select(func.count()).where(
                Notification.subject_type == "post", Notification.subject_id == post_id
            )
        )
        assert left == 0


# --- 2. reactions are real emoji -----------------------------------------------

REAL_EMOJI = [
    "👍",
    "👍🏽",  # skin tone
    "❤️",  # with VS16
    "❤",  # without
    "☺",
    "🏳️‍🌈",  # ZWJ sequence
    "👨‍👩‍👧‍👦",
    "🧑🏽‍🤝‍🧑🏻",
    "🇹🇼",  # flag: a regional-indicator pair
    "1️⃣",  # keycaps
    "#️⃣",
    "*⃣",
    "🏴󠁧󠁢󠁥󠁮󠁧󠁿",  # subdivision flag: tag sequence
    "🫨",  # newer than Python 3.11's Unicode database
    "🀄",
]
NOT_EMOJI = [
    "notanemoji",
    "abc",
    ":+1:",
    ":tada:",
    "<b>",
    "1",
    "#",
    "👍👍",  # two
    "🇹",  # half a flag
    "🇹🇼🇯🇵",
    "👍\u200d",  # dangling joiner
    "\ufe0f",
    "🏽",  # a skin tone alone
    "a👍",
    "★",  # a symbol, not an emoji
    "©©",
]


def _reaction_url(post_id: int, emoji: str) -> str:
    return f"/posts/{post_id}/reactions/{quote(emoji, safe='')}"


def test_reactions_accept_real_emoji(client: TestClient, forum: Forum) -> None:
    post_id = new_thread(client, forum)["opening_post"]["id"]
    for emoji in REAL_EMOJI:
        r = client.put(_reaction_url(post_id, emoji), headers=forum.headers["reader"])
        assert r.status_code == 200, (emoji, r.text)
        assert r.json()["reactions"][emoji] == 1
    assert list(r.json()["my_reactions"]) == REAL_EMOJI
    r = client.delete(_reaction_url(post_id, "🏳️‍🌈"), headers=forum.headers["reader"])
    assert r.status_code == 200 and "🏳️‍🌈" not in r.json()["reactions"]


def test_reactions_refuse_anything_but_one_emoji(client: TestClient, forum: Forum, session: Session) -> None:
    post_id = new_thread(client, forum)["opening_post"]["id"]
    for word in NOT_EMOJI:
        for method in ("PUT", "DELETE"):
            r = client.request(method, _reaction_url(post_id, word), headers=forum.headers["reader"])
            assert r.status_code == 422 and r.json()["error"] == "invalid_emoji", (method, word)
    assert session.scalar(select(Reaction.id).where(Reaction.post_id == post_id)) is None


def test_a_reaction_stored_before_the_check_can_still_be_taken_back(
    client: TestClient, forum: Forum, session: Session
) -> None:
    post_id = new_thread(client, forum)["opening_post"]["id"]
    session.add(Reaction(post_id=post_id, user_id=forum.users["reader"].id, emoji=":tada:"))
    session.flush()
    r = client.delete(_reaction_url(post_id, ":tada:"), headers=forum.headers["reader"])
    assert r.status_code == 200 and r.json()["reactions"] == {}
    # Someone else never had it: for them it is just not an emoji.
    r = client.delete(_reaction_url(post_id, ":tada:"), headers=forum.headers["peer"])
    assert r.status_code == 422 and r.json()["error"] == "invalid_emoji"


def test_no_reacting_on_or_unreacting_from_a_deleted_post(client: TestClient, forum: Forum) -> None:
    thread = new_thread(client, forum)
    post = reply(client, forum, thread["id"], who="peer")
    assert client.put(_reaction_url(post["id"], "👍"), headers=forum.headers["reader"]).status_code == 200
    assert client.delete(f"/posts/{post['id']}", headers=forum.headers["peer"]).status_code == 200
    for method, who in [("PUT", "reader"), ("DELETE", "reader"), ("PUT", "moderator")]:
        r = client.request(method, _reaction_url(post["id"], "👍"), headers=forum.headers[who])
        assert r.status_code == 409 and r.json()["error"] == "post_deleted", (method, who)
    seen = client.get(f"/posts/{post['id']}", headers=forum.headers["reader"]).json()
    assert seen["reactions"] == {"👍": 1}


# --- 3. author summaries, batched ------------------------------------------------


def card(user: User) -> dict[str, Any]:
    return {"id": user.id, "display_name": user.display_name, "avatar_url": user.avatar_url}


@contextmanager
def counting_queries(connection: Connection) -> Iterator[Callable[[], int]]:
    """Counts SELECTs reading the users table on the test connection while inside the block."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM users" in statement:
            seen.append(statement)

    event.listen(connection, "before_cursor_execute", record)
    try:
        yield lambda: len(seen)
    finally:
        event.remove(connection, "before_cursor_execute", record)


def test_threads_and_posts_carry_their_authors(client: TestClient, forum: Forum, session: Session) -> None:
    u = forum.users
    u["peer"].avatar_url = "https://cdn.example.com/peer.png"
    session.flush()
    mine = new_thread(client, forum, who="peer", title="Peer's")
    theirs = new_thread(client, forum, who="reader", title="Reader's")
    assert mine["author"] == mine["opening_post"]["author"] == card(u["peer"])
    assert mine["author"]["avatar_url"] == "https://cdn.example.com/peer.png"
    answer = reply(client, forum, mine["id"], who="vip")
    assert answer["author"] == card(u["vip"]) and answer["author_id"] == u["vip"].id

    listed = client.get(f"/channels/{forum.channels['general']}/threads", headers=forum.headers["reader"])
    assert [(t["id"], t["author"]) for t in listed.json()["items"]] == [
        (mine["id"], card(u["peer"])),
        (theirs["id"], card(u["reader"])),
    ]
    got = client.get(f"/threads/{mine['id']}", headers=forum.headers["reader"]).json()
    assert got["author"] == got["opening_post"]["author"] == card(u["peer"])
    replies = client.get(f"/threads/{mine['id']}/posts", headers=forum.headers["reader"]).json()["items"]
    assert [p["author"] for p in replies] == [card(u["vip"])]
    assert client.get(f"/posts/{answer['id']}", headers=forum.headers["reader"]).json()["author"] == card(
        u["vip"]
    )
    locked = client.post(f"/threads/{mine['id']}/lock", headers=forum.headers["moderator"]).json()
    assert locked["author"] == card(u["peer"])


def test_author_summaries_cost_one_query_per_list(
    client: TestClient, forum: Forum, connection: Connection
) -> None:
    thread = new_thread(client, forum)
    for who in ("reader", "peer", "vip", "moderator", "owner"):
        new_thread(client, forum, who=who, title=f"by {who}")
        reply(client, forum, thread["id"], who=who, body=f"from {who}")
    headers = forum.headers["reader"]
    threads_url = f"/channels/{forum.channels['general']}/threads"
    replies_url = f"/threads/{thread['id']}/posts"

    counts = {}
    for url, total in ((threads_url, 6), (replies_url, 5)):
        for limit in (1, total):
            with counting_queries(connection) as count:
                r = client.get(url, params={"limit": limit}, headers=headers)
            items = r.json()["items"]
            assert r.status_code == 200 and len(items) == limit
            assert len({i["author"]["id"] for i in items}) == limit  # every row a different author
            counts[url, limit] = count()
    # Authentication reads users too; what matters is that more rows cost no more queries.
    assert counts[threads_url, 1] == counts[threads_url, 6]
    assert counts[replies_url, 1] == counts[replies_url, 5]


# --- 4. DMs: participants' mentions render -------------------------------------


def test_dm_messages_render_participant_mentions_and_carry_authors(
    client: TestClient, session: Session, connection: Connection
) -> None:
    owner = make_user(session, name="Owner")
    community = make_community(session, owner)
    ann = add_member(session, community, make_user(session, name="Ann"))
    bob = add_member(session, community, make_user(session, name="Bob <b>"))
    cat = add_member(session, community, make_user(session, name="Cat"))
    outsider = make_user(session, name="Outsider")
    headers = {"ann": auth(session, ann), "bob": auth(session, bob)}
    r = client.post(
        f"/communities/{community.id}/conversations",
        json={"participant_ids": [bob.id]},
        headers=headers["ann"],
    )
    assert r.status_code == 201, r.text
    conversation_id = r.json()["id"]

    body = f"hi <@{bob.id}>, it's <@{ann.id}>; not <@{cat.id}> <@{outsider.id}> <@987654>"
    r = client.post(f"/conversations/{conversation_id}/messages", json={"body": body}, headers=headers["ann"])
    assert r.status_code == 201, r.text
    message = r.json()
    html = message["body_html"]
    assert f'<span class="mention" data-user-id="{bob.id}">@Bob &lt;b&gt;</span>' in html
    assert f'<span class="mention" data-user-id="{ann.id}">@Ann</span>' in html
    # Not in the conversation: the token stays escaped text, and no name is revealed.
    for other in (cat.id, outsider.id, 987654):
        assert f"&lt;@{other}&gt;" in html
    assert "Cat" not in html and "Outsider" not in html
    assert message["body"] == body and message["author"] == card(ann) and message["sender_id"] == ann.id

    for said in ("two", "three", "four"):
        client.post(f"/conversations/{conversation_id}/messages", json={"body": said}, headers=headers["bob"])
    counts = []
    for limit in (1, 4):
        with counting_queries(connection) as count:
            r = client.get(
                f"/conversations/{conversation_id}/messages", params={"limit": limit}, headers=headers["bob"]
            )
        counts.append(count())
    items = r.json()["items"]
    assert [m["author"] for m in items] == [card(bob), card(bob), card(bob), card(ann)]
    assert items[-1]["body_html"] == html
    assert counts[0] == counts[1]

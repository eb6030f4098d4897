"""Concurrent joins never use an invite more than max_uses times."""

from __future__ import annotations

import threading
import uuid

from sqlalchemy import Engine, func, select

from core.access import Actor
from core.communities import service as communities
from core.communities.schemas import CommunityIn, InviteIn, JoinIn
from core.db import session_scope
from core.errors import Conflict
from core.models import Invite, Membership, MembershipStatus, Visibility
from tests.factories import make_user


def test_last_invite_use_is_taken_once(committed_engine: Engine) -> None:
    tag = uuid.uuid4().hex[:8]
    with session_scope(committed_engine) as s:
        owner = make_user(s)
        community = communities.create_community(
            s, Actor(owner), CommunityIn(slug=f"inv-{tag}", name="Invite race", visibility=Visibility.PRIVATE)
        )
        invite = communities.create_invite(s, Actor(owner), community.id, InviteIn(max_uses=3))
        joiners = [make_user(s) for _ in range(10)]
        code, community_id = invite.code, community.id
        joiner_ids = [u.id for u in joiners]

    barrier = threading.Barrier(len(joiner_ids))
    outcomes: list[str] = []
    lock = threading.Lock()

    def join(user_id: int) -> None:
        barrier.wait()
        try:
            with session_scope(committed_engine) as s:
                from core.models import User

                user = s.get(User, user_id)
                assert user is not None
                communities.join(s, Actor(user), community_id, JoinIn(invite_code=code))
            result = "joined"
        except Conflict as exc:
            result = exc.code
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=join, args=(uid,)) for uid in joiner_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(outcomes) == ["invite_exhausted"] * 7 + ["joined"] * 3
    with session_scope(committed_engine) as s:
        uses = s.scalar(select(Invite.uses).where(Invite.code == code))
        members = s.scalar(
            select(func.count()).where(
                Membership.community_id == community_id, Membership.status == MembershipStatus.ACTIVE
            )
        )
    assert uses == 3 and members == 4


def test_concurrent_rejoins_of_one_person_use_the_invite_once(committed_engine: Engine) -> None:
    tag = uuid.uuid4().hex[:8]
    with session_scope(committed_engine) as s:
        owner, returner = make_user(s), make_user(s)
        community = communities.create_community(
            s, Actor(owner), CommunityIn(slug=f"rej-{tag}", name="Rejoin race", visibility=Visibility.PRIVATE)
        )
        first = communities.create_invite(s, Actor(owner), community.id, InviteIn(max_uses=1))
        communities.join(s, Actor(returner), community.id, JoinIn(invite_code=first.code))
        communities.leave(s, Actor(returner), community.id)
        invite = communities.create_invite(s, Actor(owner), community.id, InviteIn(max_uses=5))
        code, community_id, user_id = invite.code, community.id, returner.id

    barrier = threading.Barrier(4)
    outcomes: list[str] = []
    lock = threading.Lock()

    def rejoin() -> None:
        from core.models import User

        barrier.wait()
        try:
            with session_scope(committed_engine) as s:
                user = s.get(User, user_id)
                assert user is not None
                communities.join(s, Actor(user), community_id, JoinIn(invite_code=code))
            result = "joined"
        except Conflict as exc:
            result = exc.code
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=rejoin) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["already_member"] * 3 + ["joined"]
    with session_scope(committed_engine) as s:
        assert s.scalar(select(Invite.uses).where(Invite.code == code)) == 1

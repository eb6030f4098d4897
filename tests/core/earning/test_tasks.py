"""The Celery task functions themselves, on committed data: a redelivered job does nothing more."""

from __future__ import annotations

from sqlalchemy import Engine, func, select

from core.access import Actor
from core.conversation import service as conversation
from core.db import get_engine, session_scope
from core.earning import service as earning
from core.earning import tasks as earning_tasks
from core.earning.schemas import RuleIn
from core.models import Chip, EarnGrant, EarnTrigger, Notification, Role, User
from core.tipping import service as tipping
from core.tipping import tasks as tipping_tasks
from core.tipping.schemas import TipIn
from tests.core.tipping.helpers import age, balance, channel, community_chip, thread
from tests.factories import add_member, fund, make_community, make_user


def test_tasks_are_idempotent_on_redelivery(committed_engine: Engine) -> None:
    try:
        _run(committed_engine)
    finally:
        get_engine().dispose()  # the tasks' own engine: close its pooled connections


def _run(committed_engine: Engine) -> None:
    with session_scope(committed_engine) as s:
        owner = make_user(s)
        community = make_community(s, owner)
        alice, bob = add_member(s, community), add_member(s, community)
        moderator = add_member(s, community, role=Role.MODERATOR)
        age(s, community, alice)
        chip = community_chip(s, community)
        fund(s, chip, alice, 50)
        earning.create_rule(
            s, Actor(owner), community.id, RuleIn(name="post", trigger=EarnTrigger.POST_CREATED, amount=3)
        )
        room = channel(s, owner, community)
        _, post_id = thread(s, bob, room)
        tip = tipping.tip_member(
            s, Actor(alice), community.id, bob.id, TipIn(chip_id=chip.id, amount=7), "task"
        )
        ids = (community.id, chip.id, bob.id, moderator.id)

    community_id, chip_id, bob_id, moderator_id = ids
    assert tipping_tasks.tip_received(tip.id) == 1
    assert tipping_tasks.tip_received(tip.id) == 0
    assert earning_tasks.grant("post_created", post_id) == 1
    assert earning_tasks.grant("post_created", post_id) == 0
    assert tipping_tasks.detect_rings(community_id) == 0

    with session_scope(committed_engine) as s:
        moderator = s.get(User, moderator_id)
        assert moderator is not None
        conversation.delete_post(s, Actor(moderator), post_id)
    assert earning_tasks.clawback("post", post_id) == 1
    assert earning_tasks.clawback("post", post_id) == 0

    with session_scope(committed_engine) as s:
        notes = s.scalar(
            select(func.count())
            .select_from(Notification)
            .where(Notification.user_id == bob_id, Notification.kind == "tip_received")
        )
        assert notes == 1
        assert s.scalar(select(func.count()).select_from(EarnGrant).where(EarnGrant.user_id == bob_id)) == 1
        chip = s.get(Chip, chip_id)
        bob = s.get(User, bob_id)
        assert chip is not None and bob is not None
        assert balance(s, chip, bob) == 7

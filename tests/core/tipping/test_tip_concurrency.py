"""PostgreSQL: members tipping each other at once neither deadlock nor pay a key twice."""

from __future__ import annotations

import threading

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from core.access import Actor
from core.db import session_scope
from core.errors import DomainError
from core.ledger import service as ledger
from core.models import Chip, MemberReputation, Tip, User
from core.tipping import service as tipping
from core.tipping.schemas import TipIn
from tests.conftest import needs_postgres
from tests.core.tipping.helpers import age, balance, channel, community_chip
from tests.core.tipping.helpers import thread as thread_of
from tests.factories import add_member, fund, make_chip, make_community, make_user

ROUNDS = 15


@needs_postgres()
def test_crossing_tips_and_concurrent_retries(committed_engine: Engine) -> None:
    with session_scope(committed_engine) as s:
        community = make_community(s, make_user(s))
        a, b = add_member(s, community), add_member(s, community)
        chip = community_chip(s, community)
        for user in (a, b):
            age(s, community, user)
            fund(s, chip, user, 1000)
        ids = (community.id, chip.id, a.id, b.id)
    community_id, chip_id, a_id, b_id = ids
    errors: list[BaseException] = []
    results: list[int] = []

    def run(tipper_id: int, recipient_id: int, key: str) -> None:
        try:
            with session_scope(committed_engine) as s:
                tipper = s.get(User, tipper_id)
                assert tipper is not None
                out = tipping.tip_member(
                    s, Actor(tipper), community_id, recipient_id, TipIn(chip_id=chip_id, amount=3), key
                )
                results.append(out.id)
        except DomainError as exc:  # pragma: no cover - reported below
            errors.append(exc)
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = []
    for i in range(ROUNDS):
        threads.append(threading.Thread(target=run, args=(a_id, b_id, f"ab{i}")))
        threads.append(threading.Thread(target=run, args=(b_id, a_id, f"ba{i}")))
    # The same request three times at once: one tip.
    threads += [threading.Thread(target=run, args=(a_id, b_id, "dup")) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(set(results)) == 2 * ROUNDS + 1
    with session_scope(committed_engine) as s:
        chip = s.get(Chip, chip_id)
        a, b = s.get(User, a_id), s.get(User, b_id)
        assert chip is not None and a is not None and b is not None
        assert balance(s, chip, a) == 1000 - 3
        assert balance(s, chip, b) == 1000 + 3
        tips = s.scalar(select(func.count()).select_from(Tip).where(Tip.community_id == community_id))
        assert tips == 2 * ROUNDS + 1
        report = ledger.check_invariants(s, community_id)
        assert report.ok, report.problems


@needs_postgres()
def test_new_member_limit_holds_across_chips_tipped_at_once(committed_engine: Engine) -> None:
    """Two tips in two chips: the second waits for the first, then sees it in the day's total."""
    with session_scope(committed_engine) as s:
        community = make_community(s, make_user(s))
        newbie, friend = add_member(s, community), add_member(s, community)
        first_chip = community_chip(s, community)
        second_chip = make_chip(s, community, friend)
        for chip in (first_chip, second_chip):
            fund(s, chip, newbie, 100)
        limit = tipping.get_policy(s, Actor(newbie), community.id).new_account_daily_limit
        ids = (community.id, first_chip.id, second_chip.id, newbie.id, friend.id)
    community_id, chip_a, chip_b, newbie_id, friend_id = ids
    amount = limit // 2 + 1  # either tip alone fits the limit, both together do not

    first = Session(committed_engine, expire_on_commit=False)
    tipper = first.get(User, newbie_id)
    assert tipper is not None
    tipping.tip_member(
        first, Actor(tipper), community_id, friend_id, TipIn(chip_id=chip_a, amount=amount), "n1"
    )
    outcome: list[str] = []

    def second() -> None:
        try:
            with session_scope(committed_engine) as s:
                user = s.get(User, newbie_id)
                assert user is not None
                tipping.tip_member(
                    s, Actor(user), community_id, friend_id, TipIn(chip_id=chip_b, amount=amount), "n2"
                )
            outcome.append("paid")
        except DomainError as exc:
            outcome.append(exc.code)

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(0.5)
    assert thread.is_alive(), "the second tip must wait for the first to finish"
    first.commit()
    first.close()
    thread.join(30)
    assert outcome == ["new_account_tip_limit"]


@needs_postgres()
def test_first_tips_to_a_member_at_once_all_count_in_one_reputation_row(committed_engine: Engine) -> None:
    """The recipient has no reputation row yet and six established members tip them at the
    same moment, each in their own chip (so no shared wallet lock orders the tips): each tip
    adds its points and its count to the one row (an upsert), none is lost to a concurrent
    insert."""
    tippers = 6
    with session_scope(committed_engine) as s:
        owner = make_user(s)
        community = make_community(s, owner)
        star = add_member(s, community)
        room = channel(s, owner, community)
        fans = [add_member(s, community) for _ in range(tippers)]
        chips: dict[int, int] = {}
        for n, fan in enumerate(fans):
            age(s, community, fan)
            chip = make_chip(s, community, fan, symbol=f"FAN{n}")
            fund(s, chip, fan, 100)
            chips[fan.id] = chip.id
            thread_of(s, fan, room, "an active member")  # their tips carry reputation
        ids = (community.id, star.id, chips)
    community_id, star_id, chips = ids
    barrier = threading.Barrier(tippers)
    points: list[int] = []
    errors: list[BaseException] = []

    def run(fan_id: int) -> None:
        try:
            with session_scope(committed_engine) as s:
                fan = s.get(User, fan_id)
                assert fan is not None
                barrier.wait(10)
                tip = TipIn(chip_id=chips[fan_id], amount=5)
                out = tipping.tip_member(s, Actor(fan), community_id, star_id, tip, f"first-{fan_id}")
                points.append(out.reputation_points)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(fan_id,)) for fan_id in chips]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(points) == tippers and all(p > 0 for p in points)
    with session_scope(committed_engine) as s:
        rows = s.execute(
            select(MemberReputation.points, MemberReputation.tips_received).where(
                MemberReputation.community_id == community_id, MemberReputation.user_id == star_id
            )
        ).all()
        assert [tuple(r) for r in rows] == [(sum(points), tippers)]

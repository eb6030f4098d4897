"""Ring detection off the hot path: tips only wait to be examined; one sweep per tick examines them."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core import jobs
from core.access import Actor
from core.db import session_scope
from core.models import Community, Tip, TipRingReport, User
from core.tipping import service as tipping
from core.tipping import tasks as tipping_tasks
from core.tipping.schemas import TipIn
from core.worker import BEAT_SCHEDULE
from tests.conftest import needs_postgres
from tests.core.tipping.helpers import age, channel, community_chip, thread
from tests.factories import add_member, fund, make_community, make_user


def _members(session: Session, community: Community, n: int) -> list[User]:
    owner = session.get(User, community.created_by)
    assert owner is not None
    room = channel(session, owner, community)
    chip = community_chip(session, community)
    users = []
    for _ in range(n):
        user = add_member(session, community)
        age(session, community, user)
        fund(session, chip, user, 10_000)
        thread(session, user, room)
        users.append(user)
    return users


def _tip(session: Session, community: Community, a: User, b: User, amount: int, times: int = 1) -> list[int]:
    chip = community_chip(session, community)
    return [
        tipping.tip_member(
            session, Actor(a), community.id, b.id, TipIn(chip_id=chip.id, amount=amount), uuid.uuid4().hex
        ).id
        for _ in range(times)
    ]


def _rings(session: Session, community_id: int) -> list[str]:
    return sorted(
        session.scalars(select(TipRingReport.members_key).where(TipRingReport.community_id == community_id))
    )


def _key(*users: User) -> str:
    return ",".join(str(u.id) for u in sorted(users, key=lambda u: u.id))


@pytest.fixture
def detections(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The communities `detect_rings` ran for (it still runs)."""
    ran: list[int] = []
    real: Callable[..., Any] = tipping.detect_rings

    def counted(session: Session, community_id: int) -> list[int]:
        ran.append(community_id)
        return list(real(session, community_id))

    monkeypatch.setattr(tipping, "detect_rings", counted)
    return ran


def test_the_sweep_reports_the_rings_a_direct_run_reports(session: Session) -> None:
    community = make_community(session, make_user(session))
    a, b, c, d, e, f, g = _members(session, community, 7)
    _tip(session, community, a, b, 20, times=3)  # a <-> b
    _tip(session, community, b, a, 20, times=3)
    _tip(session, community, c, d, 15, times=2)  # c -> d -> e -> c
    _tip(session, community, d, e, 15, times=2)
    _tip(session, community, e, c, 15, times=2)
    _tip(session, community, f, g, 50, times=5)  # one way only
    _tip(session, community, g, f, 5)
    assert _rings(session, community.id) == []  # tipping itself detects nothing now

    assert community.id in tipping.sweep_rings(session)
    assert _rings(session, community.id) == sorted([_key(a, b), _key(c, d, e)])
    # What a direct run over the same window finds: the same reports, refreshed, no new ones.
    direct = tipping.detect_rings(session, community.id)
    assert len(direct) == 2 and _rings(session, community.id) == sorted([_key(a, b), _key(c, d, e)])


def test_a_burst_of_tips_enqueues_nothing_and_costs_one_detection(
    session: Session, recorded_jobs: list[jobs.Job], detections: list[int]
) -> None:
    community = make_community(session, make_user(session))
    quiet = make_community(session, make_user(session))
    a, b = _members(session, community, 2)
    sent = lambda: Counter(j.name for j in (*recorded_jobs, *jobs.pending(session)))  # noqa: E731
    before = sent()
    _tip(session, community, a, b, 5, times=25)
    _tip(session, community, b, a, 5, times=25)
    assert sent() - before == Counter({"hearth.tipping.tip_received": 50})  # and no detection job

    # (Other tests' committed communities may be swept too: only ours and the quiet one count.)
    swept = tipping.sweep_rings(session)
    assert community.id in swept and quiet.id not in swept  # the quiet community costs nothing
    assert detections.count(community.id) == 1
    assert _rings(session, community.id) == [_key(a, b)]
    unscanned = session.scalars(select(Tip.id).where(Tip.community_id == community.id, ~Tip.ring_scanned))
    assert list(unscanned) == []
    # Nothing new: the next tick does no detection at all.
    assert tipping.sweep_rings(session) == []
    assert detections.count(community.id) == 1 and quiet.id not in detections
    _tip(session, community, a, b, 5)
    assert tipping.sweep_rings(session) == [community.id] and detections.count(community.id) == 2


def test_the_sweep_runs_every_minute_from_beat() -> None:
    entry = BEAT_SCHEDULE["tipping-sweep-rings"]
    assert entry["task"] == "hearth.tipping.sweep_rings" and entry["schedule"] <= 60
    assert tipping_tasks.sweep_rings.name == entry["task"]


@needs_postgres()
def test_a_tip_that_commits_late_with_a_lower_id_is_not_skipped(committed_engine: Engine) -> None:
    """Ids are allocated before commit: a tip may become visible after a higher id was examined."""
    with session_scope(committed_engine) as s:
        community = make_community(s, make_user(s), slug=f"late-{uuid.uuid4().hex[:8]}")
        a, b, c, d = _members(s, community, 4)
        _tip(s, community, a, b, 10, times=2)
        _tip(s, community, b, a, 10)  # one tip back: not a ring yet
        ids = (community.id, a.id, b.id, c.id, d.id)
    community_id = ids[0]

    def load(s: Session) -> tuple[Community, list[User]]:
        found = s.get(Community, community_id)
        users = [s.get(User, uid) for uid in ids[1:]]
        assert found is not None and all(users)
        return found, users  # type: ignore[return-value]

    late = Session(committed_engine)
    try:
        mine, (la, lb, _, _) = load(late)
        [late_id] = _tip(late, mine, lb, la, 10)  # b -> a again closes the ring; not committed yet
        with session_scope(committed_engine) as s:
            other, (_, _, oc, od) = load(s)
            [early_id] = _tip(s, other, oc, od, 10)
        assert late_id < early_id
        with session_scope(committed_engine) as s:
            # The sweep examines everything committed, including the higher id; not the late tip.
            assert community_id in tipping.sweep_rings(lambda: session_scope(committed_engine))
            assert _rings(s, community_id) == []
        late.commit()
    finally:
        late.close()
    assert community_id in tipping.sweep_rings(lambda: session_scope(committed_engine))
    with session_scope(committed_engine) as s:
        assert _rings(s, community_id) == [",".join(str(u) for u in sorted(ids[1:3]))]

"""Ring detection off the hot path: tips only wait to be examined; one sweep per tick examines them."""

from __future__ import annotations

import threading
import time
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
from core.models import Community, RingStatus, Tip, TipRingReport, User
from core.tipping import repository as repo
from core.tipping import service as tipping
from core.tipping import tasks as tipping_tasks
from core.tipping.schemas import RingReportPatch, TipIn
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


def test_every_tip_of_the_window_counts_however_many_the_tick_claims(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Detection used to read only the newest RING_SCAN_LIMIT tips of the window while the sweep
    marked every tip scanned: a ring behind a burst was never examined. The edges are summed in
    the database now; the old cap, made small, must change nothing (and need not exist)."""
    monkeypatch.setattr(tipping, "RING_SCAN_LIMIT", 10, raising=False)
    community = make_community(session, make_user(session))
    a, b, c, d = _members(session, community, 4)
    ring = _tip(session, community, a, b, 20, times=3) + _tip(session, community, b, a, 20, times=3)
    _tip(session, community, c, d, 1, times=10)  # then a burst of unrelated tips, in the same tick
    assert community.id in tipping.sweep_rings(session)
    assert _rings(session, community.id) == [_key(a, b)]
    [report] = session.scalars(select(TipRingReport).where(TipRingReport.community_id == community.id))
    evidence = sorted(tid for edge in report.evidence["edges"] for tid in edge["tip_ids"])
    assert evidence == sorted(ring)
    assert [(e["tips"], e["volume"]) for e in report.evidence["edges"]] == [(3, 60), (3, 60)]


def test_one_community_failing_does_not_stop_the_sweep_for_the_others(
    session: Session, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    broken, fine = (make_community(session, make_user(session)) for _ in range(2))
    a, b = _members(session, broken, 2)
    c, d = _members(session, fine, 2)
    for community, (x, y) in ((broken, (a, b)), (fine, (c, d))):
        _tip(session, community, x, y, 20, times=2)
        _tip(session, community, y, x, 20, times=2)
    real = tipping.detect_rings

    def failing(s: Session, community_id: int) -> list[int]:
        found = real(s, community_id)  # writes its report, then fails: all of it rolls back
        if community_id == broken.id:
            raise RuntimeError("detection failed")
        return found

    monkeypatch.setattr(tipping, "detect_rings", failing)
    with caplog.at_level("ERROR", logger="core.tipping.service"):
        swept = tipping.sweep_rings(session)
    assert fine.id in swept and broken.id not in swept
    assert any(str(broken.id) in r.getMessage() for r in caplog.records)
    assert _rings(session, fine.id) == [_key(c, d)] and _rings(session, broken.id) == []
    unscanned = select(Tip.id).where(Tip.community_id == broken.id, ~Tip.ring_scanned)
    assert len(session.scalars(unscanned).all()) == 4  # claimed by the next sweep
    monkeypatch.setattr(tipping, "detect_rings", real)
    assert broken.id in tipping.sweep_rings(session)
    assert _rings(session, broken.id) == [_key(a, b)]


@needs_postgres()
def test_the_sweep_and_a_moderator_resolving_a_report_take_locks_in_one_order(
    committed_engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A moderator confirming locks the report, then its evidence tips; the sweep used to lock
    the unscanned tips (its claim), then the report (refreshing the evidence): a deadlock."""
    with session_scope(committed_engine) as s:
        owner = make_user(s)
        community = make_community(s, owner, slug=f"dl-{uuid.uuid4().hex[:8]}")
        a, b = _members(s, community, 2)
        _tip(s, community, a, b, 20, times=3)
        _tip(s, community, b, a, 20, times=3)
        # A direct run (the hearth.tipping.detect_rings task) claims nothing: the report's
        # evidence tips are still unscanned when the sweep comes.
        [report_id] = tipping.detect_rings(s, community.id)
        _tip(s, community, a, b, 20)  # the sweep will refresh the report's evidence
        community_id, owner_id = community.id, owner.id
    claimed = threading.Event()
    real_claim = repo.claim_unscanned_tips

    def slow_claim(s: Session, cid: int) -> int:
        n = real_claim(s, cid)
        if cid == community_id:
            claimed.set()
            time.sleep(1.0)  # the moderator comes meanwhile
        return n

    monkeypatch.setattr(repo, "claim_unscanned_tips", slow_claim)
    errors: dict[str, BaseException] = {}
    swept: list[int] = []

    def sweep() -> None:
        try:
            swept.extend(tipping.sweep_rings(lambda: session_scope(committed_engine)))
        except BaseException as exc:  # surfaced below
            errors["sweep"] = exc

    def confirm() -> None:
        claimed.wait(30)
        try:
            with session_scope(committed_engine) as s:
                moderator = s.get(User, owner_id)
                assert moderator is not None
                tipping.update_report(s, Actor(moderator), report_id, RingReportPatch(status="confirmed"))
        except BaseException as exc:  # surfaced below
            errors["moderator"] = exc

    with caplog.at_level("ERROR", logger="core.tipping.service"):  # a failed community is logged
        threads = [threading.Thread(target=sweep), threading.Thread(target=confirm)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert errors == {} and [r.getMessage() for r in caplog.records] == []
    assert community_id in swept
    with session_scope(committed_engine) as s:
        report = s.get(TipRingReport, report_id)
        assert report is not None and report.status == RingStatus.CONFIRMED
        tips = s.scalars(select(Tip).where(Tip.community_id == community_id)).all()
        assert all(t.ring_scanned for t in tips)
        # The evidence the sweep refreshed (all 7 tips), and the 6 it named when confirmed.
        evidence = {tid for edge in report.evidence["edges"] for tid in edge["tip_ids"]}
        assert {t.id for t in tips if t.discounted} <= evidence

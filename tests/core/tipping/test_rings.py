"""Ring detection: reciprocal cycles are reported to moderators, innocent patterns are not."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.access import Actor
from core.errors import DomainError
from core.models import Community, MemberReputation, RingStatus, Role, TipRingReport, User
from core.tipping import service as tipping
from core.tipping.schemas import RingReportPatch, TipIn
from tests.core.tipping.helpers import age, channel, community_chip, thread
from tests.factories import add_member, fund, make_community, make_user

_keys = itertools.count(1)


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


def _tip(session: Session, community: Community, a: User, b: User, amount: int, times: int = 1) -> None:
    chip = community_chip(session, community)
    for _ in range(times):
        tipping.tip_member(
            session, Actor(a), community.id, b.id, TipIn(chip_id=chip.id, amount=amount), f"t{next(_keys)}"
        )


def test_finds_a_two_cycle_and_a_three_cycle_but_not_innocent_patterns(session: Session) -> None:
    owner = make_user(session)
    community = make_community(session, owner)
    a, b, c, d, e, f, g = _members(session, community, 7)
    _tip(session, community, a, b, 20, times=3)  # a <-> b: a 2-cycle
    _tip(session, community, b, a, 20, times=3)
    _tip(session, community, c, d, 15, times=2)  # c -> d -> e -> c: a 3-cycle
    _tip(session, community, d, e, 15, times=2)
    _tip(session, community, e, c, 15, times=2)
    _tip(session, community, f, g, 50, times=5)  # a fan of a creator: one way only
    _tip(session, community, g, f, 5)  # one thank-you back: not repeated
    _tip(session, community, a, f, 30, times=3)  # chains that never close
    _tip(session, community, f, c, 30, times=3)

    found = tipping.detect_rings(session, community.id)
    reports = session.scalars(select(TipRingReport).where(TipRingReport.id.in_(found))).all()
    assert sorted(r.members_key for r in reports) == sorted(
        [",".join(str(u) for u in sorted([a.id, b.id])), ",".join(str(u) for u in sorted([c.id, d.id, e.id]))]
    )
    two = next(r for r in reports if len(r.members) == 2)
    assert two.status == RingStatus.OPEN and two.score == 120
    assert {edge["tips"] for edge in two.evidence["edges"]} == {3}
    # Running again (the job after every tip) keeps one open report per ring.
    assert sorted(tipping.detect_rings(session, community.id)) == sorted(found)
    assert (
        session.scalar(select(TipRingReport.id).where(TipRingReport.community_id == community.id).offset(2))
        is None
    )


def test_moderators_confirm_a_ring_and_its_reputation_is_discounted(session: Session) -> None:
    owner = make_user(session)
    community = make_community(session, owner)
    a, b = _members(session, community, 2)
    moderator = add_member(session, community, role=Role.MODERATOR)
    _tip(session, community, a, b, 10, times=2)
    _tip(session, community, b, a, 10, times=2)
    [report_id] = tipping.detect_rings(session, community.id)
    rep = session.scalar(select(MemberReputation.points).where(MemberReputation.user_id == b.id))
    assert rep == 10 + 5

    listed = tipping.list_reports(
        session, Actor(moderator), community.id, status=RingStatus.OPEN, cursor=None, limit=10
    )
    assert [r.id for r in listed.items] == [report_id]
    with pytest.raises(DomainError) as exc:
        tipping.list_reports(session, Actor(a), community.id, status=None, cursor=None, limit=10)
    assert exc.value.code == "insufficient_role"
    with pytest.raises(DomainError) as exc:
        tipping.update_report(session, Actor(a), report_id, RingReportPatch(status="dismissed"))
    assert exc.value.code == "insufficient_role"

    out = tipping.update_report(session, Actor(moderator), report_id, RingReportPatch(status="confirmed"))
    assert out.status == RingStatus.CONFIRMED and out.resolved_by == moderator.id
    for user in (a, b):
        assert tipping.get_reputation(session, Actor(user), community.id, user.id).points == 0
    # Within a confirmed ring, further tips give nothing.
    chip = community_chip(session, community)
    later = tipping.tip_member(
        session, Actor(a), community.id, b.id, TipIn(chip_id=chip.id, amount=10), "after"
    )
    assert later.reputation_points == 0
    with pytest.raises(DomainError) as exc:
        tipping.update_report(session, Actor(moderator), report_id, RingReportPatch(status="dismissed"))
    assert exc.value.code == "report_already_resolved"

"""A reversed tip leaves the recipient's reputation once, whatever a ring confirmation did before or after."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.access import Actor
from core.chips import service as chips
from core.chips.schemas import ReasonIn
from core.errors import Conflict
from core.models import Community, MemberReputation, Role, Tip, User
from core.tipping import repository as tipping_repo
from core.tipping import service as tipping
from core.tipping.schemas import RingReportPatch, TipIn
from tests.core.tipping.helpers import age, channel, community_chip, thread
from tests.factories import add_member, fund, make_community, make_user


def _reputation(session: Session, community: Community, user: User) -> tuple[int, int]:
    row = session.scalar(
        select(MemberReputation)
        .where(MemberReputation.community_id == community.id, MemberReputation.user_id == user.id)
        .execution_options(populate_existing=True)
    )
    return (row.points, row.tips_received) if row else (0, 0)


def _pair(session: Session) -> tuple[Community, User, User, User]:
    owner = make_user(session)
    community = make_community(session, owner)
    room = channel(session, owner, community)
    chip = community_chip(session, community)
    a, b = add_member(session, community), add_member(session, community)
    for user in (a, b):
        age(session, community, user)
        fund(session, chip, user, 1_000)
        thread(session, user, room)
    return community, a, b, add_member(session, community, role=Role.MODERATOR)


def _tip(session: Session, community: Community, tipper: User, recipient: User, key: str) -> Tip:
    chip = community_chip(session, community)
    out = tipping.tip_member(
        session, Actor(tipper), community.id, recipient.id, TipIn(chip_id=chip.id, amount=10), key
    )
    tip = session.get(Tip, out.id)
    assert tip is not None
    return tip


def _ring(session: Session, community: Community, a: User, b: User, moderator: User) -> None:
    (report_id,) = tipping.detect_rings(session, community.id)
    tipping.update_report(session, Actor(moderator), report_id, RingReportPatch(status="confirmed"))


def test_reversing_a_tip_of_a_confirmed_ring_takes_back_its_count_only(session: Session) -> None:
    community, a, b, moderator = _pair(session)
    first = _tip(session, community, a, b, "t1")
    _tip(session, community, a, b, "t2")
    _tip(session, community, b, a, "t3"), _tip(session, community, b, a, "t4")
    assert _reputation(session, community, b) == (15, 2)
    _ring(session, community, a, b, moderator)
    assert _reputation(session, community, b) == (0, 2)  # the ring took the points, not the count

    chips.reverse(session, Actor(moderator), first.transaction_id, ReasonIn(reason="ring"), "rv-1")
    assert _reputation(session, community, b) == (0, 1)
    assert not tipping.withdraw_reversed_tip(session, 10**12)  # not a tip's transaction: nothing
    assert _reputation(session, community, b) == (0, 1)


def test_a_ring_confirmed_after_a_reversal_does_not_take_the_reversed_tips_points_twice(
    session: Session,
) -> None:
    community, a, b, moderator = _pair(session)
    first = _tip(session, community, a, b, "t1")
    _tip(session, community, a, b, "t2")
    _tip(session, community, b, a, "t3"), _tip(session, community, b, a, "t4")
    assert _reputation(session, community, b) == (15, 2)

    chips.reverse(session, Actor(moderator), first.transaction_id, ReasonIn(reason="fraud"), "rv-1")
    session.refresh(first)
    assert first.discounted and _reputation(session, community, b) == (5, 1)
    _ring(session, community, a, b, moderator)
    assert _reputation(session, community, b) == (0, 1)  # only the kept tip's 5 went


def test_a_reversed_tip_no_longer_counts_toward_the_tippers_limits(session: Session) -> None:
    """Its chips went back: the pair's halving, the daily points cap and the new-member allowance
    count only the tips that stand."""
    community, a, b, moderator = _pair(session)
    first = _tip(session, community, a, b, "t1")
    assert first.reputation_points == 10
    chips.reverse(session, Actor(moderator), first.transaction_id, ReasonIn(reason="mistake"), "rv-1")
    assert _reputation(session, community, b) == (0, 0)
    # Counted as an earlier tip of the pair, the next one would earn half (5).
    again = _tip(session, community, a, b, "t2")
    assert again.reputation_points == 10 and _reputation(session, community, b) == (10, 1)
    # The daily cap counts the standing tip only, not the reversed one too.
    policy = tipping_repo.policy(session, community.id)
    policy.reputation_daily_cap = 20
    session.add(policy)
    session.flush()
    c = add_member(session, community)
    third = _tip(session, community, a, c, "t3")
    assert third.reputation_points == 10  # 20 - 10 given: a reversed tip's 10 are not "given"
    d = add_member(session, community)
    assert _tip(session, community, a, d, "t4").reputation_points == 0  # 10 + 10 standing: the cap holds


def test_a_reversed_tip_gives_a_new_member_their_allowance_back(session: Session) -> None:
    community, a, b, moderator = _pair(session)
    newcomer = add_member(session, community)  # joined now: within `new_account_days`
    fund(session, community_chip(session, community), newcomer, 1_000)
    policy = tipping_repo.policy(session, community.id)
    policy.new_account_daily_limit = 10
    session.add(policy)
    session.flush()
    first = _tip(session, community, newcomer, b, "n1")
    with pytest.raises(Conflict) as refused:
        _tip(session, community, newcomer, a, "n2")
    assert refused.value.code == "new_account_tip_limit"
    chips.reverse(session, Actor(moderator), first.transaction_id, ReasonIn(reason="mistake"), "rv-n")
    assert _tip(session, community, newcomer, a, "n3").amount == 10

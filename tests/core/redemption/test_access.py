"""Access offers grant what they sell: course seats and tier trials, and a reversal takes them back."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.access import Actor, community_context
from core.chips import service as chips
from core.chips.schemas import ReasonIn
from core.clock import utcnow
from core.communities import service as communities
from core.conversation import service as conversation
from core.conversation.schemas import ChannelIn
from core.courses import service as courses
from core.courses.schemas import CourseIn, LessonIn
from core.errors import Conflict, InvalidInput, PermissionDenied
from core.models import (
    AccessGrant,
    Enrollment,
    Membership,
    Notification,
    OrderStatus,
    RedemptionOffer,
    RedemptionOrder,
    Role,
    User,
)
from core.redemption import service as redemption
from core.redemption.schemas import OfferIn, OfferOut, OfferPatch, RedeemIn
from tests.core.redemption.conftest import Market, assert_invariants
from tests.factories import add_member, fund, issue_chip, make_community


def _course(session: Session, market: Market, min_tier: str | None = "vip", *, publish: bool = True) -> int:
    owner = Actor(market.owner)
    course = courses.create_course(
        session, owner, market.community.id, CourseIn(title="Knots", min_tier=min_tier)
    )
    lesson = courses.add_lesson(session, owner, course.id, LessonIn(title="Bowline", body="Out of the hole"))
    if publish:
        courses.publish_course(session, owner, course.id)
    assert lesson.id
    return course.id


def _membership(session: Session, market: Market, user: User) -> Membership:
    found = session.scalar(
        select(Membership)
        .where(Membership.community_id == market.community.id, Membership.user_id == user.id)
        .execution_options(populate_existing=True)
    )
    assert found is not None
    return found


def _moderator(session: Session, market: Market) -> User:
    membership = session.scalar(
        select(Membership).where(
            Membership.community_id == market.community.id, Membership.role == Role.MODERATOR
        )
    )
    assert membership is not None
    user = session.get(User, membership.user_id)
    assert user is not None
    return user


def _seat_offer(session: Session, market: Market, course_id: int) -> OfferOut:
    return market.offer(session, market.gold, kind="course_seat", access_ref=str(course_id), price=10)


def _trial_offer(session: Session, market: Market, tier: str = "vip", days: int = 7) -> OfferOut:
    return market.offer(session, market.gold, kind="vip_trial", access_ref=tier, trial_days=days, price=10)


def _redeem(session: Session, member: User, offer_id: int, key: str) -> int:
    order, _ = redemption.redeem(session, Actor(member), offer_id, RedeemIn(), key)
    return order.id


def _buy(session: Session, market: Market, member: User, offer_id: int, key: str) -> int:
    order_id = _redeem(session, member, offer_id, key)
    done = redemption.fulfil_order(session, Actor(market.owner), order_id)
    assert done.status == OrderStatus.FULFILLED
    return order_id


def _reverse(session: Session, market: Market, order_id: int, key: str) -> None:
    order = session.get(RedemptionOrder, order_id)
    assert order is not None and order.transaction_id is not None
    chips.reverse(
        session, Actor(_moderator(session, market)), order.transaction_id, ReasonIn(reason="chargeback"), key
    )


def _tier_rank(session: Session, market: Market, user: User) -> int:
    return community_context(session, Actor(user), market.community.id).tier_rank


# --- offers --------------------------------------------------------------------------------


def test_access_offers_are_validated_when_listed_and_edited(session: Session, market: Market) -> None:
    course_id = _course(session, market)
    other = make_community(session)
    other_owner = session.get(User, other.created_by)
    assert other_owner is not None
    foreign = courses.create_course(session, Actor(other_owner), other.id, CourseIn(title="Elsewhere"))
    cases: list[tuple[dict[str, object], str]] = [
        ({"kind": "course_seat"}, "access_ref_required"),
        ({"kind": "course_seat", "access_ref": "knots"}, "unknown_course"),
        ({"kind": "course_seat", "access_ref": str(foreign.id)}, "unknown_course"),
        ({"kind": "vip_trial", "access_ref": "vip"}, "trial_days_required"),
        ({"kind": "vip_trial", "access_ref": "platinum", "trial_days": 7}, "unknown_tier"),
        ({"kind": "goods", "trial_days": 7}, "trial_days_not_applicable"),
    ]
    for fields, code in cases:
        with pytest.raises(InvalidInput) as exc:
            market.offer(session, market.gold, **fields)
        assert exc.value.code == code, fields
    # A member's personal chip cannot hand out the community's tiers or courses.
    with pytest.raises(PermissionDenied) as denied:
        market.offer(session, kind="vip_trial", access_ref="vip", trial_days=7)
    assert denied.value.code == "access_offer_not_allowed"
    seat = _seat_offer(session, market, course_id)
    assert seat.access_ref == str(course_id) and seat.trial_days is None
    with pytest.raises(InvalidInput) as bad:
        redemption.update_offer(session, Actor(market.owner), seat.id, OfferPatch(access_ref="999999"))
    assert bad.value.code == "unknown_course"
    trial = _trial_offer(session, market)
    assert (
        redemption.update_offer(session, Actor(market.owner), trial.id, OfferPatch(trial_days=30)).trial_days
        == 30
    )
    with pytest.raises(InvalidInput) as cleared:
        redemption.update_offer(session, Actor(market.owner), trial.id, OfferPatch(trial_days=None))
    assert cleared.value.code == "trial_days_required"


# --- course seats ----------------------------------------------------------------------------


def test_a_course_seat_enrols_whatever_the_tier(session: Session, market: Market) -> None:
    member = market.members[0]  # free tier
    course_id = _course(session, market, "vip")
    with pytest.raises(PermissionDenied) as gated:
        courses.enrol(session, Actor(member), course_id)
    assert gated.value.code == "tier_required"
    assert courses.get_course(session, Actor(member), course_id).locked

    offer = _seat_offer(session, market, course_id)
    order_id = _redeem(session, member, offer.id, "seat-1")
    # Pending: nothing is unlocked until the issuer fulfils.
    assert courses.get_course(session, Actor(member), course_id).locked
    done = redemption.fulfil_order(session, Actor(market.owner), order_id)
    assert (
        done.access is not None and done.access.kind == "course_seat" and done.access.course_id == course_id
    )

    detail = courses.get_course(session, Actor(member), course_id)
    assert not detail.locked and detail.enrolled and detail.lessons[0].body == "Out of the hole"
    lesson_id = detail.lessons[0].id
    assert courses.get_lesson(session, Actor(member), course_id, lesson_id).body
    progress = courses.complete_lesson(session, Actor(member), course_id, lesson_id)
    assert progress.completed_lessons == 1
    # The seat outlasts leaving the course: coming back needs no tier either.
    courses.unenrol(session, Actor(member), course_id)
    courses.enrol(session, Actor(member), course_id)
    assert courses.get_course(session, Actor(member), course_id).enrolled
    # One live seat per course: a second one is refused before any chip is held.
    with pytest.raises(Conflict) as again:
        _redeem(session, member, offer.id, "seat-2")
    assert again.value.code == "seat_already_held"
    assert market.wallet(session, member, market.gold) == (90, 0)
    assert_invariants(session, market.community.id)


def test_a_seat_for_a_member_already_enrolled_changes_nothing_but_still_fulfils(
    session: Session, market: Market
) -> None:
    member = add_member(session, market.community, tier="vip")

    fund(session, market.gold, member, 50)
    course_id = _course(session, market, "vip")
    enrolled = courses.enrol(session, Actor(member), course_id)
    _buy(session, market, member, _seat_offer(session, market, course_id).id, "seat-vip")
    rows = session.scalars(select(Enrollment).where(Enrollment.course_id == course_id)).all()
    assert [(r.user_id, r.enrolled_at, r.unenrolled_at) for r in rows] == [
        (member.id, enrolled.enrolled_at, None)
    ]


def test_seat_refusals_at_redeem_and_at_fulfil(session: Session, market: Market) -> None:
    member = market.members[1]
    draft = _course(session, market, publish=False)
    with pytest.raises(Conflict) as unpublished:
        _redeem(session, member, _seat_offer(session, market, draft).id, "draft")
    assert unpublished.value.code == "course_not_published"
    course_id = _course(session, market)
    offer = _seat_offer(session, market, course_id)
    with pytest.raises(InvalidInput) as many:
        redemption.redeem(session, Actor(member), offer.id, RedeemIn(quantity=2), "two")
    assert many.value.code == "access_quantity"
    # Two orders placed before either is fulfilled: the second cannot be, and stays pending.
    first, second = _redeem(session, member, offer.id, "a"), _redeem(session, member, offer.id, "b")
    redemption.fulfil_order(session, Actor(market.owner), first)
    with pytest.raises(Conflict) as twice:
        redemption.fulfil_order(session, Actor(market.owner), second)
    assert twice.value.code == "seat_already_held"
    assert redemption.get_order(session, Actor(member), second).status == OrderStatus.PENDING
    redemption.cancel_order(session, Actor(member), second)
    assert market.wallet(session, member, market.gold) == (90, 0)
    assert_invariants(session, market.community.id)


# --- tier trials ----------------------------------------------------------------------------------


def test_a_vip_trial_opens_every_tier_gate_until_it_ends(session: Session, market: Market) -> None:
    member = market.members[0]
    owner = Actor(market.owner)
    channel = conversation.create_channel(
        session, owner, market.community.id, ChannelIn(slug="vip-lounge", name="VIP lounge", min_tier="vip")
    )
    course_id = _course(session, market, "vip")
    visible = lambda: {  # noqa: E731
        c.id
        for c in conversation.list_channels(
            session, Actor(member), market.community.id, include_archived=False
        )
    }
    assert channel.id not in visible()

    before = _membership(session, market, member)
    order_id = _buy(session, market, member, _trial_offer(session, market, days=7).id, "trial")
    membership = _membership(session, market, member)
    assert membership.tier_id == before.tier_id  # the tier they pay for is untouched
    assert membership.trial_ends_at is not None
    assert abs(membership.trial_ends_at - (utcnow() + timedelta(days=7))) < timedelta(minutes=1)
    assert _tier_rank(session, market, member) == 2
    assert channel.id in visible()
    assert not courses.get_course(session, Actor(member), course_id).locked
    courses.enrol(session, Actor(member), course_id)
    [view] = communities.membership_views(session, Actor(member), [membership])
    assert (view.tier, view.trial_tier, view.trial_ends_at) == ("free", "vip", membership.trial_ends_at)
    order = redemption.get_order(session, Actor(market.owner), order_id)
    assert order.access is not None and order.access.tier == "vip"
    assert order.access.ends_at == membership.trial_ends_at

    # Time passes: the trial is over, and the member is back on their own tier.
    membership.trial_ends_at = utcnow() - timedelta(seconds=1)
    session.flush()
    assert _tier_rank(session, market, member) == 0
    assert channel.id not in visible()
    assert courses.get_course(session, Actor(member), course_id).locked
    [after] = communities.membership_views(session, Actor(member), [_membership(session, market, member)])
    assert (after.tier, after.trial_tier, after.trial_ends_at) == ("free", None, None)


def test_a_second_trial_of_the_same_tier_extends_and_another_tier_is_refused(
    session: Session, market: Market
) -> None:
    member = market.members[0]
    vip = _trial_offer(session, market, "vip", days=7)
    _buy(session, market, member, vip.id, "t1")
    first_end = _membership(session, market, member).trial_ends_at
    assert first_end is not None
    _buy(session, market, member, vip.id, "t2")
    assert _membership(session, market, member).trial_ends_at == first_end + timedelta(days=7)
    with pytest.raises(Conflict) as other:
        _redeem(session, member, _trial_offer(session, market, "member", days=3).id, "t3")
    assert other.value.code == "trial_running"
    # A tier the member holds already is not sold as a trial.
    vip_member = add_member(session, market.community, tier="vip")

    fund(session, market.gold, vip_member, 50)
    with pytest.raises(Conflict) as held:
        _redeem(session, vip_member, vip.id, "t4")
    assert held.value.code == "tier_already_held"


def test_cancelled_and_expired_orders_grant_nothing(session: Session, market: Market) -> None:
    member = market.members[2]
    trial = _trial_offer(session, market)
    cancelled = _redeem(session, member, trial.id, "c")
    redemption.cancel_order(session, Actor(member), cancelled)
    seat = _seat_offer(session, market, _course(session, market))
    expiring = _redeem(session, member, seat.id, "e")
    order = session.get(RedemptionOrder, expiring)
    assert order is not None
    assert redemption.expire_order(session, expiring, utcnow()) is False  # no hold expiry: not due
    redemption.cancel_order(session, Actor(market.owner), expiring)
    # This member's grants in this community (other tests' committed rows are not ours to count).
    granted = select(AccessGrant).where(
        AccessGrant.community_id == market.community.id, AccessGrant.user_id == member.id
    )
    assert session.scalars(granted).all() == []
    assert _membership(session, market, member).trial_tier_id is None
    assert _tier_rank(session, market, member) == 0


# --- reversal ------------------------------------------------------------------------------------------


def test_reversing_a_trial_takes_back_the_days_it_added(session: Session, market: Market) -> None:
    member = market.members[0]
    vip = _trial_offer(session, market, "vip", days=7)
    first = _buy(session, market, member, vip.id, "r1")
    second = _buy(session, market, member, vip.id, "r2")
    end = _membership(session, market, member).trial_ends_at
    assert end is not None
    _reverse(session, market, second, "rev-2")
    assert _membership(session, market, member).trial_ends_at == end - timedelta(days=7)
    assert market.wallet(session, member, market.gold) == (90, 0)  # the second order's chips are back
    # The first trial's unused days go too: the member is back on their own tier now.
    _reverse(session, market, first, "rev-1")
    membership = _membership(session, market, member)
    assert membership.trial_ends_at is not None and membership.trial_ends_at <= utcnow()
    assert _tier_rank(session, market, member) == 0
    revoked = session.scalars(select(AccessGrant).where(AccessGrant.user_id == member.id)).all()
    assert all(g.revoked_at is not None for g in revoked) and len(revoked) == 2
    assert redemption.get_order(session, Actor(member), first).access.revoked_at is not None  # type: ignore[union-attr]
    assert_invariants(session, market.community.id)


def test_withdrawing_an_earlier_trial_moves_the_later_one_forward(session: Session, market: Market) -> None:
    member = market.members[1]
    vip = _trial_offer(session, market, "vip", days=7)
    first = _buy(session, market, member, vip.id, "w1")
    _buy(session, market, member, vip.id, "w2")
    end = _membership(session, market, member).trial_ends_at
    assert end is not None
    _reverse(session, market, first, "rev-w1")
    # The first week is taken out less the moment of it already used.
    new_end = _membership(session, market, member).trial_ends_at
    assert new_end is not None and timedelta(0) <= new_end - (end - timedelta(days=7)) < timedelta(minutes=1)
    later = session.scalars(
        select(AccessGrant).where(AccessGrant.user_id == member.id, AccessGrant.revoked_at.is_(None))
    ).one()
    assert later.ends_at == new_end


def test_reversing_a_seat_unenrols_unless_the_tier_admits(session: Session, market: Market) -> None:
    member = market.members[0]
    course_id = _course(session, market, "vip")
    order_id = _buy(session, market, member, _seat_offer(session, market, course_id).id, "s1")
    assert courses.get_course(session, Actor(member), course_id).enrolled
    _reverse(session, market, order_id, "rev-s1")
    detail = courses.get_course(session, Actor(member), course_id)
    assert detail.locked and not detail.enrolled
    with pytest.raises(PermissionDenied):
        courses.enrol(session, Actor(member), course_id)
    # A reversal is not repeated, and withdrawing twice changes nothing.
    with pytest.raises(Conflict):
        _reverse(session, market, order_id, "rev-s1-again")

    open_course = _course(session, market, None)
    other = market.members[1]
    seat = _buy(session, market, other, _seat_offer(session, market, open_course).id, "s2")
    _reverse(session, market, seat, "rev-s2")
    assert courses.get_course(session, Actor(other), open_course).enrolled  # the tier admits them anyway
    assert_invariants(session, market.community.id)


def test_the_issuer_sees_whom_to_call(session: Session, market: Market) -> None:
    member = market.members[2]
    call = market.offer(session, kind="call", title="1:1 call", price=20)
    order, _ = redemption.redeem(session, Actor(member), call.id, RedeemIn(note="evenings"), "call")
    [seen] = redemption.issuer_orders(
        session, Actor(market.creator), market.community.id, status=None, cursor=None, limit=10
    ).items
    assert (seen.member_id, seen.member_name, seen.note) == (member.id, member.display_name, "evenings")
    assert redemption.fulfil_order(session, Actor(market.creator), order.id).access is None


# --- instant access -------------------------------------------------------------------------------


def test_an_instant_offer_grants_in_the_redemption_itself(session: Session, market: Market) -> None:
    member = market.members[0]
    course_id = _course(session, market, "vip")
    offer = market.offer(
        session, market.gold, kind="course_seat", access_ref=str(course_id), price=10, instant=True
    )
    assert offer.instant
    order, created = redemption.redeem(session, Actor(member), offer.id, RedeemIn(), "instant")
    assert created and order.status == OrderStatus.FULFILLED and order.resolved_by is None
    assert order.resolved_at == order.created_at  # placed and resolved in one moment, never "before"
    assert order.access is not None and order.access.course_id == course_id
    assert market.wallet(session, member, market.gold) == (90, 0)
    assert courses.get_course(session, Actor(member), course_id).enrolled
    # A retry answers with the same order, fulfilled once.
    again, created_again = redemption.redeem(session, Actor(member), offer.id, RedeemIn(), "instant")
    assert (again.id, created_again, again.status) == (order.id, False, OrderStatus.FULFILLED)
    # A refusal changes nothing: no hold, no stock taken, no order.
    with pytest.raises(Conflict) as held:
        redemption.redeem(session, Actor(member), offer.id, RedeemIn(), "instant-2")
    assert held.value.code == "seat_already_held"
    assert market.wallet(session, member, market.gold) == (90, 0)
    # The issuer hears of it (there is nothing for them to do).
    notified = redemption.notify_order(session, order.id, "fulfilled")
    assert notified == 1
    note = session.scalars(
        select(Notification).where(
            Notification.subject_type == "redemption_order", Notification.subject_id == order.id
        )
    ).one()
    assert (note.user_id, note.kind, note.actor_id) == (offer.created_by, "redemption_fulfilled", member.id)
    assert_invariants(session, market.community.id)


def test_an_instant_trial_refused_when_another_runs_holds_nothing(session: Session, market: Market) -> None:
    member = market.members[1]
    _buy(session, market, member, _trial_offer(session, market, "member", days=3).id, "m")
    instant = market.offer(
        session, market.gold, kind="vip_trial", access_ref="vip", trial_days=7, price=10, instant=True
    )
    with pytest.raises(Conflict) as running:
        redemption.redeem(session, Actor(member), instant.id, RedeemIn(), "vip-now")
    assert running.value.code == "trial_running"
    assert market.wallet(session, member, market.gold) == (90, 0)


def test_instant_is_for_access_offers_and_sellers_must_still_be_admins(
    session: Session, market: Market
) -> None:
    with pytest.raises(InvalidInput) as goods:
        market.offer(session, kind="goods", instant=True)
    assert goods.value.code == "instant_not_applicable"
    admin = add_member(session, market.community, role=Role.ADMIN)
    chip = issue_chip(session, market.community, admin, symbol="ADM")
    fund(session, chip, market.members[2], 40)
    course_id = _course(session, market)
    offer = redemption.create_offer(
        session,
        Actor(admin),
        market.community.id,
        OfferIn(chip_id=chip.id, title="Seat", kind="course_seat", access_ref=str(course_id), price=5),
    )
    _membership(session, market, admin).role = Role.MEMBER  # demoted since
    session.flush()
    with pytest.raises(Conflict) as gone:
        redemption.redeem(session, Actor(market.members[2]), offer.id, RedeemIn(), "from-ex-admin")
    assert gone.value.code == "offer_inactive"


def test_access_offers_listed_before_these_rules_are_refused_clearly_and_can_be_withdrawn(
    session: Session, market: Market
) -> None:
    """Rows as the previous release left them: no trial length, a personal chip's issuer."""

    def legacy(chip_id: int, created_by: int) -> RedemptionOffer:
        row = RedemptionOffer(
            community_id=market.community.id,
            chip_id=chip_id,
            created_by=created_by,
            title="VIP week",
            kind="vip_trial",
            access_ref="vip",
            price=10,
            settlement="burn",
        )
        session.add(row)
        session.flush()
        return row

    mine = legacy(market.star.id, market.creator.id)  # the creator is no admin
    admins = legacy(market.gold.id, market.owner.id)
    member = market.members[0]
    for offer, code, reason in (
        (mine, "offer_inactive", None),
        (admins, "offer_misconfigured", "trial_days"),
    ):
        with pytest.raises(Conflict) as refused:
            _redeem(session, member, offer.id, f"legacy-{offer.id}")
        assert refused.value.code == code
        assert reason is None or reason in refused.value.detail
    assert market.wallet(session, member, market.gold) == (100, 0)
    assert market.wallet(session, member, market.star) == (100, 0)
    # Their issuers can still take them off sale, or (an admin) give the trial a length.
    off = redemption.update_offer(session, Actor(market.creator), mine.id, OfferPatch(active=False))
    assert not off.active
    fixed = redemption.update_offer(session, Actor(market.owner), admins.id, OfferPatch(trial_days=7))
    assert fixed.trial_days == 7
    _buy(session, market, member, admins.id, "legacy-fixed")
    assert _tier_rank(session, market, member) == 2


# --- terms as paid ---------------------------------------------------------------------------------


@pytest.mark.parametrize("edited_days", [1, 30])
def test_a_trial_grants_the_days_paid_for_whatever_the_offer_says_at_fulfilment(
    session: Session, market: Market, edited_days: int
) -> None:
    member = market.members[0]
    offer = _trial_offer(session, market, "vip", days=7)
    order_id = _redeem(session, member, offer.id, f"paid-7-{edited_days}")
    # The admin edits the offer while the order is pending (shorter or longer).
    redemption.update_offer(session, Actor(market.owner), offer.id, OfferPatch(trial_days=edited_days))
    # Both sides see the terms the order was paid for, before and after fulfilment.
    pending = redemption.get_order(session, Actor(member), order_id)
    assert (pending.access_ref, pending.trial_days, pending.access) == ("vip", 7, None)
    done = redemption.fulfil_order(session, Actor(market.owner), order_id)
    assert (done.access_ref, done.trial_days) == ("vip", 7)
    grant = session.scalar(select(AccessGrant).where(AccessGrant.order_id == order_id))
    assert grant is not None and grant.seconds == 7 * 86400
    ends = _membership(session, market, member).trial_ends_at
    assert done.access is not None and done.access.ends_at == ends
    assert ends is not None and timedelta(days=6, hours=23) < ends - utcnow() <= timedelta(days=7)
    # A new order buys the offer as it reads now.
    later = _buy(session, market, member, offer.id, f"paid-now-{edited_days}")
    grant = session.scalar(select(AccessGrant).where(AccessGrant.order_id == later))
    assert grant is not None and grant.seconds == edited_days * 86400


def test_a_seat_is_in_the_course_paid_for_when_the_offer_moves_to_another(
    session: Session, market: Market
) -> None:
    member = market.members[1]
    paid_for, other = _course(session, market), _course(session, market)
    offer = _seat_offer(session, market, paid_for)
    order_id = _redeem(session, member, offer.id, "seat-a")
    redemption.update_offer(session, Actor(market.owner), offer.id, OfferPatch(access_ref=str(other)))
    done = redemption.fulfil_order(session, Actor(market.owner), order_id)
    assert (done.access_ref, done.trial_days) == (str(paid_for), None)
    assert done.access is not None and done.access.course_id == paid_for
    enrolled = session.scalars(
        select(Enrollment.course_id).where(
            Enrollment.user_id == member.id, Enrollment.unenrolled_at.is_(None)
        )
    ).all()
    assert enrolled == [paid_for]


def test_a_vip_trial_refused_at_fulfilment_when_its_tier_is_gone_stays_pending(
    session: Session, market: Market
) -> None:
    """The order's own terms are checked at fulfilment: a tier key no longer there is refused."""
    member = market.members[2]
    offer = _trial_offer(session, market, "vip", days=7)
    order_id = _redeem(session, member, offer.id, "gone")
    order = session.get(RedemptionOrder, order_id)
    assert order is not None and (order.access_ref, order.trial_days) == ("vip", 7)
    order.access_ref = "platinum"  # as if the tier were renamed or removed meanwhile
    session.flush()
    with pytest.raises(Conflict) as refused:
        redemption.fulfil_order(session, Actor(market.owner), order_id)
    assert refused.value.code == "offer_misconfigured" and "platinum" in refused.value.detail
    assert redemption.get_order(session, Actor(member), order_id).status == OrderStatus.PENDING


def test_a_course_is_named_by_its_plain_id_whatever_digits_were_sent(
    session: Session, market: Market
) -> None:
    course_id = _course(session, market)
    padded = f"{course_id:06d}"
    fullwidth = "".join(chr(0xFF10 + int(d)) for d in str(course_id))
    for ref in (padded, fullwidth, f" {course_id} "):
        assert _seat_offer_ref(session, market, ref) == str(course_id)
    seat = _seat_offer(session, market, course_id)
    patched = redemption.update_offer(session, Actor(market.owner), seat.id, OfferPatch(access_ref=fullwidth))
    assert patched.access_ref == str(course_id)
    with pytest.raises(InvalidInput) as signed:
        _seat_offer_ref(session, market, f"+{course_id}")
    assert signed.value.code == "unknown_course"


def _seat_offer_ref(session: Session, market: Market, ref: str) -> str | None:
    return market.offer(session, market.gold, kind="course_seat", access_ref=ref, price=10).access_ref


def test_a_reversed_order_does_not_count_toward_the_per_member_limit(
    session: Session, market: Market
) -> None:
    """Its chips came back and its access was withdrawn: as after a cancellation, the member
    may buy again."""
    member = market.members[0]
    offer = market.offer(
        session, market.gold, kind="vip_trial", access_ref="vip", trial_days=7, price=10, per_member_limit=1
    )
    first = _buy(session, market, member, offer.id, "limit-1")
    with pytest.raises(Conflict) as limited:
        _redeem(session, member, offer.id, "limit-2")
    assert limited.value.code == "redemption_limit_reached"
    _reverse(session, market, first, "limit-rev")
    again = _buy(session, market, member, offer.id, "limit-3")
    assert _tier_rank(session, market, member) > 0
    with pytest.raises(Conflict) as still:
        _redeem(session, member, offer.id, "limit-4")
    assert still.value.code == "redemption_limit_reached"
    assert again != first
    assert_invariants(session, market.community.id)

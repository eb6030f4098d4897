"""Access offers: what a `vip_trial` or `course_seat` order unlocks, and taking it back.

- Only admins list access offers: tiers and courses are the community's, so a member's
  personal chip cannot be used to hand out the VIP tier or a gated course.
- `vip_trial`: `access_ref` is a tier key, `trial_days` how long one order lasts. Fulfilling
  the order runs the trial: the member's own tier (`memberships.tier_id`) is untouched; every
  tier check uses the higher of it and the trial tier until `trial_ends_at`, then the member
  is back on their own tier with nothing to undo. A second trial of the same tier extends the
  running one (its days are added at the end); a trial of another tier while one runs is
  refused (`trial_running`), and so is a trial of a tier the member already holds
  (`tier_already_held`) or one that would end more than `MAX_TRIAL` (ten years) from now
  (`trial_too_long`).
- `course_seat`: `access_ref` is the id of a course of the community (stored as
  `str(course.id)`, whatever form of the number the issuer sent). Fulfilling enrols the
  member whatever their tier (a member already enrolled stays enrolled; the order still
  fulfils) and the seat keeps admitting them to the course; one live seat per course.
- The order keeps the access terms it was paid for (`access_ref`, `trial_days` copied from
  the offer when redeemed): fulfilment grants those, whatever the offer says by then.
- Access is checked when the member redeems (so nobody pays for what cannot be granted) and
  again when the issuer fulfils (things may have changed meanwhile: the order then stays
  pending and the issuer or the member cancels it, which returns the chips). An offer whose
  terms cannot be granted to anyone (its tier or course is gone, a trial without a length)
  is refused there as `offer_misconfigured` (409, the cause in its detail); the same causes
  are 422 with their own codes when the issuer lists or edits the offer. An `instant`
  offer is fulfilled by the redemption itself: the member pays and has the access in one
  request, with nothing for the issuer to do (only access offers may be instant).
- Cancelled and expired orders grant nothing. A moderator's reversal of a fulfilled order's
  ledger transaction returns the chips, so it withdraws the access too: the trial loses the
  days that order added and not yet used, the seat is revoked and the member is unenrolled
  unless their tier admits the course (progress is kept).
- A 1:1 call is delivered by the issuer: the order (which names the member) is the record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.access import CommunityContext, effective_tier_rank
from core.clock import utcnow
from core.courses import repository as courses_repo
from core.errors import Conflict, InvalidInput, PermissionDenied
from core.models import (
    AccessGrant,
    Chip,
    Course,
    Enrollment,
    GrantKind,
    Membership,
    MembershipStatus,
    OfferKind,
    RedemptionOffer,
    RedemptionOrder,
    Role,
    Tier,
)
from core.redemption import repository as repo

ACCESS_KINDS = (OfferKind.VIP_TRIAL, OfferKind.COURSE_SEAT)
# How far ahead a member's trial may end: stacking orders past it is refused
# (`trial_too_long`) before anything is held or moved.
MAX_TRIAL = timedelta(days=3650)


# --- offers ----------------------------------------------------------------------------------


def validate_offer(
    session: Session,
    ctx: CommunityContext,
    kind: OfferKind,
    access_ref: str | None,
    trial_days: int | None,
    instant: bool,
) -> str | None:
    """Refuse an offer (new, or as a patch leaves it) whose access cannot be granted.

    Returns the `access_ref` to store: a course seat's is the course id in its plain form.
    """
    if kind != OfferKind.VIP_TRIAL and trial_days is not None:
        raise InvalidInput("`trial_days` is for vip_trial offers only", code="trial_days_not_applicable")
    if kind not in ACCESS_KINDS:
        if instant:
            # Goods, services and calls are delivered by a person: the issuer fulfils them.
            raise InvalidInput("only access offers are granted instantly", code="instant_not_applicable")
        return access_ref
    if not (ctx.role is not None and ctx.role.at_least(Role.ADMIN)):
        raise PermissionDenied(
            "only admins sell access to the community's tiers and courses", code="access_offer_not_allowed"
        )
    if not access_ref:
        what = "a tier key" if kind == OfferKind.VIP_TRIAL else "a course id"
        raise InvalidInput(f"a {kind.value} offer needs `access_ref`: {what}", code="access_ref_required")
    try:
        target = _target(session, Terms(kind, ctx.community.id, access_ref, trial_days))
    except _Unfit as unfit:
        raise InvalidInput(unfit.detail, code=unfit.code) from None
    return access_ref if isinstance(target, Tier) else str(target.id)


@dataclass(frozen=True)
class Terms:
    """What an access offer sells, or what an order bought (its copy of the offer's terms)."""

    kind: OfferKind
    community_id: int
    access_ref: str | None
    trial_days: int | None

    @classmethod
    def of_offer(cls, offer: RedemptionOffer) -> Terms:
        return cls(offer.kind, offer.community_id, offer.access_ref, offer.trial_days)

    @classmethod
    def of_order(cls, order: RedemptionOrder, offer: RedemptionOffer) -> Terms:
        return cls(offer.kind, order.community_id, order.access_ref, order.trial_days)  # kind never changes


class _Unfit(Exception):
    """Terms nobody could be granted: a cause with its code."""

    def __init__(self, detail: str, code: str) -> None:
        super().__init__(detail)
        self.detail, self.code = detail, code


def _target(session: Session, terms: Terms) -> Tier | Course:
    """The tier or course the terms grant; `_Unfit` when they name none or lack a length."""
    ref = terms.access_ref or ""
    if terms.kind == OfferKind.VIP_TRIAL:
        if terms.trial_days is None:  # listed before trials had a length
            raise _Unfit("a vip_trial offer needs `trial_days`", "trial_days_required")
        tier = next((t for t in repo.tiers_of(session, terms.community_id) if t.key == ref), None)
        if tier is None:
            raise _Unfit(f"this community has no tier `{ref}`", "unknown_tier")
        return tier
    # Any form of the number (`007`, full-width digits) names the course; it is stored plainly.
    course = session.get(Course, int(ref)) if ref.isdecimal() and len(ref) < 19 else None
    if course is None or course.community_id != terms.community_id:
        raise _Unfit(f"this community has no course `{ref}`", "unknown_course")
    return course


# --- redeeming and fulfilling ----------------------------------------------------------------------


def check_redeemable(
    session: Session, offer: RedemptionOffer, chip: Chip, member_id: int, quantity: int
) -> None:
    """Refuse a redemption whose access could not be granted (nothing is held yet)."""
    if offer.kind not in ACCESS_KINDS:
        return
    if quantity != 1:
        raise InvalidInput("access is redeemed one at a time", code="access_quantity")
    if chip.issuer_id is not None:
        seller = repo.membership(session, offer.community_id, chip.issuer_id)
        if seller is None or seller.status != MembershipStatus.ACTIVE or not seller.role.at_least(Role.ADMIN):
            # Listed by an admin who is one no longer: nobody could grant it.
            raise Conflict("this offer is not available", code="offer_inactive")
    membership = repo.membership(session, offer.community_id, member_id)
    assert membership is not None  # the caller checked the member
    _check(session, Terms.of_offer(offer), membership, utcnow())


def _check(session: Session, terms: Terms, membership: Membership, now: datetime) -> Tier | Course:
    """The tier or course the terms grant this member, or a Conflict saying why they cannot."""
    try:
        target = _target(session, terms)
    except _Unfit as unfit:
        raise Conflict(
            f"this offer cannot be granted: {unfit.detail}",
            code="offer_misconfigured",
            extra={"reason": unfit.code},
        ) from None
    if isinstance(target, Tier):
        own = next(t for t in repo.tiers_of(session, terms.community_id) if t.id == membership.tier_id)
        if own.rank >= target.rank:
            raise Conflict("you already hold this tier or a higher one", code="tier_already_held")
        if membership.trial_running(now) and membership.trial_tier_id != target.id:
            raise Conflict(
                "another tier's trial is running: it can be extended, not replaced", code="trial_running"
            )
        assert terms.trial_days is not None  # _target refuses a trial without a length
        start = _trial_start(membership, now)
        # Compared without adding to `start`: a trial stacked near year 9999 would overflow.
        if start > now + MAX_TRIAL - timedelta(days=terms.trial_days):
            raise Conflict(
                f"a trial may run at most {MAX_TRIAL.days} days from now",
                code="trial_too_long",
                extra={"trial_ends_at": start.isoformat(), "max_days": MAX_TRIAL.days},
            )
        return target
    if target.published_at is None:
        raise Conflict("this course is not published yet", code="course_not_published")
    if repo.has_live_seat(session, target.id, membership.user_id):
        raise Conflict("you already hold a seat in this course", code="seat_already_held")
    return target


def _trial_start(membership: Membership, now: datetime) -> datetime:
    """Where a new trial's days start: now, or the end of the running one (same tier)."""
    if membership.trial_running(now) and membership.trial_ends_at is not None:
        return membership.trial_ends_at  # the same tier: the days are added at the end
    return now


def lock_member(session: Session, community_id: int, user_id: int) -> None:
    """Take the lock `grant` takes, ahead of ledger accounts (for a redemption granted at once)."""
    repo.lock_membership(session, community_id, user_id)


def grant(
    session: Session, order: RedemptionOrder, offer: RedemptionOffer, now: datetime
) -> AccessGrant | None:
    """Grant what a fulfilled access order bought (None for other kinds). Call before the
    ledger post: lock order is order, membership, accounts. Raises Conflict, changing
    nothing, when the access cannot be granted (any more)."""
    if offer.kind not in ACCESS_KINDS:
        return None
    membership = repo.lock_membership(session, order.community_id, order.member_id)
    if membership is None or membership.status != MembershipStatus.ACTIVE:
        raise Conflict("the member has left the community", code="member_left")
    terms = Terms.of_order(order, offer)  # as paid, not as the offer reads now
    target = _check(session, terms, membership, now)
    if isinstance(target, Tier):
        assert terms.trial_days is not None
        seconds = terms.trial_days * 86400
        start = _trial_start(membership, now)
        membership.trial_tier_id = target.id
        membership.trial_ends_at = start + timedelta(seconds=seconds)
        row = AccessGrant(
            community_id=order.community_id,
            order_id=order.id,
            user_id=order.member_id,
            kind=GrantKind.TIER_TRIAL,
            tier_id=target.id,
            seconds=seconds,
            ends_at=membership.trial_ends_at,
        )
        session.add(row)
        session.flush()
        return row
    row = AccessGrant(
        community_id=order.community_id,
        order_id=order.id,
        user_id=order.member_id,
        kind=GrantKind.COURSE_SEAT,
        course_id=target.id,
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError as exc:  # another order's seat in this course was granted meanwhile
        raise Conflict("the member already holds a seat in this course", code="seat_already_held") from exc
    _enrol(session, target.id, order.member_id, now)
    return row


def _enrol(session: Session, course_id: int, user_id: int, now: datetime) -> None:
    """Enrolled, whatever the tier; already enrolled changes nothing (progress is kept)."""
    existing = courses_repo.enrollment(session, course_id, user_id, include_left=True)
    if existing is not None:
        if existing.unenrolled_at is not None:
            courses_repo.mark_reenrolled(session, existing.id)
        return
    try:
        with session.begin_nested():
            session.add(Enrollment(course_id=course_id, user_id=user_id, enrolled_at=now))
            session.flush()
    except IntegrityError:  # the member enrolled by their tier at the same moment
        pass


# --- reversal ---------------------------------------------------------------------------------------


def lock_order_member(session: Session, order_id: int) -> None:
    """Lock the membership `withdraw` will lock, before a reversal locks ledger accounts
    (memberships come before accounts everywhere: tips, fulfilment, instant redemption)."""
    order = session.get(RedemptionOrder, order_id)
    if order is not None:
        repo.lock_membership(session, order.community_id, order.member_id)


def withdraw(session: Session, order_id: int, by: int | None, now: datetime) -> bool:
    """Take back what the order granted (a moderator reversed its payment). Idempotent:
    False when it granted nothing or was withdrawn already."""
    found = repo.grant_of_order(session, order_id)
    if found is None or found.revoked_at is not None:
        return False
    # The membership lock (taken already by `lock_order_member`), then the grant re-read.
    membership = repo.lock_membership(session, found.community_id, found.user_id)
    row = repo.grant_of_order(session, order_id)
    assert row is not None
    if row.revoked_at is not None:
        return False
    row.revoked_at, row.revoked_by = now, by
    if row.kind == GrantKind.TIER_TRIAL:
        _shorten_trial(session, row, membership, now)
    else:
        assert row.course_id is not None
        course = session.get(Course, row.course_id)
        assert course is not None
        if membership is None or not _tier_admits(session, membership, course):
            courses_repo.mark_unenrolled(session, course.id, row.user_id, now)
    session.flush()
    return True


def _shorten_trial(session: Session, row: AccessGrant, membership: Membership | None, now: datetime) -> None:
    """Take the grant's days not used yet out of the running trial.

    Grants of one trial are stacked end to end; the one withdrawn covered
    [ends_at - seconds, ends_at]. What of it lies ahead of `now` is taken out, and the grants
    stacked after it move earlier by as much, so a later withdrawal of those is right too.
    """
    assert row.ends_at is not None and row.seconds is not None
    start = row.ends_at - timedelta(seconds=row.seconds)
    unused = row.ends_at - max(start, now)
    if unused <= timedelta(0):
        return  # it was used up already
    for later in repo.trial_grants_after(session, row.community_id, row.user_id, row.ends_at):
        assert later.ends_at is not None
        later.ends_at = later.ends_at - unused
    if (
        membership is not None
        and membership.trial_ends_at is not None
        and membership.trial_tier_id == row.tier_id
    ):
        membership.trial_ends_at = max(now, membership.trial_ends_at - unused)


def _tier_admits(session: Session, membership: Membership, course: Course) -> bool:
    if membership.status != MembershipStatus.ACTIVE:
        return False
    if course.min_tier_id is None or membership.role.at_least(Role.MODERATOR):
        return True
    tiers = {t.id: t for t in repo.tiers_of(session, course.community_id)}
    return effective_tier_rank(membership, tiers) >= tiers[course.min_tier_id].rank

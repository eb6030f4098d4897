"""Earning rules: configuring rules and challenges, granting (in jobs) and clawing back.

Granting runs in the `hearth.earning.grant` job after the triggering commit.
For each active rule of the trigger it: skips an act already paid; locks the
issuance and member accounts (`ledger.lock_accounts`, id order) so the daily caps
and the chip's policy (`chips.headroom`, shared with mints, which lock the same
issuance account) are read under the lock; for a post, takes a share lock on it and
re-checks it was not removed meanwhile; then mints with the deterministic key
f"earn:{rule}:{subject_type}:{subject_id}:{member}".
Clawback (after removal by moderation) returns what the member still has of
each grant to the issuance account, once, and records any shortfall. It is one unit
of work per grant. The clawback entry reverses the grant's transaction
(`reverses_id`), so the ledger allows only one of clawback and moderator reversal:
a moderator reversal after a clawback is refused (already_reversed), and a clawback
after a moderator reversal moves nothing and marks the grant clawed_back with
clawed_back_amount 0, shortfall 0 and clawback_transaction_id = the reversal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime, time

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import audit, jobs
from core.access import Actor, CommunityContext, community_context, context_via
from core.chips import service as chips
from core.chips.community import ensure_community_chip
from core.clock import as_utc, utcnow
from core.communities import repository as community_repo
from core.earning import repository as repo
from core.earning.schemas import (
    ChallengeIn,
    ChallengeOut,
    ClaimIn,
    CompletionOut,
    DecisionIn,
    GrantOut,
    RuleIn,
    RuleOut,
    RulePatch,
)
from core.errors import Conflict, DomainError, NotFound
from core.ledger import service as ledger
from core.ledger.types import Entry, Leg
from core.models import (
    Challenge,
    ChallengeCompletion,
    Chip,
    CompletionStatus,
    Course,
    EarnGrant,
    EarnRule,
    EarnTrigger,
    Enrollment,
    Event,
    EventRsvp,
    GrantStatus,
    LedgerAccount,
    Membership,
    MembershipStatus,
    Post,
    Role,
    Thread,
    TxKind,
)
from core.pagination import Page, paginate
from core.schemas import PageOut

log = logging.getLogger(__name__)

GRANT_JOB = "hearth.earning.grant"
CLAWBACK_JOB = "hearth.earning.clawback"

_RULE_FIELDS = ["name", "trigger", "chip_id", "amount", "daily_count_cap", "daily_amount_cap", "active"]


def _day_start(now: datetime) -> datetime:
    return as_utc(datetime.combine(now.date(), time.min))


# --- hooks (called by other domains inside their transaction) ------------------------------


def enqueue_grant(session: Session, community_id: int, trigger: EarnTrigger, subject_id: int) -> None:
    """Queue the grant job for an act, when the community has a rule that could pay for it."""
    if repo.has_active_rule(session, community_id, trigger):
        jobs.enqueue(session, GRANT_JOB, trigger.value, subject_id)


def onboarding_completed(session: Session, actor: Actor, community_id: int) -> None:
    """The member finished onboarding: pays once per membership (the grant is keyed by it)."""
    membership = community_context(session, actor, community_id).require_member()
    enqueue_grant(session, community_id, EarnTrigger.ONBOARDING_COMPLETED, membership.id)


# --- granting (jobs) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    community_id: int
    user_id: int
    subject_type: str
    subject_id: int
    challenge_id: int | None = None


def resolve(session: Session, trigger: EarnTrigger, subject_id: int) -> Subject | None:
    """Who earns for this act, or None when the act no longer counts (deleted, undone)."""
    if trigger in (EarnTrigger.POST_CREATED, EarnTrigger.REPLY_RECEIVED):
        post = session.get(Post, subject_id)
        if post is None or post.deleted_at is not None:
            return None
        if trigger == EarnTrigger.POST_CREATED:
            return Subject(post.community_id, post.author_id, "post", post.id)
        if post.is_opening:
            return None
        if post.reply_to_id is not None:
            parent = session.get(Post, post.reply_to_id)
            receiver = parent.author_id if parent is not None else None
        else:
            thread = session.get(Thread, post.thread_id)
            receiver = thread.author_id if thread is not None else None
        if receiver is None or receiver == post.author_id:
            return None  # replying to yourself earns nothing
        return Subject(post.community_id, receiver, "post", post.id)
    if trigger == EarnTrigger.EVENT_CHECKIN:
        rsvp = session.get(EventRsvp, subject_id)
        if rsvp is None or rsvp.checked_in_at is None:
            return None
        event = session.get(Event, rsvp.event_id)
        assert event is not None
        return Subject(event.community_id, rsvp.user_id, "event_rsvp", rsvp.id)
    if trigger == EarnTrigger.COURSE_COMPLETED:
        enrollment = session.get(Enrollment, subject_id)
        if enrollment is None or enrollment.completed_at is None:
            return None
        course = session.get(Course, enrollment.course_id)
        assert course is not None
        return Subject(course.community_id, enrollment.user_id, "enrollment", enrollment.id)
    if trigger == EarnTrigger.CHALLENGE_COMPLETED:
        completion = session.get(ChallengeCompletion, subject_id)
        if completion is None or completion.status != CompletionStatus.APPROVED:
            return None
        challenge = session.get(Challenge, completion.challenge_id)
        assert challenge is not None
        return Subject(
            challenge.community_id, completion.user_id, "challenge_completion", completion.id, challenge.id
        )
    membership = session.get(Membership, subject_id)
    if membership is None:
        return None
    return Subject(membership.community_id, membership.user_id, "membership", membership.id)


def grant(session: Session, trigger: str, subject_id: int) -> list[int]:
    """Pay every active rule of `trigger` for the act; returns the ids of grants made now."""
    kind = EarnTrigger(trigger)
    subject = resolve(session, kind, subject_id)
    if subject is None:
        return []
    member = community_repo.membership(session, subject.community_id, subject.user_id)
    if member is None or member.status != MembershipStatus.ACTIVE:
        return []
    rules = repo.active_rules(session, subject.community_id, kind, subject.challenge_id)
    _lock_wallets(session, rules, subject.user_id)
    made = []
    for rule in rules:
        grant_id = _grant_one(session, rule, subject)
        if grant_id is not None:
            made.append(grant_id)
    return made


def _lock_wallets(session: Session, rules: Sequence[EarnRule], user_id: int) -> None:
    """Lock every account the rules pay from and to, at once, in the ledger's global order.

    Paying rule after rule would lock one chip's accounts, then the next chip's: two grants
    whose rules pay the same chips in opposite orders would each wait for the other.
    """
    chip_ids = sorted({rule.chip_id for rule in rules})
    if len(chip_ids) < 2:
        return  # one chip: _grant_one locks its two accounts in one call
    accounts = []
    for chip_id in chip_ids:
        chip = session.get(Chip, chip_id)
        if chip is None or chip.frozen or chip.expired:
            continue  # _grant_one skips these rules without touching their accounts
        accounts += [
            ledger.issuance_account(session, chip.id).id,
            ledger.open_account(session, chip, user_id).id,
        ]
    ledger.lock_accounts(session, accounts)


def _grant_one(session: Session, rule: EarnRule, subject: Subject) -> int | None:
    key_args = (rule.id, subject.subject_type, subject.subject_id, subject.user_id)
    if repo.grant_of(session, *key_args) is not None:
        return None
    chip = session.get(Chip, rule.chip_id)
    assert chip is not None
    if chip.frozen or chip.expired:
        log.info("earn rule %s skipped: chip %s is frozen or expired", rule.id, chip.id)
        return None
    issuance = ledger.issuance_account(session, chip.id)
    account = ledger.open_account(session, chip, subject.user_id)
    ledger.lock_accounts(session, [issuance.id, account.id])
    if repo.grant_of(session, *key_args) is not None:  # a concurrent run paid while we waited
        return None
    if subject.subject_type == "post" and not repo.lock_live_post(session, subject.subject_id):
        # Removed by moderation while we waited: its clawback may already have run and found
        # nothing, so this grant must not commit. The share lock keeps a removal waiting
        # until we commit, and the clawback it queues then finds the grant.
        return None
    now = utcnow()
    count, total = repo.granted_since(session, rule.id, subject.user_id, _day_start(now))
    if rule.daily_count_cap is not None and count >= rule.daily_count_cap:
        return None
    if rule.daily_amount_cap is not None and total + rule.amount > rule.daily_amount_cap:
        return None
    try:
        chips.check_policy(session, chip, rule.amount, now)
    except Conflict as exc:
        log.info("earn rule %s skipped: chip %s policy exhausted (%s)", rule.id, chip.id, exc.code)
        return None
    posted = ledger.transfer(
        session,
        community_id=subject.community_id,
        chip_id=chip.id,
        source=issuance.id,
        target=account.id,
        amount=rule.amount,
        key="earn:{}:{}:{}:{}".format(*key_args),
        kind=TxKind.EARN,
        memo=rule.name,
        subject=(subject.subject_type, subject.subject_id),
    )
    if posted.replayed:
        return None
    row = EarnGrant(
        community_id=subject.community_id,
        rule_id=rule.id,
        user_id=subject.user_id,
        chip_id=chip.id,
        amount=rule.amount,
        trigger=rule.trigger,
        subject_type=subject.subject_type,
        subject_id=subject.subject_id,
        transaction_id=posted.transaction_id,
        status=GrantStatus.GRANTED,
        clawed_back_amount=0,
        shortfall=0,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row.id


# --- clawback (jobs) -----------------------------------------------------------------------------


def enqueue_clawback(session: Session, community_id: int, subject_type: str, subject_id: int) -> None:
    """Queue the clawback job for a removed post when something was, or may still be, paid for it.

    A grant job may still be in flight for a post removed right after it was written, so an
    active post rule is reason enough; the job itself is a no-op when nothing was granted.
    """
    if repo.grants_for_subject(session, subject_type, subject_id) or any(
        repo.has_active_rule(session, community_id, t)
        for t in (EarnTrigger.POST_CREATED, EarnTrigger.REPLY_RECEIVED)
    ):
        jobs.enqueue(session, CLAWBACK_JOB, subject_type, subject_id)


UnitOfWork = Callable[[], AbstractContextManager[Session]]


def clawback(units: Session | UnitOfWork, subject_type: str, subject_id: int) -> list[int]:
    """Reverse every grant paid for a removed subject; returns the ids clawed back now.

    One short read lists the grants; each is clawed back in its own unit of work when
    `units` is a factory (the job passes `session_scope`), else all in the one session.
    """
    if isinstance(units, Session):
        session = units
        run: UnitOfWork = lambda: nullcontext(session)  # noqa: E731
    else:
        run = units
    with run() as s:
        grant_ids = [g.id for g in repo.grants_for_subject(s, subject_type, subject_id)]
    done, failed = [], []
    for grant_id in grant_ids:
        try:
            with run() as s:
                if clawback_grant(s, grant_id):
                    done.append(grant_id)
        except DomainError as exc:  # the others still go; the job fails after them, to be retried
            log.warning("clawback of earn grant %s failed: %s", grant_id, exc.code)
            failed.append(exc)
    if failed:
        raise failed[0]
    return done


def clawback_grant(session: Session, grant_id: int) -> bool:
    """Claw one grant back: lock its accounts (all at once), then the grant, then move chips.

    True when the grant was marked clawed back now. The entry reverses the grant's
    transaction; when a moderator already reversed it, nothing moves.
    """
    found = session.get(EarnGrant, grant_id)
    if found is None or found.status != GrantStatus.GRANTED:
        return False
    chip = session.get(Chip, found.chip_id)
    assert chip is not None
    issuance = ledger.issuance_account(session, chip.id)
    account = ledger.open_account(session, chip, found.user_id)
    ledger.lock_accounts(session, [issuance.id, account.id])
    row = repo.lock_grant(session, grant_id)
    assert row is not None
    if row.status != GrantStatus.GRANTED:
        return False
    reversal = repo.reversal_of(session, row.transaction_id)
    take = 0
    if reversal is None:
        member = _wallet(session, account.id)
        take = max(0, min(row.amount, member.balance - member.held))
    if take > 0:
        try:
            with session.begin_nested():
                posted = ledger.post(
                    session,
                    Entry(
                        community_id=row.community_id,
                        kind=TxKind.CLAWBACK,
                        key=f"clawback:{row.id}",
                        legs=(Leg(account.id, chip.id, -take), Leg(issuance.id, chip.id, take)),
                        memo=f"clawback of earn grant #{row.id}",
                        subject_type=row.subject_type,
                        subject_id=row.subject_id,
                        reverses_id=row.transaction_id,
                        allow_frozen=True,
                    ),
                )
            row.clawback_transaction_id = posted.transaction_id
        except Conflict as exc:
            if exc.code != "already_reversed":
                raise
            reversal, take = repo.reversal_of(session, row.transaction_id), 0
    if reversal is not None:
        # A moderator reversed the grant already: its chips went back then, nothing is owed.
        row.clawback_transaction_id = reversal
        row.clawed_back_amount, row.shortfall = 0, 0
    else:
        row.clawed_back_amount, row.shortfall = take, row.amount - take
    row.status = GrantStatus.CLAWED_BACK
    row.clawed_back_at = utcnow()
    session.flush()
    return True


def _wallet(session: Session, account_id: int) -> LedgerAccount:
    account = session.get(LedgerAccount, account_id, populate_existing=True)
    assert account is not None
    return account


# --- rules (admins) ----------------------------------------------------------------------------


def _rule_chip(session: Session, ctx: CommunityContext, chip_id: int | None) -> Chip:
    """The community chip by default; a personal chip only when the admin is its issuer."""
    if chip_id is None:
        # A community from before the chip economy gets its chip now.
        return ensure_community_chip(session, ctx.community)
    chip = session.get(Chip, chip_id)
    if chip is None or chip.community_id != ctx.community.id:
        raise NotFound("chip not found", code="chip_not_found")
    if chip.issuer_id is not None and chip.issuer_id != ctx.actor.id:
        raise Conflict("only the community chip or your own chip can be granted", code="not_chip_issuer")
    return chip


def list_rules(
    session: Session, actor: Actor, community_id: int, *, cursor: str | None, limit: int
) -> PageOut[RuleOut]:
    community_context(session, actor, community_id).require_member()
    page: Page[EarnRule] = paginate(
        session, repo.rules_of(community_id), EarnRule.id, cursor=cursor, limit=limit
    )
    return page.map(RuleOut.model_validate).out()


def create_rule(session: Session, actor: Actor, community_id: int, data: RuleIn) -> RuleOut:
    ctx = community_context(session, actor, community_id)
    ctx.require_role(Role.ADMIN)
    chip = _rule_chip(session, ctx, data.chip_id)
    rule = EarnRule(
        community_id=community_id,
        name=data.name,
        trigger=data.trigger,
        chip_id=chip.id,
        amount=data.amount,
        daily_count_cap=data.daily_count_cap,
        daily_amount_cap=data.daily_amount_cap,
        active=data.active,
        created_by=actor.id,
    )
    session.add(rule)
    session.flush()
    audit.record(
        session,
        actor,
        "earn_rule.create",
        rule,
        community_id=community_id,
        after=audit.snapshot(rule, _RULE_FIELDS),
    )
    return RuleOut.model_validate(rule)


def _load_rule(session: Session, actor: Actor, rule_id: int) -> tuple[EarnRule, CommunityContext]:
    rule = session.get(EarnRule, rule_id)
    if rule is None:
        raise NotFound("rule not found", code="rule_not_found")
    ctx = context_via(session, actor, rule.community_id, NotFound("rule not found", code="rule_not_found"))
    return rule, ctx


def get_rule(session: Session, actor: Actor, rule_id: int) -> RuleOut:
    rule, ctx = _load_rule(session, actor, rule_id)
    ctx.require_member()
    return RuleOut.model_validate(rule)


def update_rule(session: Session, actor: Actor, rule_id: int, patch: RulePatch) -> RuleOut:
    rule, ctx = _load_rule(session, actor, rule_id)
    ctx.require_role(Role.ADMIN)
    before = audit.snapshot(rule, _RULE_FIELDS)
    if patch.clear_caps:
        rule.daily_count_cap = rule.daily_amount_cap = None
    for name, value in patch.model_dump(exclude_none=True, exclude={"clear_caps"}).items():
        setattr(rule, name, value)
    session.flush()
    after = audit.snapshot(rule, _RULE_FIELDS)
    if after != before:
        action = "earn_rule.disable" if before["active"] and not rule.active else "earn_rule.update"
        audit.record(session, actor, action, rule, community_id=rule.community_id, before=before, after=after)
    return RuleOut.model_validate(rule)


def disable_rule(session: Session, actor: Actor, rule_id: int) -> RuleOut:
    return update_rule(session, actor, rule_id, RulePatch(active=False))


def list_my_grants(
    session: Session, actor: Actor, community_id: int, *, cursor: str | None, limit: int
) -> PageOut[GrantOut]:
    community_context(session, actor, community_id).require_member()
    page: Page[EarnGrant] = paginate(
        session, repo.grants_of(community_id, actor.id), EarnGrant.id, cursor=cursor, limit=limit
    )
    return page.map(GrantOut.model_validate).out()


# --- challenges --------------------------------------------------------------------------------


def _challenge_out(session: Session, challenge: Challenge) -> ChallengeOut:
    rule = repo.challenge_rule(session, challenge.id)
    assert rule is not None
    return ChallengeOut(
        id=challenge.id,
        community_id=challenge.community_id,
        title=challenge.title,
        description=challenge.description,
        active=challenge.active and rule.active,
        reward=rule.amount,
        chip_id=rule.chip_id,
        rule_id=rule.id,
        created_at=challenge.created_at,
    )


def create_challenge(session: Session, actor: Actor, community_id: int, data: ChallengeIn) -> ChallengeOut:
    """A challenge and its reward rule (trigger challenge_completed, for this challenge only)."""
    ctx = community_context(session, actor, community_id)
    ctx.require_role(Role.ADMIN)
    chip = _rule_chip(session, ctx, data.chip_id)
    challenge = Challenge(
        community_id=community_id,
        title=data.title,
        description=data.description,
        active=True,
        created_by=actor.id,
    )
    session.add(challenge)
    session.flush()
    rule = EarnRule(
        community_id=community_id,
        name=f"Challenge: {data.title}"[:120],
        trigger=EarnTrigger.CHALLENGE_COMPLETED,
        chip_id=chip.id,
        amount=data.reward,
        challenge_id=challenge.id,
        active=True,
        created_by=actor.id,
    )
    session.add(rule)
    session.flush()
    audit.record(
        session,
        actor,
        "challenge.create",
        challenge,
        community_id=community_id,
        after={"title": challenge.title, "reward": rule.amount, "chip_id": chip.id, "rule_id": rule.id},
    )
    return _challenge_out(session, challenge)


def list_challenges(session: Session, actor: Actor, community_id: int) -> list[ChallengeOut]:
    community_context(session, actor, community_id).require_member()
    return [_challenge_out(session, c) for c in repo.challenges_of(session, community_id)]


def _load_challenge(session: Session, actor: Actor, challenge_id: int) -> tuple[Challenge, CommunityContext]:
    challenge = session.get(Challenge, challenge_id)
    missing = NotFound("challenge not found", code="challenge_not_found")
    if challenge is None:
        raise missing
    ctx = context_via(session, actor, challenge.community_id, missing)
    ctx.require_member()
    return challenge, ctx


def claim(session: Session, actor: Actor, challenge_id: int, data: ClaimIn) -> CompletionOut:
    """A member says they completed the challenge; a moderator approves or rejects."""
    actor.require_personal()
    challenge, _ = _load_challenge(session, actor, challenge_id)
    if not challenge.active:
        raise Conflict("this challenge is closed", code="challenge_closed")
    existing = repo.completion_of(session, challenge.id, actor.id)
    if existing is not None:
        if existing.status == CompletionStatus.REJECTED:
            raise Conflict("your claim was rejected", code="claim_rejected")
        return CompletionOut.model_validate(existing)
    try:
        with session.begin_nested():
            row = ChallengeCompletion(
                challenge_id=challenge.id,
                user_id=actor.id,
                status=CompletionStatus.CLAIMED,
                evidence=data.evidence,
            )
            session.add(row)
    except IntegrityError:  # a concurrent claim: return it
        again = repo.completion_of(session, challenge.id, actor.id)
        assert again is not None
        return CompletionOut.model_validate(again)
    return CompletionOut.model_validate(row)


def award(session: Session, actor: Actor, challenge_id: int, user_id: int) -> CompletionOut:
    """A moderator marks a member as having completed the challenge (approving any claim)."""
    challenge, ctx = _load_challenge(session, actor, challenge_id)
    ctx.require_role(Role.MODERATOR)
    member = community_repo.membership(session, challenge.community_id, user_id)
    if member is None or member.status != MembershipStatus.ACTIVE:
        raise NotFound("member not found", code="member_not_found")
    row = repo.completion_of(session, challenge.id, user_id)
    if row is None:
        try:
            with session.begin_nested():
                row = ChallengeCompletion(
                    challenge_id=challenge.id, user_id=user_id, status=CompletionStatus.CLAIMED
                )
                session.add(row)
        except IntegrityError:
            row = repo.completion_of(session, challenge.id, user_id)
            assert row is not None
    return _decide(session, actor, challenge, row, approve=True)


def decide(session: Session, actor: Actor, completion_id: int, data: DecisionIn) -> CompletionOut:
    found = session.get(ChallengeCompletion, completion_id)
    if found is None:
        raise NotFound("completion not found", code="completion_not_found")
    challenge, ctx = _load_challenge(session, actor, found.challenge_id)
    ctx.require_role(Role.MODERATOR)
    row = repo.completion_of(session, found.challenge_id, found.user_id)
    assert row is not None
    return _decide(session, actor, challenge, row, approve=data.decision == "approve")


def _decide(
    session: Session, actor: Actor, challenge: Challenge, row: ChallengeCompletion, *, approve: bool
) -> CompletionOut:
    status = CompletionStatus.APPROVED if approve else CompletionStatus.REJECTED
    if row.status == status:
        return CompletionOut.model_validate(row)
    if row.status != CompletionStatus.CLAIMED:
        raise Conflict("this completion was already decided", code="completion_decided")
    if row.user_id == actor.id and approve:
        raise Conflict("you cannot approve your own completion", code="cannot_approve_self")
    row.status, row.decided_by, row.decided_at = status, actor.id, utcnow()
    session.flush()
    audit.record(
        session,
        actor,
        f"challenge.{status.value}",
        row,
        community_id=challenge.community_id,
        after={"challenge_id": challenge.id, "user_id": row.user_id, "status": status.value},
    )
    if approve:
        enqueue_grant(session, challenge.community_id, EarnTrigger.CHALLENGE_COMPLETED, row.id)
    return CompletionOut.model_validate(row)


def list_completions(
    session: Session,
    actor: Actor,
    challenge_id: int,
    *,
    status: CompletionStatus | None,
    cursor: str | None,
    limit: int,
) -> PageOut[CompletionOut]:
    _, ctx = _load_challenge(session, actor, challenge_id)
    ctx.require_role(Role.MODERATOR)
    page: Page[ChallengeCompletion] = paginate(
        session, repo.completions_of(challenge_id, status), ChallengeCompletion.id, cursor=cursor, limit=limit
    )
    return page.map(CompletionOut.model_validate).out()


def close_challenge(session: Session, actor: Actor, challenge_id: int) -> ChallengeOut:
    challenge, ctx = _load_challenge(session, actor, challenge_id)
    ctx.require_role(Role.ADMIN)
    if challenge.active:
        challenge.active = False
        session.flush()
        audit.record(session, actor, "challenge.close", challenge, community_id=challenge.community_id)
    return _challenge_out(session, challenge)

"""Earning driven through the real hooks, with the recorded jobs run as the worker would."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import jobs
from core.access import Actor
from core.clock import utcnow
from core.conversation import service as conversation
from core.courses import service as courses
from core.courses.schemas import CourseIn, LessonIn
from core.earning import service as earning
from core.earning.schemas import ChallengeIn, ClaimIn, DecisionIn, RuleIn, RulePatch
from core.errors import DomainError
from core.events import service as events
from core.events.schemas import CheckinIn, EventIn, RsvpIn
from core.ledger import service as ledger
from core.models import (
    AuditLog,
    Chip,
    Community,
    EarnGrant,
    EarnTrigger,
    GrantStatus,
    LedgerTransaction,
    Role,
    TxKind,
    User,
)
from tests.core.tipping.helpers import (
    accounts_ok,
    balance,
    channel,
    commit_and_run,
    community_chip,
    issuance_balance,
    reply,
    thread,
)
from tests.factories import add_member, make_chip, make_community, make_user

GRANT = "hearth.earning.grant"
CLAWBACK = "hearth.earning.clawback"


@pytest.fixture
def world(session: Session) -> tuple[Community, User, User, Chip, int]:
    owner = make_user(session)
    community = make_community(session, owner)
    member = add_member(session, community)
    chip = community_chip(session, community)
    room = channel(session, owner, community)
    return community, owner, member, chip, room


def _rule(
    session: Session, owner: User, community: Community, trigger: EarnTrigger, amount: int, **caps: int
):  # type: ignore[no-untyped-def]
    return earning.create_rule(
        session,
        Actor(owner),
        community.id,
        RuleIn(name=f"{trigger} reward", trigger=trigger, amount=amount, **caps),  # type: ignore[arg-type]
    )


def _grants(session: Session, user: User) -> list[EarnGrant]:
    return list(session.scalars(select(EarnGrant).where(EarnGrant.user_id == user.id).order_by(EarnGrant.id)))


def test_posting_and_replies_received_earn_once_each(
    session: Session, world, recorded_jobs: list[jobs.Job]
) -> None:  # type: ignore[no-untyped-def]
    community, owner, member, chip, room = world
    _rule(session, owner, community, EarnTrigger.POST_CREATED, 5)
    _rule(session, owner, community, EarnTrigger.REPLY_RECEIVED, 2)
    thread_id, post_id = thread(session, member, room)
    other = add_member(session, community)
    reply_id = reply(session, other, thread_id)
    reply(session, member, thread_id)  # replying in your own thread earns no reply_received
    ran = commit_and_run(session, recorded_jobs, GRANT)
    assert [j.args for j in ran] == [
        ("post_created", post_id),
        ("post_created", reply_id),
        ("reply_received", reply_id),
        ("post_created", ran[3].args[1]),
        ("reply_received", ran[3].args[1]),
    ]
    assert balance(session, chip, member) == 5 + 2 + 5
    assert balance(session, chip, other) == 5
    # The same jobs again (a redelivery) pay nothing more.
    for job in ran:
        assert earning.grant(session, *job.args) == []
    assert balance(session, chip, member) == 12
    mine = _grants(session, member)
    assert [(g.trigger, g.subject_type, g.amount) for g in mine] == [
        (EarnTrigger.POST_CREATED, "post", 5),
        (EarnTrigger.REPLY_RECEIVED, "post", 2),
        (EarnTrigger.POST_CREATED, "post", 5),
    ]
    tx = session.get(LedgerTransaction, mine[0].transaction_id)
    assert tx is not None and tx.kind == TxKind.EARN
    assert tx.idempotency_key == f"earn:{mine[0].rule_id}:post:{post_id}:{member.id}"
    page = earning.list_my_grants(session, Actor(member), community.id, cursor=None, limit=10)
    assert len(page.items) == 3
    accounts_ok(session)


def test_no_rules_no_jobs(session: Session, world, recorded_jobs: list[jobs.Job]) -> None:  # type: ignore[no-untyped-def]
    _, _, member, _, room = world
    thread(session, member, room)
    session.commit()
    assert [j.name for j in recorded_jobs] == ["hearth.notifications.post_created"]


def test_daily_caps_by_count_and_amount(session: Session, world, recorded_jobs: list[jobs.Job]) -> None:  # type: ignore[no-untyped-def]
    community, owner, member, chip, room = world
    _rule(session, owner, community, EarnTrigger.POST_CREATED, 3, daily_count_cap=2)
    amount_rule = _rule(session, owner, community, EarnTrigger.POST_CREATED, 4, daily_amount_cap=10)
    for _ in range(4):
        thread(session, member, room)
    commit_and_run(session, recorded_jobs, GRANT)
    assert balance(session, chip, member) == 2 * 3 + 2 * 4
    # Yesterday's grants do not count against today.
    for row in _grants(session, member):
        row.created_at = utcnow() - timedelta(days=1)
    session.flush()
    thread(session, member, room)
    commit_and_run(session, recorded_jobs, GRANT)
    assert balance(session, chip, member) == 14 + 3 + 4
    # A disabled rule pays nothing (and the change is audited).
    earning.update_rule(session, Actor(owner), amount_rule.id, RulePatch(active=False))
    assert (
        session.scalar(
            select(AuditLog.action)
            .where(AuditLog.target_id == amount_rule.id)
            .order_by(AuditLog.id.desc())
            .limit(1)
        )
        == "earn_rule.disable"
    )


def test_chip_supply_cap_is_respected(session: Session, world, recorded_jobs: list[jobs.Job]) -> None:  # type: ignore[no-untyped-def]
    community, owner, member, chip, room = world
    chip.supply_cap = 12
    session.flush()
    _rule(session, owner, community, EarnTrigger.POST_CREATED, 5)
    for _ in range(3):
        thread(session, member, room)
    commit_and_run(session, recorded_jobs, GRANT)
    assert balance(session, chip, member) == 10 and issuance_balance(session, chip) == -10


def test_event_checkin_and_course_completion_earn(
    session: Session, world, recorded_jobs: list[jobs.Job]
) -> None:  # type: ignore[no-untyped-def]
    community, owner, member, chip, _ = world
    _rule(session, owner, community, EarnTrigger.EVENT_CHECKIN, 7)
    _rule(session, owner, community, EarnTrigger.COURSE_COMPLETED, 11)
    start = utcnow() - timedelta(minutes=10)
    event = events.create_event(
        session,
        Actor(owner),
        community.id,
        EventIn(title="Meetup", timezone="Asia/Taipei", starts_at=start, ends_at=start + timedelta(hours=2)),
    )
    events.rsvp(session, Actor(member), event.id, RsvpIn())
    events.check_in(session, Actor(owner), event.id, CheckinIn(user_id=member.id))
    events.check_in(session, Actor(owner), event.id, CheckinIn(user_id=member.id))  # idempotent
    course = courses.create_course(session, Actor(owner), community.id, CourseIn(title="Basics"))
    lesson = courses.add_lesson(session, Actor(owner), course.id, LessonIn(title="One"))
    courses.publish_course(session, Actor(owner), course.id)
    courses.enrol(session, Actor(member), course.id)
    courses.complete_lesson(session, Actor(member), course.id, lesson.id)
    ran = commit_and_run(session, recorded_jobs, GRANT)
    assert [j.args[0] for j in ran] == ["event_checkin", "course_completed"]
    assert balance(session, chip, member) == 18
    assert {g.subject_type for g in _grants(session, member)} == {"event_rsvp", "enrollment"}


def test_challenges_claimed_approved_and_awarded(
    session: Session, world, recorded_jobs: list[jobs.Job]
) -> None:  # type: ignore[no-untyped-def]
    community, owner, member, chip, _ = world
    moderator = add_member(session, community, role=Role.MODERATOR)
    challenge = earning.create_challenge(
        session, Actor(owner), community.id, ChallengeIn(title="7-day streak", reward=20)
    )
    assert challenge.reward == 20 and challenge.chip_id == chip.id
    claim = earning.claim(session, Actor(member), challenge.id, ClaimIn(evidence="see my posts"))
    assert claim.status == "claimed"
    with pytest.raises(DomainError) as exc:
        earning.decide(session, Actor(member), claim.id, DecisionIn(decision="approve"))
    assert exc.value.code == "insufficient_role"
    earning.decide(session, Actor(moderator), claim.id, DecisionIn(decision="approve"))
    other = add_member(session, community)
    earning.award(session, Actor(moderator), challenge.id, other.id)
    loser = add_member(session, community)
    lost = earning.claim(session, Actor(loser), challenge.id, ClaimIn())
    earning.decide(session, Actor(moderator), lost.id, DecisionIn(decision="reject"))
    ran = commit_and_run(session, recorded_jobs, GRANT)
    assert len(ran) == 2
    assert balance(session, chip, member) == 20 and balance(session, chip, other) == 20
    assert balance(session, chip, loser) == 0
    # Another challenge's completion does not pay this challenge's reward rule.
    second = earning.create_challenge(
        session, Actor(owner), community.id, ChallengeIn(title="Other", reward=3)
    )
    earning.award(session, Actor(moderator), second.id, member.id)
    commit_and_run(session, recorded_jobs, GRANT)
    assert balance(session, chip, member) == 23


def test_onboarding_pays_once_per_membership(session: Session, world, recorded_jobs: list[jobs.Job]) -> None:  # type: ignore[no-untyped-def]
    community, owner, member, chip, _ = world
    _rule(session, owner, community, EarnTrigger.ONBOARDING_COMPLETED, 9)
    earning.onboarding_completed(session, Actor(member), community.id)
    earning.onboarding_completed(session, Actor(member), community.id)
    commit_and_run(session, recorded_jobs, GRANT)
    assert balance(session, chip, member) == 9


def test_rules_are_admin_only_and_use_the_community_chip(session: Session, world) -> None:  # type: ignore[no-untyped-def]
    community, owner, member, chip, _ = world
    with pytest.raises(DomainError) as exc:
        _rule(session, member, community, EarnTrigger.POST_CREATED, 1)
    assert exc.value.code == "insufficient_role"
    rule = _rule(session, owner, community, EarnTrigger.POST_CREATED, 1)
    assert rule.chip_id == chip.id
    personal = make_chip(session, community, member)
    with pytest.raises(DomainError) as exc:
        earning.create_rule(
            session,
            Actor(owner),
            community.id,
            RuleIn(name="x", trigger=EarnTrigger.POST_CREATED, amount=1, chip_id=personal.id),
        )
    assert exc.value.code == "not_chip_issuer"
    assert (
        session.scalar(
            select(func.count()).select_from(AuditLog).where(AuditLog.action == "earn_rule.create")
        )
        == 1
    )


@pytest.mark.parametrize("spent", [0, 4, 5])
def test_clawback_after_moderator_removal(
    session: Session, world, recorded_jobs: list[jobs.Job], spent: int
) -> None:  # type: ignore[no-untyped-def]
    community, owner, member, chip, room = world
    moderator = add_member(session, community, role=Role.MODERATOR)
    _rule(session, owner, community, EarnTrigger.POST_CREATED, 5)
    _, post_id = thread(session, member, room)
    commit_and_run(session, recorded_jobs, GRANT)
    assert balance(session, chip, member) == 5
    if spent:  # the member already passed some on
        sink = ledger.open_account(session, chip, owner.id)
        ledger.transfer(
            session,
            community_id=community.id,
            chip_id=chip.id,
            source=ledger.open_account(session, chip, member.id).id,
            target=sink.id,
            amount=spent,
            key=f"spend-{spent}",
        )
    conversation.delete_post(session, Actor(moderator), post_id)
    ran = commit_and_run(session, recorded_jobs, CLAWBACK)
    assert [j.args for j in ran] == [("post", post_id)]
    assert earning.clawback(session, "post", post_id) == []  # a second run does nothing
    [row] = _grants(session, member)
    assert row.status == GrantStatus.CLAWED_BACK
    assert (row.clawed_back_amount, row.shortfall) == (5 - spent, spent)
    assert balance(session, chip, member) == 0
    assert issuance_balance(session, chip) == -spent
    if spent < 5:
        tx = session.get(LedgerTransaction, row.clawback_transaction_id)
        assert tx is not None and tx.kind == TxKind.CLAWBACK
    else:
        assert row.clawback_transaction_id is None
    accounts_ok(session)


def test_authors_deleting_their_own_post_keep_their_grant(
    session: Session, world, recorded_jobs: list[jobs.Job]
) -> None:  # type: ignore[no-untyped-def]
    community, owner, member, chip, room = world
    _rule(session, owner, community, EarnTrigger.POST_CREATED, 5)
    _, post_id = thread(session, member, room)
    commit_and_run(session, recorded_jobs, GRANT)
    conversation.delete_post(session, Actor(member), post_id)
    assert commit_and_run(session, recorded_jobs, CLAWBACK) == []
    assert balance(session, chip, member) == 5


def test_a_post_removed_before_its_grant_job_ran_earns_nothing(
    session: Session, world, recorded_jobs: list[jobs.Job]
) -> None:  # type: ignore[no-untyped-def]
    community, owner, member, chip, room = world
    moderator = add_member(session, community, role=Role.MODERATOR)
    _rule(session, owner, community, EarnTrigger.POST_CREATED, 5)
    _, post_id = thread(session, member, room)
    conversation.delete_post(session, Actor(moderator), post_id)
    commit_and_run(session, recorded_jobs, GRANT, CLAWBACK)
    assert balance(session, chip, member) == 0 and _grants(session, member) == []

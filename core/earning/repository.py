"""All SQL for earning: rules, grants, caps, chip emission and challenges."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from core.models import (
    Challenge,
    ChallengeCompletion,
    CompletionStatus,
    EarnGrant,
    EarnRule,
    EarnTrigger,
    GrantStatus,
    LedgerTransaction,
    Post,
)


def active_rules(
    session: Session, community_id: int, trigger: EarnTrigger, challenge_id: int | None
) -> Sequence[EarnRule]:
    stmt = select(EarnRule).where(
        EarnRule.community_id == community_id, EarnRule.trigger == trigger, EarnRule.active.is_(True)
    )
    if trigger == EarnTrigger.CHALLENGE_COMPLETED:
        stmt = stmt.where((EarnRule.challenge_id.is_(None)) | (EarnRule.challenge_id == challenge_id))
    return session.scalars(stmt.order_by(EarnRule.id)).all()


def has_active_rule(session: Session, community_id: int, trigger: EarnTrigger) -> bool:
    found = session.scalar(
        select(EarnRule.id)
        .where(EarnRule.community_id == community_id, EarnRule.trigger == trigger, EarnRule.active.is_(True))
        .limit(1)
    )
    return found is not None


def rules_of(community_id: int) -> Select[EarnRule]:
    return select(EarnRule).where(EarnRule.community_id == community_id)


def grant_of(
    session: Session, rule_id: int, subject_type: str, subject_id: int, user_id: int
) -> EarnGrant | None:
    return session.scalar(
        select(EarnGrant).where(
            EarnGrant.rule_id == rule_id,
            EarnGrant.subject_type == subject_type,
            EarnGrant.subject_id == subject_id,
            EarnGrant.user_id == user_id,
        )
    )


def granted_since(session: Session, rule_id: int, user_id: int, since: datetime) -> tuple[int, int]:
    """(count, amount) of the member's grants under the rule since `since`, clawed back or not."""
    count, total = session.execute(
        select(func.count(), func.coalesce(func.sum(EarnGrant.amount), 0)).where(
            EarnGrant.rule_id == rule_id, EarnGrant.user_id == user_id, EarnGrant.created_at >= since
        )
    ).one()
    return int(count), int(total)


def lock_live_post(session: Session, post_id: int) -> bool:
    """Share-lock the post (a removal waits for us) and say whether it is still live."""
    post = session.scalar(
        select(Post)
        .where(Post.id == post_id)
        .with_for_update(read=True)
        .execution_options(populate_existing=True)
    )
    return post is not None and post.deleted_at is None


def reversal_of(session: Session, transaction_id: int) -> int | None:
    """The transaction that reversed `transaction_id` (a moderator's or a clawback), if any."""
    return session.scalar(select(LedgerTransaction.id).where(LedgerTransaction.reverses_id == transaction_id))


def grants_for_subject(session: Session, subject_type: str, subject_id: int) -> Sequence[EarnGrant]:
    return session.scalars(
        select(EarnGrant)
        .where(
            EarnGrant.subject_type == subject_type,
            EarnGrant.subject_id == subject_id,
            EarnGrant.status == GrantStatus.GRANTED,
        )
        .order_by(EarnGrant.id)
    ).all()


def lock_grant(session: Session, grant_id: int) -> EarnGrant | None:
    return session.scalar(
        select(EarnGrant)
        .where(EarnGrant.id == grant_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def grants_of(community_id: int, user_id: int) -> Select[EarnGrant]:
    return select(EarnGrant).where(EarnGrant.community_id == community_id, EarnGrant.user_id == user_id)


def challenge_rule(session: Session, challenge_id: int) -> EarnRule | None:
    return session.scalar(
        select(EarnRule).where(EarnRule.challenge_id == challenge_id).order_by(EarnRule.id).limit(1)
    )


def challenges_of(session: Session, community_id: int) -> Sequence[Challenge]:
    return session.scalars(
        select(Challenge).where(Challenge.community_id == community_id).order_by(Challenge.id.desc())
    ).all()


def completion_of(session: Session, challenge_id: int, user_id: int) -> ChallengeCompletion | None:
    return session.scalar(
        select(ChallengeCompletion)
        .where(ChallengeCompletion.challenge_id == challenge_id, ChallengeCompletion.user_id == user_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def completions_of(challenge_id: int, status: CompletionStatus | None) -> Select[ChallengeCompletion]:
    stmt = select(ChallengeCompletion).where(ChallengeCompletion.challenge_id == challenge_id)
    return stmt if status is None else stmt.where(ChallengeCompletion.status == status)

"""Shared setup for the tipping and earning tests: real rows through the real services."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import jobs
from core.access import Actor
from core.clock import utcnow
from core.conversation import service as conversation
from core.conversation.schemas import ChannelIn, ReplyIn, ThreadIn
from core.earning import service as earning
from core.ledger import service as ledger
from core.models import Chip, ChipKind, Community, LedgerAccount, Membership, User
from core.notifications import service as notifications
from core.tipping import service as tipping
from tests.factories import make_chip

_n = itertools.count(1)


def community_chip(session: Session, community: Community) -> Chip:
    """The community chip: the one the chips service made, or a new one."""
    found = session.scalar(
        select(Chip).where(Chip.community_id == community.id, Chip.kind == ChipKind.COMMUNITY)
    )
    return found or make_chip(session, community)


def age(session: Session, community: Community, user: User, days: int = 30) -> None:
    """Make a membership `days` old (new members are limited)."""
    membership = session.scalar(
        select(Membership).where(Membership.community_id == community.id, Membership.user_id == user.id)
    )
    assert membership is not None
    membership.joined_at = utcnow() - timedelta(days=days)
    session.flush()


def channel(session: Session, owner: User, community: Community) -> int:
    n = next(_n)
    return conversation.create_channel(
        session, Actor(owner), community.id, ChannelIn(slug=f"room-{n}", name=f"Room {n}")
    ).id


def thread(session: Session, author: User, channel_id: int, body: str = "hello") -> tuple[int, int]:
    """(thread id, opening post id)."""
    detail = conversation.create_thread(
        session, Actor(author), channel_id, ThreadIn(title="A thread", body=body)
    )
    return detail.id, detail.opening_post.id


def reply(session: Session, author: User, thread_id: int, body: str = "a reply") -> int:
    return conversation.create_reply(session, Actor(author), thread_id, ReplyIn(body=body)).id


def balance(session: Session, chip: Chip, user: User) -> int:
    account = ledger.open_account(session, chip, user.id)
    session.refresh(account)
    return account.balance


def issuance_balance(session: Session, chip: Chip) -> int:
    account = ledger.issuance_account(session, chip.id)
    session.refresh(account)
    return account.balance


# What each job's task runs, on the test's session (tasks open their own sessions on the
# committed database; the test's rows live in a transaction that is rolled back).
RUNNERS: dict[str, Callable[..., Any]] = {
    "hearth.earning.grant": earning.grant,
    "hearth.earning.clawback": earning.clawback,
    "hearth.tipping.tip_received": notifications.tip_received,
    "hearth.tipping.detect_rings": tipping.detect_rings,
}


def commit_and_run(session: Session, recorded: list[jobs.Job], *names: str) -> list[jobs.Job]:
    """Commit (the jobs are dispatched after commit) and run the recorded jobs named."""
    session.commit()
    ran = [job for job in recorded if job.name in names]
    recorded.clear()
    for job in ran:
        RUNNERS[job.name](session, *job.args, **job.kwargs)
    session.flush()
    return ran


def accounts_ok(session: Session) -> None:
    report = ledger.check_invariants(session)
    assert report.ok, report.problems
    assert all(a.balance >= 0 for a in session.scalars(select(LedgerAccount)) if a.owner_id is not None)

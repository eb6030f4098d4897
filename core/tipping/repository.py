"""All SQL for tipping: tips, window sums, reputation totals and ring reports."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import ColumnElement, Select, and_, func, or_, select, update
from sqlalchemy.orm import Session

from core.clock import as_utc, utcnow
from core.db import dialect_insert
from core.models import (
    LedgerAccount,
    LedgerTransaction,
    MemberReputation,
    Membership,
    Post,
    RingStatus,
    Tip,
    TippingPolicy,
    TipRingReport,
    User,
)

POLICY_DEFAULTS: dict[str, int] = {
    "new_account_days": 7,
    "new_account_daily_limit": 50,
    "reputation_window_hours": 24,
    "reputation_daily_cap": 100,
    "reputation_max_per_tip": 20,
    "ring_window_days": 7,
    "ring_min_tips": 2,
    "ring_min_volume": 10,
}


def policy(session: Session, community_id: int) -> TippingPolicy:
    """The community's policy; an unsaved row with the defaults when it never set one."""
    found = session.scalar(select(TippingPolicy).where(TippingPolicy.community_id == community_id))
    if found is not None:
        return found
    defaults = TippingPolicy(community_id=community_id, **POLICY_DEFAULTS)
    return defaults


def tip_by_key(session: Session, key: str) -> Tip | None:
    return session.scalar(select(Tip).where(Tip.idempotency_key == key))


def tip_by_transaction(session: Session, transaction_id: int) -> Tip | None:
    return session.scalar(select(Tip).where(Tip.transaction_id == transaction_id))


def lock_accounts(session: Session, account_ids: Sequence[int]) -> None:
    session.execute(
        select(LedgerAccount.id)
        .where(LedgerAccount.id.in_(sorted(set(account_ids))))
        .order_by(LedgerAccount.id)
        .with_for_update()
    ).all()


def _standing() -> ColumnElement[bool]:
    """A tip whose transaction a moderator reversed is, for the tipper's limits and for the
    reputation a later tip earns, as if it had never been given (its chips went back)."""
    reversal = select(LedgerTransaction.id).where(LedgerTransaction.reverses_id == Tip.transaction_id)
    return ~reversal.exists()


def amount_tipped_since(session: Session, community_id: int, tipper_id: int, since: datetime) -> int:
    total = session.scalar(
        select(func.coalesce(func.sum(Tip.amount), 0)).where(
            Tip.community_id == community_id, Tip.tipper_id == tipper_id, Tip.created_at >= since, _standing()
        )
    )
    return int(total or 0)


def tipper_since(
    session: Session,
    community_id: int,
    tipper_id: int,
    recipient_id: int,
    pair_since: datetime,
    day_start: datetime,
) -> tuple[int, int]:
    """What a tip's reputation depends on, in one query: the tipper's standing tips to this
    recipient since `pair_since`, and the reputation points all their standing tips gave
    since `day_start`."""
    earliest = min(pair_since, day_start)
    pair, given = session.execute(
        select(
            func.count().filter(Tip.recipient_id == recipient_id, Tip.created_at >= pair_since),
            func.coalesce(func.sum(Tip.reputation_points).filter(Tip.created_at >= day_start), 0),
        ).where(
            Tip.community_id == community_id,
            Tip.tipper_id == tipper_id,
            Tip.created_at >= earliest,
            _standing(),
        )
    ).one()
    return int(pair or 0), int(given or 0)


def has_posted(session: Session, community_id: int, user_id: int) -> bool:
    return (
        session.scalar(
            select(Post.id)
            .where(Post.community_id == community_id, Post.author_id == user_id, Post.deleted_at.is_(None))
            .limit(1)
        )
        is not None
    )


def add_reputation(session: Session, community_id: int, user_id: int, points: int, tips: int) -> None:
    """Add to the running total in one statement, creating the row on first use: an upsert,
    so a concurrent first tip to the same member adds to the row the other one created."""
    stmt = dialect_insert(session)(MemberReputation).values(
        community_id=community_id, user_id=user_id, points=points, tips_received=tips, updated_at=utcnow()
    )
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["community_id", "user_id"],
            set_={
                "points": MemberReputation.points + stmt.excluded.points,
                "tips_received": MemberReputation.tips_received + stmt.excluded.tips_received,
                "updated_at": stmt.excluded.updated_at,
            },
        )
    )


def reputation(session: Session, community_id: int, user_id: int) -> MemberReputation | None:
    return session.scalar(
        select(MemberReputation)
        .where(MemberReputation.community_id == community_id, MemberReputation.user_id == user_id)
        .execution_options(populate_existing=True)
    )


def leaderboard(session: Session, community_id: int, limit: int) -> Sequence[tuple[MemberReputation, str]]:
    rows = session.execute(
        select(MemberReputation, User.display_name)
        .join(User, User.id == MemberReputation.user_id)
        .where(MemberReputation.community_id == community_id, MemberReputation.points > 0)
        .order_by(MemberReputation.points.desc(), MemberReputation.user_id.asc())
        .limit(limit)
    ).all()
    return [(row[0], row[1]) for row in rows]


def tips_sent(community_id: int, user_id: int) -> Select[Tip]:
    return select(Tip).where(Tip.community_id == community_id, Tip.tipper_id == user_id)


def tips_received(community_id: int, user_id: int) -> Select[Tip]:
    return select(Tip).where(Tip.community_id == community_id, Tip.recipient_id == user_id)


class EdgeTotals(NamedTuple):
    """One tipper -> recipient pair's tips in the ring window."""

    tips: int
    volume: int
    last: datetime


def ring_edges(
    session: Session, community_id: int, since: datetime, min_tips: int
) -> dict[tuple[int, int], EdgeTotals]:
    """The pairs that tipped at least `min_tips` times since `since`, summed in the database.

    Every tip of the window counts, however many there are: only the (few) strong pairs come
    back, read along `ix_tips_pair_time`.
    """
    rows = session.execute(
        select(Tip.tipper_id, Tip.recipient_id, func.count(), func.sum(Tip.amount), func.max(Tip.created_at))
        .where(Tip.community_id == community_id, Tip.created_at >= since)
        .group_by(Tip.tipper_id, Tip.recipient_id)
        .having(func.count() >= min_tips)
    ).all()
    return {(a, b): EdgeTotals(int(n), int(volume), as_utc(last)) for a, b, n, volume, last in rows}


def tip_ids_on_edges(
    session: Session, community_id: int, since: datetime, pairs: Sequence[tuple[int, int]]
) -> dict[tuple[int, int], list[int]]:
    """The ids of the window's tips along each pair (a ring report's evidence)."""
    found: dict[tuple[int, int], list[int]] = {pair: [] for pair in pairs}
    if not pairs:
        return found
    rows = session.execute(
        select(Tip.tipper_id, Tip.recipient_id, Tip.id)
        .where(
            Tip.community_id == community_id,
            Tip.created_at >= since,
            or_(*(and_(Tip.tipper_id == a, Tip.recipient_id == b) for a, b in pairs)),
        )
        .order_by(Tip.id)
    ).all()
    for a, b, tip_id in rows:
        found[(a, b)].append(tip_id)
    return found


def confirmed_rings(session: Session, community_id: int) -> Sequence[TipRingReport]:
    return session.scalars(
        select(TipRingReport).where(
            TipRingReport.community_id == community_id, TipRingReport.status == RingStatus.CONFIRMED
        )
    ).all()


def latest_report(session: Session, community_id: int, members_key: str) -> TipRingReport | None:
    return session.scalar(
        select(TipRingReport)
        .where(TipRingReport.community_id == community_id, TipRingReport.members_key == members_key)
        .order_by(TipRingReport.id.desc())
        .limit(1)
        .execution_options(populate_existing=True)  # its status as committed, not as first read
    )


def reports(community_id: int, status: RingStatus | None) -> Select[TipRingReport]:
    stmt = select(TipRingReport).where(TipRingReport.community_id == community_id)
    return stmt if status is None else stmt.where(TipRingReport.status == status)


def lock_open_reports(session: Session, community_id: int) -> None:
    """Lock the community's open reports, in id order (before any tip: see `sweep_rings`)."""
    session.execute(
        select(TipRingReport.id)
        .where(TipRingReport.community_id == community_id, TipRingReport.status == RingStatus.OPEN)
        .order_by(TipRingReport.id)
        .with_for_update()
    ).all()


def lock_report(session: Session, report_id: int) -> TipRingReport | None:
    return session.scalar(
        select(TipRingReport)
        .where(TipRingReport.id == report_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def lock_tips(session: Session, tip_ids: Sequence[int]) -> Sequence[Tip]:
    if not tip_ids:
        return []
    return session.scalars(
        select(Tip)
        .where(Tip.id.in_(tip_ids))
        .order_by(Tip.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()


def lock_membership(session: Session, membership_id: int) -> None:
    session.execute(select(Membership.id).where(Membership.id == membership_id).with_for_update())


def communities_with_unscanned_tips(session: Session) -> list[int]:
    """Communities with tips no ring detection has claimed yet (read via a partial index)."""
    return list(session.scalars(select(Tip.community_id).where(~Tip.ring_scanned).distinct()))


def claim_unscanned_tips(session: Session, community_id: int) -> int:
    """Mark the community's committed, unscanned tips as scanned; returns how many.

    Only rows committed when the UPDATE runs are claimed: a tip still in flight (even one
    with a lower id) keeps its flag and is claimed by a later sweep. A concurrent sweep
    waits on the rows this one claimed and then finds them claimed.
    """
    result = session.execute(
        update(Tip)
        .where(Tip.community_id == community_id, ~Tip.ring_scanned)
        .values(ring_scanned=True)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]

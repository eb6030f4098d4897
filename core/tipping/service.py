"""Tipping rules: who may tip whom with what, the reputation a tip earns, and ring detection.

Order of a tip: replay check (a retry returns the first tip, whatever changed
since), permissions, validation, then, under the tipper's account lock, the
new-account limit and the reputation computation, then one ledger transaction.
Everything refused is refused before the ledger write, so it changes nothing.

Reputation resists farming:
- points come from the tip's amount, capped per tip (`reputation_max_per_tip`);
- the n-th tip from the same tipper to the same recipient within the window
  earns 1/2**n of that (1st full, 2nd half, ...);
- tippers younger than `new_account_days` or who never posted give nothing;
- a tipper gives at most `reputation_daily_cap` points per UTC day;
- members of a confirmed ring give each other nothing, and confirming a ring
  takes back the points its evidence tips gave;
- a tip a moderator reversed leaves the recipient's reputation, and no longer counts
  toward the tipper's halving, daily cap or new-member allowance (its chips went back).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, time, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import audit, jobs
from core.access import Actor, CommunityContext, community_context
from core.chips import repository as chips_repo
from core.clock import as_utc, utcnow
from core.communities import repository as community_repo
from core.conversation import service as conversation
from core.errors import Conflict, InvalidInput, NotFound
from core.ledger import service as ledger
from core.ledger.errors import key_reused
from core.models import (
    Chip,
    Membership,
    MembershipStatus,
    Post,
    RingStatus,
    Role,
    Tip,
    TippingPolicy,
    TipRingReport,
    TxKind,
)
from core.pagination import Page, paginate
from core.schemas import PageOut
from core.social import errors as social_errors
from core.tipping import repository as repo
from core.tipping.schemas import (
    LeaderboardEntry,
    PolicyOut,
    PolicyPatch,
    ReputationOut,
    RingReportOut,
    RingReportPatch,
    TipIn,
    TipOut,
)

TIP_RECEIVED_JOB = "hearth.tipping.tip_received"

MAX_CYCLE = 4

log = logging.getLogger(__name__)


def _day_start(now: datetime) -> datetime:
    return as_utc(datetime.combine(now.date(), time.min))


# --- tipping ----------------------------------------------------------------------------------


def tip_member(
    session: Session, actor: Actor, community_id: int, recipient_id: int, data: TipIn, client_key: str | None
) -> TipOut:
    ctx = community_context(session, actor, community_id)
    return _tip(session, actor, ctx, recipient_id, None, data, client_key)


def tip_post(session: Session, actor: Actor, post_id: int, data: TipIn, client_key: str | None) -> TipOut:
    # The conversation rules decide visibility: a post the tipper cannot see is "not found".
    conversation.get_post(session, actor, post_id)
    post = session.get(Post, post_id)
    assert post is not None
    if post.deleted_at is not None:
        raise Conflict("this post was deleted", code="post_deleted")
    ctx = community_context(session, actor, post.community_id)
    return _tip(session, actor, ctx, post.author_id, post, data, client_key)


def _ledger_key(actor: Actor, client_key: str | None) -> str:
    return ledger.client_key("tip", actor.id, client_key)


def _same_request(tip: Tip, community_id: int, recipient_id: int, post: Post | None, data: TipIn) -> bool:
    return (tip.community_id, tip.recipient_id, tip.post_id, tip.chip_id, tip.amount, tip.note) == (
        community_id,
        recipient_id,
        post.id if post else None,
        data.chip_id,
        data.amount,
        data.note,
    )


def _tip(
    session: Session,
    actor: Actor,
    ctx: CommunityContext,
    recipient_id: int,
    post: Post | None,
    data: TipIn,
    client_key: str | None,
) -> TipOut:
    # A refused tip changes nothing, not even the recipient's new (empty) wallet account.
    with session.begin_nested():
        return _tip_in_savepoint(session, actor, ctx, recipient_id, post, data, client_key)


def _tip_in_savepoint(
    session: Session,
    actor: Actor,
    ctx: CommunityContext,
    recipient_id: int,
    post: Post | None,
    data: TipIn,
    client_key: str | None,
) -> TipOut:
    actor.require_personal()  # spending is the owner's own act, never an API key's
    key = _ledger_key(actor, client_key)
    community_id = ctx.community.id
    # The key, the recipient's membership and blocks in one round trip. A tip's ledger
    # transaction carries the tip's own key, written in the same database transaction.
    facts = chips_repo.payee_facts(session, community_id, actor.id, {recipient_id}, key)
    existing = repo.tip_by_key(session, key) if facts.replay else None
    if existing is not None:
        if not _same_request(existing, community_id, recipient_id, post, data):
            raise key_reused()
        return TipOut.model_validate(existing).model_copy(update={"replayed": True})
    tipper = ctx.require_member()
    if recipient_id == actor.id:
        raise InvalidInput("you cannot tip yourself", code="cannot_tip_self")
    if facts.members == 0:  # not an active member
        raise NotFound("member not found", code="member_not_found")
    if facts.blocked:
        raise social_errors.blocked()  # a tip notifies its recipient: none between a blocked pair
    chip = session.get(Chip, data.chip_id)
    if chip is None or chip.community_id != community_id:
        raise NotFound("chip not found", code="chip_not_found")
    if not chip.tippable:
        raise Conflict("this chip cannot be used for tips", code="chip_not_tippable")
    if chip.expired:
        raise Conflict("this chip has expired", code="chip_expired")
    if chip.frozen:
        raise Conflict("this chip is frozen", code="chip_frozen", extra={"chip_id": chip.id})

    wallets = ledger.existing_wallet_ids(session, chip.id, {actor.id, recipient_id})
    if actor.id not in wallets:
        raise Conflict("not enough chips available in this wallet", code="insufficient_funds")
    if recipient_id not in wallets:
        wallets.update(ledger.open_wallets(session, chip, {recipient_id}))
    source, target = wallets[actor.id], wallets[recipient_id]
    # The tipper's membership row serialises their own tips across every chip: the daily
    # limits below add up tips in all chips, which the wallet locks alone would not cover.
    # Lock order everywhere: membership, then ledger accounts.
    repo.lock_membership(session, tipper.id)
    # Both wallets, in id order as the ledger itself locks them: the tipper's limits below
    # are read under the lock, and two members tipping each other cannot deadlock.
    repo.lock_accounts(session, [source, target])
    policy = repo.policy(session, community_id)
    now = utcnow()
    _check_new_account_limit(session, policy, tipper, data.amount, now)
    points = _reputation_points(session, policy, tipper, recipient_id, data.amount, now)
    posted = ledger.transfer(
        session,
        community_id=community_id,
        chip_id=chip.id,
        source=source,
        target=target,
        amount=data.amount,
        key=key,
        kind=TxKind.TIP,
        actor_id=actor.id,
        memo=data.note,
        subject=("post", post.id) if post else ("user", recipient_id),
    )
    if posted.replayed:
        # A concurrent retry of this very request committed first: return its tip.
        first = repo.tip_by_transaction(session, posted.transaction_id)
        if first is None:
            raise key_reused()
        return TipOut.model_validate(first).model_copy(update={"replayed": True})
    tip = Tip(
        community_id=community_id,
        tipper_id=actor.id,
        recipient_id=recipient_id,
        post_id=post.id if post else None,
        chip_id=chip.id,
        amount=data.amount,
        note=data.note,
        idempotency_key=key,
        transaction_id=posted.transaction_id,
        reputation_points=points,
        discounted=False,
        created_at=now,
    )
    session.add(tip)
    session.flush()
    repo.add_reputation(session, community_id, recipient_id, points, 1)
    jobs.enqueue(session, TIP_RECEIVED_JOB, tip.id)
    # No ring detection here: the tip waits (`ring_scanned` false) for the next sweep.
    return TipOut.model_validate(tip)


def withdraw_reversed_tip(session: Session, transaction_id: int) -> bool:
    """A moderator reversed a tip's transaction: the tip leaves the recipient's reputation.

    Its points (unless a confirmed ring took them back already) and its count in
    `tips_received` go, in the reversal's own database transaction. The caller calls this
    only when it posted the reversal now: a transaction is reversed at most once (the
    ledger's unique `reverses_id`), so the count is taken back exactly once. The tip is
    marked `discounted`, so a ring confirmed later takes nothing back a second time.
    Returns False when the transaction was not a tip's.
    """
    found = repo.tip_by_transaction(session, transaction_id)
    if found is None:
        return False
    # The tip's row lock, as a ring confirmation takes it: the two never both take its points.
    (tip,) = repo.lock_tips(session, [found.id])
    points = 0 if tip.discounted else tip.reputation_points
    tip.discounted = True
    session.flush()
    repo.add_reputation(session, tip.community_id, tip.recipient_id, -points, -1)
    return True


def _is_new(policy: TippingPolicy, membership: Membership, now: datetime) -> bool:
    return as_utc(membership.joined_at) > now - timedelta(days=policy.new_account_days)


def _check_new_account_limit(
    session: Session, policy: TippingPolicy, tipper: Membership, amount: int, now: datetime
) -> None:
    if not _is_new(policy, tipper, now):
        return
    spent = repo.amount_tipped_since(session, tipper.community_id, tipper.user_id, _day_start(now))
    if spent + amount > policy.new_account_daily_limit:
        raise Conflict(
            f"new members may tip at most {policy.new_account_daily_limit} chips a day "
            f"for their first {policy.new_account_days} days",
            code="new_account_tip_limit",
            extra={"limit": policy.new_account_daily_limit, "used": spent},
        )


def _reputation_points(
    session: Session, policy: TippingPolicy, tipper: Membership, recipient_id: int, amount: int, now: datetime
) -> int:
    community_id = tipper.community_id
    base = min(amount, policy.reputation_max_per_tip)
    if base <= 0 or _is_new(policy, tipper, now):
        return 0
    if not repo.has_posted(session, community_id, tipper.user_id):
        return 0
    for ring in repo.confirmed_rings(session, community_id):
        if tipper.user_id in ring.members and recipient_id in ring.members:
            return 0
    window = now - timedelta(hours=policy.reputation_window_hours)
    earlier, given = repo.tipper_since(
        session, community_id, tipper.user_id, recipient_id, window, _day_start(now)
    )
    points = base >> min(earlier, 62)
    return max(0, min(points, policy.reputation_daily_cap - given))


# --- reading ----------------------------------------------------------------------------------


def list_tips(
    session: Session, actor: Actor, community_id: int, *, direction: str, cursor: str | None, limit: int
) -> PageOut[TipOut]:
    community_context(session, actor, community_id).require_member()
    stmt = (
        repo.tips_sent(community_id, actor.id)
        if direction == "sent"
        else repo.tips_received(community_id, actor.id)
    )
    page: Page[Tip] = paginate(session, stmt, Tip.id, cursor=cursor, limit=limit)
    return page.map(TipOut.model_validate).out()


def get_reputation(session: Session, actor: Actor, community_id: int, user_id: int) -> ReputationOut:
    community_context(session, actor, community_id).require_member()
    member = community_repo.membership(session, community_id, user_id)
    if member is None or member.status != MembershipStatus.ACTIVE:
        raise NotFound("member not found", code="member_not_found")
    row = repo.reputation(session, community_id, user_id)
    return ReputationOut(
        community_id=community_id,
        user_id=user_id,
        points=row.points if row else 0,
        tips_received=row.tips_received if row else 0,
    )


def leaderboard(session: Session, actor: Actor, community_id: int, *, limit: int) -> list[LeaderboardEntry]:
    community_context(session, actor, community_id).require_member()
    return [
        LeaderboardEntry(
            rank=i + 1,
            user_id=row.user_id,
            display_name=name,
            points=row.points,
            tips_received=row.tips_received,
        )
        for i, (row, name) in enumerate(repo.leaderboard(session, community_id, limit))
    ]


# --- policy -----------------------------------------------------------------------------------


def _policy_out(policy: TippingPolicy) -> PolicyOut:
    return PolicyOut.model_validate(policy)


def get_policy(session: Session, actor: Actor, community_id: int) -> PolicyOut:
    community_context(session, actor, community_id).require_member()
    return _policy_out(repo.policy(session, community_id))


def update_policy(session: Session, actor: Actor, community_id: int, patch: PolicyPatch) -> PolicyOut:
    community_context(session, actor, community_id).require_role(Role.ADMIN)
    policy = repo.policy(session, community_id)
    fields = list(repo.POLICY_DEFAULTS)
    before = {k: getattr(policy, k) for k in fields}
    if policy.id is None:
        session.add(policy)
    for name, value in patch.model_dump(exclude_none=True).items():
        setattr(policy, name, value)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:  # a concurrent first save: retrying sees the row
        raise Conflict("the policy changed meanwhile; retry", code="concurrent_update") from exc
    audit.record(
        session,
        actor,
        "tipping.policy_update",
        policy,
        community_id=community_id,
        before=before,
        after={k: getattr(policy, k) for k in fields},
    )
    return _policy_out(policy)


# --- ring detection ---------------------------------------------------------------------------

UnitOfWork = Callable[[], AbstractContextManager[Session]]


def _units(target: Session | UnitOfWork) -> UnitOfWork:
    """A factory of units of work (the beat task passes `session_scope`), or one session whose
    units are savepoints (a unit that fails rolls back alone)."""
    if isinstance(target, Session):
        return lambda: _savepoint(target)
    return target


@contextmanager
def _savepoint(session: Session) -> Iterator[Session]:
    with session.begin_nested():
        yield session


def sweep_rings(units: Session | UnitOfWork) -> list[int]:
    """Run ring detection once for each community that has tips no run has examined yet.

    Tips do no detection work themselves; this beat job (`tipping-sweep-rings`, every minute) does,
    so a burst of any size costs each community one detection per sweep. Each community is
    one unit of work: it claims its unscanned tips (`ring_scanned`, committed with the tip)
    and runs `detect_rings` over the whole window in the same transaction, so a failed run
    leaves its tips unclaimed for the next sweep, and the other communities are examined all
    the same (the failure is logged). A tip that commits after the claim, even with a lower id
    than tips already examined, is still unclaimed then: nothing is skipped.
    Returns the ids of the communities examined.
    """
    run = _units(units)
    with run() as session:
        due = repo.communities_with_unscanned_tips(session)
    examined = []
    for community_id in due:
        try:
            with run() as session:
                if _sweep_community(session, community_id):
                    examined.append(community_id)
        except Exception:  # one community's failure must not hold up the others' detection
            log.exception("ring sweep of community %s failed; its tips wait for the next sweep", community_id)
    return examined


def _sweep_community(session: Session, community_id: int) -> bool:
    # One lock order with a moderator resolving a report (`update_report`: the report, then its
    # evidence tips): the community's open reports first, then the tips claimed, so neither
    # waits for the other while holding what the other needs.
    repo.lock_open_reports(session, community_id)
    if not repo.claim_unscanned_tips(session, community_id):
        return False
    detect_rings(session, community_id)
    return True


def detect_rings(session: Session, community_id: int) -> list[int]:
    """Find reciprocal tipping cycles (length 2 to 4) in the window and report each once.

    An edge a->b counts when a tipped b at least `ring_min_tips` times in the
    window; a cycle is reported when the volume flowing all the way round it
    (its smallest edge volume) reaches `ring_min_volume`. An open report of the
    same members is refreshed; a resolved one is reopened only by tips made
    after it was resolved. Returns the ids of reports created or refreshed.

    The edges are summed in the database over every tip of the window (no row cap), and only
    the edges of reported cycles read their tip ids (the evidence).
    `sweep_rings` runs it; run alone (the `hearth.tipping.detect_rings` task) it examines
    the window now without claiming anything.
    """
    policy = repo.policy(session, community_id)
    since = utcnow() - timedelta(days=policy.ring_window_days)
    strong = repo.ring_edges(session, community_id, since, policy.ring_min_tips)
    graph: dict[int, list[int]] = defaultdict(list)
    for a, b in sorted(strong):
        graph[a].append(b)
    rings = []
    for cycle in _cycles(graph):
        pairs = [(cycle[i], cycle[(i + 1) % len(cycle)]) for i in range(len(cycle))]
        flow = min(strong[p].volume for p in pairs)
        if flow >= policy.ring_min_volume:
            rings.append((cycle, pairs, flow * len(cycle)))
    tip_ids = repo.tip_ids_on_edges(
        session, community_id, since, sorted({p for _, ps, _ in rings for p in ps})
    )
    touched = []
    for cycle, pairs, score in rings:
        report_id = _report(session, community_id, cycle, pairs, strong, tip_ids, score)
        if report_id is not None:
            touched.append(report_id)
    return touched


def _cycles(graph: dict[int, list[int]]) -> list[list[int]]:
    """Simple cycles of length 2..MAX_CYCLE, each once: it starts at its smallest member."""
    found: list[list[int]] = []

    def walk(start: int, path: list[int]) -> None:
        for nxt in graph.get(path[-1], ()):
            if nxt == start and len(path) >= 2:
                found.append(list(path))
            elif nxt > start and nxt not in path and len(path) < MAX_CYCLE:
                walk(start, [*path, nxt])

    for start in sorted(graph):
        walk(start, [start])
    return found


def _report(
    session: Session,
    community_id: int,
    cycle: list[int],
    pairs: list[tuple[int, int]],
    strong: dict[tuple[int, int], repo.EdgeTotals],
    tip_ids: dict[tuple[int, int], list[int]],
    score: int,
) -> int | None:
    members_key = ",".join(str(m) for m in sorted(cycle))
    evidence = {
        "edges": [
            {
                "tipper_id": a,
                "recipient_id": b,
                "tips": strong[(a, b)].tips,
                "volume": strong[(a, b)].volume,
                "tip_ids": tip_ids[(a, b)],
            }
            for a, b in pairs
        ]
    }
    newest = max(strong[p].last for p in pairs)
    latest = repo.latest_report(session, community_id, members_key)
    if latest is not None and latest.status == RingStatus.OPEN:
        if latest.evidence != evidence:
            latest.evidence, latest.score = evidence, score
            session.flush()
        return latest.id
    if latest is not None and latest.resolved_at is not None and as_utc(latest.resolved_at) >= newest:
        return None
    try:
        with session.begin_nested():
            report = TipRingReport(
                community_id=community_id,
                members=cycle,
                members_key=members_key,
                evidence=evidence,
                score=score,
                status=RingStatus.OPEN,
            )
            session.add(report)
    except IntegrityError:  # a concurrent run reported the same ring
        return None
    return report.id


def list_reports(
    session: Session,
    actor: Actor,
    community_id: int,
    *,
    status: RingStatus | None,
    cursor: str | None,
    limit: int,
) -> PageOut[RingReportOut]:
    community_context(session, actor, community_id).require_role(Role.MODERATOR)
    page: Page[TipRingReport] = paginate(
        session, repo.reports(community_id, status), TipRingReport.id, cursor=cursor, limit=limit
    )
    return page.map(RingReportOut.model_validate).out()


def update_report(session: Session, actor: Actor, report_id: int, patch: RingReportPatch) -> RingReportOut:
    """Confirm or dismiss an open report. Confirming takes back the points of its evidence tips."""
    found = session.get(TipRingReport, report_id)
    if found is None:
        raise NotFound("report not found", code="report_not_found")
    try:
        ctx = community_context(session, actor, found.community_id)
    except NotFound as exc:
        raise NotFound("report not found", code="report_not_found") from exc
    if not ctx.is_member:
        raise NotFound("report not found", code="report_not_found")
    ctx.require_role(Role.MODERATOR)
    report = repo.lock_report(session, report_id)
    assert report is not None
    status = RingStatus(patch.status)
    if report.status == status:
        return RingReportOut.model_validate(report)
    if report.status != RingStatus.OPEN or status == RingStatus.OPEN:
        raise Conflict("this report was already resolved", code="report_already_resolved")
    before = audit.snapshot(report, ["status"])
    report.status = status
    report.resolved_by, report.resolved_at = actor.id, utcnow()
    if status == RingStatus.CONFIRMED:
        tip_ids = [tid for edge in report.evidence.get("edges", []) for tid in edge["tip_ids"]]
        for tip in repo.lock_tips(session, tip_ids):
            if not tip.discounted:
                tip.discounted = True
                if tip.reputation_points:
                    repo.add_reputation(
                        session, tip.community_id, tip.recipient_id, -tip.reputation_points, 0
                    )
    session.flush()
    audit.record(
        session,
        actor,
        f"tip_ring.{status.value}",
        report,
        community_id=report.community_id,
        before=before,
        after=audit.snapshot(report, ["status", "resolved_by"]),
    )
    return RingReportOut.model_validate(report)

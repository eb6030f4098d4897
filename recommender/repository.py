"""All SQL of the recommender: one community's corpus, and the text of each entity.

The corpus is built with a fixed number of set-based queries, whatever the community's
size (no query per member or item). What is read, and what never is:

- members: active memberships of accounts that are not disabled and did not opt out of
  recommendations; their profile is their bio plus their latest posts in channels that
  every member can read (never a tier- or role-gated channel, never a DM);
- items: threads (not deleted, in channels that are not archived) with their opening
  post, scheduled events that have not been over for long, published courses;
- interactions between those: follows, tips, replies (on the thread, and to the thread's
  author), reactions (a "view" of the thread), RSVPs and check-ins, enrolments.

Opted-out members' interactions are left out as well: their behaviour is profiling too.
Direct messages (`conversations`, `direct_messages`) are never queried here.

The texts embedded for an entity are built by the same functions whether one entity or a
whole community is read, so content hashes agree between the embed job, the beat refresh
and the corpus.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, delete, func, select
from sqlalchemy.orm import Session

from core.clock import utcnow
from core.models import (
    Channel,
    Community,
    Course,
    EmbeddingEntity,
    Enrollment,
    Event,
    EventRsvp,
    EventStatus,
    FeedbackKind,
    Follow,
    Language,
    Lesson,
    Membership,
    MembershipStatus,
    Post,
    Reaction,
    RecommendationFeedback,
    RecommenderState,
    Role,
    RsvpStatus,
    Thread,
    Tier,
    Tip,
    User,
)
from recommender.corpus import TIERS, Corpus, Interaction, Item, ItemKind, Member
from recommender.corpus import Tier as TierKey

# How much of a member's public writing goes into their profile, and of an item's text.
MEMBER_POSTS = 5
POST_CHARS = 300
ITEM_CHARS = 2000
# Events stay in the corpus this long after they end: recent attendance is a strong signal.
EVENT_GRACE = timedelta(days=30)

_MENTION = re.compile(r"<@\d+>")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


@dataclass(frozen=True, slots=True)
class Gate:
    """Who may open an item: a minimum tier (by id) and, for threads, a minimum role."""

    min_tier_id: int | None
    min_role: Role = Role.MEMBER


@dataclass
class Snapshot:
    """One community as the recommender sees it, plus what request-time filters need."""

    community_id: int
    corpus: Corpus
    # corpus id -> (entity type, entity id) of its stored embedding
    entities: dict[str, tuple[EmbeddingEntity, int]] = field(default_factory=dict)
    gates: dict[str, Gate] = field(default_factory=dict)
    authors: dict[str, int] = field(default_factory=dict)  # item id -> user id of its author/host
    ends_at: dict[str, datetime] = field(default_factory=dict)  # event id -> end
    # Indexes for request-time filters, so that a request costs O(what it filters), not O(items).
    # Every item (thread, event, course) by the user who wrote or hosts it: a block hides them all.
    items_by_author: dict[int, list[str]] = field(default_factory=dict)
    role_gated: dict[str, Role] = field(default_factory=dict)  # items only some roles may open

    def texts(self) -> dict[tuple[EmbeddingEntity, int], str]:
        out: dict[tuple[EmbeddingEntity, int], str] = {}
        for mid, member in self.corpus.members.items():
            out[self.entities[mid]] = member.text()
        for iid, item in self.corpus.items.items():
            out[self.entities[iid]] = item.embed_text()
        return out


def member_id(user_id: int) -> str:
    return f"m:{user_id}"


def item_id(kind: ItemKind, row_id: int) -> str:
    return f"{kind}:{row_id}"


def parse_target(target: str) -> tuple[str, int] | None:
    """("m" | "event" | "course" | "thread", id) of a corpus id, or None if it is not one."""
    prefix, _, raw = target.partition(":")
    if prefix not in {"m", "event", "course", "thread"} or not raw.isdigit() or len(raw) > 18:
        return None
    value = int(raw)
    return (prefix, value) if value >= 1 else None


# --- text -------------------------------------------------------------------------


def _clip(text: str, limit: int) -> str:
    text = _MENTION.sub("", text).strip()
    return text if len(text) <= limit else text[:limit]


def member_profile(bio: str, posts: Iterable[str]) -> str:
    parts = [bio.strip(), *(p for p in posts if p)]
    return "\n".join(p for p in parts if p)


def _lang(text: str, hint: Language | None, default: Language) -> Language:
    """The language of a text: its author's when the script agrees, else a guess by script."""
    cjk = bool(_CJK.search(text))
    if hint is not None and cjk == (hint != Language.EN):
        return hint
    if not cjk:
        return Language.EN
    return default if default != Language.EN else Language.ZH_TW


def tier_keys(tiers: Collection[Tier]) -> dict[int, TierKey]:
    """Each community tier as the corpus's free/member/vip, by its key or else by its rank."""
    ordered = sorted(tiers, key=lambda t: t.rank)
    out: dict[int, TierKey] = {}
    for pos, tier in enumerate(ordered):
        if tier.key in TIERS:
            out[tier.id] = tier.key  # type: ignore[assignment]
        elif pos == 0:
            out[tier.id] = "free"
        elif pos == len(ordered) - 1:
            out[tier.id] = "vip"
        else:
            out[tier.id] = "member"
    return out


# --- members ------------------------------------------------------------------------


def _public_channel() -> Select[int]:
    return select(Channel.id).where(
        Channel.min_tier_id.is_(None), Channel.min_role == Role.MEMBER, Channel.archived_at.is_(None)
    )


def _recent_public_posts(
    session: Session, community_id: int, user_ids: Collection[int] | None
) -> dict[int, list[str]]:
    ranked = (
        select(
            Post.author_id,
            Post.body,
            Post.is_opening,
            Thread.title,
            func.row_number().over(partition_by=Post.author_id, order_by=Post.id.desc()).label("rn"),
        )
        .join(Thread, Thread.id == Post.thread_id)
        .where(
            Post.community_id == community_id,
            Post.deleted_at.is_(None),
            Thread.deleted_at.is_(None),
            Thread.channel_id.in_(_public_channel()),
        )
    )
    if user_ids is not None:
        ranked = ranked.where(Post.author_id.in_(list(user_ids)))
    sub = ranked.subquery()
    rows = session.execute(
        select(sub.c.author_id, sub.c.body, sub.c.is_opening, sub.c.title)
        .where(sub.c.rn <= MEMBER_POSTS)
        .order_by(sub.c.author_id, sub.c.rn)
    )
    out: dict[int, list[str]] = {}
    for author, body, opening, title in rows:
        text = f"{title} {body}" if opening else body
        out.setdefault(author, []).append(_clip(text, POST_CHARS))
    return out


def _members(
    session: Session, community_id: int, tiers: dict[int, TierKey], user_ids: Collection[int] | None = None
) -> list[tuple[int, Member]]:
    """(membership id, member) of every member who may be profiled."""
    stmt = (
        select(
            Membership.id,
            Membership.joined_at,
            Membership.tier_id,
            User.id.label("user_id"),
            User.language,
            User.bio,
            User.interests,
            User.display_name,
        )
        .join(User, User.id == Membership.user_id)
        .where(
            Membership.community_id == community_id,
            Membership.status == MembershipStatus.ACTIVE,
            User.recommendations_opt_out.is_(False),
            User.disabled_at.is_(None),
        )
    )
    if user_ids is not None:
        stmt = stmt.where(Membership.user_id.in_(list(user_ids)))
    rows = session.execute(stmt).all()
    posts = _recent_public_posts(session, community_id, user_ids)
    out = []
    for membership_id, joined_at, tier_id, user_id, language, bio, interests, name in rows:
        out.append(
            (
                membership_id,
                Member(
                    id=member_id(user_id),
                    lang=language.value,
                    profile=member_profile(bio or "", posts.get(user_id, ())),
                    interests=tuple(str(i) for i in (interests or ())),
                    name=name,
                    tier=tiers.get(tier_id, "free"),
                    joined_at=joined_at,
                ),
            )
        )
    return out


# --- items --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ItemRow:
    item: Item
    entity: tuple[EmbeddingEntity, int]
    gate: Gate
    author: int
    ends_at: datetime | None = None


def _threads(
    session: Session, community: Community, tiers: dict[int, TierKey], ids: Collection[int] | None = None
) -> list[_ItemRow]:
    stmt = (
        select(Thread, Channel.min_tier_id, Channel.min_role, Post.body, User.language)
        .join(Channel, Channel.id == Thread.channel_id)
        .join(User, User.id == Thread.author_id)
        .outerjoin(
            Post, and_(Post.thread_id == Thread.id, Post.is_opening.is_(True), Post.deleted_at.is_(None))
        )
        .where(
            Thread.community_id == community.id,
            Thread.deleted_at.is_(None),
            Channel.archived_at.is_(None),
        )
    )
    if ids is not None:
        stmt = stmt.where(Thread.id.in_(list(ids)))
    out = []
    for thread, min_tier_id, min_role, body, author_lang in session.execute(stmt):
        text = _clip(body or "", ITEM_CHARS)
        out.append(
            _ItemRow(
                Item(
                    id=item_id("thread", thread.id),
                    kind="thread",
                    lang=_lang(f"{thread.title} {text}", author_lang, community.default_language).value,
                    title=thread.title,
                    text=text,
                    tier=tiers.get(min_tier_id, "free") if min_tier_id else "free",
                    created_at=thread.created_at,
                ),
                (EmbeddingEntity.THREAD, thread.id),
                Gate(min_tier_id, min_role),
                thread.author_id,
            )
        )
    return out


def _events(
    session: Session,
    community: Community,
    tiers: dict[int, TierKey],
    now: datetime,
    ids: Collection[int] | None = None,
) -> list[_ItemRow]:
    stmt = (
        select(Event, User.language)
        .join(User, User.id == Event.created_by)
        .where(
            Event.community_id == community.id,
            Event.status == EventStatus.SCHEDULED,
            Event.ends_at >= now - EVENT_GRACE,
        )
    )
    if ids is not None:
        stmt = stmt.where(Event.id.in_(list(ids)))
    out = []
    for event, host_lang in session.execute(stmt):
        text = _clip("\n".join(p for p in (event.description, event.location) if p), ITEM_CHARS)
        out.append(
            _ItemRow(
                Item(
                    id=item_id("event", event.id),
                    kind="event",
                    lang=_lang(f"{event.title} {text}", host_lang, community.default_language).value,
                    title=event.title,
                    text=text,
                    tier=tiers.get(event.min_tier_id, "free") if event.min_tier_id else "free",
                    created_at=event.created_at,
                    starts_at=event.starts_at,
                ),
                (EmbeddingEntity.EVENT, event.id),
                Gate(event.min_tier_id),
                event.created_by,
                event.ends_at,
            )
        )
    return out


def _courses(
    session: Session, community: Community, tiers: dict[int, TierKey], ids: Collection[int] | None = None
) -> list[_ItemRow]:
    stmt = (
        select(Course, User.language)
        .join(User, User.id == Course.created_by)
        .where(Course.community_id == community.id, Course.published_at.is_not(None))
    )
    if ids is not None:
        stmt = stmt.where(Course.id.in_(list(ids)))
    rows = session.execute(stmt).all()
    lessons: dict[int, list[str]] = {}
    if rows:
        lesson_rows = session.execute(
            select(Lesson.course_id, Lesson.title)
            .where(Lesson.course_id.in_([c.id for c, _ in rows]))
            .order_by(Lesson.course_id, Lesson.position)
        )
        for course_id, title in lesson_rows:
            lessons.setdefault(course_id, []).append(title)
    out = []
    for course, author_lang in rows:
        text = _clip("\n".join([course.description, *lessons.get(course.id, [])]), ITEM_CHARS)
        out.append(
            _ItemRow(
                Item(
                    id=item_id("course", course.id),
                    kind="course",
                    lang=_lang(f"{course.title} {text}", author_lang, community.default_language).value,
                    title=course.title,
                    text=text,
                    tier=tiers.get(course.min_tier_id, "free") if course.min_tier_id else "free",
                    created_at=course.published_at or course.created_at,
                ),
                (EmbeddingEntity.COURSE, course.id),
                Gate(course.min_tier_id),
                course.created_by,
            )
        )
    return out


# --- interactions ---------------------------------------------------------------------


def _interactions(session: Session, community_id: int, corpus: Corpus) -> list[Interaction]:
    raw: list[Interaction] = []

    def add(user: int, target: str, kind: str, ts: datetime | None) -> None:
        if ts is not None:
            raw.append(Interaction(member_id(user), target, kind, ts))  # type: ignore[arg-type]

    for a, b, ts in session.execute(
        select(Follow.follower_id, Follow.followee_id, Follow.created_at).where(
            Follow.community_id == community_id
        )
    ):
        add(a, member_id(b), "follow", ts)
    for a, b, ts in session.execute(
        select(Tip.tipper_id, Tip.recipient_id, func.max(Tip.created_at))
        .where(Tip.community_id == community_id)
        .group_by(Tip.tipper_id, Tip.recipient_id)
    ):
        add(a, member_id(b), "tip", ts)
    live_posts = and_(Post.community_id == community_id, Post.deleted_at.is_(None))
    for a, thread, ts in session.execute(
        select(Post.author_id, Post.thread_id, func.max(Post.created_at))
        .where(live_posts)
        .group_by(Post.author_id, Post.thread_id)
    ):
        add(a, item_id("thread", thread), "reply", ts)
    # A reply ties two members only where the thread is still visible to members: not deleted,
    # nor in an archived or role-gated room (a staff room's talk must not surface as a reason).
    for a, b, ts in session.execute(
        select(Post.author_id, Thread.author_id, func.max(Post.created_at))
        .join(Thread, Thread.id == Post.thread_id)
        .join(Channel, Channel.id == Thread.channel_id)
        .where(
            live_posts,
            Post.is_opening.is_(False),
            Post.author_id != Thread.author_id,
            Thread.deleted_at.is_(None),
            Channel.archived_at.is_(None),
            Channel.min_role == Role.MEMBER,
        )
        .group_by(Post.author_id, Thread.author_id)
    ):
        add(a, member_id(b), "reply", ts)
    for a, thread, ts in session.execute(
        select(Reaction.user_id, Post.thread_id, func.max(Reaction.created_at))
        .join(Post, Post.id == Reaction.post_id)
        .where(live_posts)
        .group_by(Reaction.user_id, Post.thread_id)
    ):
        add(a, item_id("thread", thread), "view", ts)
    for a, event, status, created, checked_in in session.execute(
        select(
            EventRsvp.user_id,
            EventRsvp.event_id,
            EventRsvp.status,
            EventRsvp.created_at,
            EventRsvp.checked_in_at,
        )
        .join(Event, Event.id == EventRsvp.event_id)
        .where(Event.community_id == community_id)
    ):
        if status != RsvpStatus.CANCELLED:
            add(a, item_id("event", event), "rsvp", created)
        add(a, item_id("event", event), "attend", checked_in)
    for a, course, ts in session.execute(
        select(Enrollment.user_id, Enrollment.course_id, Enrollment.enrolled_at)
        .join(Course, Course.id == Enrollment.course_id)
        .where(Course.community_id == community_id, Enrollment.unenrolled_at.is_(None))
    ):
        add(a, item_id("course", course), "enrol", ts)
    # Only what joins two things in the corpus: opted-out members and hidden items drop out here.
    return [
        x
        for x in raw
        if x.member in corpus.members
        and x.member != x.target
        and (x.target in corpus.members or x.target in corpus.items)
    ]


# --- entry points ---------------------------------------------------------------------


def community_tiers(session: Session, community_id: int) -> list[Tier]:
    return list(session.scalars(select(Tier).where(Tier.community_id == community_id)))


def load_snapshot(session: Session, community_id: int, *, now: datetime | None = None) -> Snapshot:
    """The whole community as a corpus, in a fixed number of queries."""
    now = now or utcnow()
    community = session.get(Community, community_id)
    if community is None:
        return Snapshot(community_id, Corpus())
    tiers = tier_keys(community_tiers(session, community_id))
    snap = Snapshot(community_id, Corpus())
    for membership_id, member in _members(session, community_id, tiers):
        snap.corpus.members[member.id] = member
        snap.entities[member.id] = (EmbeddingEntity.MEMBER, membership_id)
    rows = [
        *_threads(session, community, tiers),
        *_events(session, community, tiers, now),
        *_courses(session, community, tiers),
    ]
    for row in rows:
        snap.corpus.items[row.item.id] = row.item
        snap.entities[row.item.id] = row.entity
        snap.gates[row.item.id] = row.gate
        snap.authors[row.item.id] = row.author
        snap.items_by_author.setdefault(row.author, []).append(row.item.id)
        if row.gate.min_role != Role.MEMBER:
            snap.role_gated[row.item.id] = row.gate.min_role
        if row.ends_at is not None:
            snap.ends_at[row.item.id] = row.ends_at
    snap.corpus.interactions = _interactions(session, community_id, snap.corpus)
    return snap


def entity_texts(
    session: Session, entity: EmbeddingEntity, entity_id: int, *, now: datetime | None = None
) -> tuple[int, str] | None:
    """(community id, text) an entity's embedding is computed from; None if it must have none.

    None for a member who left, opted out or was disabled, a deleted thread, a cancelled or
    long-past event, an unpublished course, or a row that no longer exists.
    """
    now = now or utcnow()
    if entity == EmbeddingEntity.MEMBER:
        membership = session.get(Membership, entity_id)
        if membership is None:
            return None
        tiers = tier_keys(community_tiers(session, membership.community_id))
        found = _members(session, membership.community_id, tiers, [membership.user_id])
        return (membership.community_id, found[0][1].text()) if found else None
    row: Thread | Event | Course | None
    if entity == EmbeddingEntity.THREAD:
        row = session.get(Thread, entity_id)
    elif entity == EmbeddingEntity.EVENT:
        row = session.get(Event, entity_id)
    else:
        row = session.get(Course, entity_id)
    if row is None:
        return None
    community = session.get(Community, row.community_id)
    assert community is not None
    tiers = tier_keys(community_tiers(session, community.id))
    if entity == EmbeddingEntity.THREAD:
        items = _threads(session, community, tiers, [entity_id])
    elif entity == EmbeddingEntity.EVENT:
        items = _events(session, community, tiers, now, [entity_id])
    else:
        items = _courses(session, community, tiers, [entity_id])
    return (community.id, items[0].item.embed_text()) if items else None


def memberships_of(session: Session, user_id: int) -> list[int]:
    """Ids of every membership of a user (any status): a profile change touches each."""
    return list(session.scalars(select(Membership.id).where(Membership.user_id == user_id)))


def community_ids(session: Session) -> list[int]:
    return list(session.scalars(select(Community.id).order_by(Community.id)))


def is_active_member(session: Session, community_id: int, user_id: int) -> bool:
    found = session.scalar(
        select(Membership.id).where(
            Membership.community_id == community_id,
            Membership.user_id == user_id,
            Membership.status == MembershipStatus.ACTIVE,
        )
    )
    return found is not None


def live_gates(
    session: Session, item_ids: Collection[str], *, now: datetime | None = None
) -> dict[str, Gate]:
    """The current gate of each item that may still be recommended (at most three small queries).

    A fitted model can be minutes old: what it returns is checked against the database, so a
    deleted thread, a channel moved behind a tier or a cancelled event never slips through.
    """
    now = now or utcnow()
    wanted: dict[str, list[int]] = {"thread": [], "event": [], "course": []}
    for iid in item_ids:
        parsed = parse_target(iid)
        if parsed is not None and parsed[0] in wanted:
            wanted[parsed[0]].append(parsed[1])
    out: dict[str, Gate] = {}
    if wanted["thread"]:
        rows = session.execute(
            select(Thread.id, Channel.min_tier_id, Channel.min_role)
            .join(Channel, Channel.id == Thread.channel_id)
            .where(
                Thread.id.in_(wanted["thread"]), Thread.deleted_at.is_(None), Channel.archived_at.is_(None)
            )
        )
        out.update({item_id("thread", i): Gate(t, r) for i, t, r in rows})
    if wanted["event"]:
        event_rows = session.execute(
            select(Event.id, Event.min_tier_id).where(
                Event.id.in_(wanted["event"]), Event.status == EventStatus.SCHEDULED, Event.ends_at >= now
            )
        )
        out.update({item_id("event", i): Gate(t) for i, t in event_rows})
    if wanted["course"]:
        course_rows = session.execute(
            select(Course.id, Course.min_tier_id).where(
                Course.id.in_(wanted["course"]), Course.published_at.is_not(None)
            )
        )
        out.update({item_id("course", i): Gate(t) for i, t in course_rows})
    return out


def live_members(session: Session, community_id: int, user_ids: Collection[int]) -> set[int]:
    """Those of `user_ids` who are still active members that may be recommended."""
    if not user_ids:
        return set()
    return set(
        session.scalars(
            select(Membership.user_id)
            .join(User, User.id == Membership.user_id)
            .where(
                Membership.community_id == community_id,
                Membership.user_id.in_(list(user_ids)),
                Membership.status == MembershipStatus.ACTIVE,
                User.recommendations_opt_out.is_(False),
                User.disabled_at.is_(None),
            )
        )
    )


def fingerprint(session: Session, community_id: int) -> tuple[Any, ...]:
    """What the fitted model depends on, in one round trip (see the module docstring)."""
    c = community_id

    def scalar(stmt: Any) -> Any:
        return stmt.scalar_subquery()

    members = and_(Membership.community_id == c, Membership.status == MembershipStatus.ACTIVE)
    row = session.execute(
        select(
            scalar(select(RecommenderState.version).where(RecommenderState.community_id == c)),
            scalar(select(func.count()).select_from(Membership).where(members)),
            scalar(select(func.max(Membership.id)).where(members)),
            scalar(
                select(func.count())
                .select_from(Membership)
                .join(User, User.id == Membership.user_id)
                .where(members, User.recommendations_opt_out.is_(True))
            ),
            scalar(select(func.count()).select_from(Follow).where(Follow.community_id == c)),
            scalar(select(func.max(Follow.id)).where(Follow.community_id == c)),
            scalar(select(func.max(Tip.id)).where(Tip.community_id == c)),
            scalar(
                select(func.count())
                .select_from(Post)
                .where(Post.community_id == c, Post.deleted_at.is_(None))
            ),
            scalar(select(func.max(Post.id)).where(Post.community_id == c)),
            scalar(select(func.max(Thread.id)).where(Thread.community_id == c)),
            scalar(
                select(func.count())
                .select_from(Thread)
                .where(Thread.community_id == c, Thread.deleted_at.is_(None))
            ),
            scalar(
                select(func.count())
                .select_from(Event)
                .where(Event.community_id == c, Event.status == EventStatus.SCHEDULED)
            ),
            scalar(
                select(func.count())
                .select_from(Course)
                .where(Course.community_id == c, Course.published_at.is_not(None))
            ),
            scalar(
                select(func.count())
                .select_from(Reaction)
                .join(Post, Post.id == Reaction.post_id)
                .where(Post.community_id == c)
            ),
            scalar(
                select(func.max(EventRsvp.updated_at))
                .join(Event, Event.id == EventRsvp.event_id)
                .where(Event.community_id == c)
            ),
            scalar(select(func.max(Event.id)).where(Event.community_id == c)),
            scalar(
                select(func.count())
                .select_from(Enrollment)
                .join(Course, Course.id == Enrollment.course_id)
                .where(Course.community_id == c, Enrollment.unenrolled_at.is_(None))
            ),
            scalar(select(func.max(Course.id)).where(Course.community_id == c)),
        )
    ).one()
    return tuple(row)


def membership_user_id(session: Session, membership_id: int) -> int | None:
    return session.scalar(select(Membership.user_id).where(Membership.id == membership_id))


def membership_community(session: Session, membership_id: int) -> int | None:
    return session.scalar(select(Membership.community_id).where(Membership.id == membership_id))


def item_community(session: Session, prefix: str, row_id: int) -> int | None:
    """The community of an event, course or thread (None when there is no such row)."""
    if prefix == "event":
        return session.scalar(select(Event.community_id).where(Event.id == row_id))
    if prefix == "course":
        return session.scalar(select(Course.community_id).where(Course.id == row_id))
    return session.scalar(select(Thread.community_id).where(Thread.id == row_id))


def feedback_targets(session: Session, community_id: int, user_id: int) -> set[str]:
    return set(
        session.scalars(
            select(RecommendationFeedback.target).where(
                RecommendationFeedback.community_id == community_id,
                RecommendationFeedback.user_id == user_id,
                RecommendationFeedback.kind == FeedbackKind.NOT_INTERESTED,
            )
        )
    )


def feedback(
    session: Session, community_id: int, user_id: int, target: str, kind: FeedbackKind
) -> RecommendationFeedback | None:
    return session.scalar(
        select(RecommendationFeedback).where(
            RecommendationFeedback.community_id == community_id,
            RecommendationFeedback.user_id == user_id,
            RecommendationFeedback.target == target,
            RecommendationFeedback.kind == kind,
        )
    )


def delete_feedback(session: Session, community_id: int, user_id: int, target: str) -> None:
    session.execute(
        delete(RecommendationFeedback).where(
            RecommendationFeedback.community_id == community_id,
            RecommendationFeedback.user_id == user_id,
            RecommendationFeedback.target == target,
        )
    )

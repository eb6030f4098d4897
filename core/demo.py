"""The demo community behind `hearth demo`.

`seed_demo()` builds one public community ("hearth-demo") with a few hundred
members writing in Traditional Chinese, Simplified Chinese and English, so that
every feature (recommendations, moderation, chips, dashboards) has something
real to show. The hand-written content lives in `core/demo_data/*.json`; the
seeder combines it deterministically with generated people.

Invariants kept (the same ones the services keep):
- lower-case unique emails, exactly one owner, every member on a tier of the
  community, channel and event tiers belong to the community;
- replies come after their thread, ids follow time, `reply_count` and
  `last_activity_at` match the replies;
- `going_count` equals the going RSVPs and never exceeds capacity; the
  waitlist is ordered by `waitlisted_at`;
- an enrolment is complete exactly when every lesson of its course is.

Deterministic for a given seed (and `now`), idempotent (an existing
"hearth-demo" community is left alone), and fast: the password is hashed once
and rows are inserted in bulk. Like every service it only flushes; the caller
commits.

Posts marked `demo_label` in the JSON (spam, scam, abuse) are stored as
ordinary posts: the label is ground truth for moderation demos and evals
(`labelled_examples()`), never a database column.
"""

from __future__ import annotations

import copy
import json
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

from faker import Faker
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from core import audit
from core.access import Actor
from core.chips import repository as chips_repo
from core.chips import service as chips
from core.chips.schemas import ChipIn, MintIn
from core.clock import as_utc, utcnow
from core.communities.schemas import CommunityIn
from core.communities.service import create_community
from core.models import (
    Channel,
    ChannelMember,
    Community,
    Course,
    EmissionPeriod,
    Enrollment,
    Event,
    EventRsvp,
    Follow,
    Language,
    Lesson,
    LessonCompletion,
    Membership,
    Mention,
    Post,
    Reaction,
    Role,
    RsvpStatus,
    Thread,
    Tier,
    User,
)
from core.security import hash_password

_CHIP_NAMES = {
    Language.ZH_TW: ("{name}的籌碼", "支持{name}，可換一對一聊聊與搶先看。"),
    Language.ZH_CN: ("{name}的筹码", "支持{name}，可换一对一聊聊与抢先看。"),
    Language.EN: ("{name}'s chips", "Support {name}; redeem for a 1:1 call or early access."),
}

DEMO_SLUG = "hearth-demo"
DEMO_PASSWORD = "hearth-demo"
EMAIL_DOMAIN = "demo.hearth"
OWNER_EMAIL = f"owner@{EMAIL_DOMAIN}"
MIN_MEMBERS = 10
HISTORY_DAYS = 180  # members joined over this many days; threads span the last 90

_LOCALES = {Language.ZH_TW: "zh_TW", Language.ZH_CN: "zh_CN", Language.EN: "en_US"}
_EMOJI = ("👍", "❤️", "😂", "🙏", "🔥", "🎉", "👀", "💯")
_EMOJI_WEIGHTS = (10, 7, 4, 4, 3, 2, 1, 1)
_MENTION = re.compile(r"\{@(op|prev|mod)\}")
_BATCH = 1000


# --- content ------------------------------------------------------------------


def _read_json(name: str) -> Any:
    return json.loads(resources.files("core").joinpath("demo_data").joinpath(name).read_text("utf-8"))


@lru_cache(maxsize=1)
def _content() -> dict[str, Any]:
    folder = resources.files("core").joinpath("demo_data")
    thread_files = sorted(p.name for p in folder.iterdir() if p.name.startswith("threads_"))
    return {
        "community": _read_json("community.json"),
        "threads": [t for name in thread_files for t in _read_json(name)["threads"]],
        "events": _read_json("events.json"),
        "courses": _read_json("courses.json")["courses"],
    }


def thread_templates() -> list[dict[str, Any]]:
    """Every thread template (title, body, replies, language, channel), in seeding order."""
    return copy.deepcopy(_content()["threads"])


def interest_groups() -> dict[str, dict[str, str]]:
    """The planted interest groups: key -> label per language (what profiles store)."""
    return copy.deepcopy(_content()["community"]["interests"])


def event_templates() -> list[dict[str, Any]]:
    """Every event template (title, description, language, interest, ...), in seeding order."""
    return copy.deepcopy(_content()["events"]["events"])


def course_templates() -> list[dict[str, Any]]:
    """Every course template (title, description, language, interest, lessons), in seeding order."""
    return copy.deepcopy(_content()["courses"])


def profile_sentences() -> dict[str, dict[str, list[str]]]:
    """Per language and interest group, the sentences member bios are written from."""
    bios = _content()["community"]["bios"]
    return copy.deepcopy({lang: bio["interests"] for lang, bio in bios.items()})


@dataclass(frozen=True)
class LabelledExample:
    """A demo post that moderation should catch: ground truth for demos and evals."""

    label: str  # "spam" | "scam" | "abuse"
    language: Language
    thread_key: str
    title: str | None  # set for an opening post
    body: str


def labelled_examples() -> list[LabelledExample]:
    out: list[LabelledExample] = []
    for t in _content()["threads"]:
        if "demo_label" in t:
            out.append(LabelledExample(t["demo_label"], Language(t["lang"]), t["key"], t["title"], t["body"]))
        for r in t["replies"]:
            if "demo_label" in r:
                lang = Language(r.get("lang", t["lang"]))
                out.append(LabelledExample(r["demo_label"], lang, t["key"], None, r["body"]))
    return out


# --- summary ------------------------------------------------------------------


@dataclass(frozen=True)
class DemoSummary:
    community_id: int
    slug: str
    name: str
    created: bool  # False: the community already existed and nothing was changed
    members: int
    channels: int
    channel_members: int
    threads: int
    replies: int
    mentions: int
    reactions: int
    events: int
    rsvps: int
    courses: int
    lessons: int
    enrollments: int
    admin_email: str = OWNER_EMAIL
    admin_password: str = DEMO_PASSWORD

    def __str__(self) -> str:
        state = "created" if self.created else "already existed; nothing was changed"
        return "\n".join(
            [
                f"Demo community {self.name!r} (slug {self.slug}, id {self.community_id}): {state}",
                f"  {self.members} members, {self.channels} channels ({self.channel_members} followers)",
                f"  {self.threads} threads, {self.replies} replies, {self.mentions} mentions, "
                f"{self.reactions} reactions",
                f"  {self.events} events ({self.rsvps} RSVPs), {self.courses} courses "
                f"({self.lessons} lessons, {self.enrollments} enrolments)",
                f"  log in as the owner: {self.admin_email} / {self.admin_password}",
                f"  every demo member (member001@{EMAIL_DOMAIN}, ...) has the same password",
            ]
        )


def _count(session: Session, stmt: Any) -> int:
    return int(session.scalar(stmt) or 0)


def _summary(session: Session, community: Community, *, created: bool) -> DemoSummary:
    cid = community.id
    n = func.count()
    return DemoSummary(
        community_id=cid,
        slug=community.slug,
        name=community.name,
        created=created,
        members=_count(session, select(n).select_from(Membership).where(Membership.community_id == cid)),
        channels=_count(session, select(n).select_from(Channel).where(Channel.community_id == cid)),
        channel_members=_count(
            session, select(n).select_from(ChannelMember).join(Channel).where(Channel.community_id == cid)
        ),
        threads=_count(session, select(n).select_from(Thread).where(Thread.community_id == cid)),
        replies=_count(
            session,
            select(n).select_from(Post).where(Post.community_id == cid, Post.is_opening.is_(False)),
        ),
        mentions=_count(session, select(n).select_from(Mention).join(Post).where(Post.community_id == cid)),
        reactions=_count(session, select(n).select_from(Reaction).join(Post).where(Post.community_id == cid)),
        events=_count(session, select(n).select_from(Event).where(Event.community_id == cid)),
        rsvps=_count(session, select(n).select_from(EventRsvp).join(Event).where(Event.community_id == cid)),
        courses=_count(session, select(n).select_from(Course).where(Course.community_id == cid)),
        lessons=_count(session, select(n).select_from(Lesson).join(Course).where(Course.community_id == cid)),
        enrollments=_count(
            session, select(n).select_from(Enrollment).join(Course).where(Course.community_id == cid)
        ),
    )


# --- seeding ------------------------------------------------------------------


def seed_demo(
    session: Session, *, members: int = 200, seed: int = 42, now: datetime | None = None
) -> DemoSummary:
    """Create the demo community with `members` members (the owner included).

    `now` anchors every timestamp (default: the current time), so a fixed `now`
    and seed reproduce the same community exactly.
    """
    if members < MIN_MEMBERS:
        raise ValueError(f"the demo needs at least {MIN_MEMBERS} members")
    existing = session.scalar(select(Community).where(Community.slug == DEMO_SLUG))
    if existing is not None:
        return _summary(session, existing, created=False)
    seeder = _Seeder(session, seed=seed, now=as_utc(now) if now else utcnow())
    community = seeder.run(members)
    return _summary(session, community, created=True)


@dataclass
class _Member:
    index: int  # 0 is the owner; generated people count from 1
    email: str
    display_name: str
    language: Language
    bio: str
    interests: list[str]  # interest keys; profiles store the labels in the member's language
    tier: str
    role: Role
    joined_at: datetime
    user: User | None = None

    @property
    def user_id(self) -> int:
        assert self.user is not None
        return self.user.id

    @property
    def is_staff(self) -> bool:
        return self.role.at_least(Role.MODERATOR)


@dataclass
class _PlannedPost:
    post: Post
    slug: str
    author: _Member
    mentioned: list[_Member]
    reply_to: Post | None
    labelled: bool


class _Seeder:
    def __init__(self, session: Session, *, seed: int, now: datetime) -> None:
        self.session = session
        self.seed = seed
        self.now = now.replace(microsecond=0)
        self.rng = random.Random(seed)
        self.data = _content()
        self.fakers: dict[Language, Faker] = {}
        for lang, locale in _LOCALES.items():
            fake = Faker(locale)
            fake.seed_instance(seed)
            self.fakers[lang] = fake
        self.members: list[_Member] = []
        self.tiers: dict[str, Tier] = {}
        self.channels: dict[str, Channel] = {}
        self.channel_specs: dict[str, dict[str, Any]] = {}
        # channel slug -> member index -> joined_at
        self.followers: dict[str, dict[int, datetime]] = {}
        self.timelines: dict[str, tuple[datetime, list[datetime]]] = {}
        # (thread key, reply position or -1 for the opening) -> the throwaway account posting it
        self.spam_posts: dict[tuple[str, int], _Member] = {}
        self.spammers: set[int] = set()
        self.posters: dict[str, list[_Member]] = {}  # channel slug -> who may post there

    # -- helpers -------------------------------------------------------------

    def _ago(self, days: float) -> datetime:
        return self.now - timedelta(days=days)

    def _between(self, start: datetime, end: datetime) -> datetime:
        if end <= start:
            return start
        return start + timedelta(seconds=self.rng.uniform(0, (end - start).total_seconds()))

    def _shuffled_quota(self, n: int, shares: dict[str, float]) -> list[str]:
        keys = list(shares)
        counts = {k: round(n * shares[k]) for k in keys[1:]}
        counts[keys[0]] = n - sum(counts.values())
        out = [k for k in keys for _ in range(counts[k])]
        self.rng.shuffle(out)
        return out

    def _weighted_sample(self, weights: dict[str, int], k: int) -> list[str]:
        pool = dict(weights)
        chosen: list[str] = []
        while pool and len(chosen) < k:
            key = self.rng.choices(list(pool), weights=list(pool.values()))[0]
            chosen.append(key)
            del pool[key]
        return chosen

    def _tier_rank(self, key: str) -> int:
        return self.tiers[key].rank

    def _sees(self, m: _Member, slug: str) -> bool:
        spec = self.channel_specs[slug]
        if m.is_staff:
            return True
        if not m.role.at_least(Role(spec.get("min_role", "member"))):
            return False
        min_tier = spec.get("min_tier")
        return min_tier is None or self._tier_rank(m.tier) >= self._tier_rank(min_tier)

    def _can_post(self, m: _Member, slug: str) -> bool:
        spec = self.channel_specs[slug]
        return self._sees(m, slug) and m.role.at_least(Role(spec.get("post_min_role", "member")))

    def _meets_tier(self, m: _Member, tier_key: str | None) -> bool:
        return tier_key is None or m.is_staff or self._tier_rank(m.tier) >= self._tier_rank(tier_key)

    def _add_batched(self, rows: Sequence[Any]) -> None:
        for i in range(0, len(rows), _BATCH):
            self.session.add_all(rows[i : i + _BATCH])
            self.session.flush()

    def _create_follows(self, community: Community) -> None:
        """Members follow a few people who share an interest: the social side of recommendations.

        Drawn from a random stream of its own, so that adding follows left every other part of
        the demo (and its tests) exactly as it was for a given seed. Spam accounts neither follow
        nor are followed.
        """
        rng = random.Random(self.seed * 7919 + 1)
        people = [m for m in self.members if m.index not in self.spammers]
        by_interest: dict[str, list[_Member]] = {}
        for m in people:
            for interest in m.interests:
                by_interest.setdefault(interest, []).append(m)
        rows: list[dict[str, Any]] = []
        for m in people:
            pool = sorted(
                {o.index: o for i in m.interests for o in by_interest.get(i, ()) if o is not m}.values(),
                key=lambda o: o.index,
            )
            for other in rng.sample(pool, k=min(len(pool), rng.randint(0, 4))):
                start = max(m.joined_at, other.joined_at)
                at = start + (self.now - start) * rng.random() if self.now > start else start
                rows.append(
                    {
                        "community_id": community.id,
                        "follower_id": m.user_id,
                        "followee_id": other.user_id,
                        "created_at": at,
                    }
                )
        self._insert_batched(Follow, rows)

    def _insert_batched(self, model: Any, rows: list[dict[str, Any]]) -> None:
        # Leaf rows nobody needs the ids of: plain executemany INSERTs.
        for i in range(0, len(rows), _BATCH):
            self.session.execute(insert(model), rows[i : i + _BATCH])

    # -- the whole run -------------------------------------------------------

    def run(self, n_members: int) -> Community:
        self._plan_people(n_members)
        self.timelines = {t["key"]: self._timeline(t) for t in self.data["threads"]}
        self._plan_spammers()
        self._create_users()
        community = self._create_community()
        self._create_channels(community)
        self._plan_followers()
        mentions, reactions = self._create_threads(community)
        self._insert_followers()
        rsvps = self._create_events(community)
        self._create_courses(community)
        self._create_chips(community)
        self._create_follows(community)
        self.session.flush()
        assert self.owner.user is not None
        audit.record(
            self.session,
            Actor(self.owner.user),
            "demo.seed",
            community,
            community_id=community.id,
            after={
                "seed": self.seed,
                "members": len(self.members),
                "threads": len(self.data["threads"]),
                "mentions": mentions,
                "reactions": reactions,
                "rsvps": rsvps,
            },
        )
        self.session.flush()
        return community

    # -- people --------------------------------------------------------------

    @property
    def owner(self) -> _Member:
        return self.members[0]

    def _plan_people(self, n_members: int) -> None:
        cfg = self.data["community"]
        owner_cfg = cfg["owner"]
        self.members.append(
            _Member(
                index=0,
                email=owner_cfg["email"],
                display_name=owner_cfg["display_name"],
                language=Language(owner_cfg["language"]),
                bio=owner_cfg["bio"],
                interests=list(owner_cfg["interests"]),
                tier="vip",
                role=Role.OWNER,
                joined_at=self._ago(HISTORY_DAYS),
            )
        )
        n = n_members - 1
        languages = [Language(x) for x in self._shuffled_quota(n, cfg["languages"])]
        tiers = self._shuffled_quota(n, cfg["tiers"])
        width = max(3, len(str(n)))
        for i in range(1, n + 1):
            lang = languages[i - 1]
            interests = self._weighted_sample(cfg["interest_weights"][lang.value], self.rng.randint(2, 5))
            self.members.append(
                _Member(
                    index=i,
                    email=f"member{i:0{width}d}@{EMAIL_DOMAIN}",
                    display_name=self._display_name(lang),
                    language=lang,
                    bio=self._bio(lang, interests),
                    interests=interests,
                    tier=tiers[i - 1],
                    role=Role.MEMBER,
                    joined_at=self._ago(self.rng.uniform(0.2, HISTORY_DAYS - 2)),
                )
            )
        # Staff: chosen by language so every language has someone to turn to.
        taken: set[int] = set()
        for role_key, langs in cfg["staff"].items():
            for lang_key in langs:
                pool = [m for m in self.members[1:] if m.index not in taken and m.language == lang_key]
                pool = pool or [m for m in self.members[1:] if m.index not in taken]
                m = self.rng.choice(pool)
                taken.add(m.index)
                m.role = Role(role_key)
                m.joined_at = self._ago(self.rng.uniform(150, HISTORY_DAYS - 2))

    def _display_name(self, lang: Language) -> str:
        fake = self.fakers[lang]
        if lang == Language.EN:
            return f"{fake.first_name()} {fake.last_name()}"
        name = str(fake.name())
        # Plenty of Chinese speakers go by an English name too ("Kevin 陳").
        if self.rng.random() < (0.12 if lang == Language.ZH_TW else 0.06):
            return f"{self.fakers[Language.EN].first_name()} {fake.last_name()}"
        return name

    def _bio(self, lang: Language, interests: list[str]) -> str:
        pieces = self.data["community"]["bios"][lang.value]
        parts = [self.rng.choice(pieces["openers"])]
        parts += [self.rng.choice(pieces["interests"][key]) for key in interests[:2]]
        parts.append(self.rng.choice(pieces["closers"]))
        return (" " if lang == Language.EN else "").join(p for p in parts if p)

    def _plan_spammers(self) -> None:
        """Give every spam or scam post its own fresh account, as real spam arrives.

        The account joins shortly before posting, carries a spammy bio and does
        nothing else (no reactions, RSVPs or courses), so banning it in a
        moderation demo removes exactly the spam.
        """
        bios = self.data["community"]["spam_bios"]
        for template in self.data["threads"]:
            start, times = self.timelines[template["key"]]
            posts = [(-1, template, start)] + [
                (i, spec, at) for i, (spec, at) in enumerate(zip(template["replies"], times, strict=True))
            ]
            for position, spec, at in posts:
                if spec.get("demo_label") not in ("spam", "scam"):
                    continue
                lang = Language(spec.get("lang", template["lang"]))
                regular = [m for m in self.members if not m.is_staff and m.index not in self.spammers]
                pool = (
                    [m for m in regular if m.language == lang and m.tier == "free"]
                    or regular
                    or [m for m in self.members if not m.is_staff]
                )
                m = self.rng.choice(pool)
                joined = at - timedelta(hours=self.rng.uniform(2, 72))
                # Tiny demos reuse an account: it must have joined before its first spam.
                m.joined_at = min(m.joined_at, joined) if m.index in self.spammers else joined
                self.spammers.add(m.index)
                m.bio = self.rng.choice(bios[m.language.value])
                self.spam_posts[(template["key"], position)] = m

    def _create_users(self) -> None:
        password_hash = hash_password(DEMO_PASSWORD)  # once: argon2 is slow on purpose
        labels = self.data["community"]["interests"]
        emails = [m.email for m in self.members]
        existing = {
            u.email: u
            for i in range(0, len(emails), _BATCH)
            for u in self.session.scalars(select(User).where(User.email.in_(emails[i : i + _BATCH])))
        }
        new: list[User] = []
        for m in self.members:
            created_at = m.joined_at - timedelta(minutes=self.rng.randint(1, 600))
            user = existing.get(m.email)
            if user is None:
                # Demo accounts left behind by a deleted demo community are reused, not duplicated.
                user = User(email=m.email, password_hash=password_hash, created_at=created_at)
                new.append(user)
            user.display_name = m.display_name
            user.bio = m.bio
            user.interests = [labels[key][m.language.value] for key in m.interests]
            user.language = m.language
            m.user = user
        self._add_batched(new)

    # -- community, memberships, channels -----------------------------------

    def _create_community(self) -> Community:
        cfg = self.data["community"]["community"]
        assert self.owner.user is not None
        community = create_community(
            self.session,
            Actor(self.owner.user),
            CommunityIn(
                slug=cfg["slug"],
                name=cfg["name"],
                description=cfg["description"],
                default_language=Language(cfg["default_language"]),
            ),
        )
        community.created_at = self.owner.joined_at
        self.tiers = {
            t.key: t for t in self.session.scalars(select(Tier).where(Tier.community_id == community.id))
        }
        owner_membership = self.session.scalar(
            select(Membership).where(
                Membership.community_id == community.id, Membership.user_id == self.owner.user_id
            )
        )
        assert owner_membership is not None
        owner_membership.joined_at = self.owner.joined_at
        self.owner.tier = next(k for k, t in self.tiers.items() if t.id == owner_membership.tier_id)
        self._add_batched(
            [
                Membership(
                    community_id=community.id,
                    user_id=m.user_id,
                    role=m.role,
                    tier_id=self.tiers[m.tier].id,
                    joined_at=m.joined_at,
                )
                for m in self.members[1:]
            ]
        )
        return community

    def _create_channels(self, community: Community) -> None:
        rows = []
        for position, spec in enumerate(self.data["community"]["channels"]):
            self.channel_specs[spec["slug"]] = spec
            rows.append(
                Channel(
                    community_id=community.id,
                    slug=spec["slug"],
                    name=spec["name"],
                    description=spec["description"],
                    min_tier_id=self.tiers[spec["min_tier"]].id if spec.get("min_tier") else None,
                    min_role=Role(spec.get("min_role", "member")),
                    post_min_role=Role(spec.get("post_min_role", "member")),
                    position=position,
                    created_by=self.owner.user_id,
                    created_at=community.created_at + timedelta(minutes=10 + position),
                )
            )
        self._add_batched(rows)
        self.channels = {c.slug: c for c in rows}

    def _plan_followers(self) -> None:
        for slug, spec in self.channel_specs.items():
            channel = self.channels[slug]
            rule = spec.get("join", "interest")
            chosen: dict[int, datetime] = {}
            for m in self.members:
                if not self._sees(m, slug) or (m.index in self.spammers and rule != "everyone"):
                    continue
                if rule == "everyone" or m.role == Role.OWNER or rule == "staff":
                    follows = True
                elif rule == "english":
                    follows = m.language == Language.EN or self.rng.random() < 0.15
                elif rule == "many":
                    follows = self.rng.random() < 0.6
                elif rule == "tier":
                    follows = m.is_staff or self.rng.random() < 0.8
                else:
                    follows = spec.get("interest") in m.interests or self.rng.random() < 0.08
                if follows:
                    start = max(m.joined_at, channel.created_at)
                    chosen[m.index] = min(start + timedelta(hours=self.rng.uniform(0, 48)), self.now)
            self.followers[slug] = chosen

    def _follow(self, m: _Member, slug: str, before: datetime) -> None:
        """Whoever posts in a channel follows it, from before their first post there."""
        current = self.followers[slug].get(m.index)
        if current is None or current > before:
            start = max(m.joined_at, self.channels[slug].created_at)
            self.followers[slug][m.index] = self._between(start, before)

    def _insert_followers(self) -> None:
        rows = [
            {"channel_id": self.channels[slug].id, "user_id": self.members[i].user_id, "joined_at": at}
            for slug, chosen in self.followers.items()
            for i, at in sorted(chosen.items())
        ]
        self._insert_batched(ChannelMember, rows)

    # -- threads, posts, mentions, reactions --------------------------------

    def _pick_author(
        self,
        *,
        kind: str,
        lang: Language,
        slug: str,
        at: datetime,
        interest: str | None,
        exclude: Iterable[int],
    ) -> _Member:
        if kind == "owner":
            return self.owner
        excluded = set(exclude) | self.spammers
        if slug not in self.posters:
            self.posters[slug] = [m for m in self.members if self._can_post(m, slug)]
        able = [m for m in self.posters[slug] if m.index not in excluded and m.joined_at < at]
        if kind == "staff":
            able = [m for m in able if m.is_staff]
        if kind == "newcomer":
            same = [m for m in able if m.language == lang and not m.is_staff] or able
            recent = sorted(same, key=lambda m: m.joined_at, reverse=True)[:4]
            if recent:
                return self.rng.choice(recent)
        same_lang = [m for m in able if m.language == lang]
        pools = []
        if interest and self.rng.random() < 0.8:
            pools.append([m for m in same_lang if interest in m.interests])
        pools += [same_lang, able]
        for pool in pools:
            if pool:
                return self.rng.choice(pool)
        # Tiny demos may have nobody else who qualifies: staff may post anywhere.
        staff = [m for m in self.members if m.is_staff and m.index not in excluded]
        return self.rng.choice(staff) if staff else self.owner

    def _timeline(self, template: dict[str, Any]) -> tuple[datetime, list[datetime]]:
        lo, hi = template.get("days_ago", (0.5, 88))
        start = self._ago(self.rng.uniform(lo, hi)).replace(microsecond=0)
        n = len(template["replies"])
        # Each gap is at least a minute, so keep n minutes spare as well: nothing lands after `now`.
        available = (self.now - timedelta(minutes=5 + n) - start).total_seconds()
        span = min(available, self.rng.uniform(6 * 3600, 6 * 86400))
        gaps = [self.rng.expovariate(1.0) + 0.05 for _ in range(n)]
        scale = span / sum(gaps) if gaps else 0
        times, t = [], start
        for g in gaps:
            t = t + timedelta(seconds=max(60, int(g * scale)))
            times.append(t)
        return start, times

    def _create_threads(self, community: Community) -> tuple[int, int]:
        moderators = [m for m in self.members if m.role == Role.MODERATOR] or [
            m for m in self.members if m.is_staff
        ]
        threads: list[tuple[datetime, Thread, list[_PlannedPost]]] = []
        for template in self.data["threads"]:
            slug = template["channel"]
            lang = Language(template["lang"])
            interest = template.get("interest")
            start, reply_times = self.timelines[template["key"]]
            op = self.spam_posts.get((template["key"], -1)) or self._pick_author(
                kind=template.get("author", "member"),
                lang=lang,
                slug=slug,
                at=start,
                interest=interest,
                exclude=(),
            )
            thread = Thread(
                community_id=community.id,
                channel_id=self.channels[slug].id,
                author_id=op.user_id,
                title=template["title"],
                reply_count=len(reply_times),
                last_activity_at=reply_times[-1] if reply_times else start,
                created_at=start,
            )
            planned = [self._plan_post(template, template, thread, op, op, None, start, moderators, True)]
            for position, (spec, at) in enumerate(zip(template["replies"], reply_times, strict=True)):
                prev = planned[-1]
                kind = spec.get("author", "member")
                spammer = self.spam_posts.get((template["key"], position))
                if spammer is not None:
                    author = spammer
                elif kind == "op":
                    author = op
                else:
                    wanted = set(_MENTION.findall(spec["body"]))
                    exclude = {op.index, prev.author.index}
                    if "mod" in wanted:
                        exclude |= {m.index for m in moderators}
                    author = self._pick_author(
                        kind=kind,
                        lang=Language(spec.get("lang", template["lang"])),
                        slug=slug,
                        at=at,
                        interest=interest,
                        exclude=exclude,
                    )
                planned.append(
                    self._plan_post(template, spec, thread, op, author, prev, at, moderators, False)
                )
            for p in planned:
                self._follow(p.author, slug, p.post.created_at)
            threads.append((start, thread, planned))

        # Ids follow time, as they would have on a live site: replies paginate by id.
        threads.sort(key=lambda x: x[0])
        self._add_batched([t for _, t, _ in threads])
        posts: list[_PlannedPost] = []
        for _, thread, planned in threads:
            for p in planned:
                p.post.thread_id = thread.id
            posts += planned
        posts.sort(key=lambda p: p.post.created_at)
        self._add_batched([p.post for p in posts])
        for p in posts:
            if p.reply_to is not None:
                p.post.reply_to_id = p.reply_to.id
        self.session.flush()

        mention_rows = [
            {"post_id": p.post.id, "user_id": m.user_id}
            for p in posts
            for m in {m.index: m for m in p.mentioned}.values()
        ]
        self._insert_batched(Mention, mention_rows)
        reaction_rows = self._plan_reactions(posts)
        self._insert_batched(Reaction, reaction_rows)
        return len(mention_rows), len(reaction_rows)

    def _plan_post(
        self,
        template: dict[str, Any],
        spec: dict[str, Any],
        thread: Thread,
        op: _Member,
        author: _Member,
        prev: _PlannedPost | None,
        at: datetime,
        moderators: list[_Member],
        opening: bool,
    ) -> _PlannedPost:
        mentioned: list[_Member] = []
        mod_choices = [m for m in moderators if m.index != author.index] or [self.owner]
        mod = self.rng.choice(mod_choices)

        def resolve(match: re.Match[str]) -> str:
            who = {"op": op, "prev": prev.author if prev else op, "mod": mod}[match.group(1)]
            mentioned.append(who)
            return f"<@{who.user_id}>"

        body = _MENTION.sub(resolve, spec["body"])
        quotes_prev = prev is not None and "{@prev}" in spec["body"] and not prev.post.is_opening
        reply_to = prev.post if prev is not None and quotes_prev else None
        post = Post(
            community_id=thread.community_id,
            author_id=author.user_id,
            is_opening=opening,
            body=body,
            created_at=at,
        )
        labelled = "demo_label" in spec
        return _PlannedPost(post, template["channel"], author, mentioned, reply_to, labelled)

    def _plan_reactions(self, posts: list[_PlannedPost]) -> list[dict[str, Any]]:
        viewers = {slug: [m for m in self.members if self._sees(m, slug)] for slug in self.channels}
        rows: list[dict[str, Any]] = []
        for p in posts:
            if p.labelled:
                continue  # nobody applauds spam; moderation demos start from a clean slate
            at = p.post.created_at
            pool = [
                m
                for m in viewers[p.slug]
                if m.joined_at < at and m.index != p.author.index and m.index not in self.spammers
            ]
            if p.post.is_opening:
                k = self.rng.choices((0, 1, 2, 3, 5, 8, 12), weights=(1, 2, 3, 3, 3, 2, 1))[0]
            else:
                k = self.rng.choices((0, 1, 2, 3, 4), weights=(5, 4, 3, 2, 1))[0]
            seen: set[tuple[int, str]] = set()
            for m in self.rng.sample(pool, min(k, len(pool))):
                emoji = self.rng.choices(_EMOJI, weights=_EMOJI_WEIGHTS)[0]
                if (m.index, emoji) in seen:
                    continue
                seen.add((m.index, emoji))
                when = min(at + timedelta(minutes=self.rng.uniform(1, 48 * 60)), self.now)
                rows.append(
                    {"post_id": p.post.id, "user_id": m.user_id, "emoji": emoji, "created_at": max(when, at)}
                )
        return rows

    # -- events --------------------------------------------------------------

    def _host(self, lang: Language) -> _Member:
        staff = [m for m in self.members if m.is_staff and m.language == lang]
        return self.rng.choice(staff) if staff else self.owner

    def _create_events(self, community: Community) -> int:
        cfg = self.data["events"]
        planned: list[tuple[Event, list[tuple[_Member, datetime]], _Member, dict[str, Any]]] = []
        for spec in cfg["events"]:
            lang = Language(spec["lang"])
            zone = ZoneInfo(spec["timezone"])
            local_day = self.now.astimezone(zone).date() + timedelta(days=spec["day"])
            hour, minute = (int(x) for x in spec["start"].split(":"))
            starts_at = datetime.combine(local_day, time(hour, minute), tzinfo=zone).astimezone(UTC)
            ends_at = starts_at + timedelta(hours=spec["hours"])
            host = self._host(lang)
            created_at = min(
                starts_at - timedelta(days=self.rng.uniform(10, 30)),
                self._ago(self.rng.uniform(1, 5)),
            )
            created_at = max(created_at, host.joined_at + timedelta(hours=1))
            min_tier = spec.get("min_tier")
            event = Event(
                community_id=community.id,
                created_by=host.user_id,
                title=spec["title"],
                description=spec["description"],
                location=spec.get("location", ""),
                online_url=spec.get("online_url"),
                timezone=spec["timezone"],
                starts_at=starts_at,
                ends_at=ends_at,
                capacity=spec.get("capacity"),
                going_count=0,
                min_tier_id=self.tiers[min_tier].id if min_tier else None,
                created_at=created_at,
            )
            window_end = min(starts_at, self.now) - timedelta(minutes=5)
            eligible = [
                m
                for m in self.members
                if m.index != host.index
                and m.index not in self.spammers
                and self._meets_tier(m, min_tier)
                and m.joined_at < window_end - timedelta(hours=1)
            ]
            ranked = sorted(
                eligible,
                key=lambda m: (
                    -(2 * (spec["interest"] in m.interests) + (m.language == lang) + self.rng.random())
                ),
            )
            attendees = [
                (m, self._between(max(created_at, m.joined_at), window_end)) for m in ranked[: spec["demand"]]
            ]
            attendees.sort(key=lambda x: x[1])
            planned.append((event, attendees, host, spec))
        self._add_batched([e for e, _, _, _ in planned])

        rows: list[dict[str, Any]] = []
        for event, attendees, host, spec in planned:
            notes = cfg["rsvp_notes"][spec["lang"]]
            full = event.capacity is not None and len(attendees) > event.capacity
            past = event.starts_at <= self.now
            going = 0
            for m, at in attendees:
                row: dict[str, Any] = {
                    "event_id": event.id,
                    "user_id": m.user_id,
                    "created_at": at,
                    "updated_at": at,
                    "waitlisted_at": None,
                    "checked_in_at": None,
                    "checked_in_by": None,
                    "note": self.rng.choice(notes) if self.rng.random() < 0.15 else "",
                }
                if event.capacity is not None and going >= event.capacity:
                    row.update(status=RsvpStatus.WAITLISTED, waitlisted_at=at)
                elif not full and self.rng.random() < 0.08:
                    # Only where nobody waits: a cancelled seat would have gone to the waitlist.
                    cancelled_at = self._between(at, min(event.starts_at, self.now))
                    row.update(status=RsvpStatus.CANCELLED, updated_at=cancelled_at)
                else:
                    going += 1
                    row["status"] = RsvpStatus.GOING
                    if past and self.rng.random() < 0.85:
                        arrived = event.starts_at + timedelta(minutes=self.rng.randint(-15, 20))
                        row["checked_in_at"] = min(arrived, self.now)
                        row["checked_in_by"] = host.user_id
                rows.append(row)
            event.going_count = going
        self._insert_batched(EventRsvp, rows)
        self.session.flush()
        return len(rows)

    # -- courses -------------------------------------------------------------

    # -- chips ---------------------------------------------------------------

    def _create_chips(self, community: Community) -> None:
        """A few wallets with something in them, made through the chip service and the ledger.

        The community chip (created with the community) goes to the owner and a few dozen
        regulars; two regulars issue personal chips and hand some to their fans. Small on
        purpose: a handful of ledger transactions, deterministic keys.
        """
        rng = random.Random(self.seed + 1)  # separate stream: the rest of the demo is unchanged
        assert self.owner.user is not None
        owner = Actor(self.owner.user)
        regulars = [
            m
            for m in self.members[1:]
            if m.index not in self.spammers
            and m.user is not None
            and chips_repo.is_active_member(self.session, community.id, m.user_id)
        ]
        points = chips_repo.community_chip(self.session, community.id)
        assert points is not None
        for m in [self.owner, *regulars[:40]]:
            chips.mint(
                self.session,
                owner,
                points.id,
                MintIn(amount=rng.choice((50, 100, 200, 500)), to_user_id=m.user_id, memo="welcome"),
                f"demo-welcome-{m.index}",
            )
        for n, (issuer, symbol) in enumerate(zip(regulars[:2], ("TEA", "BEAN"), strict=False)):
            assert issuer.user is not None
            name, description = _CHIP_NAMES[issuer.language]
            chip = chips.issue_chip(
                self.session,
                Actor(issuer.user),
                community.id,
                ChipIn(
                    name=name.format(name=issuer.display_name)[:60],
                    symbol=symbol,
                    description=description.format(name=issuer.display_name),
                    supply_cap=100_000,
                    emission_limit=10_000,
                    emission_period=EmissionPeriod.WEEK,
                    tradable=n == 0,
                ),
            )
            fans = rng.sample(regulars[2:], k=min(6, len(regulars) - 2))
            for fan in [issuer, *fans]:
                chips.mint(
                    self.session,
                    Actor(issuer.user),
                    chip.id,
                    MintIn(
                        amount=1000 if fan is issuer else rng.choice((10, 20, 50)), to_user_id=fan.user_id
                    ),
                    f"demo-{symbol.lower()}-{fan.index}",
                )

    def _create_courses(self, community: Community) -> None:
        planned: list[tuple[Course, list[Lesson], dict[str, Any]]] = []
        for spec in self.data["courses"]:
            lang = Language(spec["lang"])
            published = self._ago(spec["published_days_ago"])
            min_tier = spec.get("min_tier")
            course = Course(
                community_id=community.id,
                created_by=self._host(lang).user_id,
                title=spec["title"],
                description=spec["description"],
                min_tier_id=self.tiers[min_tier].id if min_tier else None,
                published_at=published,
                created_at=published - timedelta(days=self.rng.uniform(1, 5)),
            )
            lessons = [
                Lesson(
                    position=i,
                    title=lesson["title"],
                    body=lesson["body"],
                    duration_minutes=lesson["minutes"],
                    created_at=course.created_at + timedelta(minutes=10 * i),
                )
                for i, lesson in enumerate(spec["lessons"], start=1)
            ]
            planned.append((course, lessons, spec))
        self._add_batched([c for c, _, _ in planned])
        for course, lessons, _ in planned:
            for lesson in lessons:
                lesson.course_id = course.id
        self._add_batched([lesson for _, lessons, _ in planned for lesson in lessons])

        enrollments: list[tuple[Enrollment, list[tuple[Lesson, datetime]]]] = []
        for course, lessons, spec in planned:
            lang = Language(spec["lang"])
            assert course.published_at is not None
            for m in self.members:
                if m.index in self.spammers or m.joined_at > self._ago(1):
                    continue
                if not self._meets_tier(m, spec.get("min_tier")):
                    continue
                readable = (lang == Language.EN) == (m.language == Language.EN)
                share = spec["enroll_share"] if spec["interest"] in m.interests else 0.04
                if self.rng.random() >= (share if readable else share / 4):
                    continue
                enrolled_at = self._between(max(course.published_at, m.joined_at), self._ago(1 / 24))
                done = self.rng.choices(
                    range(len(lessons) + 1), weights=[2] + [1] * (len(lessons) - 1) + [3]
                )[0]
                completions: list[tuple[Lesson, datetime]] = []
                at = enrolled_at
                for lesson in lessons[:done]:
                    at = at + timedelta(hours=self.rng.uniform(0.2, 96))
                    if at >= self.now:
                        break
                    completions.append((lesson, at))
                finished = completions[-1][1] if len(completions) == len(lessons) else None
                enrollment = Enrollment(
                    course_id=course.id, user_id=m.user_id, enrolled_at=enrolled_at, completed_at=finished
                )
                enrollments.append((enrollment, completions))
        self._add_batched([e for e, _ in enrollments])
        self._insert_batched(
            LessonCompletion,
            [
                {"enrollment_id": e.id, "lesson_id": lesson.id, "completed_at": at}
                for e, completions in enrollments
                for lesson, at in completions
            ],
        )

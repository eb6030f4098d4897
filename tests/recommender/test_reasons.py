"""Every reason code worded in zh-TW, zh-CN and English, with its params and the right script."""

from __future__ import annotations

import pytest

from recommender.corpus import LANGS, Lang
from recommender.model import Reason
from recommender.reasons import CODES, ReasonError, render

SAMPLE: dict[str, str | int] = {
    "name": "林怡君",
    "n": 3,
    "title": "週末登山健行聚會",
    "topic": "登山",
    "action": "rsvp",
    "days": 4,
    "tier": "vip",
}
# Characters that only one of the two Chinese scripts uses, among those the reasons contain.
TRADITIONAL_ONLY = set("蹤們賞覆過報發後開會員課選這個參與熱門為薦級興趣歡")
SIMPLIFIED_ONLY = set("踪们赏复过报发后开会员课选这个参与热门为荐级兴趣欢")


def reason(code: str, **override: str | int) -> Reason:
    return Reason(code, {name: override.get(name, SAMPLE[name]) for name in CODES[code]})


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("code", sorted(CODES))
def test_every_code_renders_in_every_language(code: str, lang: Lang) -> None:
    text = render(reason(code), lang)
    assert text and "{" not in text and "}" not in text
    for name in CODES[code]:
        if name in {"name", "title", "topic"}:
            assert str(SAMPLE[name]) in text  # the concrete param is shown
        if name in {"n", "days"}:
            assert "3" in text or "4" in text
    if lang == "zh-TW":
        assert not set(text) & SIMPLIFIED_ONLY - TRADITIONAL_ONLY, text
    elif lang == "zh-CN":
        assert not set(text) & (TRADITIONAL_ONLY - SIMPLIFIED_ONLY) - set(str(SAMPLE["title"])), text
    else:
        assert text.isascii() or any(str(SAMPLE[p]) in text for p in ("name", "title", "topic")), text


def test_wording_examples_from_the_issue() -> None:
    assert render(Reason("co_tipped", {"name": "X"}), "zh-TW") == "你們都打賞過X"
    assert render(Reason("co_tipped", {"name": "X"}), "zh-CN") == "你们都打赏过X"
    friends = Reason("friends_joined", {"n": 3, "name": "Ann", "action": "rsvp"})
    assert render(friends, "en") == "3 people you follow RSVP'd, including Ann"
    assert render(friends, "zh-TW") == "你追蹤的 3 人已報名，包括Ann"
    assert render(friends, "zh-CN") == "你关注的 3 人已报名，包括Ann"
    similar = Reason("similar_to", {"title": "Trail tips", "action": "reply"})
    assert render(similar, "en") == "Similar to 'Trail tips', which you replied to"
    assert render(similar, "zh-TW") == "和你回覆過的「Trail tips」相似"
    assert render(similar, "zh-CN") == "和你回复过的“Trail tips”相似"


def test_singular_and_day_forms() -> None:
    one_friend = Reason("friends_joined", {"n": 1, "name": "Ann", "action": "enrol"})
    assert render(one_friend, "en") == "Ann, whom you follow, enrolled"
    assert render(one_friend, "zh-TW") == "你追蹤的Ann已報名這門課程"
    assert render(Reason("starting_soon", {"days": 0}), "en") == "Starts today"
    assert render(Reason("starting_soon", {"days": 1}), "zh-CN") == "明天开始"
    assert render(Reason("fresh", {"days": 0}), "zh-TW") == "今天新發布"
    assert render(Reason("upgrade", {"tier": "member"}), "zh-TW") == "升級為會員即可參加"
    assert render(Reason("upgrade", {"tier": "member"}), "zh-CN") == "升级为会员即可参加"


@pytest.mark.parametrize(
    ("bad", "lang", "message"),
    [
        (Reason("nope", {}), "en", "unknown reason code"),
        (Reason("co_tipped", {}), "en", "needs name"),
        (Reason("similar_to", {"title": "t", "action": "dance"}), "zh-TW", "unknown action"),
        (Reason("upgrade", {"tier": "gold"}), "zh-CN", "unknown tier"),
        (Reason("popular", {"n": 2}), "fr", "lang must be one of"),
    ],
)
def test_bad_reasons_are_refused(bad: Reason, lang: str, message: str) -> None:
    with pytest.raises(ReasonError, match=message):
        render(bad, lang)  # type: ignore[arg-type]

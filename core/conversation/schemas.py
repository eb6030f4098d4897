from __future__ import annotations

import unicodedata
from bisect import bisect_right
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

from core.communities.schemas import TierKey
from core.models import Role
from core.schemas import Id, Input, Name, Output, Slug

MAX_BODY = 20_000
MAX_TITLE = 200
# Ids a body may mention before the rest are ignored: bounds the membership lookups.
MAX_MENTIONS = 50
# Others in a group conversation; with the creator that makes at most ten people.
MAX_OTHER_PARTICIPANTS = 9


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


# Markdown is stored as written (leading indentation is meaningful), so no stripping.
Body = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_BODY, strip_whitespace=False),
    AfterValidator(_not_blank),
]
# NUL in any of these is refused by core.schemas.Input, like everywhere else.
ThreadTitle = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TITLE)]
ChannelName = Name
Description = Annotated[str, StringConstraints(max_length=1000)]
ConversationTitle = Annotated[str, StringConstraints(min_length=1, max_length=120)]
MAX_EMOJI = 32


# --- emoji ------------------------------------------------------------------
# unicodedata has no emoji property, so the pictographs come from Unicode 17.0's emoji data:
# the Emoji characters less the components (digits, # and *, regional indicators, skin
# tones), and the unassigned Extended_Pictographic code points Unicode keeps for emoji to come.
# fmt: off
_EMOJI_RANGES = (
    (0xA9, 0xA9), (0xAE, 0xAE), (0x203C, 0x203C), (0x2049, 0x2049), (0x2122, 0x2122), (0x2139, 0x2139),
    (0x2194, 0x2199), (0x21A9, 0x21AA), (0x231A, 0x231B), (0x2328, 0x2328), (0x23CF, 0x23CF),
    (0x23E9, 0x23F3), (0x23F8, 0x23FA), (0x24C2, 0x24C2), (0x25AA, 0x25AB), (0x25B6, 0x25B6),
    (0x25C0, 0x25C0), (0x25FB, 0x25FE), (0x2600, 0x2604), (0x260E, 0x260E), (0x2611, 0x2611),
    (0x2614, 0x2615), (0x2618, 0x2618), (0x261D, 0x261D), (0x2620, 0x2620), (0x2622, 0x2623),
    (0x2626, 0x2626), (0x262A, 0x262A), (0x262E, 0x262F), (0x2638, 0x263A), (0x2640, 0x2640),
    (0x2642, 0x2642), (0x2648, 0x2653), (0x265F, 0x2660), (0x2663, 0x2663), (0x2665, 0x2666),
    (0x2668, 0x2668), (0x267B, 0x267B), (0x267E, 0x267F), (0x2692, 0x2697), (0x2699, 0x2699),
    (0x269B, 0x269C), (0x26A0, 0x26A1), (0x26A7, 0x26A7), (0x26AA, 0x26AB), (0x26B0, 0x26B1),
    (0x26BD, 0x26BE), (0x26C4, 0x26C5), (0x26C8, 0x26C8), (0x26CE, 0x26CF), (0x26D1, 0x26D1),
    (0x26D3, 0x26D4), (0x26E9, 0x26EA), (0x26F0, 0x26F5), (0x26F7, 0x26FA), (0x26FD, 0x26FD),
    (0x2702, 0x2702), (0x2705, 0x2705), (0x2708, 0x270D), (0x270F, 0x270F), (0x2712, 0x2712),
    (0x2714, 0x2714), (0x2716, 0x2716), (0x271D, 0x271D), (0x2721, 0x2721), (0x2728, 0x2728),
    (0x2733, 0x2734), (0x2744, 0x2744), (0x2747, 0x2747), (0x274C, 0x274C), (0x274E, 0x274E),
    (0x2753, 0x2755), (0x2757, 0x2757), (0x2763, 0x2764), (0x2795, 0x2797), (0x27A1, 0x27A1),
    (0x27B0, 0x27B0), (0x27BF, 0x27BF), (0x2934, 0x2935), (0x2B05, 0x2B07), (0x2B1B, 0x2B1C),
    (0x2B50, 0x2B50), (0x2B55, 0x2B55), (0x3030, 0x3030), (0x303D, 0x303D), (0x3297, 0x3297),
    (0x3299, 0x3299), (0x1F004, 0x1F004), (0x1F0CF, 0x1F0CF), (0x1F170, 0x1F171), (0x1F17E, 0x1F17F),
    (0x1F18E, 0x1F18E), (0x1F191, 0x1F19A), (0x1F201, 0x1F202), (0x1F21A, 0x1F21A), (0x1F22F, 0x1F22F),
    (0x1F232, 0x1F23A), (0x1F250, 0x1F251), (0x1F300, 0x1F321), (0x1F324, 0x1F393), (0x1F396, 0x1F397),
    (0x1F399, 0x1F39B), (0x1F39E, 0x1F3F0), (0x1F3F3, 0x1F3F5), (0x1F3F7, 0x1F3FA), (0x1F400, 0x1F4FD),
    (0x1F4FF, 0x1F53D), (0x1F549, 0x1F54E), (0x1F550, 0x1F567), (0x1F56F, 0x1F570), (0x1F573, 0x1F57A),
    (0x1F587, 0x1F587), (0x1F58A, 0x1F58D), (0x1F590, 0x1F590), (0x1F595, 0x1F596), (0x1F5A4, 0x1F5A5),
    (0x1F5A8, 0x1F5A8), (0x1F5B1, 0x1F5B2), (0x1F5BC, 0x1F5BC), (0x1F5C2, 0x1F5C4), (0x1F5D1, 0x1F5D3),
    (0x1F5DC, 0x1F5DE), (0x1F5E1, 0x1F5E1), (0x1F5E3, 0x1F5E3), (0x1F5E8, 0x1F5E8), (0x1F5EF, 0x1F5EF),
    (0x1F5F3, 0x1F5F3), (0x1F5FA, 0x1F64F), (0x1F680, 0x1F6C5), (0x1F6CB, 0x1F6D2), (0x1F6D5, 0x1F6D8),
    (0x1F6DC, 0x1F6E5), (0x1F6E9, 0x1F6E9), (0x1F6EB, 0x1F6EC), (0x1F6F0, 0x1F6F0), (0x1F6F3, 0x1F6FC),
    (0x1F7E0, 0x1F7EB), (0x1F7F0, 0x1F7F0), (0x1F90C, 0x1F93A), (0x1F93C, 0x1F945), (0x1F947, 0x1F9FF),
    (0x1FA70, 0x1FA7C), (0x1FA80, 0x1FA8A), (0x1FA8E, 0x1FAC6), (0x1FAC8, 0x1FAC8), (0x1FACD, 0x1FADC),
    (0x1FADF, 0x1FAEA), (0x1FAEF, 0x1FAF8),
)
_RESERVED_RANGES = (
    (0x1F02C, 0x1F02F), (0x1F094, 0x1F09F), (0x1F0AF, 0x1F0B0), (0x1F0C0, 0x1F0C0), (0x1F0D0, 0x1F0D0),
    (0x1F0F6, 0x1F0FF), (0x1F1AE, 0x1F1E5), (0x1F203, 0x1F20F), (0x1F23C, 0x1F23F), (0x1F249, 0x1F24F),
    (0x1F252, 0x1F25F), (0x1F266, 0x1F2FF), (0x1F6D9, 0x1F6DB), (0x1F6ED, 0x1F6EF), (0x1F6FD, 0x1F6FF),
    (0x1F7DA, 0x1F7DF), (0x1F7EC, 0x1F7EF), (0x1F7F1, 0x1F7FF), (0x1F80C, 0x1F80F), (0x1F848, 0x1F84F),
    (0x1F85A, 0x1F85F), (0x1F888, 0x1F88F), (0x1F8AE, 0x1F8AF), (0x1F8BC, 0x1F8BF), (0x1F8C2, 0x1F8CF),
    (0x1F8D9, 0x1F8FF), (0x1FA58, 0x1FA5F), (0x1FA6E, 0x1FA6F), (0x1FA7D, 0x1FA7F), (0x1FA8B, 0x1FA8D),
    (0x1FAC7, 0x1FAC7), (0x1FAC9, 0x1FACC), (0x1FADD, 0x1FADE), (0x1FAEB, 0x1FAEE), (0x1FAF9, 0x1FAFF),
    (0x1FC00, 0x1FFFD),
)
# fmt: on
_VS16 = "\N{VARIATION SELECTOR-16}"
_ZWJ = "\N{ZERO WIDTH JOINER}"
_KEYCAP = "\N{COMBINING ENCLOSING KEYCAP}"
_CANCEL_TAG = "\U000e007f"


def _in_ranges(cp: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    i = bisect_right(ranges, (cp, 0x10FFFF)) - 1
    return i >= 0 and ranges[i][0] <= cp <= ranges[i][1]


def _pictographic(ch: str) -> bool:
    cp = ord(ch)
    # A reserved code point counts once this Python's Unicode database knows it: an emoji
    # newer than the table (clients ship new emoji before the table is updated).
    return _in_ranges(cp, _EMOJI_RANGES) or (
        _in_ranges(cp, _RESERVED_RANGES) and unicodedata.category(ch) != "Cn"
    )


def _skin_tone(ch: str) -> bool:
    return 0x1F3FB <= ord(ch) <= 0x1F3FF


def _regional_indicator(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def _tag(ch: str) -> bool:
    return 0xE0020 <= ord(ch) <= 0xE007E


def _element(part: str) -> bool:
    """A pictograph, then optionally VS16, a skin tone and a tag sequence (subdivision flags)."""
    if not part or not _pictographic(part[0]):
        return False
    rest = part[1:].removeprefix(_VS16)
    if rest and _skin_tone(rest[0]):
        rest = rest[1:]
    if rest.endswith(_CANCEL_TAG) and len(rest) > 1 and all(_tag(c) for c in rest[:-1]):
        rest = ""
    return rest == ""


def is_emoji(text: str) -> bool:
    """Whether `text` is exactly one emoji.

    That is a pictograph (optionally with VS16 and a skin tone, possibly joined to more
    by ZWJ), a regional-indicator flag pair or a keycap; words, shortcodes (`:+1:`) and
    markup are not.
    """
    if not text or len(text) > MAX_EMOJI:
        return False
    if text[0] in "0123456789#*":
        return text[1:] in (_KEYCAP, _VS16 + _KEYCAP)
    if len(text) == 2 and _regional_indicator(text[0]) and _regional_indicator(text[1]):
        return True
    return all(_element(part) for part in text.split(_ZWJ))


# --- channels ---------------------------------------------------------------


class ChannelIn(Input):
    slug: Slug
    name: ChannelName
    description: Description = ""
    min_tier: TierKey | None = Field(default=None, description="tier key; members below it do not see it")
    min_role: Role = Role.MEMBER
    post_min_role: Role = Field(default=Role.MEMBER, description="e.g. moderator for announcements")
    position: int = Field(default=0, ge=0, le=1_000_000)


class ChannelPatch(Input):
    slug: Slug | None = None
    name: ChannelName | None = None
    description: Description | None = None
    min_tier: TierKey | None = Field(default=None, description="null removes the tier requirement")
    min_role: Role | None = None
    post_min_role: Role | None = None
    position: int | None = Field(default=None, ge=0, le=1_000_000)


class ChannelOut(Output):
    id: int
    community_id: int
    slug: str
    name: str
    description: str
    min_tier: str | None
    min_role: Role
    post_min_role: Role
    position: int
    archived_at: datetime | None
    created_at: datetime
    joined: bool = Field(description="whether the caller follows this channel")
    can_post: bool = Field(description="whether the caller may start threads and reply here")


# --- threads and posts ------------------------------------------------------


class AuthorOut(Output):
    """Enough of a member to show beside what they wrote."""

    id: int
    display_name: str
    avatar_url: str | None


class ThreadIn(Input):
    title: ThreadTitle
    body: Body


class ThreadPatch(Input):
    title: ThreadTitle


class ReplyIn(Input):
    body: Body
    reply_to_id: Id | None = None


class PostPatch(Input):
    body: Body


class PostOut(Output):
    id: int
    thread_id: int
    author_id: int
    author: AuthorOut
    reply_to_id: int | None
    is_opening: bool
    body: str = Field(description="raw Markdown; empty for a deleted post unless you wrote it or are staff")
    body_html: str = Field(description="rendered Markdown; raw HTML in the body is escaped")
    deleted: bool
    edited_at: datetime | None
    created_at: datetime
    mentions: list[int] = Field(description="ids of members this post mentions")
    reactions: dict[str, int] = Field(description="emoji -> count")
    my_reactions: list[str]


class ThreadOut(Output):
    id: int
    community_id: int
    channel_id: int
    author_id: int
    author: AuthorOut
    title: str
    reply_count: int
    last_activity_at: datetime
    locked: bool
    locked_at: datetime | None
    deleted: bool
    created_at: datetime


class ThreadDetailOut(ThreadOut):
    opening_post: PostOut


class PostRevisionOut(Output):
    id: int
    post_id: int
    editor_id: int
    body: str = Field(description="the body before this edit")
    title: str | None = Field(description="the thread title before this edit (opening posts only)")
    created_at: datetime


# --- direct messages --------------------------------------------------------


class ConversationIn(Input):
    participant_ids: list[Id] = Field(
        min_length=1, max_length=50, description="the other members; one for a 1:1 conversation"
    )
    title: ConversationTitle | None = Field(default=None, description="group conversations only")


class ConversationOut(Output):
    id: int
    community_id: int
    title: str | None
    is_direct: bool
    participant_ids: list[int]
    created_by: int
    created_at: datetime
    last_message_at: datetime | None


class MessageIn(Input):
    body: Body


class MessageOut(Output):
    id: int
    conversation_id: int
    sender_id: int
    author: AuthorOut = Field(description="the sender")
    body: str
    body_html: str = Field(description="rendered Markdown; mentions of participants become mention spans")
    deleted: bool
    edited_at: datetime | None
    created_at: datetime

from __future__ import annotations

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


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL; reject it here instead of failing at flush.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


# Markdown is stored as written (leading indentation is meaningful), so no stripping.
Body = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_BODY, strip_whitespace=False),
    AfterValidator(_not_blank),
    AfterValidator(_no_nul),
]
ThreadTitle = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TITLE), AfterValidator(_no_nul)]
ChannelName = Annotated[Name, AfterValidator(_no_nul)]
Description = Annotated[str, StringConstraints(max_length=1000), AfterValidator(_no_nul)]
ConversationTitle = Annotated[str, StringConstraints(min_length=1, max_length=120), AfterValidator(_no_nul)]
EMOJI_PATTERN = r"^\S{1,32}$"


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
    body: str
    body_html: str
    deleted: bool
    edited_at: datetime | None
    created_at: datetime

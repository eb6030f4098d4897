"""Channels, threads, posts, reactions and direct messages over HTTP."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from api.deps import CurrentActor, Cursor, DbSession, Limit, PathId, QueryId
from core.conversation import dm_service as dms
from core.conversation import service
from core.conversation.schemas import (
    ChannelIn,
    ChannelOut,
    ChannelPatch,
    ConversationIn,
    ConversationOut,
    MessageIn,
    MessageOut,
    PostOut,
    PostPatch,
    PostRevisionOut,
    ReplyIn,
    ThreadDetailOut,
    ThreadIn,
    ThreadOut,
    ThreadPatch,
)
from core.schemas import PageOut

router = APIRouter(tags=["conversation"])

# The shape only; whether it is one real emoji (else 422 invalid_emoji) is the service's rule.
Emoji = Annotated[
    str, Path(min_length=1, max_length=32, pattern=r"^\S+$", description="a single emoji, e.g. 👍 or 🇹🇼")
]


# --- channels ---------------------------------------------------------------


@router.get("/communities/{community_id}/channels", response_model=list[ChannelOut])
def list_channels(
    community_id: PathId, actor: CurrentActor, session: DbSession, include_archived: bool = False
) -> list[ChannelOut]:
    """The channels the caller can see, by position."""
    return service.list_channels(session, actor, community_id, include_archived=include_archived)


@router.post("/communities/{community_id}/channels", response_model=ChannelOut, status_code=201)
def create_channel(
    community_id: PathId, data: ChannelIn, actor: CurrentActor, session: DbSession
) -> ChannelOut:
    return service.create_channel(session, actor, community_id, data)


@router.get("/communities/{community_id}/channels/{channel_id}", response_model=ChannelOut)
def get_channel(
    community_id: PathId, channel_id: PathId, actor: CurrentActor, session: DbSession
) -> ChannelOut:
    return service.get_channel(session, actor, community_id, channel_id)


@router.patch("/communities/{community_id}/channels/{channel_id}", response_model=ChannelOut)
def update_channel(
    community_id: PathId, channel_id: PathId, patch: ChannelPatch, actor: CurrentActor, session: DbSession
) -> ChannelOut:
    return service.update_channel(session, actor, community_id, channel_id, patch)


@router.post("/communities/{community_id}/channels/{channel_id}/archive", response_model=ChannelOut)
def archive_channel(
    community_id: PathId, channel_id: PathId, actor: CurrentActor, session: DbSession
) -> ChannelOut:
    return service.set_channel_archived(session, actor, community_id, channel_id, archived=True)


@router.post("/communities/{community_id}/channels/{channel_id}/unarchive", response_model=ChannelOut)
def unarchive_channel(
    community_id: PathId, channel_id: PathId, actor: CurrentActor, session: DbSession
) -> ChannelOut:
    return service.set_channel_archived(session, actor, community_id, channel_id, archived=False)


@router.post("/communities/{community_id}/channels/{channel_id}/membership", response_model=ChannelOut)
def join_channel(
    community_id: PathId, channel_id: PathId, actor: CurrentActor, session: DbSession
) -> ChannelOut:
    """Follow a channel (idempotent)."""
    return service.join_channel(session, actor, community_id, channel_id)


@router.delete("/communities/{community_id}/channels/{channel_id}/membership", response_model=ChannelOut)
def leave_channel(
    community_id: PathId, channel_id: PathId, actor: CurrentActor, session: DbSession
) -> ChannelOut:
    """Stop following a channel (idempotent)."""
    return service.leave_channel(session, actor, community_id, channel_id)


# --- threads ----------------------------------------------------------------


@router.post("/channels/{channel_id}/threads", response_model=ThreadDetailOut, status_code=201)
def create_thread(
    channel_id: PathId, data: ThreadIn, actor: CurrentActor, session: DbSession
) -> ThreadDetailOut:
    return service.create_thread(session, actor, channel_id, data)


@router.get("/channels/{channel_id}/threads", response_model=PageOut[ThreadOut])
def list_threads(
    channel_id: PathId,
    actor: CurrentActor,
    session: DbSession,
    cursor: Cursor = None,
    limit: Limit = 20,
    author_id: QueryId | None = None,
    q: Annotated[str | None, Query(max_length=100, description="title contains")] = None,
) -> PageOut[ThreadOut]:
    """Threads, most recent activity first."""
    page = service.list_threads(
        session, actor, channel_id, author_id=author_id, q=q, cursor=cursor, limit=limit
    )
    return page.out()


@router.get("/threads/{thread_id}", response_model=ThreadDetailOut)
def get_thread(thread_id: PathId, actor: CurrentActor, session: DbSession) -> ThreadDetailOut:
    return service.get_thread(session, actor, thread_id)


@router.patch("/threads/{thread_id}", response_model=ThreadDetailOut)
def update_thread(
    thread_id: PathId, patch: ThreadPatch, actor: CurrentActor, session: DbSession
) -> ThreadDetailOut:
    """Change the title (author only); the old title is kept as a revision of the opening post."""
    return service.update_thread(session, actor, thread_id, patch)


@router.post("/threads/{thread_id}/lock", response_model=ThreadOut)
def lock_thread(thread_id: PathId, actor: CurrentActor, session: DbSession) -> ThreadOut:
    return service.set_thread_locked(session, actor, thread_id, locked=True)


@router.post("/threads/{thread_id}/unlock", response_model=ThreadOut)
def unlock_thread(thread_id: PathId, actor: CurrentActor, session: DbSession) -> ThreadOut:
    return service.set_thread_locked(session, actor, thread_id, locked=False)


# --- posts ------------------------------------------------------------------


@router.get("/threads/{thread_id}/posts", response_model=PageOut[PostOut])
def list_replies(
    thread_id: PathId, actor: CurrentActor, session: DbSession, cursor: Cursor = None, limit: Limit = 50
) -> PageOut[PostOut]:
    """Replies, oldest first (the opening post comes with the thread)."""
    page = service.list_replies(session, actor, thread_id, cursor=cursor, limit=limit)
    return page.out()


@router.post("/threads/{thread_id}/posts", response_model=PostOut, status_code=201)
def create_reply(thread_id: PathId, data: ReplyIn, actor: CurrentActor, session: DbSession) -> PostOut:
    return service.create_reply(session, actor, thread_id, data)


@router.get("/posts/{post_id}", response_model=PostOut)
def get_post(post_id: PathId, actor: CurrentActor, session: DbSession) -> PostOut:
    return service.get_post(session, actor, post_id)


@router.patch("/posts/{post_id}", response_model=PostOut)
def edit_post(post_id: PathId, patch: PostPatch, actor: CurrentActor, session: DbSession) -> PostOut:
    """Author only; the previous body is kept as a revision."""
    return service.edit_post(session, actor, post_id, patch)


@router.delete("/posts/{post_id}", response_model=PostOut)
def delete_post(post_id: PathId, actor: CurrentActor, session: DbSession) -> PostOut:
    """Soft delete (author or moderator+); deleting the opening post deletes the thread."""
    return service.delete_post(session, actor, post_id)


@router.get("/posts/{post_id}/revisions", response_model=PageOut[PostRevisionOut])
def list_revisions(
    post_id: PathId, actor: CurrentActor, session: DbSession, cursor: Cursor = None, limit: Limit = 50
) -> PageOut[PostRevisionOut]:
    """Earlier versions, newest first (author or moderator+)."""
    page = service.list_revisions(session, actor, post_id, cursor=cursor, limit=limit)
    return page.out()


@router.put("/posts/{post_id}/reactions/{emoji}", response_model=PostOut)
def add_reaction(post_id: PathId, emoji: Emoji, actor: CurrentActor, session: DbSession) -> PostOut:
    return service.add_reaction(session, actor, post_id, emoji)


@router.delete("/posts/{post_id}/reactions/{emoji}", response_model=PostOut)
def remove_reaction(post_id: PathId, emoji: Emoji, actor: CurrentActor, session: DbSession) -> PostOut:
    return service.remove_reaction(session, actor, post_id, emoji)


# --- direct messages --------------------------------------------------------


@router.post(
    "/communities/{community_id}/conversations",
    response_model=ConversationOut,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"description": "the existing 1:1 conversation with this member"}},
)
def create_conversation(
    community_id: PathId, data: ConversationIn, response: Response, actor: CurrentActor, session: DbSession
) -> ConversationOut:
    conversation, created = dms.create_conversation(session, actor, community_id, data)
    if not created:
        response.status_code = status.HTTP_200_OK
    return conversation


@router.get("/communities/{community_id}/conversations", response_model=PageOut[ConversationOut])
def list_conversations(
    community_id: PathId, actor: CurrentActor, session: DbSession, cursor: Cursor = None, limit: Limit = 20
) -> PageOut[ConversationOut]:
    """The caller's conversations in this community, most recent activity first."""
    page = dms.list_conversations(session, actor, community_id, cursor=cursor, limit=limit)
    return page.out()


@router.get("/conversations/{conversation_id}", response_model=ConversationOut)
def get_conversation(conversation_id: PathId, actor: CurrentActor, session: DbSession) -> ConversationOut:
    return dms.get_conversation(session, actor, conversation_id)


@router.get("/conversations/{conversation_id}/messages", response_model=PageOut[MessageOut])
def list_messages(
    conversation_id: PathId, actor: CurrentActor, session: DbSession, cursor: Cursor = None, limit: Limit = 50
) -> PageOut[MessageOut]:
    """Newest first."""
    page = dms.list_messages(session, actor, conversation_id, cursor=cursor, limit=limit)
    return page.out()


@router.post("/conversations/{conversation_id}/messages", response_model=MessageOut, status_code=201)
def send_message(
    conversation_id: PathId, data: MessageIn, actor: CurrentActor, session: DbSession
) -> MessageOut:
    return dms.send_message(session, actor, conversation_id, data)

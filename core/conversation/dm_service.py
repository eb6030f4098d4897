"""Direct-message rules: private conversations between members of one community.

Privacy comes first: a conversation exists only for its participants. Owners,
admins and superusers get the same 404 as anyone else, API keys are refused
outright, and nothing about a conversation goes to the audit log (which
community managers read).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import jobs
from core.access import Actor, community_context
from core.clock import utcnow
from core.conversation import markdown
from core.conversation import repository as repo
from core.conversation.schemas import (
    MAX_OTHER_PARTICIPANTS,
    AuthorOut,
    ConversationIn,
    ConversationOut,
    MessageIn,
    MessageOut,
)
from core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from core.models import Conversation, ConversationParticipant, DirectMessage, MembershipStatus
from core.pagination import Page, paginate, paginate_by_time
from core.social import errors as social_errors
from core.social import repository as social_repo

MESSAGE_SENT_JOB = "hearth.notifications.message_sent"


def direct_key(community_id: int, a: int, b: int) -> str:
    low, high = sorted((a, b))
    return f"{community_id}:{low}:{high}"


def _conversations_out(session: Session, conversations: Sequence[Conversation]) -> list[ConversationOut]:
    participants = repo.participants_of(session, [c.id for c in conversations])
    return [
        ConversationOut(
            id=c.id,
            community_id=c.community_id,
            title=c.title,
            is_direct=c.direct_key is not None,
            participant_ids=participants.get(c.id, []),
            created_by=c.created_by,
            created_at=c.created_at,
            last_message_at=c.last_message_at,
        )
        for c in conversations
    ]


def _messages_out(
    session: Session, conversation: Conversation, messages: Sequence[DirectMessage]
) -> list[MessageOut]:
    participants = repo.participants_of(session, [conversation.id]).get(conversation.id, [])
    # Senders and the participants a body may mention, in one query for the whole page.
    users = repo.user_cards(session, {*participants, *(m.sender_id for m in messages)})
    # Everyone in the conversation already sees who else is in it, so their mentions render;
    # a token for anyone else stays escaped text.
    names = {uid: users[uid].display_name for uid in participants if uid in users}
    out = []
    for message in messages:
        deleted = message.deleted_at is not None
        body = "" if deleted else message.body
        out.append(
            MessageOut(
                id=message.id,
                conversation_id=message.conversation_id,
                sender_id=message.sender_id,
                author=AuthorOut.model_validate(users[message.sender_id]),
                body=body,
                body_html=markdown.render(body, names),
                deleted=deleted,
                edited_at=message.edited_at,
                created_at=message.created_at,
            )
        )
    return out


def _own_conversation(session: Session, actor: Actor, conversation_id: int) -> Conversation:
    actor.require_personal()
    conversation = session.get(Conversation, conversation_id)
    if conversation is None or not repo.is_participant(session, conversation_id, actor.id):
        raise NotFound("conversation not found", code="conversation_not_found")
    return conversation


def create_conversation(
    session: Session, actor: Actor, community_id: int, data: ConversationIn
) -> tuple[ConversationOut, bool]:
    """Start a 1:1 or group conversation; returns (conversation, created).

    A 1:1 conversation between the same two members is returned, not duplicated.
    """
    actor.require_personal()
    ctx = community_context(session, actor, community_id)
    ctx.require_member()
    others = list(dict.fromkeys(uid for uid in data.participant_ids if uid != actor.id))
    if not others:
        raise InvalidInput("name at least one other member", code="participants_required")
    if len(others) > MAX_OTHER_PARTICIPANTS:
        raise InvalidInput(
            f"a conversation has at most {MAX_OTHER_PARTICIPANTS + 1} participants",
            code="too_many_participants",
        )
    active = {m.user_id for m in repo.active_memberships(session, community_id, others)}
    missing = [uid for uid in others if uid not in active]
    if missing:
        raise NotFound(f"no member {missing[0]} in this community", code="member_not_found")
    if any(social_repo.blocked_either_way(session, actor.id, uid) for uid in others):
        # Nobody is drawn into a conversation with someone they blocked, or who blocked them.
        raise social_errors.blocked()

    if len(others) == 1:
        if data.title is not None:
            raise InvalidInput("1:1 conversations have no title", code="direct_conversation_title")
        key = direct_key(community_id, actor.id, others[0])
        existing = repo.conversation_by_direct_key(session, key)
        if existing is not None:
            return _conversations_out(session, [existing])[0], False
        conversation = Conversation(community_id=community_id, created_by=actor.id, direct_key=key)
        session.add(conversation)
        try:
            with session.begin_nested():
                session.flush()
        except IntegrityError:
            # The other member opened it at the same moment: theirs is ours.
            existing = repo.conversation_by_direct_key(session, key)
            assert existing is not None
            return _conversations_out(session, [existing])[0], False
    else:
        conversation = Conversation(community_id=community_id, created_by=actor.id, title=data.title)
        session.add(conversation)
        session.flush()

    now = utcnow()
    session.add_all(
        ConversationParticipant(conversation_id=conversation.id, user_id=uid, joined_at=now)
        for uid in [actor.id, *others]
    )
    session.flush()
    return _conversations_out(session, [conversation])[0], True


def list_conversations(
    session: Session, actor: Actor, community_id: int, *, cursor: str | None, limit: int
) -> Page[ConversationOut]:
    """The caller's conversations in a community, newest activity first."""
    actor.require_personal()
    community_context(session, actor, community_id)
    page = paginate_by_time(
        session,
        repo.conversations_of(community_id, actor.id),
        repo.conversation_activity(),
        Conversation.id,
        cursor=cursor,
        limit=limit,
    )
    return page.with_items(_conversations_out(session, page.items))


def get_conversation(session: Session, actor: Actor, conversation_id: int) -> ConversationOut:
    return _conversations_out(session, [_own_conversation(session, actor, conversation_id)])[0]


def list_messages(
    session: Session, actor: Actor, conversation_id: int, *, cursor: str | None, limit: int
) -> Page[MessageOut]:
    """Newest first, the way a chat view loads history upwards."""
    conversation = _own_conversation(session, actor, conversation_id)
    page = paginate(session, repo.messages_of(conversation.id), DirectMessage.id, cursor=cursor, limit=limit)
    return page.with_items(_messages_out(session, conversation, page.items))


def send_message(session: Session, actor: Actor, conversation_id: int, data: MessageIn) -> MessageOut:
    conversation = _own_conversation(session, actor, conversation_id)
    if repo.membership_status(session, conversation.community_id, actor.id) != MembershipStatus.ACTIVE:
        raise PermissionDenied("you are no longer a member of this community", code="not_a_member")
    if conversation.direct_key is not None:
        (other,) = [
            u for u in repo.participants_of(session, [conversation.id])[conversation.id] if u != actor.id
        ]
        if repo.membership_status(session, conversation.community_id, other) != MembershipStatus.ACTIVE:
            raise Conflict("they are no longer a member of this community", code="recipient_not_member")
        if social_repo.blocked_either_way(session, actor.id, other):
            raise social_errors.blocked()
    now = utcnow()
    message = DirectMessage(
        conversation_id=conversation.id, sender_id=actor.id, body=data.body, created_at=now
    )
    session.add(message)
    conversation.last_message_at = now
    session.flush()
    jobs.enqueue(session, MESSAGE_SENT_JOB, message.id)
    return _messages_out(session, conversation, [message])[0]

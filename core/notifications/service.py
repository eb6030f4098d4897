"""Who hears about what. Called from tasks, never from request handlers."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.access import Actor
from core.clock import utcnow
from core.conversation import repository as conversation_repo
from core.conversation.service import MENTION_RE, member_sees
from core.models import (
    Channel,
    Chip,
    Conversation,
    ConversationParticipant,
    DirectMessage,
    Event,
    EventRsvp,
    Membership,
    MembershipStatus,
    Mention,
    Notification,
    Post,
    Thread,
    Tier,
    Tip,
)
from core.pagination import Page, paginate
from core.schemas import Output


class NotificationOut(Output):
    id: int
    community_id: int | None
    kind: str
    subject_type: str
    subject_id: int
    actor_id: int | None
    data: dict[str, Any]
    read_at: datetime | None
    created_at: datetime


def _notify(
    session: Session,
    *,
    user_id: int,
    community_id: int | None,
    kind: str,
    subject_type: str,
    subject_id: int,
    actor_id: int | None,
    data: dict[str, Any],
) -> bool:
    exists = session.scalar(
        select(Notification.id).where(
            Notification.user_id == user_id,
            Notification.kind == kind,
            Notification.subject_type == subject_type,
            Notification.subject_id == subject_id,
        )
    )
    if exists is not None:
        return False
    try:
        with session.begin_nested():
            session.add(
                Notification(
                    user_id=user_id,
                    community_id=community_id,
                    kind=kind,
                    subject_type=subject_type,
                    subject_id=subject_id,
                    actor_id=actor_id,
                    data=data,
                )
            )
    except IntegrityError:  # a concurrent run of the same job got there first
        return False
    return True


EXCERPT_LENGTH = 140


def post_created(session: Session, post_id: int) -> int:
    """Notify mentioned members, the thread's author and the replied-to author."""
    post = session.get(Post, post_id)
    if post is None:
        return 0
    # A shared lock on the thread until this job commits. Deleting a post always updates its
    # thread row, so a delete either waits for this job and then removes what it wrote, or this
    # job waits for the delete and, reading the post again after the lock, sees it (PostgreSQL).
    # Only the thread is locked: one lock cannot be taken in an order that deadlocks.
    thread = session.get(Thread, post.thread_id, with_for_update={"read": True}, populate_existing=True)
    assert thread is not None
    post = session.get(Post, post_id, populate_existing=True)
    if post is None or post.deleted_at is not None:
        return 0
    mentioned = session.scalars(select(Mention.user_id).where(Mention.post_id == post.id)).all()
    data = {"thread_id": thread.id, "title": thread.title, "excerpt": _excerpt(session, post.body, mentioned)}
    audience = _channel_audience(session, thread)
    repliees = set()
    if not post.is_opening:
        repliees.add(thread.author_id)
        if post.reply_to_id is not None:
            parent = session.get(Post, post.reply_to_id)
            if parent is not None:
                repliees.add(parent.author_id)
    # A mention wins over a reply: one notification per person per post.
    mentions = [uid for uid in mentioned if uid in audience and uid != post.author_id]
    replies = sorted((repliees & audience) - {post.author_id} - set(mentioned))
    sent = 0
    for kind, recipients in (("mention", mentions), ("reply", replies)):
        for user_id in recipients:
            sent += _notify(
                session,
                user_id=user_id,
                community_id=post.community_id,
                kind=kind,
                subject_type="post",
                subject_id=post.id,
                actor_id=post.author_id,
                data=data,
            )
    return sent


def _excerpt(session: Session, body: str, mentioned: Sequence[int]) -> str:
    """The start of the body with `<@123>` tokens as `@Name`.

    Only the members the post really mentions get a name, as in the rendered post; any
    other token is dropped, so a body cannot put an arbitrary id's name in front of anyone.
    """
    names = conversation_repo.display_names(session, mentioned)

    def name(match: re.Match[str]) -> str:
        user_id = int(match.group(1))
        return f"@{names[user_id]}" if user_id in names else ""

    return MENTION_RE.sub(name, body)[:EXCERPT_LENGTH]


def _channel_audience(session: Session, thread: Thread) -> set[int]:
    """Members who can see the thread's channel now: rights may have changed since the post."""
    channel = session.get(Channel, thread.channel_id)
    if channel is None or thread.deleted_at is not None:
        return set()
    tiers = {t.id: t for t in session.scalars(select(Tier).where(Tier.community_id == thread.community_id))}
    members = session.scalars(
        select(Membership).where(
            Membership.community_id == thread.community_id, Membership.status == MembershipStatus.ACTIVE
        )
    )
    return {m.user_id for m in members if member_sees(m, channel, tiers)}


def message_sent(session: Session, message_id: int) -> int:
    message = session.get(DirectMessage, message_id)
    if message is None or message.deleted_at is not None:
        return 0
    conversation = session.get(Conversation, message.conversation_id)
    assert conversation is not None
    recipients = session.scalars(
        select(ConversationParticipant.user_id)
        .join(
            Membership,
            (Membership.user_id == ConversationParticipant.user_id)
            & (Membership.community_id == conversation.community_id),
        )
        .where(
            ConversationParticipant.conversation_id == message.conversation_id,
            ConversationParticipant.user_id != message.sender_id,
            Membership.status == MembershipStatus.ACTIVE,
        )
    ).all()
    # No message text in the notification: DMs stay readable only inside the conversation.
    data = {"conversation_id": conversation.id}
    return sum(
        _notify(
            session,
            user_id=uid,
            community_id=conversation.community_id,
            kind="dm",
            subject_type="direct_message",
            subject_id=message.id,
            actor_id=message.sender_id,
            data=data,
        )
        for uid in recipients
    )


def rsvp_promoted(session: Session, rsvp_id: int) -> int:
    rsvp = session.get(EventRsvp, rsvp_id)
    if rsvp is None:
        return 0
    event = session.get(Event, rsvp.event_id)
    assert event is not None
    data = {"event_id": event.id, "title": event.title, "starts_at": event.starts_at.isoformat()}
    return int(
        _notify(
            session,
            user_id=rsvp.user_id,
            community_id=event.community_id,
            kind="waitlist_promoted",
            subject_type="event_rsvp",
            subject_id=rsvp.id,
            actor_id=None,
            data=data,
        )
    )


def tip_received(session: Session, tip_id: int) -> int:
    """Tell a member they were tipped (one notification per tip, however often this runs)."""
    tip = session.get(Tip, tip_id)
    if tip is None:
        return 0
    chip = session.get(Chip, tip.chip_id)
    symbol = chip.symbol if chip else ""
    names = conversation_repo.display_names(session, [tip.tipper_id])
    who = names.get(tip.tipper_id, "")
    data = {
        "amount": tip.amount,
        "chip_id": tip.chip_id,
        "chip_symbol": symbol,
        "note": tip.note,
        "post_id": tip.post_id,
        "text": {
            "en": f"{who} tipped you {tip.amount} {symbol}",
            "zh-TW": f"{who} 打賞了你 {tip.amount} {symbol}",
            "zh-CN": f"{who} 打赏了你 {tip.amount} {symbol}",
        },
    }
    return int(
        _notify(
            session,
            user_id=tip.recipient_id,
            community_id=tip.community_id,
            kind="tip_received",
            subject_type="tip",
            subject_id=tip.id,
            actor_id=tip.tipper_id,
            data=data,
        )
    )


def list_for(
    session: Session, actor: Actor, *, unread: bool, cursor: str | None, limit: int
) -> Page[Notification]:
    actor.require_personal()
    stmt = select(Notification).where(Notification.user_id == actor.id)
    if unread:
        stmt = stmt.where(Notification.read_at.is_(None))
    return paginate(session, stmt, Notification.id, cursor=cursor, limit=limit)


def mark_read(session: Session, actor: Actor, *, up_to_id: int | None) -> int:
    actor.require_personal()
    stmt = update(Notification).where(Notification.user_id == actor.id, Notification.read_at.is_(None))
    if up_to_id is not None:
        stmt = stmt.where(Notification.id <= up_to_id)
    result = session.execute(stmt.values(read_at=utcnow()).execution_options(synchronize_session=False))
    return int(result.rowcount)  # type: ignore[attr-defined]


# Chip economy (redemption, trading): each kind's text in every language, stored with the notice.
CHIP_TEXTS: dict[str, dict[str, str]] = {
    "redemption_requested": {
        "en": "New redemption of “{title}” (x{quantity})",
        "zh-TW": "有人兌換了「{title}」（x{quantity}）",
        "zh-CN": "有人兑换了「{title}」（x{quantity}）",
    },
    "redemption_fulfilled": {
        "en": "Your redemption of “{title}” was fulfilled",
        "zh-TW": "你兌換的「{title}」已完成",
        "zh-CN": "你兑换的「{title}」已完成",
    },
    "redemption_cancelled": {
        "en": "The redemption of “{title}” was cancelled; the chips were returned",
        "zh-TW": "「{title}」的兌換已取消，籌碼已退回",
        "zh-CN": "「{title}」的兑换已取消，筹码已退回",
    },
    "redemption_expired": {
        "en": "Your redemption of “{title}” expired; the chips were returned",
        "zh-TW": "你兌換的「{title}」已逾期，籌碼已退回",
        "zh-CN": "你兑换的「{title}」已过期，筹码已退回",
    },
    "swap_offered": {
        "en": "You received a swap offer: {give_amount} {give_symbol} for {want_amount} {want_symbol}",
        "zh-TW": "你收到交換提議：{give_amount} {give_symbol} 換 {want_amount} {want_symbol}",
        "zh-CN": "你收到交换提议：{give_amount} {give_symbol} 换 {want_amount} {want_symbol}",
    },
    "swap_accepted": {
        "en": "Your swap offer was accepted",
        "zh-TW": "你的交換提議已被接受",
        "zh-CN": "你的交换提议已被接受",
    },
    "swap_declined": {
        "en": "Your swap offer was declined; the chips were returned",
        "zh-TW": "你的交換提議被拒絕，籌碼已退回",
        "zh-CN": "你的交换提议被拒绝，筹码已退回",
    },
}


def chip_notice(
    session: Session,
    *,
    user_id: int,
    community_id: int | None,
    kind: str,
    subject_type: str,
    subject_id: int,
    actor_id: int | None,
    data: dict[str, Any],
) -> bool:
    """A chip-economy notification with its text in zh-TW, zh-CN and en; once per subject and kind."""
    texts = {lang: text.format(**data) for lang, text in CHIP_TEXTS[kind].items()}
    return _notify(
        session,
        user_id=user_id,
        community_id=community_id,
        kind=kind,
        subject_type=subject_type,
        subject_id=subject_id,
        actor_id=actor_id,
        data={**data, "text": texts},
    )

"""Channel, thread, post, mention and reaction rules.

Reads return presented schemas (`ChannelOut`, `ThreadOut`, `PostOut`) because what a
caller may see of a row (a deleted post's body, its mentions) is a rule of this
domain, not of the HTTP layer.

Writes on a locked thread or an archived channel are refused with 409
(`thread_locked`, `channel_archived`) for everyone; only staff may still delete
posts there, since moderation must not be blocked by a lock.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import audit, jobs
from core.access import Actor, CommunityContext, community_context, context_via, effective_tier_rank
from core.clock import utcnow
from core.conversation import markdown
from core.conversation import repository as repo
from core.conversation.schemas import (
    MAX_MENTIONS,
    AuthorOut,
    ChannelIn,
    ChannelOut,
    ChannelPatch,
    PostOut,
    PostPatch,
    PostRevisionOut,
    ReplyIn,
    ThreadDetailOut,
    ThreadIn,
    ThreadOut,
    ThreadPatch,
    is_emoji,
)
from core.earning import service as earning
from core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from core.models import (
    Channel,
    ChannelMember,
    EarnTrigger,
    Membership,
    Mention,
    Post,
    PostRevision,
    Reaction,
    Role,
    Thread,
    Tier,
)
from core.pagination import Page, paginate, paginate_by_time

POST_CREATED_JOB = "hearth.notifications.post_created"
MENTION_RE = re.compile(r"<@(\d{1,18})>")


def _channel_not_found() -> NotFound:
    return NotFound("channel not found", code="channel_not_found")


def _thread_not_found() -> NotFound:
    return NotFound("thread not found", code="thread_not_found")


def _post_not_found() -> NotFound:
    return NotFound("post not found", code="post_not_found")


# --- visibility -------------------------------------------------------------


def _sees(role: Role, tier_rank: int, channel: Channel, tiers: dict[int, Tier]) -> bool:
    """Role gates bind everyone (an admins-only room excludes moderators); staff skip tier gates."""
    if not role.at_least(channel.min_role):
        return False
    if channel.min_tier_id is None or role.at_least(Role.MODERATOR):
        return True
    tier = tiers.get(channel.min_tier_id)
    return tier is not None and tier_rank >= tier.rank


def can_see(ctx: CommunityContext, channel: Channel) -> bool:
    if channel.community_id != ctx.community.id or not ctx.is_member or ctx.role is None:
        return False
    return _sees(ctx.role, ctx.tier_rank, channel, ctx.tiers)


def member_sees(membership: Membership, channel: Channel, tiers: dict[int, Tier]) -> bool:
    return _sees(membership.role, effective_tier_rank(membership, tiers), channel, tiers)


def can_post(ctx: CommunityContext, channel: Channel) -> bool:
    return (
        can_see(ctx, channel)
        and channel.archived_at is None
        and ctx.role is not None
        and ctx.role.at_least(channel.post_min_role)
    )


def _visible_channel(session: Session, actor: Actor, channel_id: int) -> tuple[CommunityContext, Channel]:
    channel = session.get(Channel, channel_id)
    if channel is None:
        raise _channel_not_found()
    ctx = context_via(session, actor, channel.community_id, _channel_not_found())
    if not can_see(ctx, channel):
        raise _channel_not_found()
    return ctx, channel


def _community_channel(
    session: Session, actor: Actor, community_id: int, channel_id: int
) -> tuple[CommunityContext, Channel]:
    ctx = community_context(session, actor, community_id)
    channel = session.get(Channel, channel_id)
    if channel is None or not can_see(ctx, channel):
        raise _channel_not_found()
    return ctx, channel


def _visible_thread(
    session: Session, actor: Actor, thread_id: int
) -> tuple[CommunityContext, Channel, Thread]:
    thread = session.get(Thread, thread_id)
    if thread is None:
        raise _thread_not_found()
    channel = session.get(Channel, thread.channel_id)
    assert channel is not None
    ctx = context_via(session, actor, thread.community_id, _thread_not_found())
    if not can_see(ctx, channel) or (thread.deleted_at is not None and not ctx.is_staff):
        raise _thread_not_found()
    return ctx, channel, thread


def _visible_post(
    session: Session, actor: Actor, post_id: int
) -> tuple[CommunityContext, Channel, Thread, Post]:
    post = session.get(Post, post_id)
    if post is None:
        raise _post_not_found()
    try:
        ctx, channel, thread = _visible_thread(session, actor, post.thread_id)
    except NotFound as exc:
        raise _post_not_found() from exc
    return ctx, channel, thread, post


def _require_open(channel: Channel, thread: Thread | None = None) -> None:
    if channel.archived_at is not None:
        raise Conflict("this channel is archived", code="channel_archived")
    if thread is not None and thread.deleted_at is not None:
        raise Conflict("this thread was deleted", code="thread_deleted")
    if thread is not None and thread.locked_at is not None:
        raise Conflict("this thread is locked", code="thread_locked")


def _require_post_role(ctx: CommunityContext, channel: Channel) -> None:
    if not can_post(ctx, channel):
        raise PermissionDenied(
            f"posting here needs the {channel.post_min_role.value} role or higher", code="insufficient_role"
        )


# --- presenting -------------------------------------------------------------


def _channel_out(ctx: CommunityContext, channel: Channel, *, joined: bool) -> ChannelOut:
    min_tier = ctx.tiers.get(channel.min_tier_id) if channel.min_tier_id is not None else None
    return ChannelOut(
        id=channel.id,
        community_id=channel.community_id,
        slug=channel.slug,
        name=channel.name,
        description=channel.description,
        min_tier=min_tier.key if min_tier else None,
        min_role=channel.min_role,
        post_min_role=channel.post_min_role,
        position=channel.position,
        archived_at=channel.archived_at,
        created_at=channel.created_at,
        joined=joined,
        can_post=can_post(ctx, channel),
    )


def _thread_out(thread: Thread, author: AuthorOut) -> ThreadOut:
    return ThreadOut(
        id=thread.id,
        community_id=thread.community_id,
        channel_id=thread.channel_id,
        author_id=thread.author_id,
        author=author,
        title=thread.title,
        reply_count=thread.reply_count,
        last_activity_at=thread.last_activity_at,
        locked=thread.locked_at is not None,
        locked_at=thread.locked_at,
        deleted=thread.deleted_at is not None,
        created_at=thread.created_at,
    )


def _threads_out(session: Session, threads: Sequence[Thread]) -> list[ThreadOut]:
    authors = repo.user_cards(session, {t.author_id for t in threads})
    return [_thread_out(t, AuthorOut.model_validate(authors[t.author_id])) for t in threads]


def _posts_out(session: Session, ctx: CommunityContext, posts: Sequence[Post]) -> list[PostOut]:
    ids = [p.id for p in posts]
    mentions = repo.mentions_of(session, ids)
    # Authors and mentioned members in one query, however many posts the page holds.
    users = repo.user_cards(
        session, {p.author_id for p in posts} | {uid for uids in mentions.values() for uid in uids}
    )
    names = {uid: user.display_name for uid, user in users.items()}
    counts = repo.reaction_counts(session, ids)
    mine = repo.reactions_by(session, ctx.actor.id, ids)
    out = []
    for post in posts:
        deleted = post.deleted_at is not None
        # A deleted post stays in place (replies point at it) but its words are gone for
        # everyone except its author and the staff who may need to review it.
        reveal = not deleted or ctx.is_staff or post.author_id == ctx.actor.id
        body = post.body if reveal else ""
        out.append(
            PostOut(
                id=post.id,
                thread_id=post.thread_id,
                author_id=post.author_id,
                author=AuthorOut.model_validate(users[post.author_id]),
                reply_to_id=post.reply_to_id,
                is_opening=post.is_opening,
                body=body,
                body_html=markdown.render(
                    body, {uid: names[uid] for uid in mentions.get(post.id, []) if uid in names}
                ),
                deleted=deleted,
                edited_at=post.edited_at,
                created_at=post.created_at,
                mentions=mentions.get(post.id, []) if reveal else [],
                reactions=counts.get(post.id, {}),
                my_reactions=mine.get(post.id, []),
            )
        )
    return out


def _post_out(session: Session, ctx: CommunityContext, post: Post) -> PostOut:
    return _posts_out(session, ctx, [post])[0]


def _thread_detail(session: Session, ctx: CommunityContext, thread: Thread) -> ThreadDetailOut:
    opening = _post_out(session, ctx, repo.opening_post(session, thread.id))
    # The thread's author wrote its opening post: no second look-up for the same person.
    author = (
        opening.author if opening.author_id == thread.author_id else _threads_out(session, [thread])[0].author
    )
    return ThreadDetailOut(**_thread_out(thread, author).model_dump(), opening_post=opening)


# --- channels ---------------------------------------------------------------


def list_channels(
    session: Session, actor: Actor, community_id: int, *, include_archived: bool
) -> list[ChannelOut]:
    ctx = community_context(session, actor, community_id)
    ctx.require_member()
    if ctx.is_staff or ctx.role is None:
        roles, tier_ids = None, None
    else:
        role = ctx.role
        roles = [r for r in Role if role.at_least(r)]
        tier_ids = [t.id for t in ctx.tiers.values() if t.rank <= ctx.tier_rank]
    stmt = repo.channels_of(community_id, roles=roles, tier_ids=tier_ids, include_archived=include_archived)
    channels = [c for c in session.scalars(stmt) if can_see(ctx, c)]
    followed = repo.followed_channel_ids(session, actor.id, [c.id for c in channels])
    return [_channel_out(ctx, c, joined=c.id in followed) for c in channels]


def get_channel(session: Session, actor: Actor, community_id: int, channel_id: int) -> ChannelOut:
    ctx, channel = _community_channel(session, actor, community_id, channel_id)
    return _channel_out(ctx, channel, joined=repo.channel_member(session, channel.id, actor.id) is not None)


def create_channel(session: Session, actor: Actor, community_id: int, data: ChannelIn) -> ChannelOut:
    ctx = community_context(session, actor, community_id)
    ctx.require_role(Role.ADMIN)
    channel = Channel(
        community_id=community_id,
        slug=data.slug,
        name=data.name,
        description=data.description,
        min_tier_id=ctx.tier(data.min_tier).id if data.min_tier else None,
        min_role=data.min_role,
        post_min_role=data.post_min_role,
        position=data.position,
        created_by=actor.id,
    )
    session.add(channel)
    _flush_unique_slug(session)
    audit.record(
        session, actor, "channel.create", channel, community_id=community_id, after=audit.snapshot(channel)
    )
    return _channel_out(ctx, channel, joined=False)


def _flush_unique_slug(session: Session) -> None:
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise Conflict("a channel with this slug already exists here", code="slug_taken") from exc


def update_channel(
    session: Session, actor: Actor, community_id: int, channel_id: int, patch: ChannelPatch
) -> ChannelOut:
    ctx, channel = _community_channel(session, actor, community_id, channel_id)
    ctx.require_role(Role.ADMIN)
    values: dict[str, object] = {}
    for key, value in patch.model_dump(exclude_unset=True).items():
        if key == "min_tier":
            # Explicit null lifts the tier requirement; other nulls mean "leave as is".
            values["min_tier_id"] = ctx.tier(value).id if value else None
        elif value is not None:
            values[key] = value
    before = audit.snapshot(channel, list(values))
    for key, value in values.items():
        setattr(channel, key, value)
    _flush_unique_slug(session)
    audit.record(
        session,
        actor,
        "channel.update",
        channel,
        community_id=community_id,
        before=before,
        after=audit.snapshot(channel, list(values)),
    )
    return get_channel(session, actor, community_id, channel_id)


def set_channel_archived(
    session: Session, actor: Actor, community_id: int, channel_id: int, *, archived: bool
) -> ChannelOut:
    ctx, channel = _community_channel(session, actor, community_id, channel_id)
    ctx.require_role(Role.ADMIN)
    if archived != (channel.archived_at is not None):
        channel.archived_at = utcnow() if archived else None
        session.flush()
        audit.record(
            session,
            actor,
            "channel.archive" if archived else "channel.unarchive",
            channel,
            community_id=community_id,
            after=audit.snapshot(channel, ["archived_at"]),
        )
    return get_channel(session, actor, community_id, channel_id)


def join_channel(session: Session, actor: Actor, community_id: int, channel_id: int) -> ChannelOut:
    actor.require_personal()
    ctx, channel = _community_channel(session, actor, community_id, channel_id)
    if channel.archived_at is not None:
        raise Conflict("this channel is archived", code="channel_archived")
    if repo.channel_member(session, channel.id, actor.id) is None:
        session.add(ChannelMember(channel_id=channel.id, user_id=actor.id, joined_at=utcnow()))
        try:
            with session.begin_nested():
                session.flush()
        except IntegrityError:
            pass  # a concurrent request followed it first: the outcome is the same
    return _channel_out(ctx, channel, joined=True)


def leave_channel(session: Session, actor: Actor, community_id: int, channel_id: int) -> ChannelOut:
    actor.require_personal()
    ctx, channel = _community_channel(session, actor, community_id, channel_id)
    row = repo.channel_member(session, channel.id, actor.id)
    if row is not None:
        session.delete(row)
        session.flush()
    return _channel_out(ctx, channel, joined=False)


# --- threads ----------------------------------------------------------------


def create_thread(session: Session, actor: Actor, channel_id: int, data: ThreadIn) -> ThreadDetailOut:
    ctx, channel = _visible_channel(session, actor, channel_id)
    _require_open(channel)
    _require_post_role(ctx, channel)
    thread = Thread(
        community_id=channel.community_id,
        channel_id=channel.id,
        author_id=actor.id,
        title=data.title,
        reply_count=0,
        last_activity_at=utcnow(),
    )
    session.add(thread)
    session.flush()
    post = Post(
        community_id=channel.community_id,
        thread_id=thread.id,
        author_id=actor.id,
        is_opening=True,
        body=data.body,
    )
    session.add(post)
    session.flush()
    _record_mentions(session, ctx, channel, post)
    jobs.enqueue(session, POST_CREATED_JOB, post.id)
    earning.enqueue_grant(session, post.community_id, EarnTrigger.POST_CREATED, post.id)
    return _thread_detail(session, ctx, thread)


def list_threads(
    session: Session,
    actor: Actor,
    channel_id: int,
    *,
    author_id: int | None,
    q: str | None,
    cursor: str | None,
    limit: int,
) -> Page[ThreadOut]:
    _visible_channel(session, actor, channel_id)
    stmt = repo.threads_of(channel_id, author_id=author_id, q=q)
    page = paginate_by_time(session, stmt, Thread.last_activity_at, Thread.id, cursor=cursor, limit=limit)
    return page.with_items(_threads_out(session, page.items))


def get_thread(session: Session, actor: Actor, thread_id: int) -> ThreadDetailOut:
    ctx, _, thread = _visible_thread(session, actor, thread_id)
    return _thread_detail(session, ctx, thread)


def update_thread(session: Session, actor: Actor, thread_id: int, patch: ThreadPatch) -> ThreadDetailOut:
    ctx, channel, thread = _visible_thread(session, actor, thread_id)
    opening = repo.opening_post(session, thread.id)
    _edit(session, actor, ctx, channel, thread, opening, body=None, title=patch.title)
    return _thread_detail(session, ctx, thread)


def set_thread_locked(session: Session, actor: Actor, thread_id: int, *, locked: bool) -> ThreadOut:
    ctx, _, thread = _visible_thread(session, actor, thread_id)
    if not ctx.is_staff:
        raise PermissionDenied("locking threads needs the moderator role or higher", code="insufficient_role")
    if locked != (thread.locked_at is not None):
        thread.locked_at = utcnow() if locked else None
        session.flush()
        audit.record(
            session,
            actor,
            "thread.lock" if locked else "thread.unlock",
            thread,
            community_id=thread.community_id,
            after=audit.snapshot(thread, ["locked_at"]),
        )
    return _threads_out(session, [thread])[0]


# --- posts ------------------------------------------------------------------


def list_replies(
    session: Session, actor: Actor, thread_id: int, *, cursor: str | None, limit: int
) -> Page[PostOut]:
    ctx, _, thread = _visible_thread(session, actor, thread_id)
    page = paginate(
        session, repo.replies_of(thread.id), Post.id, cursor=cursor, limit=limit, descending=False
    )
    return page.with_items(_posts_out(session, ctx, page.items))


def create_reply(session: Session, actor: Actor, thread_id: int, data: ReplyIn) -> PostOut:
    ctx, channel, thread = _visible_thread(session, actor, thread_id)
    _require_open(channel, thread)
    _require_post_role(ctx, channel)
    if data.reply_to_id is not None:
        parent = session.get(Post, data.reply_to_id)
        if parent is None or parent.thread_id != thread.id:
            raise NotFound("the post replied to is not in this thread", code="reply_to_not_found")
        if parent.deleted_at is not None:
            raise Conflict("the post replied to was deleted", code="reply_to_deleted")
    post = Post(
        community_id=thread.community_id,
        thread_id=thread.id,
        author_id=actor.id,
        reply_to_id=data.reply_to_id,
        is_opening=False,
        body=data.body,
    )
    session.add(post)
    # In SQL, not Python: concurrent replies must not lose each other's increment.
    thread.reply_count = Thread.reply_count + 1  # type: ignore[assignment]
    thread.last_activity_at = utcnow()
    session.flush()
    _record_mentions(session, ctx, channel, post)
    jobs.enqueue(session, POST_CREATED_JOB, post.id)
    earning.enqueue_grant(session, post.community_id, EarnTrigger.POST_CREATED, post.id)
    earning.enqueue_grant(session, post.community_id, EarnTrigger.REPLY_RECEIVED, post.id)
    return _post_out(session, ctx, post)


def get_post(session: Session, actor: Actor, post_id: int) -> PostOut:
    ctx, _, _, post = _visible_post(session, actor, post_id)
    return _post_out(session, ctx, post)


def edit_post(session: Session, actor: Actor, post_id: int, patch: PostPatch) -> PostOut:
    ctx, channel, thread, post = _visible_post(session, actor, post_id)
    _edit(session, actor, ctx, channel, thread, post, body=patch.body, title=None)
    return _post_out(session, ctx, post)


def _edit(
    session: Session,
    actor: Actor,
    ctx: CommunityContext,
    channel: Channel,
    thread: Thread,
    post: Post,
    *,
    body: str | None,
    title: str | None,
) -> None:
    """Change a post's body and, for an opening post, the thread title; keep what was there."""
    if post.author_id != actor.id:
        raise PermissionDenied("only the author can edit a post", code="not_author")
    if post.deleted_at is not None:
        raise Conflict("this post was deleted", code="post_deleted")
    _require_open(channel, thread)
    _require_post_role(ctx, channel)  # rights may have been narrowed since it was written
    new_body = post.body if body is None else body
    new_title = thread.title if title is None else title
    if new_body == post.body and new_title == thread.title:
        return
    before = {"body": post.body, **({"title": thread.title} if post.is_opening else {})}
    session.add(
        PostRevision(
            post_id=post.id,
            editor_id=actor.id,
            body=post.body,
            title=thread.title if post.is_opening else None,
        )
    )
    post.body = new_body
    post.edited_at = utcnow()
    if post.is_opening:
        thread.title = new_title
    session.flush()
    audit.record(
        session,
        actor,
        "post.edit",
        post,
        community_id=post.community_id,
        before=before,
        after={"body": post.body, **({"title": thread.title} if post.is_opening else {})},
    )
    if _record_mentions(session, ctx, channel, post):
        # Only the newly mentioned hear about it: the task skips anyone already notified.
        jobs.enqueue(session, POST_CREATED_JOB, post.id)


def delete_post(session: Session, actor: Actor, post_id: int) -> PostOut:
    ctx, channel, thread, post = _visible_post(session, actor, post_id)
    is_author = post.author_id == actor.id
    if not is_author and not ctx.is_staff:
        raise PermissionDenied("only the author or a moderator can delete a post", code="not_author")
    if not ctx.is_staff:
        _require_open(channel, thread)
    if repo.mark_post_deleted(session, post.id, actor.id, utcnow()):
        # Only the request that flipped deleted_at counts it: a concurrent delete is a no-op.
        session.refresh(post, ["deleted_at", "deleted_by"])
        now = post.deleted_at
        if post.is_opening:
            thread.deleted_at, thread.deleted_by = now, actor.id
        else:
            thread.reply_count = Thread.reply_count - 1  # type: ignore[assignment]
        session.flush()
        # After the thread update above: it waits for a notification job still running on this
        # thread (core.notifications locks the row), so that job's notifications are seen here.
        if post.is_opening:
            repo.delete_thread_notifications(session, thread.id)
        else:
            repo.delete_post_notifications(session, post.id)
        if not is_author:
            audit.record(
                session,
                actor,
                "post.delete",
                post,
                community_id=post.community_id,
                before=audit.snapshot(post, ["author_id", "thread_id", "is_opening", "body"]),
                after=audit.snapshot(post, ["deleted_at", "deleted_by"]),
            )
            # Removed by moderation: what the post earned is taken back.
            earning.enqueue_clawback(session, post.community_id, "post", post.id)
    return _post_out(session, ctx, post)


def list_revisions(
    session: Session, actor: Actor, post_id: int, *, cursor: str | None, limit: int
) -> Page[PostRevisionOut]:
    ctx, _, _, post = _visible_post(session, actor, post_id)
    if post.author_id != actor.id and not ctx.is_staff:
        raise PermissionDenied("only the author or a moderator can see edit history", code="not_author")
    page = paginate(session, repo.revisions_of(post.id), PostRevision.id, cursor=cursor, limit=limit)
    return page.map(PostRevisionOut.model_validate)


# --- mentions ---------------------------------------------------------------


def parse_mentions(body: str) -> list[int]:
    """User ids in `<@123>` tokens, first occurrence order, at most MAX_MENTIONS."""
    ids = dict.fromkeys(int(m) for m in MENTION_RE.findall(body))
    return list(ids)[:MAX_MENTIONS]


def _record_mentions(session: Session, ctx: CommunityContext, channel: Channel, post: Post) -> list[int]:
    """Add Mention rows for newly mentioned members who can see the channel; return their ids.

    Anyone else (not a member, left, banned, below the channel's tier or role) is
    ignored without a word: an error would reveal who is in the community.
    """
    already = set(repo.mentions_of(session, [post.id]).get(post.id, []))
    wanted = [uid for uid in parse_mentions(post.body) if uid not in already]
    members = {m.user_id: m for m in repo.active_memberships(session, ctx.community.id, wanted)}
    added = [uid for uid in wanted if uid in members and member_sees(members[uid], channel, ctx.tiers)]
    if added:
        session.add_all(Mention(post_id=post.id, user_id=uid) for uid in added)
        session.flush()
    return added


# --- reactions --------------------------------------------------------------


def _invalid_emoji() -> InvalidInput:
    return InvalidInput("a reaction is a single emoji, such as 👍 or 🇹🇼", code="invalid_emoji")


def _require_reactable(channel: Channel, thread: Thread, post: Post) -> None:
    if post.deleted_at is not None:
        raise Conflict("this post was deleted", code="post_deleted")
    _require_open(channel, thread)


def add_reaction(session: Session, actor: Actor, post_id: int, emoji: str) -> PostOut:
    if not is_emoji(emoji):
        raise _invalid_emoji()
    ctx, channel, thread, post = _visible_post(session, actor, post_id)
    _require_reactable(channel, thread, post)
    _require_post_role(ctx, channel)  # rights may have been narrowed since it was written
    if repo.reaction(session, post.id, actor.id, emoji) is None:
        session.add(Reaction(post_id=post.id, user_id=actor.id, emoji=emoji))
        try:
            with session.begin_nested():
                session.flush()
        except IntegrityError:
            pass  # the same reaction landed concurrently: idempotent either way
    return _post_out(session, ctx, post)


def remove_reaction(session: Session, actor: Actor, post_id: int, emoji: str) -> PostOut:
    ctx, channel, thread, post = _visible_post(session, actor, post_id)
    _require_reactable(channel, thread, post)
    # A reaction stored before emoji were checked (say ":tada:") can still be taken back.
    if not is_emoji(emoji) and repo.reaction(session, post.id, actor.id, emoji) is None:
        raise _invalid_emoji()
    repo.delete_reaction(session, post.id, actor.id, emoji)
    return _post_out(session, ctx, post)

"""Conversation: channels, threads and posts (with revisions, mentions and reactions) and DMs.

Invariants:
- A channel the caller may not see does not exist for them (404, never 403), and the
  same holds for its threads and posts. Staff (moderator and up) see every channel;
  anyone else needs to be an active member with role >= `min_role` and a tier at
  least `min_tier`'s rank.
- A post's current body lives on the post; every earlier body (and the thread title
  for an opening post) is kept as a `PostRevision`. Deletion is soft: others see an
  empty body; deleting the opening post deletes the thread.
- `Thread.reply_count` counts the replies that are not deleted; `last_activity_at`
  moves forward with every reply.
- A DM conversation exists only for its participants: nobody else, however senior,
  can learn it exists, and API keys can never use DMs. There is at most one 1:1
  conversation per pair of members in a community (`direct_key`).
- Notifications leave through `core.jobs` after commit; reads return presented
  schemas so masking rules (deleted bodies, hidden mentions) cannot be skipped.
"""

"""Social shapes: follows, blocks, recommendation settings."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from core.conversation.schemas import AuthorOut
from core.schemas import Id, Input, Output


class FollowOut(Output):
    community_id: int
    follower_id: int
    followee_id: int
    created_at: datetime
    replayed: bool = False  # already following: nothing changed


class FollowEntryOut(Output):
    """A member in a followers/following list."""

    user: AuthorOut
    since: datetime


class BlockIn(Input):
    user_id: Id


class BlockOut(Output):
    user: AuthorOut
    created_at: datetime
    replayed: bool = False  # already blocked: nothing changed


class RecommendationSettingsOut(Output):
    opted_out: bool
    # What the recommender keeps about the member: one profile embedding per community it
    # has computed one for (0 once opted out). Members may see what the AI knows of them.
    profiles_kept: int = 0


class RecommendationSettingsIn(Input):
    opted_out: bool = Field(strict=True)  # 1 or "yes" is not a choice

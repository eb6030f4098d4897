"""Who is acting, and what they may see and do inside a community.

Every service call takes an `Actor`. Community-scoped calls go through
`community_context()`, which hides private communities from outsiders (404,
not 403: their existence is private too) and confines API keys to the one
community they were issued for.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, TypeVar

from sqlalchemy import Select, and_, bindparam, select
from sqlalchemy.orm import Session

from core.clock import utcnow
from core.errors import NotFound, PermissionDenied
from core.models import (
    AccessToken,
    ApiKey,
    Base,
    Community,
    Membership,
    MembershipStatus,
    Role,
    Tier,
    User,
    Visibility,
)


@dataclass(frozen=True)
class Actor:
    user: User
    api_key: ApiKey | None = None
    token: AccessToken | None = None  # the personal token this request came with

    @property
    def id(self) -> int:
        return self.user.id

    def require_personal(self) -> None:
        """Account-level and private actions (DMs, tokens) are never open to API keys."""
        if self.api_key is not None:
            raise PermissionDenied(
                "this action needs a personal login, not an API key", code="api_key_not_allowed"
            )


@dataclass
class CommunityContext:
    community: Community
    actor: Actor
    membership: Membership | None
    session: Session

    @cached_property
    def tiers(self) -> dict[int, Tier]:
        """The community's tiers by id, read on first use: most requests never gate on a tier."""
        return {
            t.id: t for t in self.session.scalars(select(Tier).where(Tier.community_id == self.community.id))
        }

    @property
    def is_member(self) -> bool:
        return self.membership is not None and self.membership.status == MembershipStatus.ACTIVE

    @property
    def role(self) -> Role | None:
        return self.membership.role if self.is_member and self.membership else None

    @property
    def tier_rank(self) -> int:
        """The rank every tier gate compares: the member's own tier, or a running trial's if higher."""
        if not self.is_member or self.membership is None:
            return -1
        return effective_tier_rank(self.membership, self.tiers)

    @property
    def is_staff(self) -> bool:
        return self.role is not None and self.role.at_least(Role.MODERATOR)

    def require_member(self) -> Membership:
        if not self.is_member or self.membership is None:
            raise PermissionDenied("you are not a member of this community", code="not_a_member")
        return self.membership

    def require_role(self, role: Role) -> Membership:
        membership = self.require_member()
        if not membership.role.at_least(role):
            raise PermissionDenied(f"this needs the {role.value} role or higher", code="insufficient_role")
        return membership

    def meets_tier(self, min_tier_id: int | None) -> bool:
        if not self.is_member:
            return False
        if min_tier_id is None or self.is_staff:
            return True
        tier = self.tiers.get(min_tier_id)
        return tier is not None and self.tier_rank >= tier.rank

    def require_tier(self, min_tier_id: int | None) -> None:
        self.require_member()
        if not self.meets_tier(min_tier_id):
            needed = self.tiers[min_tier_id].name if min_tier_id in self.tiers else "a higher tier"
            raise PermissionDenied(f"this needs the {needed} tier", code="tier_required")

    def tier(self, key_or_id: str | int) -> Tier:
        for tier in self.tiers.values():
            if tier.id == key_or_id or tier.key == key_or_id:
                return tier
        raise NotFound("no such tier in this community", code="tier_not_found")


def effective_tier_rank(membership: Membership, tiers: dict[int, Tier], now: datetime | None = None) -> int:
    """The higher of the member's own tier and the tier of a trial still running (-1: unknown).

    A trial never changes `membership.tier_id`: once `trial_ends_at` passes, this is the
    member's own tier again, with nothing to undo.
    """
    own = tiers[membership.tier_id].rank if membership.tier_id in tiers else -1
    if membership.trial_running(now or utcnow()) and membership.trial_tier_id in tiers:
        return max(own, tiers[membership.trial_tier_id].rank)
    return own


# The caller's membership (if any) of the community joined to: `user_id` is the caller.
_CALLERS_MEMBERSHIP = and_(
    Membership.community_id == Community.id, Membership.user_id == bindparam("user_id")
)

# The community and the caller's membership in one round trip, built once: every
# community-scoped request runs it.
_COMMUNITY_AND_MEMBERSHIP = (
    select(Community, Membership)
    .outerjoin(Membership, _CALLERS_MEMBERSHIP)
    .where(Community.id == bindparam("community_id"))
)


def community_context(session: Session, actor: Actor, community_id: int) -> CommunityContext:
    row = session.execute(
        _COMMUNITY_AND_MEMBERSHIP, {"community_id": community_id, "user_id": actor.id}
    ).first()
    if row is None:
        raise NotFound("community not found", code="community_not_found")
    community, membership = row
    return _context(session, actor, community, membership)


def _context(
    session: Session, actor: Actor, community: Community, membership: Membership | None
) -> CommunityContext:
    """The rules every community context passes: keys stay in their community, private
    communities hide from outsiders, a key acts only while its creator is a member."""
    if actor.api_key is not None and actor.api_key.community_id != community.id:
        raise NotFound("community not found", code="community_not_found")
    ctx = CommunityContext(community, actor, membership, session)
    if community.visibility == Visibility.PRIVATE and not ctx.is_member and not actor.user.is_superuser:
        raise NotFound("community not found", code="community_not_found")
    if actor.api_key is not None and not ctx.is_member:
        # The key's creator left or was removed: the key no longer acts for them.
        raise PermissionDenied("this API key's owner is no longer a member", code="not_a_member")
    return ctx


_Row = TypeVar("_Row", bound=Base)


@functools.cache
def _row_and_context(model: type[Base]) -> Select[Any, Community, Membership]:
    """`model`'s row by id with its community and the caller's membership: built once per model."""
    community_id = getattr(model, "community_id")  # noqa: B009 - every community-scoped model has one
    return (
        select(model, Community, Membership)
        .join(Community, Community.id == community_id)
        .outerjoin(Membership, _CALLERS_MEMBERSHIP)
        .where(getattr(model, "id") == bindparam("row_id"))  # noqa: B009
    )


def row_context(
    session: Session, actor: Actor, model: type[_Row], row_id: int, missing: NotFound
) -> tuple[_Row, CommunityContext]:
    """A row reached by its own id (a chip, say) and its community's context, in one query.

    As `context_via`: a community the caller may not see must not show through the row, so
    its absence is reported as `missing` ("chip not found").
    """
    found = session.execute(_row_and_context(model), {"row_id": row_id, "user_id": actor.id}).first()
    if found is None:
        raise missing
    row, community, membership = found
    try:
        return row, _context(session, actor, community, membership)
    except NotFound as exc:
        raise missing from exc


def context_via(session: Session, actor: Actor, community_id: int, missing: NotFound) -> CommunityContext:
    """The community context for a row reached by its own id (a channel, an event, a course).

    A community the caller may not see must not show through such a row: its absence is
    reported as `missing` ("event not found"), never as "community not found".
    """
    try:
        return community_context(session, actor, community_id)
    except NotFound as exc:
        raise missing from exc

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, available_timezones

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from core.accounts.schemas import UserOut
from core.communities.schemas import TierKey
from core.models import EventStatus, RsvpStatus
from core.schemas import Id, Input, LongText, Output, Title, Url

# Far enough for any real event, near enough that time zone arithmetic cannot overflow.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def _check_zone(name: str) -> str:
    if name not in _zone_names():
        raise ValueError("not an IANA time zone name, e.g. Asia/Taipei")
    return name


TimeZoneName = Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_check_zone)]
Location = Annotated[str, StringConstraints(max_length=300)]
Note = Annotated[str, StringConstraints(max_length=300)]
Capacity = Annotated[int, Field(ge=1, le=100_000)]


def in_zone(value: datetime, zone: str) -> datetime:
    """Aware UTC from `value`; a naive value is a wall-clock time in `zone`.

    Raises ValueError (a validation error) for wall-clock times that do not
    exist in `zone` (skipped by a daylight-saving change) and for dates outside
    the supported range. Ambiguous times (clocks turned back) take the first.
    """
    tz = ZoneInfo(zone)
    try:
        if value.tzinfo is None:
            local = value.replace(tzinfo=tz)
            if local.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != value:
                raise ValueError(f"{value.isoformat()} does not exist in {zone} (daylight-saving gap)")
            value = local
        utc = value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("date out of range") from exc
    if not EARLIEST <= utc < LATEST:
        raise ValueError(f"dates must fall between {EARLIEST.year} and {LATEST.year}")
    return utc


class EventIn(Input):
    """Naive `starts_at`/`ends_at` are read in `timezone`; aware ones keep their offset."""

    title: Title
    description: LongText = ""
    location: Location = ""
    online_url: Url | None = None
    timezone: TimeZoneName
    starts_at: datetime
    ends_at: datetime
    capacity: Capacity | None = None
    min_tier: TierKey | None = None

    @model_validator(mode="after")
    def _to_utc(self) -> EventIn:
        self.starts_at = in_zone(self.starts_at, self.timezone)
        self.ends_at = in_zone(self.ends_at, self.timezone)
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


_NOT_NULL = ("title", "description", "location", "timezone", "starts_at", "ends_at")


class EventPatch(Input):
    """Only the fields sent change. `null` clears online_url, capacity (unlimited) and min_tier.

    Naive times are read in the new `timezone` if one is sent, else in the
    event's. Changing only the time zone keeps the same instants in UTC.
    """

    title: Title | None = None
    description: LongText | None = None
    location: Location | None = None
    online_url: Url | None = None
    timezone: TimeZoneName | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    capacity: Capacity | None = None
    min_tier: TierKey | None = None

    @model_validator(mode="after")
    def _required_stay_set(self) -> EventPatch:
        nulls = [k for k in _NOT_NULL if k in self.model_fields_set and getattr(self, k) is None]
        if nulls:
            raise ValueError(f"{', '.join(nulls)} cannot be null")
        return self


class RsvpIn(Input):
    note: Note = ""


class CheckinIn(Input):
    user_id: Id


class EventOut(Output):
    id: int
    community_id: int
    title: str
    description: str
    location: str
    online_url: str | None = Field(description="hidden while the event is locked for the caller")
    timezone: str
    starts_at: datetime = Field(description="UTC")
    ends_at: datetime = Field(description="UTC")
    local_starts_at: datetime = Field(description="in the event's time zone")
    local_ends_at: datetime = Field(description="in the event's time zone")
    status: EventStatus
    phase: Literal["upcoming", "ongoing", "ended"] = Field(
        description="where now falls against the event's times"
    )
    capacity: int | None
    going_count: int
    waitlist_count: int
    min_tier: str | None
    locked: bool = Field(description="the caller's tier (or lack of membership) does not admit them")
    my_rsvp: RsvpStatus | None
    created_by: int
    created_at: datetime


class RsvpOut(Output):
    event_id: int
    user_id: int
    status: RsvpStatus
    waitlist_position: int | None = Field(description="1 = next to be promoted")
    note: str
    updated_at: datetime
    checked_in_at: datetime | None
    checked_in_by: int | None


class AttendeeOut(Output):
    user: UserOut
    status: RsvpStatus
    waitlist_position: int | None
    note: str
    updated_at: datetime
    checked_in_at: datetime | None


class AttendeesOut(Output):
    going: list[AttendeeOut]
    waitlist: list[AttendeeOut]

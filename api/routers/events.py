from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, status

from api.deps import CurrentActor, Cursor, DbSession, Limit, PathId
from core.events import service as events
from core.events.schemas import (
    AttendeesOut,
    CheckinIn,
    EventIn,
    EventOut,
    EventPatch,
    RsvpIn,
    RsvpOut,
)
from core.schemas import PageOut

router = APIRouter(tags=["events"])


@router.post(
    "/communities/{community_id}/events", response_model=EventOut, status_code=status.HTTP_201_CREATED
)
def create_event(community_id: PathId, data: EventIn, actor: CurrentActor, session: DbSession) -> EventOut:
    return events.create_event(session, actor, community_id, data)


@router.get("/communities/{community_id}/events", response_model=PageOut[EventOut])
def list_events(
    community_id: PathId,
    actor: CurrentActor,
    session: DbSession,
    cursor: Cursor = None,
    limit: Limit = 20,
    upcoming: Annotated[bool, Query(description="only events that have not ended")] = True,
    starts_from: Annotated[
        datetime | None, Query(alias="from", description="starts at or after (naive = UTC)")
    ] = None,
    starts_before: Annotated[
        datetime | None, Query(alias="to", description="starts before (naive = UTC)")
    ] = None,
) -> PageOut[EventOut]:
    return events.list_events(
        session,
        actor,
        community_id,
        upcoming=upcoming,
        starts_from=starts_from,
        starts_before=starts_before,
        cursor=cursor,
        limit=limit,
    )


@router.get("/events/{event_id}", response_model=EventOut)
def get_event(event_id: PathId, actor: CurrentActor, session: DbSession) -> EventOut:
    return events.get_event(session, actor, event_id)


@router.patch("/events/{event_id}", response_model=EventOut)
def update_event(event_id: PathId, patch: EventPatch, actor: CurrentActor, session: DbSession) -> EventOut:
    return events.update_event(session, actor, event_id, patch)


@router.post("/events/{event_id}/cancel", response_model=EventOut)
def cancel_event(event_id: PathId, actor: CurrentActor, session: DbSession) -> EventOut:
    return events.cancel_event(session, actor, event_id)


@router.post("/events/{event_id}/rsvp", response_model=RsvpOut)
def rsvp(event_id: PathId, actor: CurrentActor, session: DbSession, data: RsvpIn | None = None) -> RsvpOut:
    return events.rsvp(session, actor, event_id, data or RsvpIn())


@router.delete("/events/{event_id}/rsvp", response_model=RsvpOut)
def cancel_rsvp(event_id: PathId, actor: CurrentActor, session: DbSession) -> RsvpOut:
    return events.cancel_rsvp(session, actor, event_id)


@router.get("/events/{event_id}/attendees", response_model=AttendeesOut)
def attendees(event_id: PathId, actor: CurrentActor, session: DbSession) -> AttendeesOut:
    return events.attendees(session, actor, event_id)


@router.post("/events/{event_id}/checkins", response_model=RsvpOut)
def check_in(event_id: PathId, data: CheckinIn, actor: CurrentActor, session: DbSession) -> RsvpOut:
    return events.check_in(session, actor, event_id, data)

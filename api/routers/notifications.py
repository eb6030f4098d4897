from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import CurrentActor, Cursor, DbSession, Limit
from core.notifications import service
from core.notifications.service import NotificationOut
from core.schemas import Id, Input, PageOut

router = APIRouter(tags=["notifications"])


@router.get("/me/notifications", response_model=PageOut[NotificationOut])
def list_notifications(
    actor: CurrentActor,
    session: DbSession,
    cursor: Cursor = None,
    limit: Limit = 30,
    unread: bool = False,
) -> PageOut[NotificationOut]:
    page = service.list_for(session, actor, unread=unread, cursor=cursor, limit=limit)
    return page.map(NotificationOut.model_validate).out()


class MarkReadIn(Input):
    up_to_id: Id | None = None


class MarkReadOut(BaseModel):
    marked: int


@router.post("/me/notifications/read", response_model=MarkReadOut)
def mark_read(data: MarkReadIn, actor: CurrentActor, session: DbSession) -> MarkReadOut:
    return MarkReadOut(marked=service.mark_read(session, actor, up_to_id=data.up_to_id))

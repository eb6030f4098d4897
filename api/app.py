"""The FastAPI app factory."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from api import errors
from api.middleware import BodyGuard
from api.routers import auth, communities, conversation, courses, events, notifications
from core.config import get_settings
from core.db import session_factory


def create_app(session_maker: sessionmaker[Session] | None = None, *, dispatch_jobs: bool = True) -> FastAPI:
    settings = get_settings()
    logging.basicConfig(level=settings.log_level)
    app = FastAPI(
        title="Hearth",
        version="0.1.0",
        description="Private communities with a chip economy and AI helpers. "
        'Errors are always `{"error": "<stable_code>", "detail": "..."}`.',
    )
    # Built lazily: importing the app must not touch the database.
    app.state.session_factory = session_maker or _LazySessionFactory()
    if dispatch_jobs:
        from core import jobs
        from core.worker import dispatch

        jobs.set_dispatcher(dispatch)
    errors.install(app)
    app.add_middleware(BodyGuard, max_bytes=settings.max_body_bytes)

    @app.get("/health", tags=["ops"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    for router in (
        auth.router,
        communities.router,
        conversation.router,
        events.router,
        courses.router,
        notifications.router,
    ):
        app.include_router(router)
    return app


class _LazySessionFactory:
    def __init__(self) -> None:
        self._factory: sessionmaker[Session] | None = None

    def __call__(self) -> Session:
        if self._factory is None:
            self._factory = session_factory()
        return self._factory()

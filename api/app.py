"""The FastAPI app factory."""

from __future__ import annotations

import logging

from fastapi import Depends, FastAPI
from sqlalchemy.orm import Session, sessionmaker

from api import errors
from api.deps import refuse_unexpected_body
from api.middleware import BodyGuard
from api.routers import (
    auth,
    chips,
    communities,
    conversation,
    courses,
    earning,
    events,
    notifications,
    recommendations,
    redemption,
    social,
    tipping,
    trading,
    wallet,
)
from core.config import get_settings
from core.db import session_factory
from recommender import hooks
from recommender.service import Recommender


def create_app(session_maker: sessionmaker[Session] | None = None, *, dispatch_jobs: bool = True) -> FastAPI:
    settings = get_settings()
    logging.basicConfig(level=settings.log_level)
    app = FastAPI(
        docs_url=None,
        redoc_url=None,
        title="Hearth",
        version="0.1.0",
        description="Private communities with a chip economy and AI helpers. "
        'Errors are always `{"error": "<stable_code>", "detail": "..."}`, with `details` where a '
        "refusal has figures to act on (a limit and what was used, a price band).",
        dependencies=[Depends(refuse_unexpected_body)],
    )
    # Built lazily: importing the app must not touch the database.
    app.state.session_factory = session_maker or _LazySessionFactory()
    # One cache of fitted recommendation models per process; tests replace it (hashing embedder).
    # Stale models are refitted in a background thread with the app's own sessions; an injected
    # session maker may be bound to a single connection (tests), so it refits in the request.
    app.state.recommender = Recommender(background=None if session_maker else app.state.session_factory)
    if dispatch_jobs:
        from core import jobs
        from core.worker import dispatch

        jobs.set_dispatcher(dispatch)
        # Only a process that sends jobs queues embeddings: in tests the recorded-jobs
        # fixture stands in, and recommender tests install the hooks themselves.
        hooks.install()
    errors.install(app)
    app.add_middleware(BodyGuard, max_bytes=settings.max_body_bytes)

    _offline_docs(app)

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
        chips.router,
        wallet.router,
        tipping.router,
        earning.router,
        redemption.router,
        trading.router,
        social.router,
        recommendations.router,
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


def _offline_docs(app: FastAPI) -> None:
    """Swagger UI served from the swagger-ui-bundle package: /docs works without a CDN."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs-static", StaticFiles(directory=str(swagger_ui_path)), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="Hearth API",
            swagger_js_url="/docs-static/swagger-ui-bundle.js",
            swagger_css_url="/docs-static/swagger-ui.css",
            swagger_favicon_url="data:,",
        )

"""One error contract: `{"error": "<stable_code>", "detail": "...", "details": {...}}`.

`details` carries the facts a client needs to act on a refusal (the limit and what was used,
the price band, the account or chip concerned); it is present only where the error has them.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import DomainError, RateLimited

log = logging.getLogger("hearth.api")

HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


BODY_PARSE_ERROR = "There was an error parsing the body"
MALFORMED_JSON = "the request body is not valid JSON"

# PostgreSQL: deadlock detected, serialization failure, lock not available.
TRANSIENT_SQLSTATES = frozenset({"40P01", "40001", "55P03"})


def is_transient_conflict(exc: OperationalError) -> bool:
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return sqlstate in TRANSIENT_SQLSTATES or "database is locked" in str(exc.orig)


def error_response(status: int, code: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail, **extra}, status_code=status)


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {
            "loc": [str(p) for p in err.get("loc", ())],
            "msg": err.get("msg", ""),
            "type": err.get("type", ""),
        }
        for err in exc.errors()
    ]


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        extra = {"details": jsonable_encoder(exc.extra)} if isinstance(exc.extra, dict) and exc.extra else {}
        response = error_response(exc.status_code, exc.code, exc.detail, **extra)
        if isinstance(exc, RateLimited):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _field_errors(exc)
        if any(e["type"] == "json_invalid" for e in errors):
            return error_response(400, "malformed_json", MALFORMED_JSON)
        return error_response(422, "validation_error", "the request is invalid", fields=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == BODY_PARSE_ERROR:
            # FastAPI's own answer for bodies json.loads cannot take (bad UTF-8, nesting too deep).
            return error_response(400, "malformed_json", MALFORMED_JSON)
        code = HTTP_CODES.get(exc.status_code, "http_error")
        response = error_response(exc.status_code, code, str(exc.detail))
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        return response

    @app.exception_handler(OperationalError)
    async def _operational(request: Request, exc: OperationalError) -> JSONResponse:
        if is_transient_conflict(exc):
            # Nothing was written (the transaction rolled back); a retry with the same
            # Idempotency-Key is safe and will most likely succeed.
            response = error_response(
                503, "retry_later", "the service was busy with a conflicting change; please retry"
            )
            response.headers["Retry-After"] = "1"
            return response
        log.exception("database error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "something went wrong on our side")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "something went wrong on our side")

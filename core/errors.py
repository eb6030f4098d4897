"""One error hierarchy: every domain condition carries a stable code.

The API renders these as `{"error": code, "detail": detail}` with
`status_code`. Anything that is not a `DomainError` is a bug and becomes a 500.
"""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    status_code: ClassVar[int] = 400
    code: str = "bad_request"

    def __init__(self, detail: str, *, code: str | None = None, extra: Any = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.extra = extra


class InvalidInput(DomainError):
    status_code = 422
    code = "invalid_input"


class Unauthenticated(DomainError):
    status_code = 401
    code = "unauthenticated"


class PermissionDenied(DomainError):
    status_code = 403
    code = "forbidden"


class NotFound(DomainError):
    """Also used for things that exist but the caller may not know about."""

    status_code = 404
    code = "not_found"


class Conflict(DomainError):
    status_code = 409
    code = "conflict"


class RateLimited(DomainError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after

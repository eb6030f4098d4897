from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator

from core.models import Language
from core.schemas import Input, Name, Output, Url

Email = Annotated[
    str,
    StringConstraints(
        pattern=r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$",
        max_length=254,
        to_lower=True,
        strip_whitespace=True,
    ),
]
Password = Annotated[str, StringConstraints(min_length=8, max_length=256, strip_whitespace=False)]
Interest = Annotated[str, StringConstraints(min_length=1, max_length=40)]
Scope = Literal["read", "write"]


class SignupIn(Input):
    email: Email
    password: Password
    display_name: Name
    language: Language = Language.EN


class LoginIn(Input):
    email: Email
    password: Annotated[str, StringConstraints(min_length=1, max_length=256, strip_whitespace=False)]


class PasswordChangeIn(Input):
    current_password: Annotated[str, StringConstraints(min_length=1, max_length=256, strip_whitespace=False)]
    new_password: Password


class PasswordChanged(Output):
    revoked_sessions: int


class ProfilePatch(Input):
    display_name: Name | None = None
    bio: Annotated[str, StringConstraints(max_length=2000)] | None = None
    interests: list[Interest] | None = Field(default=None, max_length=30)
    language: Language | None = None
    avatar_url: Url | None = None

    @field_validator("interests")
    @classmethod
    def _dedupe(cls, value: list[str] | None) -> list[str] | None:
        return list(dict.fromkeys(value)) if value is not None else None


class UserOut(Output):
    id: int
    display_name: str
    bio: str
    interests: list[str]
    language: Language
    avatar_url: str | None
    created_at: datetime


class MeOut(UserOut):
    email: str
    is_superuser: bool


class TokenIn(Input):
    name: Name = "session"
    ttl_hours: int | None = Field(default=None, ge=1, le=24 * 365, strict=True)


class TokenOut(Output):
    id: int
    name: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class TokenCreated(TokenOut):
    token: str = Field(description="The secret; shown only in this response.")


class AuthOut(Output):
    user: MeOut
    token: TokenCreated


class ApiKeyIn(Input):
    name: Name
    scopes: list[Scope] = Field(default_factory=lambda: list[Scope](["read"]), min_length=1)


class ApiKeyOut(Output):
    id: int
    community_id: int
    name: str
    prefix: str
    scopes: list[str]
    created_by: int
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The secret; shown only in this response.")

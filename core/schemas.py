"""Shared pydantic building blocks for every domain's schemas."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from core.errors import InvalidInput

T = TypeVar("T")


# Ids are 64-bit in the database; anything larger is invalid input, not a server error.
MAX_ID = 2**63 - 1
# Strict: "12" or true must not quietly become user 12 or user 1 in a ban or a transfer.
Id = Annotated[int, Field(ge=1, le=MAX_ID, strict=True)]
# Strict for the same reason: in a JSON body 1, "yes", "true" or "on" is not a yes, and a flag
# such as a chip's `transferable` or an offer's `active` moves money. Only for request bodies:
# query-string booleans stay plain `bool`, where the text "true" is the only way to say true.
StrictBool = Annotated[bool, Field(strict=True)]


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


class Input(BaseModel):
    """Request bodies: unknown fields are an error, strings are stripped, NUL is refused.

    PostgreSQL cannot store NUL in text, and no real text needs it.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        if _has_nul(data):
            raise ValueError("text must not contain NUL characters")
        return data


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class PageOut(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{1,62}[a-z0-9]$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=80)]
Title = Annotated[str, StringConstraints(min_length=1, max_length=200)]
LongText = Annotated[str, StringConstraints(max_length=20_000)]
Url = Annotated[str, StringConstraints(pattern=r"^https?://\S+$", max_length=500)]


def refuse_nulls(
    sent: Mapping[str, Any], names: Iterable[str], hints: Mapping[str, str] | None = None
) -> None:
    """A patch changes only the fields it sends: `null` for a field that cannot be empty would
    be silently ignored, so it is refused (422 `invalid_input`), the first such field named."""
    for name in names:
        if name in sent and sent[name] is None:
            hint = (hints or {}).get(name, "")
            raise InvalidInput(f"`{name}` cannot be null{hint}", code="invalid_input")

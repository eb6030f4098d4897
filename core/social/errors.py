"""Social errors, each with a stable code."""

from __future__ import annotations

from core.errors import InvalidInput, NotFound, PermissionDenied


def cannot_follow_self() -> InvalidInput:
    return InvalidInput("you cannot follow yourself", code="cannot_follow_self")


def cannot_block_self() -> InvalidInput:
    return InvalidInput("you cannot block yourself", code="cannot_block_self")


def member_not_found() -> NotFound:
    return NotFound("no such member in this community", code="member_not_found")


def user_not_found() -> NotFound:
    return NotFound("user not found", code="user_not_found")


def blocked() -> PermissionDenied:
    return PermissionDenied("one of you has blocked the other", code="blocked")

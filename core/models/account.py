"""Accounts: users (with their profile), bearer tokens, API keys."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, BigId, CreatedMixin, IdMixin, Json, UTCDateTime, str_enum


class Language(enum.StrEnum):
    ZH_TW = "zh-TW"
    ZH_CN = "zh-CN"
    EN = "en"


class User(IdMixin, CreatedMixin, Base):
    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(String(80))
    bio: Mapped[str] = mapped_column(Text, default="")
    interests: Mapped[list[str]] = mapped_column(Json, default=list)
    language: Mapped[Language] = mapped_column(str_enum(Language, "language"), default=Language.EN)
    avatar_url: Mapped[str | None] = mapped_column(String(500))
    is_superuser: Mapped[bool] = mapped_column(default=False)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Opted out of recommendations: never profiled (no embedding kept) and never recommended.
    recommendations_opt_out: Mapped[bool] = mapped_column(default=False, server_default=false())


class AccessToken(IdMixin, CreatedMixin, Base):
    __tablename__ = "access_tokens"

    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(80), default="session")
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ApiKey(IdMixin, CreatedMixin, Base):
    """An integration's key: one community, some scopes, acting as its creator."""

    __tablename__ = "api_keys"

    community_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("communities.id", ondelete="CASCADE"), index=True
    )
    created_by: Mapped[int] = mapped_column(BigId, ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(80))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    scopes: Mapped[list[str]] = mapped_column(Json, default=list)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

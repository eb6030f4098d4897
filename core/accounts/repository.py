"""All SQL for accounts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.models import AccessToken, ApiKey, User


def user_by_email(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == email.lower()))


def token_by_hash(session: Session, token_hash: str) -> AccessToken | None:
    return session.scalar(select(AccessToken).where(AccessToken.token_hash == token_hash))


def api_key_by_hash(session: Session, key_hash: str) -> ApiKey | None:
    return session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))


def tokens_of(session: Session, user_id: int) -> list[AccessToken]:
    stmt = select(AccessToken).where(AccessToken.user_id == user_id).order_by(AccessToken.id.desc())
    return list(session.scalars(stmt))


def api_keys_of(session: Session, community_id: int) -> list[ApiKey]:
    stmt = select(ApiKey).where(ApiKey.community_id == community_id).order_by(ApiKey.id.desc())
    return list(session.scalars(stmt))


def revoke_tokens_except(session: Session, user_id: int, keep_id: int | None, now: datetime) -> int:
    stmt = update(AccessToken).where(AccessToken.user_id == user_id, AccessToken.revoked_at.is_(None))
    if keep_id is not None:
        stmt = stmt.where(AccessToken.id != keep_id)
    result = session.execute(stmt.values(revoked_at=now).execution_options(synchronize_session=False))
    return int(result.rowcount)  # type: ignore[attr-defined]

"""All SQL for accounts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from core.models import AccessToken, ApiKey, User


def user_by_email(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == email.lower()))


# Every authenticated request runs one of these: the credential and its user in one round
# trip, each statement built once.
_TOKEN_AND_USER = (
    select(AccessToken, User)
    .join(User, User.id == AccessToken.user_id)
    .where(AccessToken.token_hash == bindparam("token_hash"))
)
_API_KEY_AND_USER = (
    select(ApiKey, User)
    .join(User, User.id == ApiKey.created_by)
    .where(ApiKey.key_hash == bindparam("key_hash"))
)


def token_and_user(session: Session, token_hash: str) -> tuple[AccessToken, User] | None:
    row = session.execute(_TOKEN_AND_USER, {"token_hash": token_hash}).first()
    return None if row is None else (row[0], row[1])


def api_key_and_user(session: Session, key_hash: str) -> tuple[ApiKey, User] | None:
    row = session.execute(_API_KEY_AND_USER, {"key_hash": key_hash}).first()
    return None if row is None else (row[0], row[1])


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

"""Account rules: sign-up, login, tokens, API keys, profiles."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import audit
from core.access import Actor, community_context
from core.accounts import repository as repo
from core.accounts.schemas import ApiKeyIn, LoginIn, PasswordChangeIn, ProfilePatch, SignupIn, TokenIn
from core.clock import utcnow
from core.config import get_settings
from core.errors import Conflict, NotFound, PermissionDenied, Unauthenticated
from core.models import AccessToken, ApiKey, Language, Role, User
from core.security import (
    API_KEY_PREFIX,
    TOKEN_PREFIX,
    burn_password_check,
    digest,
    hash_password,
    new_secret,
    verify_password,
)

# Writing last_used_at on every request would turn reads into writes.
_TOUCH_EVERY = timedelta(minutes=5)


@dataclass(frozen=True)
class IssuedToken:
    token: AccessToken
    secret: str


@dataclass(frozen=True)
class IssuedApiKey:
    api_key: ApiKey
    secret: str


def create_user(
    session: Session,
    *,
    email: str,
    password: str,
    display_name: str,
    language: Language = Language.EN,
    is_superuser: bool = False,
) -> User:
    email = email.strip().lower()
    if repo.user_by_email(session, email) is not None:
        raise Conflict("an account with this email already exists", code="email_taken")
    user = User(
        email=email,
        password_hash=hash_password(password),
        display_name=display_name,
        language=language,
        is_superuser=is_superuser,
        bio="",
        interests=[],
    )
    session.add(user)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:  # a concurrent sign-up took the email first
        raise Conflict("an account with this email already exists", code="email_taken") from exc
    return user


def signup(session: Session, data: SignupIn) -> tuple[User, IssuedToken]:
    user = create_user(
        session,
        email=data.email,
        password=data.password,
        display_name=data.display_name,
        language=data.language,
    )
    audit.record(session, Actor(user), "user.signup", user, after=audit.snapshot(user, ["id", "email"]))
    return user, issue_token(session, user, TokenIn())


def login(session: Session, data: LoginIn) -> tuple[User, IssuedToken]:
    user = repo.user_by_email(session, data.email)
    if user is None:
        burn_password_check(data.password)
        raise Unauthenticated("wrong email or password", code="invalid_credentials")
    if not verify_password(user.password_hash, data.password) or user.disabled_at is not None:
        raise Unauthenticated("wrong email or password", code="invalid_credentials")
    return user, issue_token(session, user, TokenIn())


def issue_token(session: Session, user: User, data: TokenIn) -> IssuedToken:
    secret = new_secret(TOKEN_PREFIX)
    ttl = timedelta(hours=data.ttl_hours or get_settings().token_ttl_hours)
    token = AccessToken(user_id=user.id, token_hash=digest(secret), name=data.name, expires_at=utcnow() + ttl)
    session.add(token)
    session.flush()
    return IssuedToken(token, secret)


def authenticate(session: Session, secret: str) -> Actor:
    """Resolve a bearer secret (personal token or API key) to the acting principal."""
    now = utcnow()
    if secret.startswith(API_KEY_PREFIX):
        found_key = repo.api_key_and_user(session, digest(secret))
        if found_key is None:
            raise Unauthenticated("invalid or revoked API key", code="invalid_token")
        key, user = found_key
        if key.revoked_at is not None or user.disabled_at is not None:
            raise Unauthenticated("invalid or revoked API key", code="invalid_token")
        if key.last_used_at is None or now - key.last_used_at > _TOUCH_EVERY:
            key.last_used_at = now
        return Actor(user, key)
    found = repo.token_and_user(session, digest(secret))
    if found is None:
        raise Unauthenticated("invalid or revoked token", code="invalid_token")
    token, user = found
    if token.revoked_at is not None:
        raise Unauthenticated("invalid or revoked token", code="invalid_token")
    if token.expires_at <= now:
        raise Unauthenticated("this token has expired; log in again", code="token_expired")
    if user.disabled_at is not None:
        raise Unauthenticated("invalid or revoked token", code="invalid_token")
    if token.last_used_at is None or now - token.last_used_at > _TOUCH_EVERY:
        token.last_used_at = now
    return Actor(user, token=token)


def list_tokens(session: Session, actor: Actor) -> list[AccessToken]:
    actor.require_personal()
    return repo.tokens_of(session, actor.id)


def create_token(session: Session, actor: Actor, data: TokenIn) -> IssuedToken:
    actor.require_personal()
    return issue_token(session, actor.user, data)


def revoke_token(session: Session, actor: Actor, token_id: int) -> AccessToken:
    actor.require_personal()
    token = session.get(AccessToken, token_id)
    if token is None or token.user_id != actor.id:
        raise NotFound("token not found", code="token_not_found")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        audit.record(
            session,
            actor,
            "token.revoke",
            token,
            after={"revoked_at": token.revoked_at.isoformat()},
        )
    return token


def logout(session: Session, actor: Actor) -> AccessToken:
    """Revoke the token this request was made with."""
    actor.require_personal()
    assert actor.token is not None, "personal actors come from a token"
    return revoke_token(session, actor, actor.token.id)


def change_password(session: Session, actor: Actor, data: PasswordChangeIn) -> int:
    """Set a new password and sign out every other session; returns how many were revoked."""
    actor.require_personal()
    if not verify_password(actor.user.password_hash, data.current_password):
        raise PermissionDenied("the current password is wrong", code="wrong_password")
    actor.user.password_hash = hash_password(data.new_password)
    keep = actor.token.id if actor.token else None
    revoked = repo.revoke_tokens_except(session, actor.id, keep, utcnow())
    audit.record(session, actor, "user.change_password", actor.user, after={"revoked_tokens": revoked})
    return revoked


def update_profile(session: Session, actor: Actor, patch: ProfilePatch) -> User:
    actor.require_personal()
    user = actor.user
    changes = patch.model_dump(exclude_unset=True)
    if not changes:
        return user
    before = audit.snapshot(user, list(changes))
    for key, value in changes.items():
        if value is None and key in {"display_name", "bio", "interests", "language"}:
            continue  # these are required; null means "leave as is"
        setattr(user, key, value)
    session.flush()
    audit.record(
        session,
        actor,
        "user.update_profile",
        user,
        before=before,
        after=audit.snapshot(user, list(changes)),
    )
    return user


def create_api_key(session: Session, actor: Actor, community_id: int, data: ApiKeyIn) -> IssuedApiKey:
    actor.require_personal()
    community_context(session, actor, community_id).require_role(Role.ADMIN)
    secret = new_secret(API_KEY_PREFIX)
    key = ApiKey(
        community_id=community_id,
        created_by=actor.id,
        name=data.name,
        key_hash=digest(secret),
        prefix=secret[: len(API_KEY_PREFIX) + 6],
        scopes=sorted(set(data.scopes)),
    )
    session.add(key)
    session.flush()
    audit.record(
        session,
        actor,
        "api_key.create",
        key,
        community_id=community_id,
        after=audit.snapshot(key, ["name", "prefix", "scopes"]),
    )
    return IssuedApiKey(key, secret)


def list_api_keys(session: Session, actor: Actor, community_id: int) -> list[ApiKey]:
    community_context(session, actor, community_id).require_role(Role.ADMIN)
    return repo.api_keys_of(session, community_id)


def revoke_api_key(session: Session, actor: Actor, community_id: int, key_id: int) -> ApiKey:
    actor.require_personal()
    community_context(session, actor, community_id).require_role(Role.ADMIN)
    key = session.get(ApiKey, key_id)
    if key is None or key.community_id != community_id:
        raise NotFound("API key not found", code="api_key_not_found")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        audit.record(
            session,
            actor,
            "api_key.revoke",
            key,
            community_id=community_id,
            after={"revoked_at": key.revoked_at.isoformat()},
        )
    return key

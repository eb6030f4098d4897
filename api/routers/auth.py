from __future__ import annotations

from fastapi import APIRouter, Request, status

from api.deps import CurrentActor, DbSession, PathId, client_ip
from core.accounts import service as accounts
from core.accounts.schemas import (
    AuthOut,
    LoginIn,
    MeOut,
    PasswordChanged,
    PasswordChangeIn,
    ProfilePatch,
    SignupIn,
    TokenCreated,
    TokenIn,
    TokenOut,
)
from core.accounts.service import IssuedToken
from core.config import get_settings
from core.ratelimit import get_rate_limiter

router = APIRouter(tags=["accounts"])


def _limit(request: Request, email: str) -> None:
    s = get_settings()
    limiter = get_rate_limiter()
    # Per address and per account: one IP cannot spray many accounts, many IPs
    # cannot hammer one account.
    limiter.hit(f"auth:ip:{client_ip(request)}", s.auth_rate_limit * 3, s.auth_rate_window_s)
    limiter.hit(f"auth:email:{email.lower()}", s.auth_rate_limit, s.auth_rate_window_s)


def _created(issued: IssuedToken) -> TokenCreated:
    return TokenCreated(**TokenOut.model_validate(issued.token).model_dump(), token=issued.secret)


@router.post("/auth/signup", response_model=AuthOut, status_code=status.HTTP_201_CREATED)
def signup(data: SignupIn, request: Request, session: DbSession) -> AuthOut:
    _limit(request, data.email)
    user, issued = accounts.signup(session, data)
    return AuthOut(user=MeOut.model_validate(user), token=_created(issued))


@router.post("/auth/login", response_model=AuthOut)
def login(data: LoginIn, request: Request, session: DbSession) -> AuthOut:
    _limit(request, data.email)
    user, issued = accounts.login(session, data)
    return AuthOut(user=MeOut.model_validate(user), token=_created(issued))


@router.post("/auth/logout", response_model=TokenOut)
def logout(actor: CurrentActor, session: DbSession) -> TokenOut:
    """Revoke the token used for this request."""
    return TokenOut.model_validate(accounts.logout(session, actor))


@router.post("/me/password", response_model=PasswordChanged)
def change_password(data: PasswordChangeIn, actor: CurrentActor, session: DbSession) -> PasswordChanged:
    """Change the password; every other session is signed out."""
    return PasswordChanged(revoked_sessions=accounts.change_password(session, actor, data))


@router.get("/me", response_model=MeOut)
def me(actor: CurrentActor) -> MeOut:
    actor.require_personal()  # an integration has no business with its creator's account
    return MeOut.model_validate(actor.user)


@router.patch("/me", response_model=MeOut)
def update_me(patch: ProfilePatch, actor: CurrentActor, session: DbSession) -> MeOut:
    return MeOut.model_validate(accounts.update_profile(session, actor, patch))


@router.get("/me/tokens", response_model=list[TokenOut])
def list_tokens(actor: CurrentActor, session: DbSession) -> list[TokenOut]:
    return [TokenOut.model_validate(t) for t in accounts.list_tokens(session, actor)]


@router.post("/me/tokens", response_model=TokenCreated, status_code=status.HTTP_201_CREATED)
def create_token(data: TokenIn, actor: CurrentActor, session: DbSession) -> TokenCreated:
    return _created(accounts.create_token(session, actor, data))


@router.delete("/me/tokens/{token_id}", response_model=TokenOut)
def revoke_token(token_id: PathId, actor: CurrentActor, session: DbSession) -> TokenOut:
    return TokenOut.model_validate(accounts.revoke_token(session, actor, token_id))

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.clock import utcnow
from core.models import AccessToken, User

SIGNUP = {
    "email": "Mei@Example.com",
    "password": "s3cret-pass",
    "display_name": "美美",
    "language": "zh-TW",
}


def test_signup_login_and_me(client: TestClient, session: Session) -> None:
    r = client.post("/auth/signup", json=SIGNUP)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["user"]["email"] == "mei@example.com"
    assert body["user"]["language"] == "zh-TW"
    assert body["token"]["token"].startswith("hth_")
    assert "password" not in r.text and "password_hash" not in r.text

    user = session.scalar(select(User).where(User.email == "mei@example.com"))
    assert user is not None and user.password_hash.startswith("$argon2id$")
    stored = session.scalar(select(AccessToken).where(AccessToken.user_id == user.id))
    assert stored is not None and body["token"]["token"] not in stored.token_hash

    r = client.post("/auth/login", json={"email": "MEI@example.com", "password": "s3cret-pass"})
    assert r.status_code == 200
    token = r.json()["token"]["token"]
    me = client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["display_name"] == "美美"


def test_duplicate_email_is_a_conflict(client: TestClient) -> None:
    assert client.post("/auth/signup", json=SIGNUP).status_code == 201
    r = client.post("/auth/signup", json={**SIGNUP, "email": "mei@EXAMPLE.com"})
    assert r.status_code == 409 and r.json()["error"] == "email_taken"


def test_wrong_password_and_unknown_email_look_the_same(client: TestClient) -> None:
    client.post("/auth/signup", json=SIGNUP)
    wrong = client.post("/auth/login", json={"email": SIGNUP["email"], "password": "nope-nope"})
    unknown = client.post("/auth/login", json={"email": "ghost@example.com", "password": "nope-nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert (
        wrong.json()
        == unknown.json()
        == {"error": "invalid_credentials", "detail": "wrong email or password"}
    )


def test_token_revocation_and_expiry(client: TestClient, session: Session) -> None:
    token = client.post("/auth/signup", json=SIGNUP).json()["token"]
    headers = {"Authorization": f"Bearer {token['token']}"}
    extra = client.post("/me/tokens", json={"name": "cli", "ttl_hours": 1}, headers=headers).json()
    listed = client.get("/me/tokens", headers=headers).json()
    assert {t["name"] for t in listed} == {"session", "cli"}
    assert all("token" not in t for t in listed)

    assert client.delete(f"/me/tokens/{extra['id']}", headers=headers).status_code == 200
    r = client.get("/me", headers={"Authorization": f"Bearer {extra['token']}"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"

    row = session.get(AccessToken, token["id"])
    assert row is not None
    row.expires_at = utcnow() - timedelta(seconds=1)
    session.flush()
    r = client.get("/me", headers=headers)
    assert r.status_code == 401 and r.json()["error"] == "token_expired"


def test_missing_and_garbage_tokens(client: TestClient) -> None:
    assert client.get("/me").json()["error"] == "unauthenticated"
    r = client.get("/me", headers={"Authorization": "Bearer hth_garbage"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"


def test_login_is_rate_limited(client: TestClient, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from core.config import get_settings
    from core.ratelimit import MemoryRateLimiter, get_rate_limiter

    monkeypatch.setattr(get_settings(), "auth_rate_limit", 3)
    get_rate_limiter.cache_clear()
    try:
        assert isinstance(get_rate_limiter(), MemoryRateLimiter)
        codes = [
            client.post("/auth/login", json={"email": "x@example.com", "password": "whatever1"}).status_code
            for _ in range(5)
        ]
        assert codes == [401, 401, 401, 429, 429]
        r = client.post("/auth/login", json={"email": "x@example.com", "password": "whatever1"})
        assert r.json()["error"] == "rate_limited" and int(r.headers["Retry-After"]) >= 1
    finally:
        get_rate_limiter.cache_clear()


def test_profile_update_is_validated_and_audited(client: TestClient, session: Session) -> None:
    token = client.post("/auth/signup", json=SIGNUP).json()["token"]["token"]
    headers = {"Authorization": f"Bearer {token}"}
    r = client.patch(
        "/me", json={"bio": "愛爬山", "interests": ["hiking", "咖啡", "hiking"]}, headers=headers
    )
    assert r.status_code == 200 and r.json()["interests"] == ["hiking", "咖啡"]
    r = client.patch("/me", json={"language": "fr"}, headers=headers)
    assert r.status_code == 422 and r.json()["error"] == "validation_error"
    r = client.patch("/me", json={"nickname": "x"}, headers=headers)
    assert r.status_code == 422


def test_logout_revokes_only_the_token_in_use(client: TestClient) -> None:
    first = client.post("/auth/signup", json=SIGNUP).json()["token"]["token"]
    second = client.post("/auth/login", json={"email": SIGNUP["email"], "password": SIGNUP["password"]})
    other = {"Authorization": f"Bearer {second.json()['token']['token']}"}
    assert client.post("/auth/logout", headers={"Authorization": f"Bearer {first}"}).status_code == 200
    assert client.get("/me", headers={"Authorization": f"Bearer {first}"}).json()["error"] == "invalid_token"
    assert client.get("/me", headers=other).status_code == 200


def test_password_change_signs_out_other_sessions(client: TestClient) -> None:
    mine = {"Authorization": f"Bearer {client.post('/auth/signup', json=SIGNUP).json()['token']['token']}"}
    login = client.post("/auth/login", json={"email": SIGNUP["email"], "password": SIGNUP["password"]})
    elsewhere = {"Authorization": f"Bearer {login.json()['token']['token']}"}
    wrong = client.post(
        "/me/password", json={"current_password": "nope", "new_password": "n3w-pass-word"}, headers=mine
    )
    assert wrong.status_code == 403 and wrong.json()["error"] == "wrong_password"
    short = client.post(
        "/me/password", json={"current_password": SIGNUP["password"], "new_password": "x"}, headers=mine
    )
    assert short.status_code == 422
    r = client.post(
        "/me/password",
        json={"current_password": SIGNUP["password"], "new_password": "n3w-pass-word"},
        headers=mine,
    )
    assert r.status_code == 200 and r.json() == {"revoked_sessions": 1}
    assert client.get("/me", headers=mine).status_code == 200
    assert client.get("/me", headers=elsewhere).status_code == 401
    old = client.post("/auth/login", json={"email": SIGNUP["email"], "password": SIGNUP["password"]})
    assert old.status_code == 401
    new = client.post("/auth/login", json={"email": SIGNUP["email"], "password": "n3w-pass-word"})
    assert new.status_code == 200


def test_a_disabled_account_can_use_neither_its_tokens_nor_its_api_keys(
    client: TestClient, session: Session
) -> None:
    """The credential and its user are read together: a disabled user's token and the API keys
    they created stop working at once, with the same answer as a revoked credential."""
    from tests.factories import auth, make_community, make_user

    owner = make_user(session)
    community = make_community(session, owner)
    headers = auth(session, owner)
    key = client.post(
        f"/communities/{community.id}/api-keys", json={"name": "crm", "scopes": ["read"]}, headers=headers
    ).json()["key"]
    key_headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/me", headers=headers).status_code == 200
    assert client.get(f"/communities/{community.id}/members", headers=key_headers).status_code == 200
    owner.disabled_at = utcnow()
    session.flush()
    for h, path in ((headers, "/me"), (key_headers, f"/communities/{community.id}/members")):
        r = client.get(path, headers=h)
        assert (r.status_code, r.json()["error"]) == (401, "invalid_token"), path

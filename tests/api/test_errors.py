"""The one error contract, for every kind of bad request."""

from __future__ import annotations

import base64
import json
import sqlite3

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, event, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from core.models import Community
from tests.factories import add_member, auth, make_community, make_user


def test_malformed_json_is_400(client: TestClient, session: Session) -> None:
    r = client.post(
        "/communities",
        content=b'{"slug": "x", ',
        headers={**auth(session, make_user(session)), "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"] == "malformed_json"


def test_wrong_content_type_is_415(client: TestClient, session: Session) -> None:
    r = client.post(
        "/communities",
        content=b"slug=x&name=y",
        headers={**auth(session, make_user(session)), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 415 and r.json()["error"] == "unsupported_media_type"


def test_oversized_body_is_413_declared_or_streamed(client: TestClient, session: Session) -> None:
    h = {**auth(session, make_user(session)), "Content-Type": "application/json"}
    big = b'{"slug": "big", "name": "' + b"x" * 1_100_000 + b'"}'
    r = client.post("/communities", content=big, headers=h)
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"

    def chunks():  # no Content-Length: counted while streaming
        yield b'{"slug": "big", "name": "'
        for _ in range(12):
            yield b"y" * 100_000
        yield b'"}'

    r = client.post("/communities", content=chunks(), headers=h)
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"
    assert session.scalar(select(func.count()).select_from(Community).where(Community.slug == "big")) == 0


def test_wrong_types_and_unknown_fields_are_422_with_fields(client: TestClient, session: Session) -> None:
    h = auth(session, make_user(session))
    r = client.post("/communities", json={"slug": 5, "name": ["x"], "extra": True}, headers=h)
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "validation_error"
    assert {tuple(f["loc"])[-1] for f in body["fields"]} >= {"slug", "name", "extra"}
    r = client.get("/communities/not-a-number", headers=h)
    assert r.status_code == 422 and r.json()["error"] == "validation_error"


def test_unknown_route_and_method(client: TestClient) -> None:
    assert client.get("/nope").json() == {"error": "not_found", "detail": "Not Found"}
    r = client.put("/health")
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"


def test_missing_ids_are_404_with_codes(client: TestClient, session: Session) -> None:
    h = auth(session, make_user(session))
    r = client.get("/communities/999999", headers=h)
    assert r.status_code == 404 and r.json()["error"] == "community_not_found"


def test_openapi_docs_are_served_without_a_cdn(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and "/docs-static/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower()
    js = client.get("/docs-static/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000
    spec = client.get("/openapi.json").json()
    assert "/communities/{community_id}/members" in spec["paths"]


def test_commit_failure_is_an_error_not_a_2xx(connection: Connection, session: Session) -> None:
    """The session commits before the response: a failed commit must not look like success."""
    from api.app import create_app

    def failing_session() -> Session:
        s = Session(bind=connection, join_transaction_mode="create_savepoint")

        @event.listens_for(s, "before_commit")
        def _boom(_: Session) -> None:
            raise RuntimeError("disk full")

        return s

    app = create_app(session_maker=failing_session, dispatch_jobs=False)  # type: ignore[arg-type]
    user = make_user(session)
    headers = auth(session, user)
    session.commit()
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/communities", json={"slug": "never-saved", "name": "x"}, headers=headers)
    assert r.status_code == 500 and r.json()["error"] == "internal_error"
    assert (
        session.scalar(select(func.count()).select_from(Community).where(Community.slug == "never-saved"))
        == 0
    )


@pytest.mark.parametrize(
    ("orig", "status", "code"),
    [
        (
            type("DeadlockDetected", (Exception,), {"sqlstate": "40P01"})("deadlock detected"),
            503,
            "retry_later",
        ),
        (sqlite3.OperationalError("database is locked"), 503, "retry_later"),
        (sqlite3.OperationalError("no such table: x"), 500, "internal_error"),
    ],
)
def test_transient_database_conflicts_ask_for_a_retry(
    connection: Connection, orig: Exception, status: int, code: str
) -> None:
    """A deadlock victim wrote nothing; the client may retry with the same Idempotency-Key."""
    from api.app import create_app

    app = create_app(session_maker=lambda: Session(bind=connection), dispatch_jobs=False)  # type: ignore[arg-type]

    @app.get("/boom")
    def boom() -> None:
        raise OperationalError("SELECT 1", {}, orig)

    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/boom")
    assert (r.status_code, r.json()["error"]) == (status, code)
    assert (r.headers.get("Retry-After") == "1") is (status == 503)


HUGE = 2**64


@pytest.mark.parametrize(
    ("method", "path", "payload"),
    [
        ("get", f"/communities/{HUGE}", None),
        ("get", f"/threads/{HUGE}", None),
        ("delete", f"/me/tokens/{HUGE}", None),
        ("get", f"/communities/1/audit?actor_id={HUGE}", None),
        ("post", "/communities/1/bans", {"user_id": HUGE}),
        ("post", "/communities/1/transfer-ownership", {"user_id": HUGE}),
        ("post", "/me/notifications/read", {"up_to_id": HUGE}),
        ("post", "/communities/1/bans", {"user_id": 0}),
    ],
)
def test_ids_out_of_range_are_422(
    client: TestClient, session: Session, method: str, path: str, payload: dict | None
) -> None:
    r = client.request(method, path, json=payload, headers=auth(session, make_user(session)))
    assert r.status_code == 422 and r.json()["error"] == "validation_error", r.text


def _cursor(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps({"k": value}).encode()).decode().rstrip("=")


@pytest.mark.parametrize("value", [True, HUGE, -1, "7", None])
def test_forged_cursors_are_422(client: TestClient, session: Session, value: object) -> None:
    user = make_user(session)
    r = client.get(f"/me/notifications?cursor={_cursor(value)}", headers=auth(session, user))
    assert r.status_code == 422 and r.json()["error"] == "invalid_cursor"


def test_nul_characters_are_refused_in_bodies_and_urls(client: TestClient, session: Session) -> None:
    h = auth(session, make_user(session))
    r = client.patch("/me", json={"bio": "a\u0000b"}, headers=h)
    assert r.status_code == 422 and r.json()["error"] == "validation_error"
    r = client.post("/auth/login", json={"email": "a\u0000@b.co", "password": "x"})
    assert r.status_code == 422
    for url in ["/communities?q=%00x", "/invites/%00abcd/accept"]:
        r = client.request("POST" if "accept" in url else "GET", url, headers=h)
        assert r.status_code == 400 and r.json()["error"] == "invalid_characters", url


def test_negative_content_length_is_400(client: TestClient, session: Session) -> None:
    r = client.post(
        "/communities",
        content=b"",
        headers={
            **auth(session, make_user(session)),
            "Content-Type": "application/json",
            "Content-Length": "-5",
        },
    )
    assert r.status_code == 400 and r.json()["error"] == "bad_request"


def test_search_wildcards_are_literal(client: TestClient, session: Session) -> None:
    owner = make_user(session)
    h = auth(session, owner)
    client.post("/communities", json={"slug": "pct-club", "name": "100% 咖啡"}, headers=h)
    client.post("/communities", json={"slug": "plain-club", "name": "Plain"}, headers=h)
    names = [c["name"] for c in client.get("/communities?q=%25&mine=true", headers=h).json()["items"]]
    assert names == ["100% 咖啡"]


def test_failed_statements_do_not_log_parameters() -> None:
    """The message of a failed statement, which the 500 handler logs, carries no bound values."""
    from core.db import make_engine

    engine = make_engine("sqlite://")
    with pytest.raises(Exception) as info, engine.connect() as conn:
        conn.exec_driver_sql("SELECT * FROM missing WHERE secret = ?", ("$argon2id$secret",))
    assert "$argon2id$secret" not in str(info.value)
    engine.dispose()


@pytest.mark.parametrize("value", ["12", True, 12.0])
def test_ids_in_bodies_are_strict_integers(client: TestClient, session: Session, value: object) -> None:
    from tests.factories import add_member, make_community

    owner = make_user(session)
    community = make_community(session, owner)
    member = add_member(session, community)
    r = client.post(
        f"/communities/{community.id}/bans",
        json={"user_id": str(member.id) if value == "12" else value},
        headers=auth(session, owner),
    )
    assert r.status_code == 422 and r.json()["error"] == "validation_error"


@pytest.mark.parametrize(
    "body", [b'{"slug": "\xff\xfe", "name": "x"}', b"[" * 100_000 + b"]" * 100_000], ids=["bad-utf8", "deep"]
)
def test_unparseable_bodies_are_malformed_json(client: TestClient, session: Session, body: bytes) -> None:
    h = {**auth(session, make_user(session)), "Content-Type": "application/json"}
    r = client.post("/communities", content=body, headers=h)
    assert r.status_code == 400 and r.json()["error"] == "malformed_json"


def test_guard_errors_look_like_every_other_error(client: TestClient, session: Session) -> None:
    h = auth(session, make_user(session))
    guard = client.post("/communities", content=b"x=1", headers={**h, "Content-Type": "text/plain"})
    handler = client.get("/communities/999999", headers=h)
    assert guard.content.startswith(b'{"error":"unsupported_media_type","detail":')
    assert handler.content.startswith(b'{"error":"community_not_found","detail":')


def test_actions_without_input_refuse_a_body(client: TestClient, session: Session) -> None:
    """Bodies refuse unknown fields; an action that takes none refuses a body that says something."""
    owner = make_user(session)
    community = make_community(session, owner)
    member = add_member(session, community)
    leave = f"/communities/{community.id}/leave"
    said = client.post(leave, json={"reason": "bye"}, headers=auth(session, member))
    assert (said.status_code, said.json()["error"]) == (422, "unexpected_body")
    broken = client.post(
        leave, content=b"{nope", headers={**auth(session, member), "Content-Type": "application/json"}
    )
    assert (broken.status_code, broken.json()["error"]) == (400, "malformed_json")
    members = client.get(f"/communities/{community.id}/members", headers=auth(session, owner)).json()
    assert member.id in {m["user"]["id"] for m in members["items"]}  # still a member: nothing happened
    # Some clients always send a body: an empty one, {} and null say nothing and are accepted.
    assert client.post(leave, json={}, headers=auth(session, member)).status_code == 200
    rejoin = client.post(f"/communities/{community.id}/join", headers=auth(session, member))
    assert rejoin.status_code == 201, rejoin.text
    null = {**auth(session, member), "Content-Type": "application/json"}
    assert client.post(leave, content=b"null", headers=null).status_code == 200

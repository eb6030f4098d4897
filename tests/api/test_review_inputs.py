"""Inputs found in review to end in a 500 (or to be quietly misread): each is now a 4xx with a code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.factories import auth, make_community, make_user

MAX_TRIAL = timedelta(days=3650)  # the documented cap: ten years from now


def _err(r, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    assert (r.status_code, r.json().get("error")) == (status, code), (r.status_code, r.text)


# --- F1: query ids are bounded like path ids -----------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "chips?issuer_id={n}",
        "wallet?user_id={n}",
        "wallet/history?user_id={n}",
        "wallet/verify?user_id={n}",
    ],
)
def test_query_ids_past_int64_are_invalid(client: TestClient, session: Session, path: str) -> None:
    owner = make_user(session)  # the owner may read another member's wallet
    c = make_community(session, owner)
    url = f"/communities/{c.id}/" + path.format(n=2**63)
    _err(client.get(url, headers=auth(session, owner)), 422, "validation_error")
    # The largest id is still a valid query: nobody has it.
    r = client.get(f"/communities/{c.id}/" + path.format(n=2**63 - 1), headers=auth(session, owner))
    assert r.status_code in (200, 404), r.text


# --- F2: a chip's season end is bounded -----------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "9999-12-31T23:59:59-05:00",  # past datetime.max in UTC
        "0001-01-01T00:00:00+01:00",  # before datetime.min in UTC
        "9999-12-31T23:59:59",
        "2200-01-01T00:00:00Z",
    ],
)
def test_chip_season_end_out_of_range(client: TestClient, session: Session, value: str) -> None:
    owner = make_user(session)
    c = make_community(session, owner)
    r = client.post(
        f"/communities/{c.id}/chips",
        json={"name": "n", "symbol": "ABC", "expires_at": value},
        headers=auth(session, owner),
    )
    _err(r, 422, "validation_error")


def test_chip_season_end_with_offset_is_stored_in_utc(client: TestClient, session: Session) -> None:
    owner = make_user(session)
    c = make_community(session, owner)
    r = client.post(
        f"/communities/{c.id}/chips",
        json={"name": "n", "symbol": "ABC", "expires_at": "2199-12-31T18:30:00-05:00"},
        headers=auth(session, owner),
    )
    assert r.status_code == 201, r.text
    assert datetime.fromisoformat(r.json()["expires_at"]) == datetime(2199, 12, 31, 23, 30, tzinfo=UTC)


# --- F3: the day of a digest is a bounded date string ---------------------------------------------


@pytest.mark.parametrize(
    "day", ["9999-12-31", "2200-01-01", "1999-12-31", 0, 20260101, True, "2026-01-01T00:00:00"]
)
def test_digest_day_must_be_a_date_in_range(client: TestClient, session: Session, day: object) -> None:
    owner = make_user(session)
    c = make_community(session, owner)
    r = client.post(f"/communities/{c.id}/ledger/digests", json={"day": day}, headers=auth(session, owner))
    _err(r, 422, "validation_error")


def test_digest_of_a_day_not_over_is_still_refused(client: TestClient, session: Session) -> None:
    owner = make_user(session)
    c = make_community(session, owner)
    r = client.post(
        f"/communities/{c.id}/ledger/digests", json={"day": "2199-12-31"}, headers=auth(session, owner)
    )
    _err(r, 409, "day_not_over")
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    r = client.post(
        f"/communities/{c.id}/ledger/digests", json={"day": yesterday}, headers=auth(session, owner)
    )
    assert r.status_code == 201, r.text

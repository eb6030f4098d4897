"""Inputs found in review to end in a 500 (or to be quietly misread): each is now a 4xx with a code."""

from __future__ import annotations

from datetime import timedelta

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

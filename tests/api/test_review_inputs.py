"""Inputs found in review to end in a 500 (or to be quietly misread): each is now a 4xx with a code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import LedgerTransaction, Membership, RedemptionOrder, Role, User
from tests.factories import add_member, auth, community_chip, fund, make_community, make_user

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


# --- F5: a trial cannot be stacked without end ----------------------------------------------------


def _vip_offer(client: TestClient, session: Session, *, instant: bool) -> tuple[int, int, User]:
    owner = make_user(session)
    c = make_community(session, owner)
    member = add_member(session, c)
    gold = community_chip(session, c)
    fund(session, gold, member, 10)
    session.commit()
    r = client.post(
        f"/communities/{c.id}/redemption/offers",
        headers=auth(session, owner),
        json={
            "chip_id": gold.id,
            "title": "VIP year",
            "kind": "vip_trial",
            "access_ref": "vip",
            "trial_days": 365,
            "price": 1,
            "instant": instant,
        },
    )
    assert r.status_code == 201, r.text
    return c.id, r.json()["id"], member


def _membership(session: Session, community_id: int, user_id: int) -> Membership:
    m = session.scalar(
        select(Membership).where(Membership.community_id == community_id, Membership.user_id == user_id)
    )
    assert m is not None
    return m


def _balance(client: TestClient, session: Session, community_id: int, member: User) -> int:
    items = client.get(f"/communities/{community_id}/wallet", headers=auth(session, member)).json()
    return sum(b["balance"] for b in items["balances"])


def _transactions(session: Session, community_id: int) -> int:
    return session.scalar(
        select(func.count())
        .select_from(LedgerTransaction)
        .where(LedgerTransaction.community_id == community_id)
    )


@pytest.mark.parametrize("ends", [datetime(9999, 6, 1, tzinfo=UTC), None])
def test_instant_trial_past_the_cap_is_refused_before_paying(
    client: TestClient, session: Session, ends: datetime | None
) -> None:
    community_id, offer_id, member = _vip_offer(client, session, instant=True)
    hm = auth(session, member)
    r = client.post(f"/redemption/offers/{offer_id}/redeem", headers={**hm, "Idempotency-Key": "a"})
    assert r.status_code == 201, r.text
    m = _membership(session, community_id, member.id)
    # Near year 9999 (what ~8,000 stacked orders reach), or just inside the cap.
    m.trial_ends_at = ends or datetime.now(UTC) + MAX_TRIAL - timedelta(days=300)
    session.commit()
    before, txs = _balance(client, session, community_id, member), _transactions(session, community_id)
    r = client.post(f"/redemption/offers/{offer_id}/redeem", headers={**hm, "Idempotency-Key": "b"})
    _err(r, 409, "trial_too_long")
    assert _balance(client, session, community_id, member) == before == 9
    assert _transactions(session, community_id) == txs
    assert (
        session.scalar(
            select(func.count()).select_from(RedemptionOrder).where(RedemptionOrder.offer_id == offer_id)
        )
        == 1
    )
    session.expire_all()
    assert _membership(session, community_id, member.id).trial_ends_at == m.trial_ends_at


def test_trial_up_to_the_cap_is_granted(client: TestClient, session: Session) -> None:
    community_id, offer_id, member = _vip_offer(client, session, instant=True)
    hm = auth(session, member)
    assert (
        client.post(
            f"/redemption/offers/{offer_id}/redeem", headers={**hm, "Idempotency-Key": "a"}
        ).status_code
        == 201
    )
    m = _membership(session, community_id, member.id)
    m.trial_ends_at = datetime.now(UTC) + MAX_TRIAL - timedelta(days=366)
    session.commit()
    r = client.post(f"/redemption/offers/{offer_id}/redeem", headers={**hm, "Idempotency-Key": "b"})
    assert r.status_code == 201, r.text


def test_fulfilling_a_trial_past_the_cap_leaves_the_order_pending(
    client: TestClient, session: Session
) -> None:
    community_id, offer_id, member = _vip_offer(client, session, instant=False)
    hm = auth(session, member)
    first = client.post(f"/redemption/offers/{offer_id}/redeem", headers={**hm, "Idempotency-Key": "a"})
    assert first.status_code == 201, first.text
    second = client.post(f"/redemption/offers/{offer_id}/redeem", headers={**hm, "Idempotency-Key": "b"})
    assert second.status_code == 201, second.text
    owner = session.scalar(
        select(User)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.community_id == community_id, Membership.role == Role.OWNER)
    )
    assert owner is not None
    ho = auth(session, owner)
    assert client.post(f"/redemption/orders/{first.json()['id']}/fulfil", headers=ho).status_code == 200
    # Meanwhile the member's trial reached year 9999 (other orders, other offers).
    m = _membership(session, community_id, member.id)
    m.trial_ends_at = datetime(9999, 6, 1, tzinfo=UTC)
    session.commit()
    txs = _transactions(session, community_id)
    r = client.post(f"/redemption/orders/{second.json()['id']}/fulfil", headers=ho)
    _err(r, 409, "trial_too_long")
    assert client.get(f"/redemption/orders/{second.json()['id']}", headers=hm).json()["status"] == "pending"
    assert _transactions(session, community_id) == txs
    session.expire_all()
    assert _membership(session, community_id, member.id).trial_ends_at == datetime(9999, 6, 1, tzinfo=UTC)


# --- F7: an earn rule patch refuses null and contradictions ---------------------------------------


def _rule(client: TestClient, session: Session) -> tuple[dict[str, str], dict]:  # type: ignore[type-arg]
    """An owner's headers and a rule of theirs: name "r", amount 1, a daily count cap of 3."""
    owner = make_user(session)
    c = make_community(session, owner)
    h = auth(session, owner)
    rule = client.post(
        f"/communities/{c.id}/earn-rules",
        headers=h,
        json={"name": "r", "trigger": "post_created", "amount": 1, "daily_count_cap": 3},
    ).json()
    return h, rule


@pytest.mark.parametrize(
    "body",
    [
        {"amount": None},
        {"name": None},
        {"active": None},
        {"daily_count_cap": None},
        {"daily_amount_cap": None},
        {"clear_caps": True, "daily_count_cap": 5},
        {"clear_caps": True, "daily_amount_cap": 5},
    ],
)
def test_rule_patch_refuses_null_and_contradictions(client: TestClient, session: Session, body: dict) -> None:  # type: ignore[type-arg]
    h, rule = _rule(client, session)
    _err(client.patch(f"/earn-rules/{rule['id']}", json=body, headers=h), 422, "invalid_input")
    same = client.get(f"/earn-rules/{rule['id']}", headers=h).json()
    assert (same["name"], same["amount"], same["daily_count_cap"], same["active"]) == ("r", 1, 3, True)


def test_rule_patch_still_clears_and_sets(client: TestClient, session: Session) -> None:
    h, rule = _rule(client, session)
    r = client.patch(f"/earn-rules/{rule['id']}", json={"clear_caps": True, "amount": 2}, headers=h)
    assert r.status_code == 200, r.text
    assert (r.json()["amount"], r.json()["daily_count_cap"]) == (2, None)
    r = client.patch(
        f"/earn-rules/{rule['id']}", json={"clear_caps": False, "daily_amount_cap": 9}, headers=h
    )
    assert r.status_code == 200, r.text
    assert r.json()["daily_amount_cap"] == 9


# --- loose numbers: true or 1.0 is not 1, 1 is not true -------------------------------------------


@pytest.mark.parametrize("value", [True, 1.0, "5"])
def test_counts_and_hours_are_strict_integers(client: TestClient, session: Session, value: object) -> None:
    owner = make_user(session)
    c = make_community(session, owner)
    member = add_member(session, c)
    h = auth(session, owner)
    for method, url, body in (
        ("post", f"/communities/{c.id}/tiers", {"key": "gold", "name": "Gold", "rank": value}),
        ("post", f"/communities/{c.id}/invites", {"max_uses": value}),
        ("post", f"/communities/{c.id}/invites", {"expires_in_hours": value}),
        ("post", f"/communities/{c.id}/bans", {"user_id": member.id, "expires_in_hours": value}),
        ("post", "/me/tokens", {"name": "cli", "ttl_hours": value}),
    ):
        _err(client.request(method, url, json=body, headers=h), 422, "validation_error")
    # The same numbers as integers are fine.
    assert (
        client.post(
            f"/communities/{c.id}/tiers", json={"key": "gold", "name": "Gold", "rank": 5}, headers=h
        ).status_code
        == 201
    )
    assert (
        client.post(
            f"/communities/{c.id}/invites", json={"max_uses": 1, "expires_in_hours": 1}, headers=h
        ).status_code
        == 201
    )
    assert client.post("/me/tokens", json={"name": "cli", "ttl_hours": 1}, headers=h).status_code == 201
    r = client.post(
        f"/communities/{c.id}/bans", json={"user_id": member.id, "expires_in_hours": 1}, headers=h
    )
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("value", [1, 0, "true", "yes"])
def test_recommendation_opt_out_is_a_boolean(client: TestClient, session: Session, value: object) -> None:
    h = auth(session, make_user(session))
    _err(
        client.put("/me/recommendation-settings", json={"opted_out": value}, headers=h),
        422,
        "validation_error",
    )
    r = client.put("/me/recommendation-settings", json={"opted_out": True}, headers=h)
    assert r.status_code == 200 and r.json()["opted_out"] is True, r.text

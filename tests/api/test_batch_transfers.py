"""Batch transfers over HTTP: many transfers from one wallet, all or none, each its own transaction."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.ledger import service as ledger
from core.models import LedgerAccount, LedgerTransaction
from tests.api.test_chips_api import with_key
from tests.factories import add_member, auth, community_chip, make_community, make_user


def setup(session: Session, client: TestClient, funds: int = 100):  # type: ignore[no-untyped-def]
    owner = make_user(session)
    community = make_community(session, owner)
    alice, bob, carol = (add_member(session, community) for _ in range(3))
    points = community_chip(session, community)
    minted = client.post(
        f"/chips/{points.id}/mint",
        json={"amount": funds, "to_user_id": alice.id},
        headers=with_key(session, owner, "fund-alice"),
    )
    assert minted.status_code == 201, minted.text
    return community, owner, alice, bob, carol, points


def balance(session: Session, chip_id: int, user_id: int) -> int | None:
    session.expire_all()
    wallet = ledger.find_wallet(session, chip_id, user_id)
    return None if wallet is None else wallet.balance


def test_a_batch_pays_everyone_as_separate_transactions(client: TestClient, session: Session) -> None:
    _, _, alice, bob, carol, points = setup(session, client)
    assert balance(session, points.id, carol.id) is None  # carol has no wallet yet: the batch opens it
    body = {
        "transfers": [
            {"to_user_id": bob.id, "amount": 10, "memo": "謝謝分享"},
            {"to_user_id": carol.id, "amount": 5},
            {"to_user_id": bob.id, "amount": 1, "memo": "bonus"},
        ]
    }
    url = f"/chips/{points.id}/transfers/batch"
    r = client.post(url, json=body, headers=with_key(session, alice, "payday-1"))
    assert r.status_code == 201, r.text
    out = r.json()
    assert (out["total"], out["replayed"], out["chip_id"]) == (16, False, points.id)
    assert [(t["to_user_id"], t["amount"], t["memo"]) for t in out["transfers"]] == [
        (bob.id, 10, "謝謝分享"),
        (carol.id, 5, ""),
        (bob.id, 1, "bonus"),
    ]
    ids = [t["transaction_id"] for t in out["transfers"]]
    assert len(set(ids)) == 3
    assert (balance(session, points.id, alice.id), balance(session, points.id, bob.id)) == (84, 11)
    assert balance(session, points.id, carol.id) == 5
    # Each transfer is a transaction of its own, with its memo and a receipt its recipient can read.
    memos = dict(
        session.execute(
            select(LedgerTransaction.id, LedgerTransaction.memo).where(LedgerTransaction.id.in_(ids))
        ).all()
    )
    assert memos == {ids[0]: "謝謝分享", ids[1]: "", ids[2]: "bonus"}
    receipt = client.get(f"/ledger/transactions/{ids[1]}/receipt", headers=auth(session, carol))
    assert receipt.status_code == 200, receipt.text

    # A retry (same key, same body) answers the first result and moves nothing.
    again = client.post(url, json=body, headers=with_key(session, alice, "payday-1"))
    assert again.status_code == 200
    assert again.json()["replayed"] is True
    assert [t["transaction_id"] for t in again.json()["transfers"]] == ids
    assert balance(session, points.id, alice.id) == 84


def test_reused_keys_are_refused_across_batch_and_single_transfers(
    client: TestClient, session: Session
) -> None:
    _, _, alice, bob, carol, points = setup(session, client)
    url = f"/chips/{points.id}/transfers/batch"
    body = {"transfers": [{"to_user_id": bob.id, "amount": 2}, {"to_user_id": carol.id, "amount": 3}]}
    assert client.post(url, json=body, headers=with_key(session, alice, "k-1")).status_code == 201
    other = {"transfers": [{"to_user_id": bob.id, "amount": 2}, {"to_user_id": carol.id, "amount": 4}]}
    r = client.post(url, json=other, headers=with_key(session, alice, "k-1"))
    assert (r.status_code, r.json()["error"]) == (409, "idempotency_key_reused")
    single = client.post(
        f"/chips/{points.id}/transfers",
        json={"to_user_id": bob.id, "amount": 3},
        headers=with_key(session, alice, "k-1"),
    )
    assert (single.status_code, single.json()["error"]) == (409, "idempotency_key_reused")
    # (The same key and exactly the batch's first transfer is that transfer: answered, not repeated.)
    same = client.post(
        f"/chips/{points.id}/transfers",
        json={"to_user_id": bob.id, "amount": 2},
        headers=with_key(session, alice, "k-1"),
    )
    assert (same.status_code, same.json()["replayed"]) == (200, True)
    # And the other way round: a single transfer's key cannot start a batch.
    assert (
        client.post(
            f"/chips/{points.id}/transfers",
            json={"to_user_id": bob.id, "amount": 1},
            headers=with_key(session, alice, "k-2"),
        ).status_code
        == 201
    )
    r = client.post(url, json=body, headers=with_key(session, alice, "k-2"))
    assert (r.status_code, r.json()["error"]) == (409, "idempotency_key_reused")
    assert balance(session, points.id, alice.id) == 100 - 5 - 1


def test_a_batch_that_cannot_be_paid_in_full_moves_nothing(client: TestClient, session: Session) -> None:
    _, _, alice, bob, carol, points = setup(session, client, funds=10)
    body = {"transfers": [{"to_user_id": bob.id, "amount": 6}, {"to_user_id": carol.id, "amount": 6}]}
    r = client.post(f"/chips/{points.id}/transfers/batch", json=body, headers=with_key(session, alice, "big"))
    assert (r.status_code, r.json()["error"]) == (409, "insufficient_funds")
    assert (balance(session, points.id, alice.id), balance(session, points.id, bob.id)) == (10, None)
    assert balance(session, points.id, carol.id) is None  # no wallet left behind either
    count = session.scalar(
        select(func.count()).select_from(LedgerAccount).where(LedgerAccount.chip_id == points.id)
    )
    assert count == 2  # the issuance account and alice's


def test_batch_input_is_checked(client: TestClient, session: Session) -> None:
    _, _, alice, bob, _, points = setup(session, client)
    url = f"/chips/{points.id}/transfers/batch"

    def post(body: object, key: str = "x"):  # type: ignore[no-untyped-def]
        return client.post(url, json=body, headers=with_key(session, alice, key))

    outsider = make_user(session)
    r = post(
        {"transfers": [{"to_user_id": bob.id, "amount": 1}, {"to_user_id": outsider.id, "amount": 1}]}, "o"
    )
    assert (r.status_code, r.json()["error"]) == (422, "recipient_not_member")
    assert str(outsider.id) in r.json()["detail"]
    r = post({"transfers": [{"to_user_id": alice.id, "amount": 1}]}, "self")
    assert (r.status_code, r.json()["error"]) == (422, "same_account")
    for bad in (
        {"transfers": []},
        {"transfers": [{"to_user_id": bob.id, "amount": 1}] * 1001},
        {"transfers": [{"to_user_id": bob.id, "amount": 0}]},
        {"transfers": [{"to_user_id": bob.id, "amount": True}]},
        {},
    ):
        r = post(bad)
        assert (r.status_code, r.json()["error"]) == (422, "validation_error"), bad
    no_key = client.post(
        url, json={"transfers": [{"to_user_id": bob.id, "amount": 1}]}, headers=auth(session, alice)
    )
    assert (no_key.status_code, no_key.json()["error"]) == (422, "idempotency_key_required")
    stranger = client.post(
        url,
        json={"transfers": [{"to_user_id": bob.id, "amount": 1}]},
        headers=with_key(session, outsider, "s"),
    )
    assert (stranger.status_code, stranger.json()["error"]) == (403, "not_a_member")
    assert balance(session, points.id, alice.id) == 100
    many = post({"transfers": [{"to_user_id": bob.id, "amount": 1}] * 100}, "hundred")
    assert many.status_code == 201, many.text
    assert balance(session, points.id, bob.id) == 100


def test_a_wallet_the_batch_opens_keeps_its_owners_freeze(client: TestClient, session: Session) -> None:
    """A moderator froze bob's whole wallet before he held this chip: the wallet the batch
    opens for him is frozen too, so the batch is refused and leaves nothing behind."""
    community, owner, alice, bob, carol, points = setup(session, client)
    frozen = client.post(
        f"/communities/{community.id}/members/{bob.id}/wallet/freeze",
        json={"reason": "compromised"},
        headers=auth(session, owner),
    )
    assert frozen.status_code == 200, frozen.text
    body = {"transfers": [{"to_user_id": carol.id, "amount": 1}, {"to_user_id": bob.id, "amount": 1}]}
    r = client.post(f"/chips/{points.id}/transfers/batch", json=body, headers=with_key(session, alice, "f"))
    assert (r.status_code, r.json()["error"]) == (409, "account_frozen"), r.text
    assert (balance(session, points.id, bob.id), balance(session, points.id, carol.id)) == (None, None)

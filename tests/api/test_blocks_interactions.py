"""A block keeps two members apart beyond follows and recommendations: no DMs, tips, transfers
or swap offers."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import DirectMessage, SwapOffer, Tip, User
from tests.core.tipping.helpers import age, balance, channel, community_chip, thread
from tests.factories import add_member, auth, fund, make_chip, make_community, make_user


def _block(client: TestClient, session: Session, blocker: User, blocked: User) -> None:
    r = client.post("/me/blocks", json={"user_id": blocked.id}, headers=auth(session, blocker))
    assert r.status_code in (200, 201), r.text


def test_blocked_members_cannot_open_or_write_dms_in_either_direction(
    client: TestClient, session: Session
) -> None:
    owner = make_user(session)
    community = make_community(session, owner)
    ann, bob, cat = (add_member(session, community) for _ in range(3))
    url = f"/communities/{community.id}/conversations"
    opened = client.post(url, json={"participant_ids": [bob.id]}, headers=auth(session, ann))
    assert opened.status_code == 201, opened.text
    conversation = opened.json()["id"]
    send = f"/conversations/{conversation}/messages"
    assert client.post(send, json={"body": "hi"}, headers=auth(session, bob)).status_code == 201

    _block(client, session, bob, ann)  # bob blocks ann
    for who in (ann, bob):  # both directions
        r = client.post(send, json={"body": "still there?"}, headers=auth(session, who))
        assert (r.status_code, r.json()["error"]) == (403, "blocked")
    r = client.post(url, json={"participant_ids": [bob.id]}, headers=auth(session, ann))
    assert (r.status_code, r.json()["error"]) == (403, "blocked")
    # Nor into a group with someone who blocked you.
    r = client.post(
        url, json={"participant_ids": [bob.id, cat.id], "title": "trip"}, headers=auth(session, ann)
    )
    assert (r.status_code, r.json()["error"]) == (403, "blocked")
    # (Counted in this test's conversation: tests that commit leave rows of their own.)
    sent = (
        select(func.count()).select_from(DirectMessage).where(DirectMessage.conversation_id == conversation)
    )
    assert session.scalar(sent) == 1
    # Others are unaffected.
    assert client.post(url, json={"participant_ids": [cat.id]}, headers=auth(session, ann)).status_code == 201


def test_no_swap_offers_between_a_blocked_pair(client: TestClient, session: Session) -> None:
    owner = make_user(session)
    community = make_community(session, owner)
    ann, bob = add_member(session, community), add_member(session, community)
    star = make_chip(session, community, ann, symbol="STAR")
    gold = make_chip(session, community, symbol="GOLD")
    for member in (ann, bob):
        fund(session, star, member, 100)
        fund(session, gold, member, 100)
    _block(client, session, ann, bob)  # ann blocks bob
    url = f"/communities/{community.id}/swaps"
    for maker, taker in ((ann, bob), (bob, ann)):
        body = {
            "taker_id": taker.id,
            "give_chip_id": star.id,
            "give_amount": 5,
            "want_chip_id": gold.id,
            "want_amount": 5,
        }
        r = client.post(url, json=body, headers={**auth(session, maker), "Idempotency-Key": f"sw-{maker.id}"})
        assert (r.status_code, r.json()["error"]) == (403, "blocked")
    offers = select(func.count()).select_from(SwapOffer).where(SwapOffer.community_id == community.id)
    assert session.scalar(offers) == 0


def test_no_tips_between_a_blocked_pair(client: TestClient, session: Session) -> None:
    owner = make_user(session)
    community = make_community(session, owner)
    ann, bob = add_member(session, community), add_member(session, community)
    for member in (ann, bob):
        age(session, community, member)
    chip = community_chip(session, community)
    fund(session, chip, ann, 100)
    fund(session, chip, bob, 100)
    _, post_id = thread(session, bob, channel(session, owner, community))
    session.commit()
    _block(client, session, bob, ann)  # bob blocks ann
    body = {"chip_id": chip.id, "amount": 5}
    attempts = [
        (ann, f"/communities/{community.id}/members/{bob.id}/tips"),
        (ann, f"/posts/{post_id}/tips"),
        (bob, f"/communities/{community.id}/members/{ann.id}/tips"),
    ]
    for n, (who, url) in enumerate(attempts):
        r = client.post(url, json=body, headers={**auth(session, who), "Idempotency-Key": f"t{n}"})
        assert (r.status_code, r.json()["error"]) == (403, "blocked"), url
    assert session.scalar(select(func.count()).select_from(Tip).where(Tip.community_id == community.id)) == 0
    assert [balance(session, chip, m) for m in (ann, bob)] == [100, 100]


def test_no_transfers_single_or_batched_between_a_blocked_pair(client: TestClient, session: Session) -> None:
    owner = make_user(session)
    community = make_community(session, owner)
    ann, bob, cat = (add_member(session, community) for _ in range(3))
    points = community_chip(session, community)
    for member in (ann, bob):
        fund(session, points, member, 50)
    _block(client, session, bob, ann)  # bob blocks ann

    def pay(payer: User, to: User, key: str):  # type: ignore[no-untyped-def]
        return client.post(
            f"/chips/{points.id}/transfers",
            json={"to_user_id": to.id, "amount": 5},
            headers={**auth(session, payer), "Idempotency-Key": key},
        )

    for payer, payee in ((ann, bob), (bob, ann)):  # both directions
        r = pay(payer, payee, f"t-{payer.id}")
        assert (r.status_code, r.json()["error"]) == (403, "blocked")
    batch = client.post(
        f"/chips/{points.id}/transfers/batch",
        json={"transfers": [{"to_user_id": cat.id, "amount": 1}, {"to_user_id": bob.id, "amount": 1}]},
        headers={**auth(session, ann), "Idempotency-Key": "batch"},
    )
    assert (batch.status_code, batch.json()["error"]) == (403, "blocked")
    session.expire_all()
    assert (balance(session, points, ann), balance(session, points, bob), balance(session, points, cat)) == (
        50,
        50,
        0,
    )
    # Others are unaffected.
    assert pay(ann, cat, "to-cat").status_code == 201


def test_a_retry_is_answered_with_the_first_transfer_even_after_a_block(
    client: TestClient, session: Session
) -> None:
    """A retry skips the checks (the ledger answers it with the first result): a block that came
    between the first request and its retry turns the retry into neither a refusal nor a
    second payment, for a single transfer and for a batch."""
    owner = make_user(session)
    community = make_community(session, owner)
    ann, bob, cat = (add_member(session, community) for _ in range(3))
    points = community_chip(session, community)
    fund(session, points, ann, 50)
    headers = {**auth(session, ann), "Idempotency-Key": "pay-bob"}
    single = {"to_user_id": bob.id, "amount": 5}
    batch = {"transfers": [{"to_user_id": cat.id, "amount": 1}, {"to_user_id": bob.id, "amount": 2}]}
    batch_headers = {**auth(session, ann), "Idempotency-Key": "pay-both"}
    first = client.post(f"/chips/{points.id}/transfers", json=single, headers=headers)
    first_batch = client.post(f"/chips/{points.id}/transfers/batch", json=batch, headers=batch_headers)
    assert (first.status_code, first_batch.status_code) == (201, 201)
    _block(client, session, bob, ann)
    again = client.post(f"/chips/{points.id}/transfers", json=single, headers=headers)
    assert again.status_code == 200, again.text
    assert again.json() == {**first.json(), "replayed": True}
    again_batch = client.post(f"/chips/{points.id}/transfers/batch", json=batch, headers=batch_headers)
    assert again_batch.status_code == 200, again_batch.text
    assert again_batch.json() == {**first_batch.json(), "replayed": True}
    # A new request is refused, and nothing moved twice.
    fresh = client.post(
        f"/chips/{points.id}/transfers", json=single, headers={**auth(session, ann), "Idempotency-Key": "new"}
    )
    assert (fresh.status_code, fresh.json()["error"]) == (403, "blocked")
    session.expire_all()
    assert (balance(session, points, ann), balance(session, points, bob), balance(session, points, cat)) == (
        42,
        7,
        1,
    )


def test_a_tip_retried_after_a_block_is_answered_with_the_first_tip(
    client: TestClient, session: Session
) -> None:
    owner = make_user(session)
    community = make_community(session, owner)
    ann, bob = (add_member(session, community) for _ in range(2))
    points = community_chip(session, community)
    fund(session, points, ann, 50)
    path = f"/communities/{community.id}/members/{bob.id}/tips"
    body = {"chip_id": points.id, "amount": 5, "note": "謝謝"}
    headers = {**auth(session, ann), "Idempotency-Key": "tip-bob"}
    first = client.post(path, json=body, headers=headers)
    assert first.status_code == 201, first.text
    _block(client, session, bob, ann)
    again = client.post(path, json=body, headers=headers)
    assert again.status_code == 200, again.text
    assert again.json() == {**first.json(), "replayed": True}
    other = client.post(path, json={**body, "amount": 6}, headers=headers)  # same key, other request
    assert (other.status_code, other.json()["error"]) == (409, "idempotency_key_reused")
    fresh = client.post(path, json=body, headers={**auth(session, ann), "Idempotency-Key": "tip-again"})
    assert (fresh.status_code, fresh.json()["error"]) == (403, "blocked")
    session.expire_all()
    assert (balance(session, points, ann), balance(session, points, bob)) == (45, 5)

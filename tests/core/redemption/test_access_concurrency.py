"""PostgreSQL: instant access redemptions and their reversals race tips and mints on the same
wallet, deadlock-free.

An instant redemption locks the member's membership before any ledger account (as tips
do) and its two accounts at once in id order (as mints do); a moderator's reversal locks the
membership before the ledger locks the accounts. All of them run at once here.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

from sqlalchemy import Engine, func, select

from core.access import Actor
from core.chips import service as chips
from core.chips.schemas import MintIn, ReasonIn
from core.clock import utcnow
from core.db import session_scope
from core.ledger import service as ledger
from core.models import AccessGrant, Chip, Membership, Role, User
from core.redemption import service as redemption
from core.redemption.schemas import OfferIn, RedeemIn
from core.tipping import service as tipping
from core.tipping.schemas import TipIn
from tests.conftest import needs_postgres
from tests.core.tipping.helpers import age
from tests.factories import add_member, community_chip, fund, make_community, make_user

pytestmark = needs_postgres()
ROUNDS = 12


def test_instant_trials_tips_and_mints_on_one_wallet(committed_engine: Engine) -> None:
    with session_scope(committed_engine) as s:
        owner = make_user(s)
        community = make_community(s, owner, slug=f"rush-{uuid.uuid4().hex[:8]}")
        member, other = add_member(s, community), add_member(s, community)
        moderator = add_member(s, community, role=Role.MODERATOR)
        for user in (member, other):
            age(s, community, user)
        gold = community_chip(s, community)
        fund(s, gold, member, 1000)
        fund(s, gold, other, 1000)
        offer = redemption.create_offer(
            s,
            Actor(owner),
            community.id,
            OfferIn(
                chip_id=gold.id,
                title="VIP day",
                kind="vip_trial",
                access_ref="vip",
                trial_days=1,
                price=1,
                instant=True,
            ),
        )
        ids = (community.id, owner.id, member.id, other.id, gold.id, offer.id, moderator.id)
    community_id, owner_id, member_id, other_id, gold_id, offer_id, moderator_id = ids

    def actor(s: object, user_id: int) -> Actor:
        user = s.get(User, user_id)  # type: ignore[attr-defined]
        assert user is not None
        return Actor(user)

    def tip(frm: int, to: int) -> Callable[[], None]:
        def go() -> None:
            with session_scope(committed_engine) as s:
                tipping.tip_member(
                    s, actor(s, frm), community_id, to, TipIn(chip_id=gold_id, amount=1), uuid.uuid4().hex
                )

        return go

    def redeem_and_reverse() -> None:
        with session_scope(committed_engine) as s:
            order, _ = redemption.redeem(s, actor(s, member_id), offer_id, RedeemIn(), uuid.uuid4().hex)
        assert order.transaction_id is not None
        with session_scope(committed_engine) as s:
            reason = ReasonIn(reason="refund")
            chips.reverse(s, actor(s, moderator_id), order.transaction_id, reason, uuid.uuid4().hex)

    def mint() -> None:
        with session_scope(committed_engine) as s:
            chips.mint(
                s, actor(s, owner_id), gold_id, MintIn(amount=1, to_user_id=member_id), uuid.uuid4().hex
            )

    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def loop(step: Callable[[], None]) -> None:
        barrier.wait()
        try:
            for _ in range(ROUNDS):
                step()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [
        threading.Thread(target=loop, args=(f,))
        for f in (tip(member_id, other_id), tip(other_id, member_id), redeem_and_reverse, mint)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with session_scope(committed_engine) as s:
        report = ledger.check_invariants(s, community_id)
        assert report.ok, report.problems
        grants = s.scalar(
            select(func.count()).select_from(AccessGrant).where(AccessGrant.user_id == member_id)
        )
        assert grants == ROUNDS
        membership = s.scalar(
            select(Membership).where(Membership.community_id == community_id, Membership.user_id == member_id)
        )
        assert membership is not None and membership.trial_ends_at is not None
        # Every day granted was taken back: the trial is over.
        assert membership.trial_ends_at <= utcnow()
        chip = s.get(Chip, gold_id)
        assert chip is not None
        balance = ledger.open_account(s, chip, member_id).balance
        assert balance == 1000 + ROUNDS  # tips out and in, trials paid and refunded, mints

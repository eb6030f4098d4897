"""Earning against concurrent mints, removals and locks, on PostgreSQL with real threads.

Each test forces its interleaving: a second session holds a wallet's row lock so that
one side stops at a known point while the other runs, then lets go.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core.access import Actor
from core.chips import service as chips
from core.chips.schemas import MintIn
from core.clock import utcnow
from core.db import get_engine, session_scope
from core.earning import service as earning
from core.earning import tasks as earning_tasks
from core.earning.schemas import RuleIn
from core.errors import DomainError
from core.ledger import service as ledger
from core.models import Chip, Community, EarnGrant, EarnTrigger, GrantStatus, LedgerAccount, Post, User
from tests.conftest import needs_postgres
from tests.core.tipping.helpers import channel, community_chip, reply, thread
from tests.factories import add_member, make_chip, make_community, make_user

pytestmark = needs_postgres()
PAUSE = 0.6  # long enough for a thread to reach the lock it waits on


@contextmanager
def holding(engine: Engine, account_id: int) -> Iterator[None]:
    """Hold a row lock on the account until the block ends."""
    with Session(engine) as s:
        s.execute(select(LedgerAccount.id).where(LedgerAccount.id == account_id).with_for_update())
        yield
        s.rollback()


class Worker(threading.Thread):
    def __init__(self, work: Callable[[], object]) -> None:
        super().__init__(daemon=True)
        self.work, self.result, self.error = work, None, None  # type: ignore[var-annotated]

    def run(self) -> None:
        try:
            self.result = self.work()
        except DomainError as exc:
            self.result = exc.code
        except BaseException as exc:
            self.error = exc


def _world(engine: Engine, amount: int, **policy: object) -> dict[str, int]:
    with session_scope(engine) as s:
        owner = make_user(s)
        community = make_community(s, owner, slug=f"earn-{uuid.uuid4().hex[:8]}")
        member = add_member(s, community)
        moderator = add_member(s, community)
        chip = community_chip(s, community)
        for column, value in policy.items():
            setattr(chip, column, value)
        room = channel(s, owner, community)
        earning.create_rule(
            s,
            Actor(owner),
            community.id,
            RuleIn(name="post", trigger=EarnTrigger.POST_CREATED, amount=amount),
        )
        _, post_id = thread(s, member, room)
        wallet = ledger.open_account(s, chip, member.id)
        s.flush()
        return {
            "owner": owner.id,
            "member": member.id,
            "moderator": moderator.id,
            "community": community.id,
            "chip": chip.id,
            "post": post_id,
            "wallet": wallet.id,
        }


def _grant(engine: Engine, post_id: int) -> Callable[[], object]:
    def work() -> object:
        with session_scope(engine) as s:
            return earning.grant(s, "post_created", post_id)

    return work


def test_a_mint_and_an_earn_grant_at_the_cap_cannot_both_pass(committed_engine: Engine) -> None:
    w = _world(committed_engine, 60, supply_cap=100)

    def mint() -> object:
        with session_scope(committed_engine) as s:
            owner = s.get(User, w["owner"])
            assert owner is not None
            return chips.mint(s, Actor(owner), w["chip"], MintIn(amount=60), f"m-{uuid.uuid4().hex}").id

    with holding(committed_engine, w["wallet"]):
        earn = Worker(_grant(committed_engine, w["post"]))
        earn.start()
        time.sleep(PAUSE)  # the grant holds the issuance account, waits for the wallet
        minting = Worker(mint)
        minting.start()
        time.sleep(PAUSE)  # the mint has read (or waits to read) the headroom
    for t in (earn, minting):
        t.join(20)
        assert not t.is_alive() and t.error is None, t.error
    assert earn.result != [] and minting.result == "supply_cap_exceeded"
    with session_scope(committed_engine) as s:
        chip = s.get(Chip, w["chip"])
        assert chip is not None
        assert chips.headroom(s, chip).circulating == 60
        assert ledger.check_invariants(s, w["community"]).ok


def test_a_post_removed_while_its_grant_waits_earns_nothing(committed_engine: Engine) -> None:
    w = _world(committed_engine, 5)
    with holding(committed_engine, w["wallet"]):
        granting = Worker(_grant(committed_engine, w["post"]))
        granting.start()
        time.sleep(PAUSE)  # the job resolved the live post and waits for the wallet
        with session_scope(committed_engine) as s:  # a moderator removes the post
            post = s.get(Post, w["post"])
            assert post is not None
            post.deleted_at, post.deleted_by = utcnow(), w["moderator"]
        # Its clawback job runs first and finds nothing to claw back.
        assert earning.clawback(lambda: session_scope(committed_engine), "post", w["post"]) == []
    granting.join(20)
    assert not granting.is_alive() and granting.error is None, granting.error
    assert granting.result == []
    with session_scope(committed_engine) as s:
        assert s.scalars(select(EarnGrant).where(EarnGrant.subject_id == w["post"])).all() == []
        wallet = s.get(LedgerAccount, w["wallet"])
        assert wallet is not None and wallet.balance == 0


def test_clawback_is_one_unit_of_work_per_grant(committed_engine: Engine) -> None:
    w = _world(committed_engine, 5)
    with session_scope(committed_engine) as s:  # a second rule pays the owner's own chip
        owner = s.get(User, w["owner"])
        member = s.get(User, w["member"])
        assert owner is not None and member is not None
        community = s.get(Community, w["community"])
        assert community is not None
        second = make_chip(s, community, owner)
        earning.create_rule(
            s,
            Actor(owner),
            w["community"],
            RuleIn(name="post too", trigger=EarnTrigger.POST_CREATED, amount=7, chip_id=second.id),
        )
        earning.grant(s, "post_created", w["post"])
        other_wallet = ledger.open_account(s, second, member.id).id
        post = s.get(Post, w["post"])
        assert post is not None
        post.deleted_at, post.deleted_by = utcnow(), w["moderator"]
    try:
        with holding(committed_engine, other_wallet):
            clawing = Worker(lambda: earning_tasks.clawback("post", w["post"]))
            clawing.start()
            time.sleep(PAUSE)  # the first grant is done, the second waits for its wallet
            with session_scope(committed_engine) as s:
                statuses = [
                    g.status
                    for g in s.scalars(
                        select(EarnGrant).where(EarnGrant.subject_id == w["post"]).order_by(EarnGrant.id)
                    )
                ]
            assert statuses == [GrantStatus.CLAWED_BACK, GrantStatus.GRANTED]  # committed already
        clawing.join(20)
        assert not clawing.is_alive() and clawing.error is None, clawing.error
        assert clawing.result == 2
    finally:
        get_engine().dispose()  # the task's own engine
    with session_scope(committed_engine) as s:
        for wallet_id in (w["wallet"], other_wallet):
            wallet = s.get(LedgerAccount, wallet_id)
            assert wallet is not None and wallet.balance == 0
        assert ledger.check_invariants(s, w["community"]).ok


@pytest.fixture(autouse=True)
def _no_stray_threads() -> Iterator[None]:
    yield
    assert all(not t.is_alive() for t in threading.enumerate() if isinstance(t, Worker))


def test_grants_paying_the_same_chips_in_opposite_orders_do_not_deadlock(committed_engine: Engine) -> None:
    """A post pays chip A then B, a reply pays B then A: the grants lock all their accounts at once.

    The holder stops the post's grant after it took A's issuance account; the reply's grant
    then takes B's. Paying rule after rule, each would next need what the other holds.
    """
    with session_scope(committed_engine) as s:
        owner = make_user(s)
        community = make_community(s, owner, slug=f"earn-{uuid.uuid4().hex[:8]}")
        poster, receiver, replier = (add_member(s, community) for _ in range(3))
        chip_a = community_chip(s, community)
        chip_b = make_chip(s, community, owner, symbol=f"B{uuid.uuid4().hex[:6].upper()}")
        admin = Actor(owner)
        for trigger, chips_in_order in (
            (EarnTrigger.POST_CREATED, (chip_a, chip_b)),
            (EarnTrigger.REPLY_RECEIVED, (chip_b, chip_a)),
        ):
            for chip in chips_in_order:
                rule = RuleIn(
                    name=f"{trigger.value} {chip.symbol}", trigger=trigger, amount=3, chip_id=chip.id
                )
                earning.create_rule(s, admin, community.id, rule)
        room = channel(s, owner, community)
        _, post_id = thread(s, poster, room)
        receiver_thread, _ = thread(s, receiver, room)
        reply_id = reply(s, replier, receiver_thread)
        poster_a = ledger.open_account(s, chip_a, poster.id).id
        chip_ids, community_id = (chip_a.id, chip_b.id), community.id
        people = (poster.id, receiver.id)

    def granting(trigger: str, post: int) -> Callable[[], object]:
        def work() -> object:
            with session_scope(committed_engine) as s:
                return earning.grant(s, trigger, post)

        return work

    with holding(committed_engine, poster_a):
        posted = Worker(granting("post_created", post_id))
        posted.start()
        time.sleep(PAUSE)  # holds A's issuance account, waits for the poster's A wallet
        replied = Worker(granting("reply_received", reply_id))
        replied.start()
        time.sleep(PAUSE)
    for t in (posted, replied):
        t.join(20)
        assert not t.is_alive() and t.error is None, t.error
        assert isinstance(t.result, list) and len(t.result) == 2
    with session_scope(committed_engine) as s:
        for person in people:
            for chip_id in chip_ids:
                chip = s.get(Chip, chip_id)
                assert chip is not None
                assert ledger.open_account(s, chip, person).balance == 3
        assert ledger.check_invariants(s, community_id).ok

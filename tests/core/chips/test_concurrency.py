"""Concurrent mints never pass the cap; concurrent retries mint once; one chip per issuer."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

from sqlalchemy import Engine, func, select

from core.access import Actor
from core.chips import service as chips
from core.chips.schemas import ChipIn, MintIn
from core.communities import service as communities
from core.communities.schemas import CommunityIn
from core.db import session_scope
from core.errors import DomainError
from core.ledger import service as ledger
from core.models import Chip, LedgerTransaction, User
from tests.factories import make_user


def race(n: int, work: Callable[[int], object]) -> list[object]:
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except DomainError as exc:
            results[i] = exc.code

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _issuer_with_chip(engine: Engine, **policy: object) -> tuple[int, int, int]:
    tag = uuid.uuid4().hex[:8]
    with session_scope(engine) as s:
        issuer = make_user(s)
        community = communities.create_community(
            s, Actor(issuer), CommunityIn(slug=f"mint-{tag}", name="Mint race")
        )
        chip = chips.issue_chip(
            s,
            Actor(issuer),
            community.id,
            ChipIn.model_validate({"name": "Race", "symbol": "RACE", **policy}),
        )
        return issuer.id, community.id, chip.id


def _mint(engine: Engine, user_id: int, chip_id: int, amount: int, key: str) -> object:
    with session_scope(engine) as s:
        user = s.get(User, user_id)
        assert user is not None
        return chips.mint(s, Actor(user), chip_id, MintIn(amount=amount), key).id


def test_concurrent_mints_stop_exactly_at_the_cap(committed_engine: Engine) -> None:
    issuer_id, community_id, chip_id = _issuer_with_chip(committed_engine, supply_cap=50)
    results = race(12, lambda i: _mint(committed_engine, issuer_id, chip_id, 10, f"cap-{i}"))
    assert sum(isinstance(r, int) for r in results) == 5
    assert sorted(r for r in results if isinstance(r, str)) == ["supply_cap_exceeded"] * 7
    with session_scope(committed_engine) as s:
        chip = s.get(Chip, chip_id)
        assert chip is not None
        assert chips.headroom(s, chip).circulating == 50
        assert ledger.check_invariants(s, community_id).ok


def test_concurrent_retries_of_one_mint_mint_once(committed_engine: Engine) -> None:
    issuer_id, _, chip_id = _issuer_with_chip(committed_engine, emission_limit=100)
    key = f"same-{uuid.uuid4().hex}"
    results = race(6, lambda i: _mint(committed_engine, issuer_id, chip_id, 60, key))
    assert len(set(results)) == 1 and isinstance(results[0], int)
    with session_scope(committed_engine) as s:
        minted = s.scalar(
            select(func.count()).select_from(LedgerTransaction).where(LedgerTransaction.subject_id == chip_id)
        )
    assert minted == 1


def test_a_member_issues_one_chip_however_many_requests(committed_engine: Engine) -> None:
    tag = uuid.uuid4().hex[:8]
    with session_scope(committed_engine) as s:
        owner = make_user(s)
        community = communities.create_community(
            s, Actor(owner), CommunityIn(slug=f"iss-{tag}", name="Issue race")
        )
        owner_id, community_id = owner.id, community.id

    def issue(i: int) -> object:
        with session_scope(committed_engine) as s:
            user = s.get(User, owner_id)
            assert user is not None
            return chips.issue_chip(s, Actor(user), community_id, ChipIn(name="Mine", symbol=f"MINE{i}")).id

    results = race(5, issue)
    assert sum(isinstance(r, int) for r in results) == 1
    assert sorted(r for r in results if isinstance(r, str)) == ["chip_already_issued"] * 4

"""Review fixes: one reversal per grant (clawback vs moderator), shared mint/earn policy."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import jobs
from core.access import Actor
from core.chips import service as chips
from core.chips.schemas import MintIn, ReasonIn
from core.conversation import service as conversation
from core.earning import service as earning
from core.earning.schemas import RuleIn
from core.errors import DomainError
from core.models import EarnGrant, EarnTrigger, GrantStatus, LedgerTransaction, Role, TxKind
from tests.core.tipping.helpers import (
    accounts_ok,
    balance,
    channel,
    commit_and_run,
    community_chip,
    issuance_balance,
    thread,
)
from tests.factories import add_member, fund, make_community, make_user

GRANT = "hearth.earning.grant"
CLAWBACK = "hearth.earning.clawback"


def _world(session: Session, amount: int = 50):  # type: ignore[no-untyped-def]
    owner = make_user(session)
    community = make_community(session, owner)
    member = add_member(session, community)
    moderator = add_member(session, community, role=Role.MODERATOR)
    chip = community_chip(session, community)
    room = channel(session, owner, community)
    earning.create_rule(
        session,
        Actor(owner),
        community.id,
        RuleIn(name="post reward", trigger=EarnTrigger.POST_CREATED, amount=amount),
    )
    return community, owner, member, moderator, chip, room


def _grant(session: Session, member) -> EarnGrant:  # type: ignore[no-untyped-def]
    row = session.scalar(select(EarnGrant).where(EarnGrant.user_id == member.id))
    assert row is not None
    session.refresh(row)
    return row


def test_a_grant_reversed_by_a_moderator_is_not_clawed_back_again(
    session: Session, recorded_jobs: list[jobs.Job]
) -> None:
    _community, _owner, member, moderator, chip, room = _world(session)
    fund(session, chip, member, 100)
    _, post_id = thread(session, member, room)
    commit_and_run(session, recorded_jobs, GRANT)
    assert balance(session, chip, member) == 150
    grant = _grant(session, member)
    reversal = chips.reverse(
        session, Actor(moderator), grant.transaction_id, ReasonIn(reason="spam"), "rev-grant"
    )
    assert balance(session, chip, member) == 100
    conversation.delete_post(session, Actor(moderator), post_id)
    commit_and_run(session, recorded_jobs, CLAWBACK)
    assert balance(session, chip, member) == 100  # not 50: the grant came back once
    grant = _grant(session, member)
    assert grant.status == GrantStatus.CLAWED_BACK
    assert (grant.clawed_back_amount, grant.shortfall) == (0, 0)
    assert grant.clawback_transaction_id == reversal.id
    assert earning.clawback(session, "post", post_id) == []
    assert issuance_balance(session, chip) == -100
    accounts_ok(session)


@pytest.mark.parametrize("spent", [0, 20])
def test_a_clawed_back_grant_cannot_be_reversed_by_a_moderator(
    session: Session, recorded_jobs: list[jobs.Job], spent: int
) -> None:
    _community, owner, member, moderator, chip, room = _world(session)
    _, post_id = thread(session, member, room)
    commit_and_run(session, recorded_jobs, GRANT)
    if spent:  # a partial clawback (shortfall) reverses the grant all the same
        chips.transfer(session, Actor(member), chip.id, _transfer(owner.id, spent), "spend")
    conversation.delete_post(session, Actor(moderator), post_id)
    commit_and_run(session, recorded_jobs, CLAWBACK)
    grant = _grant(session, member)
    assert (grant.status, grant.clawed_back_amount, grant.shortfall) == (
        GrantStatus.CLAWED_BACK,
        50 - spent,
        spent,
    )
    clawback = session.get(LedgerTransaction, grant.clawback_transaction_id)
    assert clawback is not None and clawback.kind == TxKind.CLAWBACK
    assert clawback.reverses_id == grant.transaction_id
    assert balance(session, chip, member) == 0
    with pytest.raises(DomainError) as refused:
        chips.reverse(session, Actor(moderator), grant.transaction_id, ReasonIn(reason="spam"), "rev-late")
    assert refused.value.code == "already_reversed"
    assert balance(session, chip, member) == 0
    assert balance(session, chip, owner) == spent
    accounts_ok(session)


def _transfer(to_user_id: int, amount: int):  # type: ignore[no-untyped-def]
    from core.chips.schemas import TransferIn

    return TransferIn(to_user_id=to_user_id, amount=amount)


def test_mints_count_earn_grants_against_the_emission_limit(
    session: Session, recorded_jobs: list[jobs.Job]
) -> None:
    _community, owner, member, _moderator, chip, room = _world(session, amount=60)
    chip.emission_limit = 100
    session.flush()
    thread(session, member, room)
    commit_and_run(session, recorded_jobs, GRANT)
    assert balance(session, chip, member) == 60
    room_now = chips.headroom(session, chip)
    assert (room_now.minted, room_now.mintable) == (60, 40)
    with pytest.raises(DomainError) as refused:
        chips.mint(session, Actor(owner), chip.id, MintIn(amount=60), "over")
    assert refused.value.code == "emission_limit_exceeded"
    assert chips.mint(session, Actor(owner), chip.id, MintIn(amount=40), "fits").kind == TxKind.MINT
    # ... and earning counts the mints: the period is used up.
    thread(session, member, room)
    commit_and_run(session, recorded_jobs, GRANT)
    assert balance(session, chip, member) == 60
    accounts_ok(session)

"""Every community has its community chip: made with it, on first need, or by migration 0009."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session

from core.access import Actor
from core.chips.community import ensure_community_chip
from core.db import make_engine
from core.earning import service as earning
from core.earning.schemas import RuleIn
from core.migrate import downgrade, upgrade
from core.models import AccountKind, Chip, ChipKind, Community, EarnTrigger, LedgerAccount
from tests.conftest import needs_postgres
from tests.factories import add_member, issue_chip, make_community, make_user


def _strip_chip(session: Session, community: Community) -> None:
    """Make the community look like one created before the chip economy: no community chip."""
    chip_ids = select(Chip.id).where(Chip.community_id == community.id, Chip.kind == ChipKind.COMMUNITY)
    session.execute(delete(LedgerAccount).where(LedgerAccount.chip_id.in_(chip_ids)))
    session.execute(delete(Chip).where(Chip.community_id == community.id, Chip.kind == ChipKind.COMMUNITY))
    session.flush()
    session.expire_all()


def _community_chips(session: Session, community_id: int) -> list[Chip]:
    return list(
        session.scalars(
            select(Chip).where(Chip.community_id == community_id, Chip.kind == ChipKind.COMMUNITY)
        )
    )


def test_a_community_without_its_chip_gets_one_on_first_need(session: Session) -> None:
    owner = make_user(session)
    community = make_community(session, owner, slug="old-town")
    member = add_member(session, community)
    _strip_chip(session, community)
    issue_chip(session, community, member, symbol="OLDTOWN")  # a member took the slug's symbol
    # An admin's earning rule for "the community chip" no longer fails with no_community_chip.
    rule = earning.create_rule(
        session,
        Actor(owner),
        community.id,
        RuleIn(name="posting", trigger=EarnTrigger.POST_CREATED, amount=1),
    )
    [chip] = _community_chips(session, community.id)
    assert rule.chip_id == chip.id and chip.issuer_id is None
    assert chip.symbol == "OLDTOWN2" and chip.name == community.name
    issuance = session.scalars(select(LedgerAccount).where(LedgerAccount.chip_id == chip.id)).all()
    assert [(a.kind, a.balance) for a in issuance] == [(AccountKind.ISSUANCE, 0)]
    assert ensure_community_chip(session, community).id == chip.id  # idempotent


@needs_postgres()
def test_two_requests_making_the_chip_at_once_make_one(committed_engine: Engine) -> None:
    with Session(committed_engine, expire_on_commit=False) as s:
        community = make_community(s, make_user(s), slug=f"race-{uuid.uuid4().hex[:8]}")
        _strip_chip(s, community)
        s.commit()
        community_id = community.id
    barrier = threading.Barrier(2)
    made: list[int] = []
    errors: list[BaseException] = []

    def make() -> None:
        try:
            with Session(committed_engine) as s:
                mine = s.get(Community, community_id)
                assert mine is not None
                barrier.wait()
                chip_id = ensure_community_chip(s, mine).id
                time.sleep(0.2)  # hold the insert open while the other one tries
                s.commit()
                made.append(chip_id)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=make) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Session(committed_engine) as s:
        chips = _community_chips(s, community_id)
        assert len(chips) == 1 and made == [chips[0].id] * 2
        accounts = s.scalar(
            select(func.count()).select_from(LedgerAccount).where(LedgerAccount.chip_id == chips[0].id)
        )
        assert accounts == 1


def test_migration_0009_backfills_community_chips(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'backfill.db'}"
    upgrade(url)
    engine = make_engine(url)
    with Session(engine, expire_on_commit=False) as s:
        owner = make_user(s)
        old = make_community(s, owner, slug="old-town")
        member = add_member(s, old)
        _strip_chip(s, old)
        issue_chip(s, old, member, symbol="OLDTOWN")
        fresh = make_community(s, owner, slug="new-town")
        s.commit()
        fresh_chip = _community_chips(s, fresh.id)[0].id
    downgrade(url, revision="0006")
    upgrade(url)
    with Session(engine) as s:
        [chip] = _community_chips(s, old.id)
        assert (chip.symbol, chip.name, chip.issuer_id, chip.tippable) == ("OLDTOWN2", old.name, None, True)
        kinds = s.scalars(select(LedgerAccount.kind).where(LedgerAccount.chip_id == chip.id)).all()
        assert kinds == [AccountKind.ISSUANCE]
        assert [c.id for c in _community_chips(s, fresh.id)] == [fresh_chip]  # untouched
    engine.dispose()

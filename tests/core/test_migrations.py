"""The schema comes from the migrations, and the migrations match the models."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.orm import Session

from core.access import Actor
from core.db import make_engine
from core.errors import Conflict
from core.migrate import downgrade, upgrade
from core.models import Base, RedemptionOrder, Tip
from core.models.ledger import schema_filter
from core.redemption import service as redemption
from core.redemption.schemas import OfferIn, RedeemIn
from core.tipping import service as tipping
from core.tipping.schemas import TipIn
from tests.conftest import IS_POSTGRES, needs_postgres
from tests.factories import add_member, community_chip, fund, make_community, make_user


def _roundtrip(url: str) -> None:
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        assert set(Base.metadata.tables) <= set(inspect(conn).get_table_names())
        context = MigrationContext.configure(conn, opts={"include_object": schema_filter(conn.dialect.name)})
        diff = compare_metadata(context, Base.metadata)
        assert diff == [], f"models and migrations differ: {diff}"
    downgrade(url)
    with engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
    upgrade(url)
    engine.dispose()


_KEPT = ("redemption_offers", "redemption_orders", "memberships", "tips", "chips", "ledger_postings")


def _counts(url: str) -> dict[str, int]:
    engine = make_engine(url)
    with engine.connect() as conn:
        counts = {t: int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in _KEPT}
    engine.dispose()
    return counts


def _roundtrip_0009_with_data(url: str) -> None:
    """0009 down and up again with offers, orders (pending and fulfilled, with an access
    grant), memberships (one on a trial) and tips in the database: nothing is lost."""
    upgrade(url)
    engine = make_engine(url)
    with Session(engine, expire_on_commit=False) as s:
        owner = make_user(s)
        community = make_community(s, owner)
        member = add_member(s, community)
        chip = community_chip(s, community)
        fund(s, chip, member, 100)
        poster = OfferIn(chip_id=chip.id, title="poster", kind="goods", price=5)
        trial = OfferIn(
            chip_id=chip.id, title="VIP week", kind="vip_trial", access_ref="vip", trial_days=7, price=5
        )
        goods = redemption.create_offer(s, Actor(owner), community.id, poster)
        vip = redemption.create_offer(s, Actor(owner), community.id, trial)
        redemption.redeem(s, Actor(member), goods.id, RedeemIn(), "pending")
        pending_vip, _ = redemption.redeem(s, Actor(member), vip.id, RedeemIn(), "vip-pending")
        fulfilled, _ = redemption.redeem(s, Actor(member), vip.id, RedeemIn(), "vip")
        redemption.fulfil_order(s, Actor(owner), fulfilled.id)
        tipping.tip_member(s, Actor(member), community.id, owner.id, TipIn(chip_id=chip.id, amount=3), "tip")
        s.commit()
    engine.dispose()
    before = _counts(url)
    downgrade(url, revision="0008")
    assert _counts(url) == before
    upgrade(url)
    assert _counts(url) == before
    engine = make_engine(url)
    with Session(engine) as s:
        order = s.get(RedemptionOrder, pending_vip.id)
        assert order is not None and order.access_ref == "vip"  # the offer's terms, copied
        # Tips made before 0009 ran their own detection: the first sweep has nothing to rewrite.
        assert s.scalars(select(Tip.ring_scanned)).all() == [True]
        # A trial length did not exist before 0009: the order placed then is refused clearly
        # at fulfilment (and can be cancelled, which returns the chips).
        with pytest.raises(Conflict) as refused:
            redemption.fulfil_order(s, Actor(owner), pending_vip.id)
        assert refused.value.code == "offer_misconfigured"
    engine.dispose()


def test_sqlite_migrates_from_empty_down_and_up(tmp_path: Path) -> None:
    _roundtrip(f"sqlite:///{tmp_path / 'm.db'}")


def test_sqlite_migrates_0009_down_and_up_with_data(tmp_path: Path) -> None:
    _roundtrip_0009_with_data(f"sqlite:///{tmp_path / 'data.db'}")


def _scratch_postgres() -> tuple[str, Callable[[], None]]:
    admin = make_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT")
    name = f"hearth_mig_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()

    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", drop


@needs_postgres()
def test_postgres_migrates_from_empty_down_and_up() -> None:
    url, drop = _scratch_postgres()
    try:
        _roundtrip(url)
    finally:
        drop()


@needs_postgres()
def test_postgres_migrates_0009_down_and_up_with_data() -> None:
    url, drop = _scratch_postgres()
    try:
        _roundtrip_0009_with_data(url)
    finally:
        drop()


def test_suite_runs_on_the_configured_backend(engine) -> None:  # type: ignore[no-untyped-def]
    """CI's second pass must really be on PostgreSQL, not silently on SQLite."""
    assert engine.dialect.name == ("postgresql" if IS_POSTGRES else "sqlite")

"""Access bought with chips (tier trials, course seats), the community-chip backfill, and the
ring-detection queue.

- `access_grants`: what each fulfilled access order granted; `memberships.trial_tier_id` and
  `trial_ends_at`: the running tier trial; `redemption_offers.trial_days` and `instant`;
  `redemption_orders.access_ref` and `trial_days`: an order's access terms as paid (existing
  orders take their offer's, as it stands).
- every community created before the chip economy gets its community chip (and the chip's
  issuance account), as `core.chips.community.ensure_community_chip` would make it.
- `tips.ring_scanned`: tips no ring detection has examined yet. Existing tips are marked
  scanned (the detection each tip ran when it was made examined them), so the first sweep
  does not rewrite the whole table.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("memberships") as batch:
        batch.add_column(sa.Column("trial_tier_id", BigId, nullable=True))
        batch.add_column(sa.Column("trial_ends_at", UTC, nullable=True))
        batch.create_foreign_key("fk_memberships_trial_tier_id_tiers", "tiers", ["trial_tier_id"], ["id"])
    with op.batch_alter_table("redemption_offers") as batch:
        batch.add_column(sa.Column("trial_days", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("instant", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.create_check_constraint(
            op.f("ck_redemption_offers_trial_days_positive"), "trial_days IS NULL OR trial_days > 0"
        )
    with op.batch_alter_table("redemption_orders") as batch:
        batch.add_column(sa.Column("access_ref", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("trial_days", sa.Integer(), nullable=True))
    _copy_access_terms_onto_orders()
    op.create_table(
        "access_grants",
        sa.Column("community_id", BigId, nullable=False),
        sa.Column("order_id", BigId, nullable=False),
        sa.Column("user_id", BigId, nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "tier_trial",
                "course_seat",
                name="grant_kind",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("tier_id", BigId, nullable=True),
        sa.Column("course_id", BigId, nullable=True),
        sa.Column("seconds", sa.Integer(), nullable=True),
        sa.Column("ends_at", UTC, nullable=True),
        sa.Column("revoked_at", UTC, nullable=True),
        sa.Column("revoked_by", BigId, nullable=True),
        sa.Column("id", BigId, nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.CheckConstraint(
            "(kind = 'tier_trial' AND tier_id IS NOT NULL AND seconds > 0 AND course_id IS NULL)"
            " OR (kind = 'course_seat' AND course_id IS NOT NULL AND tier_id IS NULL AND seconds IS NULL)",
            name=op.f("ck_access_grants_target_matches_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["community_id"],
            ["communities.id"],
            name=op.f("fk_access_grants_community_id_communities"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["course_id"], ["courses.id"], name=op.f("fk_access_grants_course_id_courses"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["redemption_orders.id"], name=op.f("fk_access_grants_order_id_redemption_orders")
        ),
        sa.ForeignKeyConstraint(["revoked_by"], ["users.id"], name=op.f("fk_access_grants_revoked_by_users")),
        sa.ForeignKeyConstraint(["tier_id"], ["tiers.id"], name=op.f("fk_access_grants_tier_id_tiers")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_access_grants_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_grants")),
        sa.UniqueConstraint("order_id", name=op.f("uq_access_grants_order_id")),
    )
    with op.batch_alter_table("access_grants") as batch:
        batch.create_index(batch.f("ix_access_grants_community_id"), ["community_id"], unique=False)
        batch.create_index(batch.f("ix_access_grants_user_id"), ["user_id"], unique=False)
        batch.create_index(
            "uq_access_grants_live_seat",
            ["course_id", "user_id"],
            unique=True,
            sqlite_where=sa.text("revoked_at IS NULL AND kind = 'course_seat'"),
            postgresql_where=sa.text("revoked_at IS NULL AND kind = 'course_seat'"),
        )
    _add_ring_scanned()
    with op.batch_alter_table("tips") as batch:
        batch.create_index(
            "ix_tips_ring_unscanned",
            ["community_id"],
            unique=False,
            sqlite_where=sa.text("NOT ring_scanned"),
            postgresql_where=sa.text("NOT ring_scanned"),
        )
    _backfill_community_chips()


def _copy_access_terms_onto_orders() -> None:
    """Orders placed before the terms were copied take their offer's, as it stands now."""
    orders = sa.table("redemption_orders", sa.column("offer_id"), sa.column("access_ref"))
    offers = sa.table("redemption_offers", sa.column("id"), sa.column("access_ref"))
    op.execute(
        orders.update().values(
            access_ref=sa.select(offers.c.access_ref).where(offers.c.id == orders.c.offer_id).scalar_subquery()
        )
    )


def _add_ring_scanned() -> None:
    """`tips.ring_scanned`: true for the tips there are (a tip ran its own detection until
    now), false by default for new ones."""
    if op.get_bind().dialect.name == "postgresql":
        # A constant default fills existing rows without rewriting the table; changing the
        # default afterwards touches only the catalogue.
        op.add_column("tips", sa.Column("ring_scanned", sa.Boolean(), server_default=sa.true(), nullable=False))
        op.alter_column("tips", "ring_scanned", server_default=sa.false())
        return
    with op.batch_alter_table("tips") as batch:
        batch.add_column(sa.Column("ring_scanned", sa.Boolean(), server_default=sa.false(), nullable=False))
    tips = sa.table("tips", sa.column("ring_scanned", sa.Boolean()))
    op.execute(tips.update().values(ring_scanned=True))


def _backfill_community_chips() -> None:
    """A community chip (and its issuance account) for every community without one.

    The same shape `ensure_community_chip` gives it; a symbol a member's chip already took
    gets a number, as there.
    """
    bind = op.get_bind()
    communities = sa.table(
        "communities", sa.column("id", sa.BigInteger), sa.column("slug", sa.String), sa.column("name")
    )
    chips = sa.table(
        "chips",
        *(sa.column(name) for name in ("id", "community_id", "kind", "issuer_id", "name", "symbol")),
        *(sa.column(name) for name in ("description", "emission_period", "decay_bps")),
        *(sa.column(name) for name in ("transferable", "tippable", "redeemable", "tradable", "frozen")),
        sa.column("expired"),
        sa.column("created_at", UTC),
    )
    accounts = sa.table(
        "ledger_accounts",
        *(sa.column(name) for name in ("community_id", "chip_id", "kind", "balance", "held", "seq")),
        *(sa.column(name) for name in ("head_hash", "frozen")),
        sa.column("created_at", UTC),
    )
    has_chip = sa.select(chips.c.id).where(
        chips.c.community_id == communities.c.id, chips.c.kind == "community"
    )
    missing = bind.execute(
        sa.select(communities.c.id, communities.c.slug, communities.c.name).where(~has_chip.exists())
    ).all()
    now = sa.func.current_timestamp()
    for community_id, slug, name in missing:
        taken = {
            str(s).upper()
            for s in bind.scalars(sa.select(chips.c.symbol).where(chips.c.community_id == community_id))
        }
        base = re.sub(r"[^A-Z0-9]", "", str(slug).upper())[:12] or "POINTS"
        symbol, n = base, 1
        while symbol in taken:
            n += 1
            symbol = f"{base[: 12 - len(str(n))]}{n}"
        chip_id = bind.execute(
            sa.insert(chips)
            .values(
                community_id=community_id,
                kind="community",
                issuer_id=None,
                name=str(name)[:60],
                symbol=symbol,
                description="",
                emission_period="day",
                decay_bps=0,
                transferable=True,
                tippable=True,
                redeemable=True,
                tradable=True,
                frozen=False,
                expired=False,
                created_at=now,
            )
            .returning(chips.c.id)
        ).scalar_one()
        bind.execute(
            sa.insert(accounts).values(
                community_id=community_id,
                chip_id=chip_id,
                kind="issuance",
                balance=0,
                held=0,
                seq=0,
                head_hash="0" * 64,
                frozen=False,
                created_at=now,
            )
        )


def downgrade() -> None:
    # Backfilled community chips stay: they may hold postings by now.
    with op.batch_alter_table("tips") as batch:
        batch.drop_index(
            "ix_tips_ring_unscanned",
            sqlite_where=sa.text("NOT ring_scanned"),
            postgresql_where=sa.text("NOT ring_scanned"),
        )
        batch.drop_column("ring_scanned")
    op.drop_table("access_grants")
    with op.batch_alter_table("redemption_orders") as batch:
        batch.drop_column("trial_days")
        batch.drop_column("access_ref")
    with op.batch_alter_table("redemption_offers") as batch:
        batch.drop_constraint(op.f("ck_redemption_offers_trial_days_positive"), type_="check")
        batch.drop_column("instant")
        batch.drop_column("trial_days")
    with op.batch_alter_table("memberships") as batch:
        batch.drop_constraint("fk_memberships_trial_tier_id_tiers", type_="foreignkey")
        batch.drop_column("trial_ends_at")
        batch.drop_column("trial_tier_id")

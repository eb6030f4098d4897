"""Indexes for two trading lookups that read a member's or the pair's whole history.

- `ix_trade_orders_open_user` (partial, open orders): the daily-limit check sums a
  member's open orders on the pair; through `ix_trade_orders_user` it read every order
  the member had ever placed, on any pair.
- `ix_trades_sell_order`: an order's trades are found by either side; the buy side had
  the (buy_order_id, sell_order_id) unique index, the sell side none, so answering a
  retried placement scanned every trade.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trade_orders", schema=None) as batch_op:
        batch_op.create_index(
            "ix_trade_orders_open_user",
            ["pair_id", "user_id"],
            unique=False,
            sqlite_where=sa.text("status = 'open'"),
            postgresql_where=sa.text("status = 'open'"),
        )
    with op.batch_alter_table("trades", schema=None) as batch_op:
        batch_op.create_index("ix_trades_sell_order", ["sell_order_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("trades", schema=None) as batch_op:
        batch_op.drop_index("ix_trades_sell_order")
    with op.batch_alter_table("trade_orders", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_trade_orders_open_user",
            sqlite_where=sa.text("status = 'open'"),
            postgresql_where=sa.text("status = 'open'"),
        )

"""A wallet-wide freeze that also covers accounts opened after it.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("memberships") as batch:
        batch.add_column(sa.Column("wallet_frozen", sa.Boolean(), server_default=sa.false(), nullable=False))
    # Accounts frozen before this release stay frozen; no wallet is marked frozen as a whole
    # because a single frozen account cannot tell a wallet freeze from a one-chip freeze.


def downgrade() -> None:
    with op.batch_alter_table("memberships") as batch:
        batch.drop_column("wallet_frozen")

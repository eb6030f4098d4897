"""PostgreSQL: the ledger's functions never JIT-compile their statements.

PostgreSQL compiles a statement with LLVM when its planned cost passes `jit_above_cost`
(100,000 by default). The ledger's functions plan their statements once, generically
(`plan_cache_mode = force_generic_plan`, migrations 0002, 0007 and 0010), and a generic
plan estimates a range such as `transaction_id BETWEEN NEW.id AND v_last` from the
table's size alone: as the ledger grows, the estimate grows with it. At about 1.2 million
transactions the commit-time check of a batch (`hearth_check_balanced`, one query over
the batch's postings) crossed the threshold, and from then on every batch's COMMIT spent
about 15 ms compiling 39 functions for a query that runs in about 6 ms (`auto_explain`:
"JIT: Functions: 39 ... Emission 13.130 ms, Total 15.058 ms"). Measured with a scratch
script, one client, batches of 1,000: the checks went from 24.6 to 7.9 ms per batch, the
whole batch from 82 to 66 ms, with `ALTER FUNCTION ... SET jit = off` on that database
alone. Short transactional statements gain nothing from JIT at any size, so every ledger
function opts out, whatever the server's `jit` setting.

SQLite has no JIT: nothing to do there.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels = None
depends_on = None

# Every PL/pgSQL function of the ledger's migrations that queries tables on the write path
# (each name is unique, so no argument list is needed). A later migration that redefines one
# with CREATE OR REPLACE replaces its whole settings list: it must repeat `SET jit = off` (and
# `plan_cache_mode` where the function has it); tests/core/ledger/test_database_guards.py checks.
FUNCTIONS = ("hearth_check_balanced", "hearth_postings_have_transactions", "hearth_post", "hearth_post_many")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for function in FUNCTIONS:
            op.execute(f"ALTER FUNCTION {function} SET jit = off")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for function in FUNCTIONS:
            op.execute(f"ALTER FUNCTION {function} RESET jit")

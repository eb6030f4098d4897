"""PostgreSQL: the postings' two foreign keys become set-based checks.

A posting had two foreign keys: `(transaction_id, legs)` to its transaction (deferred)
and `(account_id, chip_id)` to its account. PostgreSQL checks a foreign key row by row:
each posting costs two lookups that also lock the referenced row (`FOR KEY SHARE`), so
a batch of 1,000 transfers ran 4,000 of them, and its concurrent writers queued on the
same lock tuples. Measured with the ledger bench's batch scenario alone (batches of 1,000,
4 clients, a new database each run; what `hearth bench ledger --scenarios batch` runs, with
the constraints dropped by hand for the comparison, runs interleaved): 24,443 and 24,674
transfers/s with the foreign keys, 31,512 and 31,760 without them (33,471 / 33,565 also
without `uq_ledger_transactions_id_legs`, which existed only as the first key's target).

The same guarantees, set-based:

- **A posting's account exists, holds the posting's chip and belongs to the
  transaction's community, and the posting declares its transaction's leg count.** The
  commit-time check (`hearth_check_balanced`, migrations 0002 and 0008) already looked
  each leg's account up by primary key to compare communities; it now compares the
  chip and the leg count in the same lookup, and a missing account fails it too.
- **No posting without its transaction** (the orphan): a statement-level trigger on
  `ledger_postings` checks the statement's new rows (a transition table) against
  `ledger_transactions` in one join at the end of the statement. Every writer inserts a
  transaction before (or in the same statement as) its postings: `hearth_post`,
  `hearth_post_many` and the batch statement. Postings are append-only, so no later
  statement can re-point one.
- **An account with postings is never deleted or re-keyed** (what the foreign key's
  `RESTRICT` did): a row trigger on `ledger_accounts`, fired only by a DELETE or an
  UPDATE naming `id`, `chip_id` or `community_id` (never by the balance updates), and
  a statement trigger refusing TRUNCATE while any posting exists.

SQLite keeps the foreign keys (the models declare them): it has no deferred triggers,
and its writes are one writer at a time, so there is nothing to gain. The constraint
names replaced here are `core.models.ledger.POSTGRES_SET_BASED`, which the schema
comparison (the migrations test, autogenerate) skips on PostgreSQL.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels = None
depends_on = None

# The commit-time check of migration 0008 with the account lookup widened: a leg is bad
# if its account is missing, holds another chip, belongs to another community, or the
# posting declares another leg count than its transaction.
#
# Its queries run with generic plans (as `hearth_post_many`'s do). Once the ledger tables have
# statistics (autovacuum's ANALYZE), PL/pgSQL's plan cache judged a custom plan of the run
# check cheaper and planned it afresh at every COMMIT (~0.6 ms of planning for a query that
# runs in ~0.1): scratch runs of the bench's single-transfer scenarios after
# `ANALYZE ledger_transactions, ledger_postings`, 8 client threads of one process, went from
# 2,709 / 2,717 (uniform) and 2,679 / 2,772 (hot) to 2,857 / 2,803 and 3,043 / 2,996 transfers/s
# with the setting (runs interleaved); batches of 1,000 were unchanged (30,518 / 30,371 with,
# 30,250 / 29,751 without). The generic plans probe the indexes for any range of ids.
CHECK_BALANCED = """
CREATE OR REPLACE FUNCTION hearth_check_balanced() RETURNS trigger LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_memo text := current_setting('hearth.ledger_checked', true);
    v_hint text := current_setting('hearth.ledger_batch', true);
    v_last bigint;
    v_count bigint;
    v_chip bigint;
    v_bad_leg boolean;
    v_bad record;
BEGIN
    -- Validated already, with the run this row belongs to (see migration 0008).
    -- (Nested IFs: SQL does not promise to stop at the first false operand of an AND.)
    IF v_memo LIKE '%:%:%' THEN
        IF split_part(v_memo, ':', 1) = pg_current_xact_id()::text THEN
            IF NEW.id BETWEEN split_part(v_memo, ':', 2)::bigint AND split_part(v_memo, ':', 3)::bigint THEN
                RETURN NULL;
            END IF;
        END IF;
    END IF;
    IF v_hint LIKE '%:%' THEN
        IF NEW.id >= split_part(v_hint, ':', 1)::bigint AND NEW.id < split_part(v_hint, ':', 2)::bigint THEN
            v_last := split_part(v_hint, ':', 2)::bigint;
            SELECT count(*) INTO v_count FROM ledger_transactions WHERE id BETWEEN NEW.id AND v_last;
            IF v_count <> v_last - NEW.id + 1 THEN
                SELECT max(r.id) INTO v_last
                FROM (SELECT id, id - row_number() OVER (ORDER BY id) AS base
                      FROM ledger_transactions WHERE id BETWEEN NEW.id AND v_last) r
                WHERE r.base = NEW.id - 1;
            END IF;
        END IF;
    END IF;

    IF v_last IS NULL OR v_last = NEW.id THEN
        -- One transaction, one query: the postings' count, the first chip that does not
        -- balance, and whether any leg names an account it may not.
        SELECT sum(g.n), min(g.chip_id) FILTER (WHERE g.total <> 0), bool_or(g.bad_leg)
        INTO v_count, v_chip, v_bad_leg
        FROM (SELECT p.chip_id, count(*) AS n, sum(p.amount) AS total,
                     -- A subquery per leg, not a join: each is a primary-key lookup, where a
                     -- join may be planned as a hash join over every account. NULL (no such
                     -- account) counts as bad.
                     bool_or((SELECT a.community_id = NEW.community_id AND a.chip_id = p.chip_id
                              FROM ledger_accounts a WHERE a.id = p.account_id) IS NOT TRUE
                             OR p.legs <> NEW.legs) AS bad_leg
              FROM ledger_postings p
              WHERE p.transaction_id = NEW.id GROUP BY p.chip_id) g;
        IF coalesce(v_count, 0) <> NEW.legs THEN
            RAISE EXCEPTION 'ledger transaction % has % postings but declares %',
                NEW.id, coalesce(v_count, 0), NEW.legs
                USING ERRCODE = 'check_violation';
        END IF;
        IF v_chip IS NOT NULL THEN
            RAISE EXCEPTION 'ledger transaction % does not balance for chip %', NEW.id, v_chip
                USING ERRCODE = 'check_violation';
        END IF;
        IF v_bad_leg THEN
            RAISE EXCEPTION 'ledger transaction % moves accounts of another community or chip', NEW.id
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NULL;
    END IF;

    -- The whole run in one query: the same checks, the first bad transaction reported.
    SELECT t.id, t.legs, coalesce(s.n, 0) AS n, s.bad_chip,
           (s.low_community <> t.community_id OR s.high_community <> t.community_id
            OR s.low_legs <> t.legs OR s.high_legs <> t.legs OR s.bad_account) AS bad_leg
    INTO v_bad
    FROM ledger_transactions t
    LEFT JOIN (
        SELECT g.transaction_id, sum(g.n) AS n, min(g.chip_id) FILTER (WHERE g.total <> 0) AS bad_chip,
               min(g.low_community) AS low_community, max(g.high_community) AS high_community,
               min(g.low_legs) AS low_legs, max(g.high_legs) AS high_legs, bool_or(g.bad_account) AS bad_account
        FROM (SELECT p.transaction_id, p.chip_id, count(*) AS n, sum(p.amount) AS total,
                     min(p.community_id) AS low_community, max(p.community_id) AS high_community,
                     min(p.legs) AS low_legs, max(p.legs) AS high_legs,
                     bool_or(p.community_id IS NULL) AS bad_account
              -- A subquery per leg, not a join: primary-key lookups, where a join is planned
              -- as a hash join over every account.
              FROM (SELECT p.transaction_id, p.chip_id, p.amount, p.legs,
                           -- The account's community, NULL if it is missing or holds another chip.
                           (SELECT CASE WHEN a.chip_id = p.chip_id THEN a.community_id END
                            FROM ledger_accounts a WHERE a.id = p.account_id) AS community_id
                    FROM ledger_postings p WHERE p.transaction_id BETWEEN NEW.id AND v_last
                    OFFSET 0) p  -- (not flattened: one lookup per leg, shared by min and max)
              GROUP BY p.transaction_id, p.chip_id) g
        GROUP BY g.transaction_id
    ) s ON s.transaction_id = t.id
    WHERE t.id BETWEEN NEW.id AND v_last
      AND (coalesce(s.n, 0) <> t.legs OR s.bad_chip IS NOT NULL
           OR s.low_community IS DISTINCT FROM t.community_id OR s.high_community IS DISTINCT FROM t.community_id
           OR s.low_legs <> t.legs OR s.high_legs <> t.legs OR s.bad_account)
    ORDER BY t.id
    LIMIT 1;
    IF NOT FOUND THEN
        PERFORM set_config('hearth.ledger_checked',
                           pg_current_xact_id()::text || ':' || NEW.id || ':' || v_last, true);
        RETURN NULL;
    END IF;
    IF v_bad.n <> v_bad.legs THEN
        RAISE EXCEPTION 'ledger transaction % has % postings but declares %', v_bad.id, v_bad.n, v_bad.legs
            USING ERRCODE = 'check_violation';
    END IF;
    IF v_bad.bad_chip IS NOT NULL THEN
        RAISE EXCEPTION 'ledger transaction % does not balance for chip %', v_bad.id, v_bad.bad_chip
            USING ERRCODE = 'check_violation';
    END IF;
    RAISE EXCEPTION 'ledger transaction % moves accounts of another community or chip', v_bad.id
        USING ERRCODE = 'check_violation';
END $$
"""

POSTINGS_HAVE_TRANSACTIONS = """
CREATE FUNCTION hearth_postings_have_transactions() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_orphan record;
BEGIN
    SELECT n.transaction_id, n.legs INTO v_orphan
    FROM added n
    WHERE NOT EXISTS (SELECT 1 FROM ledger_transactions t WHERE t.id = n.transaction_id AND t.legs = n.legs)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'a posting names ledger transaction % with % legs, which does not exist',
            v_orphan.transaction_id, v_orphan.legs
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$
"""

ACCOUNTS_KEEP_POSTINGS = """
CREATE FUNCTION hearth_accounts_keep_postings() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF NEW.id = OLD.id AND NEW.chip_id = OLD.chip_id AND NEW.community_id = OLD.community_id THEN
            RETURN NEW;
        END IF;
    END IF;
    IF EXISTS (SELECT 1 FROM ledger_postings WHERE account_id = OLD.id) THEN
        RAISE EXCEPTION 'ledger account % has postings: it cannot be deleted or re-keyed', OLD.id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$
"""

# TRUNCATE fires no row triggers; a foreign key refused it while postings pointed at the table.
ACCOUNTS_NOT_TRUNCATED = """
CREATE FUNCTION hearth_accounts_not_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM ledger_postings) THEN
        RAISE EXCEPTION 'ledger accounts have postings: the table cannot be truncated'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$
"""

UP = [
    "ALTER TABLE ledger_postings DROP CONSTRAINT fk_ledger_postings_transaction_id_ledger_transactions",
    "ALTER TABLE ledger_postings DROP CONSTRAINT fk_ledger_postings_account_id_ledger_accounts",
    "ALTER TABLE ledger_transactions DROP CONSTRAINT uq_ledger_transactions_id_legs",
    CHECK_BALANCED,
    POSTINGS_HAVE_TRANSACTIONS,
    """
    CREATE TRIGGER ledger_postings_have_transactions AFTER INSERT ON ledger_postings
        REFERENCING NEW TABLE AS added
        FOR EACH STATEMENT EXECUTE FUNCTION hearth_postings_have_transactions()
    """,
    ACCOUNTS_KEEP_POSTINGS,
    """
    CREATE TRIGGER ledger_accounts_keep_postings
        BEFORE DELETE OR UPDATE OF id, chip_id, community_id ON ledger_accounts
        FOR EACH ROW EXECUTE FUNCTION hearth_accounts_keep_postings()
    """,
    ACCOUNTS_NOT_TRUNCATED,
    """
    CREATE TRIGGER ledger_accounts_not_truncated BEFORE TRUNCATE ON ledger_accounts
        FOR EACH STATEMENT EXECUTE FUNCTION hearth_accounts_not_truncated()
    """,
]

DOWN = [
    "DROP TRIGGER ledger_accounts_not_truncated ON ledger_accounts",
    "DROP FUNCTION hearth_accounts_not_truncated",
    "DROP TRIGGER ledger_accounts_keep_postings ON ledger_accounts",
    "DROP FUNCTION hearth_accounts_keep_postings",
    "DROP TRIGGER ledger_postings_have_transactions ON ledger_postings",
    "DROP FUNCTION hearth_postings_have_transactions",
    "ALTER TABLE ledger_transactions ADD CONSTRAINT uq_ledger_transactions_id_legs UNIQUE (id, legs)",
    "ALTER TABLE ledger_postings ADD CONSTRAINT fk_ledger_postings_account_id_ledger_accounts"
    " FOREIGN KEY (account_id, chip_id) REFERENCES ledger_accounts (id, chip_id)",
    "ALTER TABLE ledger_postings ADD CONSTRAINT fk_ledger_postings_transaction_id_ledger_transactions"
    " FOREIGN KEY (transaction_id, legs) REFERENCES ledger_transactions (id, legs)"
    " DEFERRABLE INITIALLY DEFERRED",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in UP:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in DOWN:
            op.execute(statement)
        op.execute(_check_balanced_0008())


def _check_balanced_0008() -> str:
    """The commit-time check as migration 0008 defined it (its module name is not importable)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("_hearth_0008", Path(__file__).with_name("0008_batch_checks.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.CHECK_BALANCED)

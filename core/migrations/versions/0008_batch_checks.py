"""Set-based commit checks for batches: one validation per batch instead of one per transaction.

The zero-sum check stays a deferred constraint trigger on `ledger_transactions`
(one firing per transaction row at commit, as before), but a firing may now
validate a whole run of transactions in one query and let the later firings of
that run return at once:

- `core.ledger.repository` reserves a batch's transaction ids in one statement (so
  they are consecutive unless another writer's ids fall between) and names them in
  the transaction-local setting `hearth.ledger_batch` ("lo:hi"). That is only a
  hint: a firing for a transaction inside the hinted range finds the gap-free run
  of ids from its own up to `hi`, validates every transaction of that run in one
  query (postings count equal to the declared legs, balanced per chip, accounts of
  the transaction's community: exactly the per-row checks), raises on the first
  bad one, and records the run in `hearth.ledger_checked` ("xact:first:last").
- A later firing returns at once only when its id lies in that recorded run of the
  same database transaction. That is sound because the run has no gaps: no other
  row can ever take an id inside it, and a validated transaction is sealed (its
  postings fill every leg slot `0 <= leg < legs`, unique per transaction, and
  postings and transactions are append-only). Both settings are transaction-local
  (`set_config(..., true)`), so they vanish at commit or rollback, and rolling back
  to a savepoint reverts them with the rows they describe.
- Without the hint, or outside it (single transfers, `hearth_post_many`), a firing
  checks its own transaction with the previous query, so those pay two setting
  reads more and nothing else.

The setting is written by this trigger function only; code that forges it on
purpose could equally disable the trigger, so it guards against mistakes, as the
check itself does.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels = None
depends_on = None


CHECK_BALANCED = """
CREATE OR REPLACE FUNCTION hearth_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_memo text := current_setting('hearth.ledger_checked', true);
    v_hint text := current_setting('hearth.ledger_batch', true);
    v_last bigint;
    v_count bigint;
    v_chip bigint;
    v_foreign boolean;
    v_bad record;
BEGIN
    -- Validated already, with the run this row belongs to (see the migration's docstring).
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
            -- The run: the gap-free ids from this one on, up to the end of the batch. No other
            -- row can ever take an id inside it. (Rows of other, committed transactions that
            -- fall inside are checked too: they pass.)
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
        -- balance, and whether any leg is another community's.
        SELECT sum(g.n), min(g.chip_id) FILTER (WHERE g.total <> 0), bool_or(g.foreign_leg)
        INTO v_count, v_chip, v_foreign
        FROM (SELECT p.chip_id, count(*) AS n, sum(p.amount) AS total,
                     -- A subquery per leg, not a join: each is a primary-key lookup, where a
                     -- join may be planned as a hash join over every account.
                     bool_or((SELECT a.community_id FROM ledger_accounts a WHERE a.id = p.account_id)
                             <> NEW.community_id) AS foreign_leg
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
        IF v_foreign THEN
            RAISE EXCEPTION 'ledger transaction % moves accounts of another community', NEW.id
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NULL;
    END IF;

    -- The whole run in one query: the same three checks, the first bad transaction reported.
    SELECT t.id, t.legs, coalesce(s.n, 0) AS n, s.bad_chip,
           (s.low_community <> t.community_id OR s.high_community <> t.community_id) AS foreign_leg
    INTO v_bad
    FROM ledger_transactions t
    LEFT JOIN (
        SELECT g.transaction_id, sum(g.n) AS n, min(g.chip_id) FILTER (WHERE g.total <> 0) AS bad_chip,
               min(g.low_community) AS low_community, max(g.high_community) AS high_community
        FROM (SELECT p.transaction_id, p.chip_id, count(*) AS n, sum(p.amount) AS total,
                     min(p.community_id) AS low_community, max(p.community_id) AS high_community
              -- A subquery per leg, not a join: primary-key lookups, where a join is planned
              -- as a hash join over every account.
              FROM (SELECT p.transaction_id, p.chip_id, p.amount,
                           (SELECT a.community_id FROM ledger_accounts a WHERE a.id = p.account_id)
                               AS community_id
                    FROM ledger_postings p WHERE p.transaction_id BETWEEN NEW.id AND v_last
                    OFFSET 0) p  -- (not flattened: one lookup per leg, shared by min and max)
              GROUP BY p.transaction_id, p.chip_id) g
        GROUP BY g.transaction_id
    ) s ON s.transaction_id = t.id
    WHERE t.id BETWEEN NEW.id AND v_last
      AND (coalesce(s.n, 0) <> t.legs OR s.bad_chip IS NOT NULL
           OR s.low_community <> t.community_id OR s.high_community <> t.community_id)
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
    RAISE EXCEPTION 'ledger transaction % moves accounts of another community', v_bad.id
        USING ERRCODE = 'check_violation';
END $$
"""

# The definition of migration 0002, restored by the downgrade.
CHECK_BALANCED_0002 = """
CREATE OR REPLACE FUNCTION hearth_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_count bigint;
    v_chip bigint;
    v_foreign boolean;
BEGIN
    -- One query at commit (it runs once per transaction): the postings' count, the
    -- first chip that does not balance, and whether any leg is another community's.
    SELECT sum(g.n), min(g.chip_id) FILTER (WHERE g.total <> 0), bool_or(g.foreign_leg)
    INTO v_count, v_chip, v_foreign
    FROM (SELECT p.chip_id, count(*) AS n, sum(p.amount) AS total,
                 -- A subquery per leg, not a join: each is a primary-key lookup, where a
                 -- join may be planned as a hash join over every account.
                 bool_or((SELECT a.community_id FROM ledger_accounts a WHERE a.id = p.account_id)
                         <> NEW.community_id) AS foreign_leg
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
    IF v_foreign THEN
        RAISE EXCEPTION 'ledger transaction % moves accounts of another community', NEW.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(CHECK_BALANCED)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(CHECK_BALANCED_0002)

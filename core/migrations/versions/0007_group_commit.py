"""Group commit: `hearth_post_many` writes many independent entries in one transaction.

`core.ledger.group` collects the single transfers that a process's request
threads submit at the same moment and writes them with one call of this
function and one COMMIT. The entries are independent: each gets its own
(status, tx_id, detail), exactly as `hearth_post` would have answered it alone,
and a refused entry writes nothing and spoils nothing for the others (because
`hearth_post` validates everything before it writes anything).

Deadlock freedom: every account of the batch is locked first, at once, in id
order (then every hold, in id order, as `hearth_post` does for one entry), so a
batch waits for other transactions exactly as one big entry would, and two
committers (two API processes) lock in the same global order. The per-entry
calls then only re-lock rows this transaction already holds.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels = None
depends_on = None


# Entries travel as parallel arrays, one element per entry; their legs and hold captures
# are flattened into p_accounts/p_chips/p_amounts and p_holds/p_hold_amounts, and
# p_leg_counts/p_hold_counts say how many of each belong to each entry, in order.
#
# Speed: calling `hearth_post` once per entry costs about as much database CPU as the
# commit it saves (measured: 400-600 us per entry, five statements each). A batch of
# plain entries (no hold captures, no reversal, each account once per entry: every
# transfer and tip) therefore takes a set-based path: the accounts are read once (with
# their locks), the keys are probed once, each entry is checked and chained in memory
# in order (so entry 2 sees entry 1's balances, exactly as if `hearth_post` had written
# entry 1 first), and all the rows are written by three statements. Its checks, their
# order, its statuses and details, and the rows and hashes it writes are `hearth_post`'s
# (tests/core/ledger/test_group_commit.py compares the two). Any other batch calls
# `hearth_post` per entry.
HEARTH_POST_MANY = """
CREATE FUNCTION hearth_post_many(
    p_communities bigint[], p_kinds text[], p_keys text[], p_request_hashes text[], p_actors bigint[],
    p_memos text[], p_subject_types text[], p_subject_ids bigint[], p_reverses bigint[],
    p_allow_frozen boolean[], p_leg_counts integer[], p_accounts bigint[], p_chips bigint[],
    p_amounts bigint[], p_hold_counts integer[], p_holds bigint[], p_hold_amounts bigint[]
)
RETURNS TABLE (entry integer, status text, tx_id bigint, detail bigint)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_n integer := cardinality(p_keys);
    v_now timestamptz := now();
    v_us bigint := (extract(epoch FROM now()) * 1000000)::bigint;
    v_plain boolean := cardinality(p_holds) = 0;
    v_leg integer := 1;   -- where the current entry's legs start in the flat arrays
    v_hold integer := 1;  -- where its hold captures start
    v_legs integer;
    v_result record;
    v_seq regclass := pg_get_serial_sequence('ledger_transactions', 'id')::regclass;
    -- The batch's accounts in id order, and their state as the entries are applied.
    a_ids bigint[]; a_comms bigint[]; a_chips bigint[]; a_member boolean[]; a_bals bigint[];
    a_helds bigint[]; a_seqs bigint[]; a_heads text[]; a_frozen boolean[]; a_chip_frozen boolean[];
    a_touched boolean[];
    -- Keys already in the ledger, then also those this batch writes.
    k_keys text[]; k_ids bigint[]; k_hashes text[];
    -- The rows to write.
    w_tx bigint[] := '{}'; w_entry integer[] := '{}'; v_nt integer := 0;
    w_p_tx bigint[] := '{}'; w_p_legs integer[] := '{}'; w_p_leg integer[] := '{}';
    w_p_account bigint[] := '{}'; w_p_chip bigint[] := '{}'; w_p_amount bigint[] := '{}';
    w_p_seq bigint[] := '{}'; w_p_balance bigint[] := '{}'; w_p_hash text[] := '{}'; v_np integer := 0;
    -- One answer per entry.
    r_status text[] := array_fill(NULL::text, ARRAY[v_n]);
    r_tx bigint[] := array_fill(NULL::bigint, ARRAY[v_n]);
    r_detail bigint[] := array_fill(NULL::bigint, ARRAY[v_n]);
    l_pos integer[];  -- for each leg, its account's place in a_ids (NULL: no such account)
    v_nk integer;
    v_j integer;
    v_k integer;
    v_tx bigint;
    v_status text;
    v_detail bigint;
    v_low bigint;
BEGIN
    IF cardinality(p_leg_counts) <> v_n OR cardinality(p_hold_counts) <> v_n
        OR (SELECT coalesce(sum(n), 0) FROM unnest(p_leg_counts) AS n) <> cardinality(p_accounts)
        OR (SELECT coalesce(sum(n), 0) FROM unnest(p_hold_counts) AS n) <> cardinality(p_holds)
    THEN
        RAISE EXCEPTION 'hearth_post_many: the leg and hold counts do not match the arrays'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Plain entries only on the set-based path.
    FOR i IN 1 .. v_n LOOP
        EXIT WHEN NOT v_plain;
        v_legs := p_leg_counts[i];
        v_plain := p_reverses[i] IS NULL AND CASE
            WHEN v_legs = 2 THEN p_accounts[v_leg] <> p_accounts[v_leg + 1]
            ELSE (SELECT count(DISTINCT a) FROM unnest(p_accounts[v_leg : v_leg + v_legs - 1]) AS a) = v_legs
        END;
        v_leg := v_leg + v_legs;
    END LOOP;

    -- The whole batch's locks first, in one global order: accounts by id, then holds by id.
    SELECT array_agg(l.id ORDER BY l.id), array_agg(l.community_id ORDER BY l.id),
           array_agg(l.chip_id ORDER BY l.id), array_agg(l.kind = 'member' ORDER BY l.id),
           array_agg(l.balance ORDER BY l.id), array_agg(l.held ORDER BY l.id),
           array_agg(l.seq ORDER BY l.id), array_agg(l.head_hash::text ORDER BY l.id),
           array_agg(l.frozen ORDER BY l.id), array_agg(l.chip_frozen ORDER BY l.id)
    INTO a_ids, a_comms, a_chips, a_member, a_bals, a_helds, a_seqs, a_heads, a_frozen, a_chip_frozen
    FROM (SELECT a.id, a.community_id, a.chip_id, a.kind, a.balance, a.held, a.seq, a.head_hash, a.frozen,
                 c.frozen AS chip_frozen
          FROM ledger_accounts a JOIN chips c ON c.id = a.chip_id
          WHERE a.id = ANY (p_accounts) ORDER BY a.id FOR UPDATE OF a) AS l;
    IF cardinality(p_holds) > 0 THEN
        PERFORM 1 FROM ledger_holds WHERE id = ANY (p_holds) ORDER BY id FOR UPDATE;
    END IF;

    IF NOT v_plain THEN
        v_leg := 1;
        FOR i IN 1 .. v_n LOOP
            SELECT * INTO v_result FROM hearth_post(
                p_communities[i], p_kinds[i], p_keys[i], p_request_hashes[i], p_actors[i], p_memos[i],
                p_subject_types[i], p_subject_ids[i], p_reverses[i],
                p_accounts[v_leg : v_leg + p_leg_counts[i] - 1],
                p_chips[v_leg : v_leg + p_leg_counts[i] - 1],
                p_amounts[v_leg : v_leg + p_leg_counts[i] - 1],
                coalesce(p_holds[v_hold : v_hold + p_hold_counts[i] - 1], '{}'),
                coalesce(p_hold_amounts[v_hold : v_hold + p_hold_counts[i] - 1], '{}'),
                p_allow_frozen[i]
            );
            entry := i;
            status := v_result.status;
            tx_id := v_result.tx_id;
            detail := v_result.detail;
            RETURN NEXT;
            v_leg := v_leg + p_leg_counts[i];
            v_hold := v_hold + p_hold_counts[i];
        END LOOP;
        RETURN;
    END IF;

    a_ids := coalesce(a_ids, '{}');
    a_touched := array_fill(false, ARRAY[cardinality(a_ids)]);
    SELECT array_agg(a.pos ORDER BY l.ord) INTO l_pos
    FROM unnest(p_accounts) WITH ORDINALITY AS l(id, ord)
    LEFT JOIN unnest(a_ids) WITH ORDINALITY AS a(id, pos) ON a.id = l.id;
    -- One index probe per key (a lateral subquery cannot turn into a scan of every transaction).
    SELECT coalesce(array_agg(k.key), '{}'), coalesce(array_agg(t.id), '{}'),
           coalesce(array_agg(t.request_hash), '{}')
    INTO k_keys, k_ids, k_hashes
    FROM unnest(p_keys) AS k(key)
    CROSS JOIN LATERAL (SELECT id, request_hash::text FROM ledger_transactions
                        WHERE idempotency_key = k.key LIMIT 1) AS t;
    v_nk := cardinality(k_keys);

    v_leg := 1;
    FOR i IN 1 .. v_n LOOP
        v_legs := p_leg_counts[i];
        v_status := NULL;
        v_detail := NULL;
        v_k := array_position(k_keys, p_keys[i]);
        IF v_k IS NOT NULL THEN
            -- hearth_post answers a used key before anything else.
            r_status[i] := CASE WHEN k_hashes[v_k] = p_request_hashes[i]
                                THEN 'replay' ELSE 'key_conflict' END;
            r_tx[i] := k_ids[v_k];
        ELSE
            -- Every leg names an existing account of its chip in this community (first bad leg wins).
            FOR x IN v_leg .. v_leg + v_legs - 1 LOOP
                v_j := l_pos[x];
                IF v_j IS NULL OR a_chips[v_j] <> p_chips[x] OR a_comms[v_j] <> p_communities[i] THEN
                    v_status := 'account_not_found';
                    v_detail := p_accounts[x];
                    EXIT;
                END IF;
            END LOOP;
            IF v_status IS NULL AND NOT p_allow_frozen[i] THEN
                -- A frozen chip before a frozen account, each at the lowest account id.
                v_low := NULL;
                FOR x IN v_leg .. v_leg + v_legs - 1 LOOP
                    v_j := l_pos[x];
                    IF a_chip_frozen[v_j] AND (v_low IS NULL OR p_accounts[x] < v_low) THEN
                        v_low := p_accounts[x];
                        v_detail := a_chips[v_j];
                    END IF;
                END LOOP;
                IF v_low IS NOT NULL THEN
                    v_status := 'chip_frozen';
                ELSE
                    FOR x IN v_leg .. v_leg + v_legs - 1 LOOP
                        v_j := l_pos[x];
                        IF a_frozen[v_j] AND (v_low IS NULL OR p_accounts[x] < v_low) THEN
                            v_low := p_accounts[x];
                        END IF;
                    END LOOP;
                    IF v_low IS NOT NULL THEN
                        v_status := 'account_frozen';
                        v_detail := v_low;
                    END IF;
                END IF;
            END IF;
            IF v_status IS NULL THEN
                -- A member account may not end below what it holds (lowest id reported).
                v_low := NULL;
                FOR x IN v_leg .. v_leg + v_legs - 1 LOOP
                    v_j := l_pos[x];
                    IF a_member[v_j] AND a_bals[v_j] + p_amounts[x] < a_helds[v_j]
                        AND (v_low IS NULL OR p_accounts[x] < v_low) THEN
                        v_low := p_accounts[x];
                    END IF;
                END LOOP;
                IF v_low IS NOT NULL THEN
                    v_status := 'insufficient_funds';
                    v_detail := v_low;
                END IF;
            END IF;
            IF v_status IS NOT NULL THEN
                r_status[i] := v_status;
                r_detail[i] := v_detail;
            ELSE
                -- Apply: the chain advances leg by leg, as in hearth_post.
                v_tx := nextval(v_seq);
                FOR x IN v_leg .. v_leg + v_legs - 1 LOOP
                    v_j := l_pos[x];
                    a_bals[v_j] := a_bals[v_j] + p_amounts[x];
                    a_seqs[v_j] := a_seqs[v_j] + 1;
                    a_heads[v_j] := encode(sha256(convert_to(
                        a_heads[v_j] || '|' || v_tx || '|' || (x - v_leg) || '|' || a_ids[v_j]
                        || '|' || a_chips[v_j] || '|' || p_amounts[x] || '|' || a_seqs[v_j]
                        || '|' || a_bals[v_j] || '|' || p_kinds[i] || '|' || v_us, 'UTF8')), 'hex');
                    a_touched[v_j] := true;
                    v_np := v_np + 1;
                    w_p_tx[v_np] := v_tx;
                    w_p_legs[v_np] := v_legs;
                    w_p_leg[v_np] := x - v_leg;
                    w_p_account[v_np] := a_ids[v_j];
                    w_p_chip[v_np] := a_chips[v_j];
                    w_p_amount[v_np] := p_amounts[x];
                    w_p_seq[v_np] := a_seqs[v_j];
                    w_p_balance[v_np] := a_bals[v_j];
                    w_p_hash[v_np] := a_heads[v_j];
                END LOOP;
                v_nt := v_nt + 1;
                w_tx[v_nt] := v_tx;
                w_entry[v_nt] := i;
                -- The key is taken from here on: a later entry with it is a replay or a conflict.
                v_nk := v_nk + 1;
                k_keys[v_nk] := p_keys[i];
                k_ids[v_nk] := v_tx;
                k_hashes[v_nk] := p_request_hashes[i];
                r_status[i] := 'ok';
                r_tx[i] := v_tx;
            END IF;
        END IF;
        v_leg := v_leg + v_legs;
    END LOOP;

    IF v_nt > 0 THEN
        INSERT INTO ledger_transactions (id, community_id, kind, legs, idempotency_key, request_hash,
                                         actor_id, memo, subject_type, subject_id, reverses_id, created_at)
        SELECT t.id, p_communities[t.e], p_kinds[t.e], p_leg_counts[t.e], p_keys[t.e], p_request_hashes[t.e],
               p_actors[t.e], p_memos[t.e], p_subject_types[t.e], p_subject_ids[t.e], NULL, v_now
        FROM unnest(w_tx, w_entry) AS t(id, e);
        INSERT INTO ledger_postings (transaction_id, legs, leg, account_id, chip_id, amount, seq,
                                     balance_after, hash)
        SELECT * FROM unnest(w_p_tx, w_p_legs, w_p_leg, w_p_account, w_p_chip, w_p_amount, w_p_seq,
                             w_p_balance, w_p_hash);
        -- Each account once, with its final state (no intermediate balance trips the overdraft CHECK).
        UPDATE ledger_accounts a SET balance = u.balance, seq = u.seq, head_hash = u.head
        FROM unnest(a_ids, a_bals, a_seqs, a_heads, a_touched) AS u(id, balance, seq, head, touched)
        WHERE a.id = u.id AND u.touched;
        -- The ids were drawn in order, so they are consecutive unless another writer's fell
        -- between: the commit-time check (migration 0008) then validates the run in one query.
        IF v_nt > 1 THEN
            PERFORM set_config('hearth.ledger_batch', w_tx[1] || ':' || w_tx[v_nt], true);
        END IF;
    END IF;
    RETURN QUERY
        SELECT u.n::integer, u.s, u.t, u.d
        FROM unnest(r_status, r_tx, r_detail) WITH ORDINALITY AS u(s, t, d, n);
END $$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(HEARTH_POST_MANY)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION hearth_post_many")

"""Smoke test of `hearth bench ledger`: tiny sizes, real PostgreSQL, JSON shape and the audit.

The benchmark owns its database, so this test creates a scratch database on the
test server and drops it afterwards; the test database itself is never touched.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from tests.conftest import DATABASE_URL, needs_postgres

pytestmark = needs_postgres()


@pytest.fixture
def scratch_url() -> Iterator[str]:
    url = make_url(DATABASE_URL)
    name = f"hearth_bench_smoke_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


TINY = [
    "--members", "40", "--creators", "3", "--clients", "2", "--duration", "0.4", "--warmup", "0.1",
    "--batch-size", "10", "--batch-clients", "2", "--batch-duration", "0.4", "--baseline", "0",
]  # fmt: skip


def test_bench_ledger_json(scratch_url: str) -> None:
    from api.cli import app

    result = CliRunner().invoke(app, ["bench", "ledger", "--database-url", scratch_url, "--json", *TINY])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["invariants_ok"] is True
    assert out["invariants"]["problems"] == []
    assert set(out["single"]) == {
        "uniform_1_clients",
        "hot_1_clients",
        "uniform_2_clients",
        "hot_2_clients",
        "uniform_2x1_clients",
        "hot_2x1_clients",
    }
    assert set(out["single_session"]) == {"uniform_2_clients", "hot_2_clients"}
    # The single-transfer endpoint's service path, around the same committer.
    assert set(out["single_api"]) == {"uniform_2_clients", "hot_2_clients"}
    assert (
        out["summary"]["single_endpoint_uniform_tps"]
        == out["single_api"]["uniform_2_clients"]["transfers_per_s"]
    )
    assert out["summary"]["single_endpoint_hot_tps"] == out["single_api"]["hot_2_clients"]["transfers_per_s"]
    for row in [*out["single"].values(), *out["single_api"].values(), *out["single_session"].values()]:
        assert row["transfers"] > 0 and row["transfers_per_s"] > 0
        assert 0 < row["p50_ms"] <= row["p99_ms"]
    # Single transfers go through the group committer, which reports how many entries a COMMIT carried.
    for row in [*out["single"].values(), *out["single_api"].values()]:
        assert row["path"] == "group" and row["commits"] > 0 and row["entries_per_commit"] >= 1
    assert all(row["path"] == "session" for row in out["single_session"].values())
    assert set(out["batch"]) == {"1_clients", "2_clients"}
    assert all(row["transfers"] % 10 == 0 and row["transfers"] > 0 for row in out["batch"].values())
    # The batch endpoint's service path: whole requests of 10 transfers each, all in the ledger.
    assert set(out["batch_api"]) == {"1_clients", "2_clients"}
    assert all(row["transfers"] % 10 == 0 and row["transfers"] > 0 for row in out["batch_api"].values())
    assert out["summary"]["batch_endpoint_tps"] == max(
        r["transfers_per_s"] for r in out["batch_api"].values()
    )
    assert "matching" in out
    machine = out["machine"]
    assert machine["cpu_count"] and machine["synchronous_commit"] in {"on", "remote_write", "remote_apply"}
    assert out["config"]["vacuum"] is True  # each scenario ran after a VACUUM ANALYZE (the default)
    assert set(out["summary"]["all_targets"]) == {"met", "single_targets_met_by"}
    # Every measured transfer is in the ledger: funding (one per member) plus all scenarios (+ warm-up).
    measured = sum(
        r["transfers"]
        for section in ("single", "single_api", "single_session", "batch", "batch_api")
        for r in out[section].values()
    )
    assert out["invariants"]["transactions"] >= 40 + measured


def test_bench_refuses_a_database_in_use(scratch_url: str) -> None:
    from api.cli import app

    engine = create_engine(scratch_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE precious (id int)"))
    engine.dispose()
    result = CliRunner().invoke(app, ["bench", "ledger", "--database-url", scratch_url, *TINY])
    assert result.exit_code == 2
    assert "not empty" in result.output
    engine = create_engine(scratch_url)
    with engine.connect() as conn:  # nothing was dropped
        assert conn.scalar(text("SELECT count(*) FROM precious")) == 0
    engine.dispose()


def test_bench_runs_only_the_scenarios_asked_for(scratch_url: str) -> None:
    from api.cli import app

    args = ["bench", "ledger", "--database-url", scratch_url, "--json", "--scenarios", "batch", *TINY]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["single"], out["single_api"], out["single_session"], out["batch_api"], out["matching"]) == (
        {},
        {},
        {},
        {},
        None,
    )
    assert set(out["batch"]) == {"1_clients", "2_clients"} and out["invariants_ok"] is True


def test_bench_history_writes_a_past_before_the_scenarios(scratch_url: str) -> None:
    from api.cli import app

    args = ["bench", "ledger", "--database-url", scratch_url, "--json", "--scenarios", "batch"]
    result = CliRunner().invoke(app, [*args, "--history", "2500", *TINY])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["history"]["transfers"] == 2500 and out["config"]["history"] == 2500
    assert out["history"]["checkpointed"] is True  # the test's role is a superuser
    # Funding (one per member), the past (three batches, the last one partial) and the scenarios.
    measured = sum(r["transfers"] for r in out["batch"].values())
    assert out["invariants"]["transactions"] >= 40 + 2500 + measured
    assert out["invariants_ok"] is True
    # Written before the scenarios, and exactly the transfers asked for.
    assert result.stderr.index("history: 2,500 of 2,500 transfers") < result.stderr.index("batches of 10")
    engine = create_engine(scratch_url)
    with engine.connect() as conn:
        past = conn.scalar(
            text("SELECT count(*) FROM ledger_transactions WHERE idempotency_key LIKE 'bench:history:%'")
        )
    engine.dispose()
    assert past == 2500


def test_bench_history_without_checkpoint_rights_still_completes(scratch_url: str) -> None:
    """CHECKPOINT needs a superuser (or pg_checkpoint): a plain role writes its history and
    is told the checkpoint was skipped, rather than losing the run."""
    from dataclasses import replace

    from benchmarks.ledger import BenchConfig, build_world, prepare_database, write_history

    said: list[str] = []
    cfg = BenchConfig(database_url=scratch_url, members=40, creators=3, history=30, progress=said.append)
    prepare_database(cfg)
    world = build_world(cfg)
    role = f"hearth_bench_plain_{uuid.uuid4().hex[:8]}"
    admin = create_engine(scratch_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
        conn.execute(text(f'GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO "{role}"'))
        conn.execute(text(f'GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO "{role}"'))
    try:
        plain = make_url(scratch_url).set(username=role).render_as_string(hide_password=False)
        out = write_history(replace(cfg, database_url=plain), world)
        assert out["transfers"] == 30 and out["checkpointed"] is False
        assert any(line.startswith("history: no CHECKPOINT (") for line in said)
        with admin.connect() as conn:
            past = conn.scalar(
                text("SELECT count(*) FROM ledger_transactions WHERE idempotency_key LIKE 'bench:history:%'")
            )
        assert past == 30
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP OWNED BY "{role}"'))
            conn.execute(text(f'DROP ROLE "{role}"'))
        admin.dispose()

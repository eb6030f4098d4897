"""The `hearth` command line against a fresh SQLite database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from api.cli import app
from core.config import get_settings
from core.db import dispose_engines, get_engine, session_scope
from core.models import Community, User


@pytest.fixture
def fresh_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("HEARTH_DATABASE_URL", url)
    monkeypatch.setenv("HEARTH_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    dispose_engines()  # an engine an earlier test opened for the configured database
    yield url
    get_settings.cache_clear()
    dispose_engines()


def test_migrate_createadmin_and_demo(fresh_db: str) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["migrate"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["createadmin", "--email", "Root@Example.com", "--password", "long-enough-pw"])
    assert r.exit_code == 0 and "root@example.com" in r.output
    again = runner.invoke(app, ["createadmin", "--email", "root@example.com", "--password", "long-enough-pw"])
    assert again.exit_code == 1 and "email_taken" in again.output
    short = runner.invoke(app, ["createadmin", "--email", "x@example.com", "--password", "short"])
    assert short.exit_code == 2 and "password" in short.output

    assert runner.invoke(app, ["demo", "--members", "30"]).exit_code == 0
    assert runner.invoke(app, ["demo", "--members", "30"]).exit_code == 0  # idempotent
    with session_scope(get_engine(fresh_db)) as s:
        admin = s.scalar(select(User).where(User.email == "root@example.com"))
        assert admin is not None and admin.is_superuser
        assert (
            s.scalar(select(func.count()).select_from(Community).where(Community.slug == "hearth-demo")) == 1
        )


def test_serve_runs_the_configured_number_of_api_processes(
    fresh_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    calls: list[dict[str, object]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append({"app": app, **kw}))
    runner = CliRunner()
    assert runner.invoke(app, ["serve"]).exit_code == 0
    assert calls[-1]["workers"] == 1 and calls[-1]["factory"] is True
    assert runner.invoke(app, ["serve", "--workers", "2"]).exit_code == 0
    assert calls[-1]["workers"] == 2
    monkeypatch.setenv("HEARTH_API_WORKERS", "3")
    get_settings.cache_clear()
    assert runner.invoke(app, ["serve"]).exit_code == 0
    assert calls[-1]["workers"] == 3
    assert runner.invoke(app, ["serve", "--workers", "0"]).exit_code == 2


def test_bench_ledger_refuses_an_unknown_scenario() -> None:
    result = CliRunner().invoke(
        app,
        ["bench", "ledger", "--database-url", "postgresql+psycopg://nowhere/x", "--scenarios", "batch,warp"],
    )
    assert result.exit_code == 2
    # (The message is boxed and wrapped: compare its words.)
    words = " ".join(result.output.replace("│", " ").split())
    assert (
        "Invalid value for --scenarios: choose from single, single_api, single_session,"
        " batch, batch_api, matching" in words
    )
    assert "(got 'batch,warp')" in words

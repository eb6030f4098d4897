"""The `hearth` command line: migrate, createadmin, demo, serve, worker, up."""

from __future__ import annotations

import getpass
import signal
import subprocess
import sys
from typing import Annotated

import typer

from core.config import get_settings

app = typer.Typer(help="Hearth: private communities with a chip economy.", no_args_is_help=True)


def _prepare() -> None:
    get_settings().data_dir.mkdir(parents=True, exist_ok=True)


@app.command()
def migrate(revision: Annotated[str, typer.Argument(help="target revision")] = "head") -> None:
    """Apply the database migrations (Alembic)."""
    from core.migrate import upgrade

    _prepare()
    upgrade(get_settings().resolved_database_url, revision=revision)
    typer.echo(f"database at {revision}")


@app.command()
def createadmin(
    email: Annotated[str, typer.Option(prompt=True)],
    name: Annotated[str, typer.Option(help="display name")] = "Admin",
    password: Annotated[str | None, typer.Option(help="omit to be asked")] = None,
) -> None:
    """Create a site administrator (superuser)."""
    from pydantic import ValidationError

    from core.accounts.schemas import SignupIn
    from core.accounts.service import create_user
    from core.db import session_scope
    from core.errors import DomainError

    password = password or getpass.getpass("Password: ")
    try:
        data = SignupIn(email=email, password=password, display_name=name)
    except ValidationError as exc:
        typer.echo(f"invalid input: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}", err=True)
        raise typer.Exit(2) from exc
    try:
        with session_scope() as session:
            user = create_user(
                session,
                email=data.email,
                password=data.password,
                display_name=data.display_name,
                is_superuser=True,
            )
            typer.echo(f"created admin {user.email} (id {user.id})")
    except DomainError as exc:
        typer.echo(f"{exc.code}: {exc.detail}", err=True)
        raise typer.Exit(1) from exc


@app.command()
def demo(members: Annotated[int, typer.Option(min=10, max=5000)] = 200, seed: int = 42) -> None:
    """Seed the demo community (idempotent)."""
    from core.db import session_scope
    from core.demo import seed_demo

    with session_scope() as session:
        summary = seed_demo(session, members=members, seed=seed)
    typer.echo(str(summary))


@app.command()
def serve(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    reload: bool = False,
) -> None:
    """Run the HTTP API (OpenAPI docs at /docs)."""
    import uvicorn

    s = get_settings()
    _prepare()
    uvicorn.run(
        "api.app:create_app", factory=True, host=host or s.api_host, port=port or s.api_port, reload=reload
    )


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(min=1)] = 1,
    loglevel: str = "INFO",
    pool: str = "solo",
) -> None:
    """Run the Celery worker (embedded SQLite broker unless HEARTH_BROKER_URL is set)."""
    from core.worker import celery_app

    _prepare()
    celery_app.worker_main(
        ["worker", f"--loglevel={loglevel}", f"--concurrency={concurrency}", f"--pool={pool}", "-Q", "hearth"]
    )


@app.command()
def up(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    with_demo: Annotated[bool, typer.Option("--demo/--no-demo")] = True,
) -> None:
    """Migrate, seed the demo community, then run the worker and the API together."""
    migrate("head")
    if with_demo:
        demo(200, 42)
    worker_proc = subprocess.Popen([sys.executable, "-m", "api.cli", "worker"])
    try:
        serve(host, port, False)
    finally:
        worker_proc.send_signal(signal.SIGTERM)
        try:
            worker_proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker_proc.kill()


if __name__ == "__main__":
    app()

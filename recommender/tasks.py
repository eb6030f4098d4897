"""Celery tasks for recommendations: thin, idempotent, retried on transient errors.

`hearth.recommender.embed` brings one entity's embedding up to date after a commit (queued
by `recommender.hooks`); `hearth.recommender.refresh` (beat) finds what is stale or
missing in bounded batches and rewrites the index files of the communities it changed.
The worker installs the hooks (tasks that write content queue embeddings too), and a worker
with embedded beat queues a refresh as soon as it is ready, so a fresh deployment
(`hearth up` after `hearth demo`) has its embeddings without waiting for the first interval.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from celery import signals

from core.db import session_scope
from core.worker import TASK_DEFAULTS, celery_app
from recommender import hooks, service
from recommender.embedder import get_embedder

log = logging.getLogger(__name__)

EMBED = "hearth.recommender.embed"
REFRESH = "hearth.recommender.refresh"


@celery_app.task(name=EMBED, **TASK_DEFAULTS)
def embed(entity_type: str, entity_id: int) -> int:
    embedder = get_embedder()
    with session_scope() as session:
        changes = service.embed_entity(session, entity_type, entity_id, embedder)
    # Index files change only once the rows they mirror are committed.
    service.apply_index_changes(changes, embedder.model_id)
    return len(changes)


@celery_app.task(name=REFRESH, **TASK_DEFAULTS)
def refresh(budget: int = service.REFRESH_BUDGET) -> dict[str, int]:
    """One bounded batch; skipped (`skipped: 1`) while another refresh of the deployment runs.

    Beat starts a refresh every interval and a backlog re-sends itself, so chains overlap:
    without the lock they embed the same stale slice twice and race on the index files. The
    lock is a file lock under the shared data directory plus, on PostgreSQL, an advisory lock
    held by the refresh transaction (workers on other machines share only the database).
    """
    embedder = get_embedder()
    with service.store.refresh_guard() as mine:
        if not mine:
            return _skipped()
        with session_scope() as session:
            if not service.store.try_refresh_lock(session):
                return _skipped()
            result = service.refresh(session, embedder, budget=budget)
        for community_id in result.reindex:
            with session_scope() as session:
                service.write_indexes(session, community_id, embedder)
        if not result.remaining:
            # Every community is served from the current model's files now: the folders of a
            # previous model go (they would keep vectors of what has since been deleted).
            for community_id in result.communities:
                service.store.prune_models(community_id, embedder.model_id)
    if result.remaining and not celery_app.conf.task_always_eager:
        # A backlog (a model change, a big import) continues at once, one bounded batch at a time.
        celery_app.send_task(REFRESH, kwargs={"budget": budget})
    return {
        "embedded": result.embedded,
        "deleted": result.deleted,
        "remaining": result.remaining,
        "reindexed": len(result.reindex),
        "skipped": 0,
    }


def _skipped() -> dict[str, int]:
    # The running chain re-sends itself while a backlog remains: nothing is lost by skipping.
    return {"embedded": 0, "deleted": 0, "remaining": 0, "reindexed": 0, "skipped": 1}


def rebuild(
    community_id: int | None = None,
    *,
    force: bool = False,
    bar: Callable[[str], AbstractContextManager[Callable[[int, int], None]]] | None = None,
) -> list[tuple[int, service.store.SyncResult, dict[str, int]]]:
    """`hearth recommend rebuild`: embeddings and index files of one or every community, each
    community in its own transaction; `bar(label)` gives a progress callback."""
    embedder = get_embedder()
    with session_scope() as session:
        ids = service.communities_to_rebuild(session, community_id)
    done = []
    for cid in ids:
        with _bar(bar, f"community {cid}: embeddings") as progress, session_scope() as session:
            synced = service.rebuild(session, cid, embedder, force=force, progress=progress)
        with _bar(bar, f"community {cid}: indexes") as progress, session_scope() as session:
            sizes = service.write_indexes(session, cid, embedder, progress=progress)
        done.append((cid, synced, sizes))
    return done


def _bar(
    bar: Callable[[str], AbstractContextManager[Callable[[int, int], None]]] | None, label: str
) -> AbstractContextManager[Callable[[int, int], None] | None]:
    return bar(label) if bar is not None else nullcontext(None)


@signals.worker_init.connect
def _install_hooks(**_: Any) -> None:
    hooks.install()


@signals.worker_ready.connect
def _refresh_on_start(sender: Any = None, **_: Any) -> None:
    # Only where beat is embedded (`hearth worker --beat`, `hearth up`): one start-up refresh per
    # deployment, sent once the worker has declared its queue (sending earlier races that
    # declaration on the embedded SQLite broker and crashes the worker).
    if getattr(getattr(sender, "controller", None), "beat", None) is None:
        return
    try:
        celery_app.send_task(REFRESH)
    except Exception:  # the periodic tick will do it; the worker must start regardless
        log.exception("could not queue the start-up recommender refresh")

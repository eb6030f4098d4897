"""Embedding jobs: queued after commit by the session hook, run by a real Celery worker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from api.cli import app as cli
from core import jobs
from core.accounts import service as accounts
from core.accounts.schemas import ProfilePatch
from core.config import get_settings
from core.conversation import dm_service
from core.conversation import service as conversation
from core.conversation.schemas import ConversationIn, MessageIn, PostPatch, ThreadIn
from core.db import dispose_engines, session_scope
from core.models import Community, Embedding, EmbeddingEntity, Membership, Post
from core.social import service as social
from recommender import hooks, store, tasks
from recommender.embedder import get_embedder
from tests.core.test_worker import _start_worker, _wait_for, celery_sender
from tests.recommender.test_service import World, build_world

EMBED = hooks.EMBED_JOB


@pytest.fixture
def hooked() -> Iterator[None]:
    hooks.install()
    try:
        yield
    finally:
        hooks.uninstall()


@pytest.fixture
def hashing_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tasks read their embedder from settings, as a deployment configures it."""
    monkeypatch.setenv("HEARTH_EMBEDDER", "hashing:256")
    get_settings.cache_clear()
    yield
    monkeypatch.delenv("HEARTH_EMBEDDER")
    get_settings.cache_clear()


def _embeds(recorded: list[jobs.Job]) -> list[tuple[object, ...]]:
    return [job.args for job in recorded if job.name == EMBED]


def test_content_changes_queue_embeddings_after_commit(
    session: Session, recorded_jobs: list[jobs.Job], hooked: None
) -> None:
    world = build_world(session)
    session.commit()
    assert ("thread", world.threads["hike"]) in _embeds(recorded_jobs)
    assert ("event", world.events["hike"]) in _embeds(recorded_jobs)
    assert ("course", world.courses["code"]) in _embeds(recorded_jobs)
    assert ("user", world.users["mei"].id) in _embeds(recorded_jobs)

    recorded_jobs.clear()
    post_id = session.scalar(
        select(Post.id).where(Post.thread_id == world.threads["code"], Post.is_opening.is_(True))
    )
    assert post_id is not None
    conversation.edit_post(session, world.actor("kim"), post_id, PostPatch(body="rust borrowing"))
    conversation.edit_post(session, world.actor("kim"), post_id, PostPatch(body="rust lifetimes"))
    session.commit()
    # One job per entity per transaction, however many flushes wrote it.
    assert sorted(_embeds(recorded_jobs)) == [
        ("thread", world.threads["code"]),
        ("user", world.users["kim"].id),
    ]

    recorded_jobs.clear()
    accounts.update_profile(session, world.actor("ada"), ProfilePatch(avatar_url="https://example.com/a.png"))
    session.commit()
    assert _embeds(recorded_jobs) == []  # the avatar is not part of any text
    social.set_recommendation_opt_out(session, world.actor("ada"), True)
    session.commit()
    assert _embeds(recorded_jobs) == [("user", world.users["ada"].id)]


def test_rolled_back_changes_queue_nothing(
    session: Session, recorded_jobs: list[jobs.Job], hooked: None
) -> None:
    world = build_world(session)
    session.commit()
    recorded_jobs.clear()
    conversation.create_thread(
        session, world.actor("mei"), world.channels["general"], ThreadIn(title="草稿", body="never mind")
    )
    session.rollback()
    session.commit()
    assert _embeds(recorded_jobs) == []


def test_direct_messages_queue_nothing(session: Session, recorded_jobs: list[jobs.Job], hooked: None) -> None:
    world = build_world(session)
    session.commit()
    recorded_jobs.clear()
    convo, _ = dm_service.create_conversation(
        session,
        world.actor("ada"),
        world.community.id,
        ConversationIn(participant_ids=[world.users["sam"].id]),
    )
    dm_service.send_message(session, world.actor("ada"), convo.id, MessageIn(body="登山健行 陽明山"))
    session.commit()
    assert _embeds(recorded_jobs) == []


def test_embed_and_refresh_tasks_run_in_process(committed_engine: Engine, hashing_settings: None) -> None:
    with session_scope(committed_engine) as s:
        world = build_world(s)
    cid = world.community.id
    embedder = get_embedder()
    assert tasks.embed.run("thread", world.threads["hike"]) == 1
    assert tasks.embed.run("thread", world.threads["hike"]) == 0  # idempotent: same text, no work
    with session_scope(committed_engine) as s:
        assert set(store.load(s, cid, embedder.model_id)) == {(EmbeddingEntity.THREAD, world.threads["hike"])}

    tasks.refresh.run(budget=100_000)
    with session_scope(committed_engine) as s:
        stored = store.load(s, cid, embedder.model_id)
        members = set(s.scalars(select(Membership.id).where(Membership.community_id == cid)))
    assert {i for t, i in stored if t == EmbeddingEntity.MEMBER} == members
    for kind in store.INDEX_KINDS:
        assert store.read_index(cid, embedder.model_id, kind) is not None
    threads = store.read_index(cid, embedder.model_id, "thread")
    assert threads is not None and world.threads["code"] in threads


@pytest.mark.worker
def test_a_real_worker_embeds_what_was_committed(
    committed_engine: Engine, hashing_settings: None, tmp_path: Path, hooked: None
) -> None:
    broker = f"sqla+sqlite:///{tmp_path / 'broker.db'}"
    with session_scope(committed_engine) as s:
        world = build_world(s)  # no dispatcher to the broker yet: these jobs are only recorded
    proc = _start_worker(broker, tmp_path)
    log = tmp_path / "worker.log"
    tag = uuid.uuid4().hex[:6]
    try:
        with celery_sender(broker):
            with session_scope(committed_engine) as s:
                kept = conversation.create_thread(
                    s,
                    World.actor(world, "mei"),
                    world.channels["general"],
                    ThreadIn(title=f"登山 {tag}", body="陽明山"),
                ).id
            with pytest.raises(RuntimeError), session_scope(committed_engine) as s:
                dropped = conversation.create_thread(
                    s,
                    World.actor(world, "mei"),
                    world.channels["general"],
                    ThreadIn(title=f"草稿 {tag}", body="x"),
                ).id
                raise RuntimeError("the request failed: its embedding job must never be sent")

            def embedded(thread_id: int) -> bool:
                with session_scope(committed_engine) as s:
                    return (
                        s.scalar(
                            select(Embedding.id).where(
                                Embedding.entity_type == EmbeddingEntity.THREAD,
                                Embedding.entity_id == thread_id,
                            )
                        )
                        is not None
                    )

            _wait_for(lambda: embedded(kept), proc, log)
            # The author's profile job was queued in the same transaction; once it has run too,
            # everything sent has been processed, and the rolled-back thread was never sent.
            with session_scope(committed_engine) as s:
                mei_membership = s.scalar(
                    select(Membership.id).where(
                        Membership.user_id == world.users["mei"].id,
                        Membership.community_id == world.community.id,
                    )
                )

            def profile_embedded() -> bool:
                with session_scope(committed_engine) as s:
                    row = store.get(s, EmbeddingEntity.MEMBER, mei_membership or 0, get_embedder().model_id)
                    return row is not None

            _wait_for(profile_embedded, proc, log)
            assert not embedded(dropped)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture
def fresh_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("HEARTH_DATABASE_URL", url)
    monkeypatch.setenv("HEARTH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HEARTH_EMBEDDER", "hashing:64")
    dispose_engines()  # the test database's engine, opened by tasks run in-process
    get_settings.cache_clear()
    yield tmp_path
    dispose_engines()
    get_settings.cache_clear()


def test_rebuild_command_embeds_the_demo_and_writes_indexes(fresh_db: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["migrate"]).exit_code == 0
    assert runner.invoke(cli, ["demo", "--members", "10"]).exit_code == 0
    first = runner.invoke(cli, ["recommend", "rebuild"])
    assert first.exit_code == 0, first.output
    with session_scope() as s:
        total = s.scalar(select(func.count()).select_from(Embedding)) or 0
        cid = s.scalar(select(Community.id))
    assert total > 10 and f"community {cid}: embedded {total}, unchanged 0" in first.output
    model_id = get_embedder().model_id
    for kind in store.INDEX_KINDS:
        assert store.index_path(cid or 0, model_id, kind).exists()

    again = runner.invoke(cli, ["recommend", "rebuild", "--community", str(cid)])
    assert again.exit_code == 0 and f"embedded 0, unchanged {total}" in again.output
    forced = runner.invoke(cli, ["recommend", "rebuild", "--force"])
    assert forced.exit_code == 0 and f"embedded {total}, unchanged 0" in forced.output
    missing = runner.invoke(cli, ["recommend", "rebuild", "--community", "999999"])
    assert missing.exit_code == 1 and "community_not_found" in missing.output


def test_the_api_and_the_worker_install_the_hooks() -> None:
    from api.app import create_app

    assert not hooks.installed()
    previous = jobs.set_dispatcher(lambda job: None)
    try:
        create_app(session_maker=lambda: None, dispatch_jobs=False)  # type: ignore[arg-type,return-value]
        assert not hooks.installed()  # tests record jobs themselves
        create_app(session_maker=lambda: None)  # type: ignore[arg-type,return-value]
        assert hooks.installed()
        hooks.uninstall()
        tasks._install_hooks()  # what the worker_init signal runs
        assert hooks.installed()
        tasks._install_hooks()  # idempotent: one listener, one job per entity
        hooks.uninstall()
        assert not hooks.installed()
    finally:
        hooks.uninstall()
        jobs.set_dispatcher(previous)


def test_a_refresh_is_skipped_while_another_runs(committed_engine: Engine, hashing_settings: None) -> None:
    """Beat and a backlog chain overlap: the second refresh embeds nothing and leaves."""
    with session_scope(committed_engine) as s:
        world = build_world(s)
    cid = world.community.id
    embedder = get_embedder()
    with store.refresh_guard() as mine:  # another worker of this deployment is refreshing
        assert mine
        outcome = tasks.refresh.run(budget=100_000)
    assert outcome["skipped"] == 1 and outcome["embedded"] == 0
    with session_scope(committed_engine) as s:
        assert store.load(s, cid, embedder.model_id) == {}
    assert tasks.refresh.run(budget=100_000)["skipped"] == 0
    with session_scope(committed_engine) as s:
        assert store.load(s, cid, embedder.model_id)


def test_a_refresh_on_another_machine_holds_the_advisory_lock(committed_engine: Engine) -> None:
    if committed_engine.dialect.name != "postgresql":
        pytest.skip("the advisory lock exists on PostgreSQL only (SQLite deployments are one machine)")
    with session_scope(committed_engine) as first:
        assert store.try_refresh_lock(first)
        with session_scope(committed_engine) as second:
            assert not store.try_refresh_lock(second)
    with session_scope(committed_engine) as later:
        assert store.try_refresh_lock(later)  # released when the refresh transaction ends


def test_a_complete_refresh_prunes_the_index_folders_of_previous_models(
    committed_engine: Engine, hashing_settings: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    continued: list[str] = []
    monkeypatch.setattr(tasks.celery_app, "send_task", lambda name, **_: continued.append(name))
    with session_scope(committed_engine) as s:
        world = build_world(s)
    cid = world.community.id
    embedder = get_embedder()
    empty = (np.zeros(0, np.int64), np.zeros((0, 8), np.float32))
    store.write_indexes(cid, "old-engine@0.1", 8, {"people": empty}, hashes={"people": []})
    assert store.model_ids(cid) == ["old-engine@0.1"]
    tasks.refresh.run(budget=5)  # a backlog remains: the previous folder is kept meanwhile
    assert continued == [tasks.REFRESH] and "old-engine@0.1" in store.model_ids(cid)
    tasks.refresh.run(budget=100_000)
    assert store.model_ids(cid) == [embedder.model_id]
    assert store.read_index(cid, "old-engine@0.1", "people") is None

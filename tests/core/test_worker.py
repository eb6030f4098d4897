"""A real Celery worker process runs jobs enqueued after commit, exactly once in effect."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy import Engine, func, select

from core import jobs
from core.access import Actor
from core.clock import utcnow
from core.communities import service as communities
from core.communities.schemas import CommunityIn, JoinIn
from core.db import session_scope
from core.models import Channel, Mention, Notification, Post, Thread
from tests.conftest import AMQP_URL, DATABASE_URL, REDIS_URL, needs_amqp, needs_redis
from tests.factories import make_user

pytestmark = pytest.mark.worker


def _start_worker(broker_url: str, tmp: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "HEARTH_BROKER_URL": broker_url,
        "HEARTH_DATABASE_URL": DATABASE_URL,
        "HEARTH_DATA_DIR": str(tmp),
    }
    with (tmp / "worker.log").open("wb") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "api.cli", "worker", "--loglevel", "WARNING"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@contextmanager
def celery_sender(broker_url: str) -> Iterator[Celery]:
    """Dispatch jobs to `broker_url`, as the API process would."""
    app = Celery("hearth-test-sender", broker=broker_url)
    app.conf.task_default_queue = "hearth"
    previous = jobs.set_dispatcher(lambda job: app.send_task(job.name, args=job.args, kwargs=job.kwargs))
    try:
        yield app
    finally:
        jobs.set_dispatcher(previous)
        app.close()


def _mentioning_post(engine: Engine) -> tuple[int, int]:
    """A committed post by one member that mentions another; returns (post id, mentioned id)."""
    tag = uuid.uuid4().hex[:8]
    with session_scope(engine) as s:
        author, mentioned = make_user(s), make_user(s)
        community = communities.create_community(s, Actor(author), CommunityIn(slug=f"w-{tag}", name="W"))
        communities.join(s, Actor(mentioned), community.id, JoinIn())
        channel = Channel(community_id=community.id, slug="general", name="General", created_by=author.id)
        s.add(channel)
        s.flush()
        thread = Thread(
            community_id=community.id,
            channel_id=channel.id,
            author_id=author.id,
            title="你好",
            last_activity_at=utcnow(),
        )
        s.add(thread)
        s.flush()
        post = Post(
            community_id=community.id,
            thread_id=thread.id,
            author_id=author.id,
            is_opening=True,
            body=f"歡迎 <@{mentioned.id}>!",
        )
        s.add(post)
        s.flush()
        s.add(Mention(post_id=post.id, user_id=mentioned.id))
        return post.id, mentioned.id


def _notifications(engine: Engine, user_id: int) -> int:
    with session_scope(engine) as s:
        return (
            s.scalar(select(func.count()).select_from(Notification).where(Notification.user_id == user_id))
            or 0
        )


def _wait_for(predicate: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"worker died:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    raise AssertionError(f"the worker did not run the job in time:\n{log.read_text()[-3000:]}")


def _run_scenario(engine: Engine, broker_url: str, tmp_path: Path) -> None:
    post_id, mentioned_id = _mentioning_post(engine)
    other_post_id, other_id = _mentioning_post(engine)
    proc = _start_worker(broker_url, tmp_path)
    log = tmp_path / "worker.log"
    try:
        with celery_sender(broker_url):
            with session_scope(engine) as s:
                jobs.enqueue(s, "hearth.notifications.post_created", post_id)
            with pytest.raises(RuntimeError), session_scope(engine) as s:
                jobs.enqueue(s, "hearth.notifications.post_created", other_post_id)
                raise RuntimeError("the request failed: this job must never reach the worker")
            _wait_for(lambda: _notifications(engine, mentioned_id) == 1, proc, log)
            assert _notifications(engine, other_id) == 0

            # Redelivery of the same job (a retry, a crash before ack) notifies no one twice.
            with session_scope(engine) as s:
                jobs.enqueue(s, "hearth.notifications.post_created", post_id)
                jobs.enqueue(s, "hearth.notifications.post_created", other_post_id)
            _wait_for(lambda: _notifications(engine, other_id) == 1, proc, log)
        assert _notifications(engine, mentioned_id) == 1
        with session_scope(engine) as s:
            note = s.scalar(select(Notification).where(Notification.user_id == mentioned_id))
            assert note is not None and note.kind == "mention" and note.subject_id == post_id
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_worker_on_embedded_sqlite_broker(committed_engine: Engine, tmp_path: Path) -> None:
    _run_scenario(committed_engine, f"sqla+sqlite:///{tmp_path / 'broker.db'}", tmp_path)


@needs_redis()
def test_worker_on_redis_broker(committed_engine: Engine, tmp_path: Path) -> None:
    import redis

    assert REDIS_URL is not None
    redis.Redis.from_url(REDIS_URL).delete("hearth")  # an old run's leftovers
    _run_scenario(committed_engine, REDIS_URL, tmp_path)


@needs_amqp()
def test_worker_on_rabbitmq_broker(committed_engine: Engine, tmp_path: Path) -> None:
    assert AMQP_URL is not None
    with Celery("hearth-test-purge", broker=AMQP_URL) as app:
        app.control.purge()  # an old run's leftovers
    _run_scenario(committed_engine, AMQP_URL, tmp_path)

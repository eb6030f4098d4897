"""Stored embeddings: keyed by entity, model and content hash; recomputed only when stale."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.conversation import service as conversation
from core.conversation.schemas import PostPatch
from core.models import Embedding, EmbeddingEntity, Membership, Post, RecommenderState
from core.social import service as social
from recommender import repository as repo
from recommender import service, store
from recommender.embedder import HashingEmbedder, content_hash
from tests.recommender.test_service import World, build_world


class Counting(HashingEmbedder):
    """The hashing embedder, counting what it is asked to embed."""

    def __init__(self, dim: int = 64) -> None:
        super().__init__(dim)
        self.seen: list[str] = []

    def embed(self, texts: Sequence[str], *, role: str = "passage") -> np.ndarray:  # type: ignore[override]
        self.seen.extend(texts)
        return super().embed(texts, role=role)  # type: ignore[arg-type]


@pytest.fixture
def world(session: Session) -> World:
    return build_world(session)


def _rows(session: Session, community_id: int) -> dict[tuple[EmbeddingEntity, int], tuple[str, str]]:
    return {
        (t, i): (m, h)
        for t, i, m, h in session.execute(
            select(
                Embedding.entity_type, Embedding.entity_id, Embedding.model_id, Embedding.content_hash
            ).where(Embedding.community_id == community_id)
        )
    }


def test_vectors_round_trip_as_little_endian_float32() -> None:
    v = np.linspace(-1, 1, 7, dtype=np.float32)
    raw = store.to_bytes(v)
    assert len(raw) == 28
    assert np.array_equal(store.from_bytes(raw, 7), v)


def test_sync_embeds_only_what_changed(session: Session, world: World) -> None:
    cid = world.community.id
    embedder = Counting()
    texts = repo.load_snapshot(session, cid).texts()
    first = store.sync(session, cid, texts, embedder)
    assert (first.embedded, first.unchanged, first.deleted) == (len(texts), 0, 0)
    rows = _rows(session, cid)
    assert {k: h for k, (_, h) in rows.items()} == {k: content_hash(t) for k, t in texts.items()}

    embedder.seen.clear()
    again = store.sync(session, cid, repo.load_snapshot(session, cid).texts(), embedder)
    assert (again.embedded, again.unchanged) == (0, len(texts)) and embedder.seen == []

    # Editing the opening post changes the thread's text (and its author's profile) only.
    post_id = session.scalar(
        select(Post.id).where(Post.thread_id == world.threads["code"], Post.is_opening.is_(True))
    )
    assert post_id is not None
    conversation.edit_post(
        session, world.actor("kim"), post_id, PostPatch(body="rust ownership and borrowing")
    )
    changed = store.sync(session, cid, repo.load_snapshot(session, cid).texts(), embedder)
    assert changed.embedded == 2 and changed.unchanged == len(texts) - 2
    assert any("borrowing" in t for t in embedder.seen)
    kim_membership = session.scalar(
        select(Membership.id).where(
            Membership.user_id == world.users["kim"].id, Membership.community_id == cid
        )
    )
    assert (
        _rows(session, cid)[(EmbeddingEntity.MEMBER, kim_membership)]
        != rows[(EmbeddingEntity.MEMBER, kim_membership)]
    )  # type: ignore[index]


def test_a_model_change_recomputes_and_replaces_old_vectors(session: Session, world: World) -> None:
    cid = world.community.id
    texts = repo.load_snapshot(session, cid).texts()
    store.sync(session, cid, texts, HashingEmbedder(32))
    newer = Counting(48)
    result = store.sync(session, cid, texts, newer, limit=3)
    assert (result.embedded, result.remaining) == (3, len(texts) - 3)  # bounded batches
    store.sync(session, cid, texts, newer)
    models = {m for m, _ in _rows(session, cid).values()}
    assert models == {newer.model_id}
    assert len(_rows(session, cid)) == len(texts)


def test_entities_that_must_have_none_are_deleted(session: Session, world: World) -> None:
    cid = world.community.id
    store.sync(session, cid, repo.load_snapshot(session, cid).texts(), HashingEmbedder())
    conversation.delete_post(
        session,
        world.actor("ada"),
        session.scalar(
            select(Post.id).where(Post.thread_id == world.threads["bread"], Post.is_opening.is_(True))
        ),  # type: ignore[arg-type]
    )
    social.set_recommendation_opt_out(session, world.actor("sam"), True)
    result = store.sync(session, cid, repo.load_snapshot(session, cid).texts(), HashingEmbedder())
    assert result.deleted >= 1  # sam's profile (deleted at once by the opt-out) and nothing else lingers
    sam_memberships = session.scalars(
        select(Membership.id).where(Membership.user_id == world.users["sam"].id)
    )
    keys = set(_rows(session, cid))
    assert not any((EmbeddingEntity.MEMBER, mid) in keys for mid in sam_memberships)


def test_embed_entity_is_idempotent_and_bumps_the_stamp(session: Session, world: World) -> None:
    cid = world.community.id
    embedder = Counting()
    changes = service.embed_entity(session, "thread", world.threads["hike"], embedder)
    assert [(c.kind, c.index_id) for c in changes] == [("thread", world.threads["hike"])]
    assert store.version(session, cid) == 1
    embedder.seen.clear()
    assert service.embed_entity(session, "thread", world.threads["hike"], embedder) == []
    assert embedder.seen == [] and store.version(session, cid) == 1

    # A member's profile is embedded once per community they belong to.
    user_changes = service.embed_entity(session, "user", world.users["mei"].id, embedder)
    assert [(c.kind, c.index_id) for c in user_changes] == [("people", world.users["mei"].id)]
    social.set_recommendation_opt_out(session, world.actor("mei"), True)
    gone = service.embed_entity(session, "user", world.users["mei"].id, embedder)
    # The opt-out already deleted the rows; the removal from saved indexes is still emitted.
    assert [(c.community_id, c.kind, c.index_id, c.vector) for c in gone] == [
        (cid, "people", world.users["mei"].id, None)
    ]
    assert session.scalar(select(func.count()).select_from(RecommenderState)) >= 1
    with pytest.raises(Exception, match="unknown entity type"):
        service.embed_entity(session, "dm", 1, embedder)


def test_index_files_are_written_updated_and_keyed_by_model(
    session: Session, world: World, tmp_path: Path
) -> None:
    cid = world.community.id
    embedder = HashingEmbedder(32)
    snap = repo.load_snapshot(session, cid)
    store.sync(session, cid, snap.texts(), embedder)
    stored = store.load(session, cid, embedder.model_id)
    ids = {key: int(corpus_id.split(":")[1]) for corpus_id, key in snap.entities.items()}
    sizes = store.write_indexes(
        cid, embedder.model_id, embedder.dim, store.vectors_by_kind(stored, ids), data_dir=tmp_path
    )
    assert sizes == {"people": len(world.users), "event": 3, "course": 2, "thread": 5}
    people = store.read_index(cid, embedder.model_id, "people", data_dir=tmp_path)
    assert people is not None and world.users["mei"].id in people
    assert store.read_index(cid, "another@1", "people", data_dir=tmp_path) is None

    new_vec = np.ones((1, 32), np.float32) / np.sqrt(32)
    assert store.update_index(
        cid,
        embedder.model_id,
        "thread",
        upsert=(np.array([999], np.int64), new_vec),
        remove_ids=[world.threads["hike"]],
        data_dir=tmp_path,
    )
    threads = store.read_index(cid, embedder.model_id, "thread", data_dir=tmp_path)
    assert (
        threads is not None and 999 in threads and world.threads["hike"] not in threads and len(threads) == 5
    )
    assert not store.update_index(cid + 1000, embedder.model_id, "thread", remove_ids=[1], data_dir=tmp_path)


def test_concurrent_index_updates_are_all_applied(tmp_path: Path) -> None:
    """Embed jobs of several workers update one file at once: none may lose another's update."""
    import threading

    store.write_indexes(
        1,
        "m@1",
        16,
        {"people": (np.zeros(0, np.int64), np.zeros((0, 16), np.float32))},
        hashes={"people": []},
        data_dir=tmp_path,
    )
    applied: list[bool] = []

    def writer(start: int) -> None:
        rng = np.random.default_rng(start)
        for i in range(start, start + 60):
            vector = rng.normal(size=(1, 16)).astype(np.float32)
            vector /= np.linalg.norm(vector)
            applied.append(
                store.update_index(
                    1,
                    "m@1",
                    "people",
                    upsert=(np.array([i], np.int64), vector),
                    upsert_hashes=[f"h{i}"],
                    data_dir=tmp_path,
                )
            )

    threads = [threading.Thread(target=writer, args=(start,)) for start in (1000, 5000, 9000)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    index = store.read_index(1, "m@1", "people", data_dir=tmp_path)
    assert all(applied) and len(applied) == 180
    assert index is not None and len(index) == 180
    hashes = store.read_hashes(1, "m@1", "people", data_dir=tmp_path)
    assert hashes is not None and hashes[1000] == "h1000" and len(hashes) == 180

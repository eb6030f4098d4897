"""Stored embeddings and the on-disk vector indexes built from them.

Embeddings live in the database, one row per (entity type, entity id, model id), stamped
with the content hash of the text they came from (`recommender.embedder.content_hash`).
`sync()` recomputes exactly the rows whose text or model changed, in bounded batches, and
deletes rows whose entity must no longer have one (deleted, left, opted out).

Indexes are files under `Settings.data_dir/recommender/c<community>/<model>/<kind>.index`,
one per recommendation kind, written atomically by `VectorIndex.save` and keyed by the
model id so that a model change never mixes vector spaces. They are derived data: any of
them can be deleted and rebuilt from the database (`hearth recommend rebuild`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.clock import utcnow
from core.config import get_settings
from core.models import Embedding, EmbeddingEntity, RecommenderState
from recommender.embedder import Embedder, content_hash

if TYPE_CHECKING:
    from recommender.index import VectorIndex

Key = tuple[EmbeddingEntity, int]
Progress = Callable[[int, int], None]

EMBED_BATCH = 64
INDEX_KINDS = ("people", "event", "course", "thread")
_ENTITY_KIND = {
    EmbeddingEntity.MEMBER: "people",
    EmbeddingEntity.EVENT: "event",
    EmbeddingEntity.COURSE: "course",
    EmbeddingEntity.THREAD: "thread",
}


def to_bytes(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def from_bytes(raw: bytes, dim: int) -> np.ndarray:
    return np.frombuffer(raw, dtype="<f4", count=dim).astype(np.float32)


@dataclass(frozen=True, slots=True)
class Stored:
    content_hash: str
    vector: np.ndarray


def load(session: Session, community_id: int, model_id: str) -> dict[Key, Stored]:
    """Every embedding of a community under one model."""
    rows = session.execute(
        select(
            Embedding.entity_type,
            Embedding.entity_id,
            Embedding.content_hash,
            Embedding.dim,
            Embedding.vector,
        ).where(Embedding.community_id == community_id, Embedding.model_id == model_id)
    )
    return {(t, i): Stored(h, from_bytes(v, d)) for t, i, h, d, v in rows}


def get(session: Session, entity: EmbeddingEntity, entity_id: int, model_id: str) -> Embedding | None:
    return session.scalar(
        select(Embedding).where(
            Embedding.entity_type == entity, Embedding.entity_id == entity_id, Embedding.model_id == model_id
        )
    )


def put(
    session: Session,
    community_id: int,
    entity: EmbeddingEntity,
    entity_id: int,
    *,
    model_id: str,
    text_hash: str,
    vector: np.ndarray,
) -> None:
    """Write one embedding; vectors of other models for the same entity go (they are stale)."""
    put_many(session, community_id, [((entity, entity_id), text_hash, vector)], model_id=model_id)


def put_many(
    session: Session,
    community_id: int,
    rows: Sequence[tuple[Key, str, np.ndarray]],
    *,
    model_id: str,
) -> None:
    """Upsert (key, content hash, vector) rows in one statement, then drop other models' rows.

    An upsert, not read-then-write: two workers embedding the same entity at once both
    succeed and the last text wins, with no unique-key failure to retry.
    """
    if not rows:
        return
    now = utcnow()
    values = [
        {
            "community_id": community_id,
            "entity_type": entity,
            "entity_id": entity_id,
            "model_id": model_id,
            "content_hash": text_hash,
            "dim": int(vector.shape[0]),
            "vector": to_bytes(vector),
            "updated_at": now,
        }
        for (entity, entity_id), text_hash, vector in rows
    ]
    dialect = session.get_bind().dialect.name
    insert_fn = {"postgresql": pg_insert, "sqlite": sqlite_insert}.get(dialect)
    if insert_fn is None:  # pragma: no cover - Hearth runs on PostgreSQL and SQLite only
        raise RuntimeError(f"no upsert for the {dialect} dialect")
    stmt: Any = insert_fn(Embedding)
    stmt = stmt.on_conflict_do_update(
        index_elements=["entity_type", "entity_id", "model_id"],
        set_={
            name: stmt.excluded[name]
            for name in ("community_id", "content_hash", "dim", "vector", "updated_at")
        },
    )
    session.execute(stmt, values)
    keys = [(entity.value, entity_id) for (entity, entity_id), _, _ in rows]
    for start in range(0, len(keys), 500):
        session.execute(
            delete(Embedding).where(
                tuple_(Embedding.entity_type, Embedding.entity_id).in_(keys[start : start + 500]),
                Embedding.model_id != model_id,
            )
        )
    # Embedding objects loaded earlier in this session must not shadow what was just written.
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Embedding):
            session.expire(obj)


def communities_of(session: Session, key: Key) -> set[int]:
    """The communities holding embeddings of an entity (any model)."""
    return set(
        session.scalars(
            select(Embedding.community_id).where(
                Embedding.entity_type == key[0], Embedding.entity_id == key[1]
            )
        )
    )


def remove_community(session: Session, community_id: int) -> int:
    result = session.execute(delete(Embedding).where(Embedding.community_id == community_id))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def remove(session: Session, keys: Iterable[Key]) -> int:
    """Delete the embeddings (every model) of these entities."""
    wanted = list(keys)
    deleted = 0
    for start in range(0, len(wanted), 500):
        chunk = [(t.value, i) for t, i in wanted[start : start + 500]]
        result = session.execute(
            delete(Embedding).where(tuple_(Embedding.entity_type, Embedding.entity_id).in_(chunk))
        )
        deleted += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return deleted


@dataclass
class SyncResult:
    embedded: int = 0
    unchanged: int = 0
    deleted: int = 0
    remaining: int = 0  # stale rows left for the next run (the batch limit was reached)

    @property
    def changed(self) -> bool:
        return bool(self.embedded or self.deleted)


def sync(
    session: Session,
    community_id: int,
    texts: Mapping[Key, str],
    embedder: Embedder,
    *,
    limit: int | None = None,
    progress: Progress | None = None,
) -> SyncResult:
    """Make the stored embeddings of a community match `texts` (every entity that should have one).

    Only entities whose text hash or model differs are embedded (at most `limit` of them);
    stored rows of entities absent from `texts` are deleted, whatever their model.
    """
    model_id = embedder.model_id
    current = {
        (t, i): h
        for t, i, h in session.execute(
            select(Embedding.entity_type, Embedding.entity_id, Embedding.content_hash).where(
                Embedding.community_id == community_id, Embedding.model_id == model_id
            )
        )
    }
    present = {
        (t, i)
        for t, i in session.execute(
            select(Embedding.entity_type, Embedding.entity_id).where(Embedding.community_id == community_id)
        )
    }
    result = SyncResult()
    result.deleted = remove(session, [k for k in present if k not in texts])
    stale: list[tuple[Key, str, str]] = []
    for key, text in texts.items():
        h = content_hash(text)
        if current.get(key) == h:
            result.unchanged += 1
        else:
            stale.append((key, text, h))
    todo = stale if limit is None else stale[:limit]
    result.remaining = len(stale) - len(todo)
    for start in range(0, len(todo), EMBED_BATCH):
        batch = todo[start : start + EMBED_BATCH]
        vectors = embedder.embed([text for _, text, _ in batch], role="passage")
        put_many(
            session,
            community_id,
            [(key, h, vector) for (key, _, h), vector in zip(batch, vectors, strict=True)],
            model_id=model_id,
        )
        result.embedded += len(batch)
        if progress is not None:
            progress(result.embedded, len(todo))
    return result


# --- the cross-process refit stamp ------------------------------------------------------


def version(session: Session, community_id: int) -> int:
    return (
        session.scalar(select(RecommenderState.version).where(RecommenderState.community_id == community_id))
        or 0
    )


def bump_version(session: Session, community_id: int) -> None:
    """Tell every process holding a fitted model of this community that it is stale."""
    values = {"version": RecommenderState.version + 1, "refreshed_at": utcnow()}
    result = session.execute(
        update(RecommenderState).where(RecommenderState.community_id == community_id).values(**values)
    )
    if result.rowcount:  # type: ignore[attr-defined]
        return
    try:
        with session.begin_nested():
            session.add(RecommenderState(community_id=community_id, version=1, refreshed_at=utcnow()))
            session.flush()
    except IntegrityError:
        session.execute(
            update(RecommenderState).where(RecommenderState.community_id == community_id).values(**values)
        )


# --- on-disk indexes -----------------------------------------------------------------


def _safe(model_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model_id)


def index_dir(community_id: int, model_id: str, data_dir: Path | None = None) -> Path:
    root = data_dir or get_settings().data_dir
    return root / "recommender" / f"c{community_id}" / _safe(model_id)


def index_path(community_id: int, model_id: str, kind: str, data_dir: Path | None = None) -> Path:
    return index_dir(community_id, model_id, data_dir) / f"{kind}.index"


def vectors_by_kind(
    stored: Mapping[Key, Stored], ids: Mapping[Key, int]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(int64 ids, float32 matrix) per kind; `ids` maps a stored key to its index id.

    Index ids are user ids for people and row ids for items, so that a member's id is the
    same in every community's people index.
    """
    grouped: dict[str, tuple[list[int], list[np.ndarray]]] = {k: ([], []) for k in INDEX_KINDS}
    for key, value in stored.items():
        if key not in ids:
            continue
        bucket = grouped[_ENTITY_KIND[key[0]]]
        bucket[0].append(ids[key])
        bucket[1].append(value.vector)
    out = {}
    for kind, (id_list, vecs) in grouped.items():
        out[kind] = (
            np.asarray(id_list, dtype=np.int64),
            np.vstack(vecs) if vecs else np.zeros((0, 0), np.float32),
        )
    return out


def write_indexes(
    community_id: int,
    model_id: str,
    dim: int,
    groups: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    data_dir: Path | None = None,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Build and save one index per kind from scratch; returns the size of each."""
    from recommender.index import VectorIndex

    sizes = {}
    for kind, (ids, vectors) in groups.items():
        matrix = vectors if len(ids) else np.zeros((0, dim), np.float32)
        index = VectorIndex.build(ids, matrix, dim=dim, model_id=model_id, progress=progress)
        path = index_path(community_id, model_id, kind, data_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        index.save(path)
        sizes[kind] = len(index)
    return sizes


def read_index(
    community_id: int, model_id: str, kind: str, *, data_dir: Path | None = None
) -> VectorIndex | None:
    """The saved index of a kind, or None when missing or built for another model or format."""
    from recommender.index import IndexStale, VectorIndex

    path = index_path(community_id, model_id, kind, data_dir)
    if not path.exists():
        return None
    try:
        return VectorIndex.load(path, model_id=model_id)
    except IndexStale:
        return None


def update_index(
    community_id: int,
    model_id: str,
    kind: str,
    *,
    upsert: tuple[np.ndarray, np.ndarray] | None = None,
    remove_ids: Iterable[int] = (),
    data_dir: Path | None = None,
) -> bool:
    """Apply one change to a saved index without a rebuild; False when there is none to change
    (the next refresh writes it)."""
    index = read_index(community_id, model_id, kind, data_dir=data_dir)
    if index is None:
        return False
    removed = list(remove_ids)
    if removed:
        index.remove(removed)
    if upsert is not None and len(upsert[0]):
        index.upsert(upsert[0], upsert[1])
    index.save(index_path(community_id, model_id, kind, data_dir))
    return True

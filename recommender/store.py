"""Stored embeddings and the on-disk vector indexes built from them.

Embeddings live in the database, one row per (entity type, entity id, model id), stamped
with the content hash of the text they came from (`recommender.embedder.content_hash`).
`sync()` recomputes exactly the rows whose text or model changed, in bounded batches, and
deletes rows whose entity must no longer have one (deleted, left, opted out).

Indexes are files under `Settings.data_dir/recommender/c<community>/<model>/<kind>.index`,
one per recommendation kind, written atomically by `VectorIndex.save` and keyed by the
model id so that a model change never mixes vector spaces. They are derived data: any of
them can be deleted and rebuilt from the database (`hearth recommend rebuild`).

Several workers write the same files (embed jobs, refresh chains), so every read-modify-write
of an index holds an exclusive `flock` on `<kind>.index.lock` next to it: a load-modify-save
without it loses the other writer's update and can leave an index whose manifest no longer
matches. Next to each index, `<kind>.index.hashes.json` records the content hash of every
vector it holds (index id -> hash), written under the same lock: a reader trusts an index
only when those hashes equal the stored rows', so a file that missed an update (a crash
between the database commit and the file write) is detected, not served.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import delete, select, tuple_, update
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.clock import utcnow
from core.config import get_settings
from core.db import is_postgres
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


def stored_hashes(session: Session, community_id: int, model_id: str) -> dict[Key, str]:
    """The content hash of every embedding of a community under one model (no vectors read)."""
    rows = session.execute(
        select(Embedding.entity_type, Embedding.entity_id, Embedding.content_hash).where(
            Embedding.community_id == community_id, Embedding.model_id == model_id
        )
    )
    return {(t, i): h for t, i, h in rows}


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


IndexHashes = dict[int, str]


def hashes_path(path: Path) -> Path:
    return path.with_name(path.name + ".hashes.json")


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


@contextmanager
def _locked(path: Path, *, shared: bool = False) -> Iterator[None]:
    """Lock of one index file (every process and thread): exclusive while it is rewritten,
    shared while an index and its hashes are read together."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _write_hashes(path: Path, hashes: Mapping[int, str]) -> None:
    target = hashes_path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump({str(i): h for i, h in sorted(hashes.items())}, fh, separators=(",", ":"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def read_hashes(
    community_id: int, model_id: str, kind: str, *, data_dir: Path | None = None
) -> IndexHashes | None:
    """Index id -> content hash of what the saved index of a kind holds; None when unknown."""
    target = hashes_path(index_path(community_id, model_id, kind, data_dir))
    try:
        raw = json.loads(target.read_text(encoding="utf-8"))
        return {int(i): str(h) for i, h in raw.items()}
    except (OSError, ValueError, AttributeError):
        return None


def hashes_by_kind(stored: Mapping[Key, Stored], ids: Mapping[Key, int]) -> dict[str, list[str]]:
    """The content hashes of `vectors_by_kind(stored, ids)`, kind by kind, in the same order."""
    out: dict[str, list[str]] = {k: [] for k in INDEX_KINDS}
    for key, value in stored.items():
        if key in ids:
            out[_ENTITY_KIND[key[0]]].append(value.content_hash)
    return out


def write_indexes(
    community_id: int,
    model_id: str,
    dim: int,
    groups: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    hashes: Mapping[str, Sequence[str]] | None = None,
    data_dir: Path | None = None,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Build and save one index per kind from scratch; returns the size of each.

    `hashes[kind]` are the content hashes of the vectors, in the order of their ids; without
    them the index is written with no hashes, and readers that check them will not trust it.
    """
    from recommender.index import VectorIndex

    sizes = {}
    for kind, (ids, vectors) in groups.items():
        matrix = vectors if len(ids) else np.zeros((0, dim), np.float32)
        index = VectorIndex.build(ids, matrix, dim=dim, model_id=model_id, progress=progress)
        path = index_path(community_id, model_id, kind, data_dir)
        kind_hashes = (hashes or {}).get(kind)
        with _locked(path):
            # The hashes go first: a crash after them leaves an index that does not match
            # them (not trusted, rewritten by the next refresh), never the other way round.
            hashes_path(path).unlink(missing_ok=True)
            index.save(path)
            if kind_hashes is not None:
                _write_hashes(path, dict(zip(ids.tolist(), kind_hashes, strict=True)))
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


def read_index_and_hashes(
    community_id: int, model_id: str, kind: str, *, data_dir: Path | None = None
) -> tuple[VectorIndex | None, IndexHashes | None]:
    """The saved index of a kind and its recorded hashes, read as one (no writer in between)."""
    path = index_path(community_id, model_id, kind, data_dir)
    if not path.exists():
        return None, None
    with _locked(path, shared=True):
        return (
            read_index(community_id, model_id, kind, data_dir=data_dir),
            read_hashes(community_id, model_id, kind, data_dir=data_dir),
        )


def update_index(
    community_id: int,
    model_id: str,
    kind: str,
    *,
    upsert: tuple[np.ndarray, np.ndarray] | None = None,
    upsert_hashes: Sequence[str] | None = None,
    remove_ids: Iterable[int] = (),
    data_dir: Path | None = None,
) -> bool:
    """Apply one change to a saved index without a rebuild, under the file's lock; False when
    there is none to change (the next refresh writes it).

    `upsert_hashes` are the content hashes of the upserted vectors; without them the index's
    recorded hashes are dropped, so that readers stop trusting it until it is rewritten.
    """
    path = index_path(community_id, model_id, kind, data_dir)
    if not path.exists():
        return False
    with _locked(path):
        index = read_index(community_id, model_id, kind, data_dir=data_dir)
        if index is None:
            return False
        hashes = read_hashes(community_id, model_id, kind, data_dir=data_dir)
        removed = list(remove_ids)
        if removed:
            index.remove(removed)
        upserted = upsert is not None and len(upsert[0])
        if upsert is not None and upserted:
            index.upsert(upsert[0], upsert[1])
        hashes_path(path).unlink(missing_ok=True)
        index.save(path)
        if hashes is not None and (not upserted or upsert_hashes is not None):
            for i in removed:
                hashes.pop(int(i), None)
            if upsert is not None and upsert_hashes is not None:
                hashes.update(zip(upsert[0].tolist(), upsert_hashes, strict=True))
            _write_hashes(path, hashes)
    return True


def model_ids(community_id: int, *, data_dir: Path | None = None) -> list[str]:
    """The model ids of every index folder of a community (read from their manifests)."""
    from recommender.index import manifest_path

    root = (data_dir or get_settings().data_dir) / "recommender" / f"c{community_id}"
    found: set[str] = set()
    for path in root.glob("*/*.index"):
        try:
            model = json.loads(manifest_path(path).read_text(encoding="utf-8")).get("model_id")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(model, str):
            found.add(model)
    return sorted(found)


def prune_models(community_id: int, keep: str, *, data_dir: Path | None = None) -> list[str]:
    """Delete the index files of every model but `keep` (a previous engine's folders hold
    vectors nobody serves any more); returns the model ids pruned. The lock files stay: a
    writer still waiting on one must keep excluding the others."""
    from recommender.index import manifest_path

    pruned = []
    for model in model_ids(community_id, data_dir=data_dir):
        if model == keep:
            continue
        for kind in INDEX_KINDS:
            path = index_path(community_id, model, kind, data_dir)
            with _locked(path):
                for name in (path, manifest_path(path), hashes_path(path)):
                    name.unlink(missing_ok=True)
        pruned.append(model)
    return pruned


# --- one refresh at a time per deployment ------------------------------------------------


@contextmanager
def refresh_guard(*, data_dir: Path | None = None) -> Iterator[bool]:
    """Yields whether this process may refresh now (non-blocking): a file lock under the data
    directory, which every worker of a deployment shares (the index files live there)."""
    path = (data_dir or get_settings().data_dir) / "recommender" / "refresh.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


REFRESH_LOCK_KEY = 0x6865617274680001  # "hearth" + 1: the advisory lock of the refresh


def try_refresh_lock(session: Session) -> bool:
    """On PostgreSQL, a transaction-scoped advisory lock (workers on several machines share
    only the database); True at once elsewhere (SQLite deployments are one machine, covered
    by `refresh_guard`)."""
    if not is_postgres(session):
        return True
    return bool(session.scalar(sql_text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": REFRESH_LOCK_KEY}))

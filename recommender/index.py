"""FAISS vector index over L2-normalised embeddings (inner product = cosine), int64 ids.

Two kinds, switched automatically by size:

- "exact": `IndexIDMap2(IndexFlatIP)`, a brute-force scan. Perfect recall, nothing to train;
  used up to `Settings.index_exact_max` vectors.
- "ivf": `IndexIVFFlat` (inverted lists of full vectors) above it, rather than HNSW because
  it removes ids natively, where HNSW would need tombstones and periodic compaction (a one-off
  comparison during development, not part of `hearth bench recommend`, found the two equally
  fast per query at 100k and IVF about three times faster to build). A hash-table direct map makes a
  removal O(1) instead of a scan of every list.

The IVF index is trained on a sample of the vectors it holds. It is retrained (one rebuild,
amortised) when it has grown to `index_retrain_growth` times the size it was trained at, since
its lists would otherwise grow long and slow; it goes back to exact when it shrinks below
half of `exact_max`.

On disk an index is two files: `<path>` (FAISS) and `<path>.manifest.json` (model id, dim,
kind, count, format version, parameters, checksum). Both are written to temporary files and
renamed; a manifest whose checksum does not match its index, or that names another model,
dimension or format, makes `load` raise `IndexStale`, and the caller rebuilds from the
database.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Collection, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from core.config import get_settings

FORMAT_VERSION = 1
EXACT = "exact"
IVF = "ivf"
TRAIN_ITERATIONS = 10
ADD_CHUNK = 50_000  # vectors per add() call: progress granularity, bounded temporaries
BATCH_QUERIES = 16  # from this many query rows a search is a batch and may use several threads

Progress = Callable[[int, int], None]
_HASHTABLE = faiss.DirectMap.Hashtable  # type: ignore[attr-defined]  # missing from faiss's stubs


class IndexStale(Exception):
    """The stored index cannot serve this model: rebuild it from the stored embeddings."""


def _use_threads(n: int) -> None:
    # omp_set_num_threads holds for the calling thread's later parallel regions, so each call
    # site says what it wants. A single query must run on one thread: FAISS would otherwise
    # fork a team per query, and on a busy machine the team waits for a core (seen once during
    # development, not in the bench: a 2,000-vector exact search took 12 ms instead of 0.1 ms
    # with 2 threads on a loaded 2-core box). Builds and batches get `index_threads`; FAISS
    # alone would take every core of the machine and oversubscribe a web or Celery process.
    faiss.omp_set_num_threads(n)


def _check_ids(ids: Any) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"ids must be a 1-d array, not shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"ids must be integers, not {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    if arr.size and arr.min() < 0:
        raise ValueError("ids must be >= 0 (-1 is the padding of search results)")
    if len(np.unique(arr)) != len(arr):
        raise ValueError("ids must be unique within one call")
    return arr


def _check_vectors(vectors: Any, dim: int, n: int | None = None) -> np.ndarray:
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim == 1 and n is None:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"vectors must have shape (n, {dim}), not {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{n} ids but {arr.shape[0]} vectors")
    if not np.isfinite(arr).all():
        raise ValueError("vectors contain NaN or infinity")
    return np.ascontiguousarray(arr)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def manifest_path(path: Path) -> Path:
    return path.with_name(path.name + ".manifest.json")


class VectorIndex:
    """One FAISS index with its id set. Searches may run concurrently; writes (upsert, remove,
    rebuild) must be serialised by the caller, as FAISS's own indexes require."""

    def __init__(
        self,
        dim: int,
        *,
        model_id: str,
        exact_max: int | None = None,
        nprobe: int | None = None,
        nlist_factor: float | None = None,
    ) -> None:
        if dim < 1:
            raise ValueError(f"dim must be positive, not {dim}")
        settings = get_settings()
        self.threads = settings.index_threads
        self.dim = dim
        self.model_id = model_id
        self.exact_max = settings.index_exact_max if exact_max is None else exact_max
        self._nprobe = settings.index_nprobe if nprobe is None else nprobe
        self.nlist_factor = settings.index_nlist_factor if nlist_factor is None else nlist_factor
        self.retrain_growth = settings.index_retrain_growth
        self.train_per_list = settings.index_train_per_list
        self.kind = EXACT
        self.nlist = 0
        self.trained_on = 0
        self._ids: set[int] = set()
        self._index: Any = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    @property
    def nprobe(self) -> int:
        """IVF lists scanned per query: the recall/latency knob (ignored by the exact kind)."""
        return self._nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        if value < 1:
            raise ValueError(f"nprobe must be >= 1, not {value}")
        self._nprobe = value
        if self.kind == IVF:
            self._index.nprobe = value

    # ------------------------------------------------------------------ size and membership

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, id: object) -> bool:
        return id in self._ids

    def ids(self) -> np.ndarray:
        return np.fromiter(self._ids, dtype=np.int64, count=len(self._ids))

    def memory_bytes(self) -> int:
        """Bytes held by vectors, ids and centroids (not the Python id set)."""
        n = len(self._ids)
        per_vector = self.dim * 4 + 8
        if self.kind == IVF:
            return n * (per_vector + 16) + self.nlist * self.dim * 4  # + direct-map entries
        return n * (per_vector + 16)  # + IndexIDMap2's reverse map

    # ------------------------------------------------------------------ writes

    def upsert(self, ids: Any, vectors: Any) -> None:
        """Add vectors; ids already present are replaced."""
        ids = _check_ids(ids)
        vectors = _check_vectors(vectors, self.dim, len(ids))
        if not len(ids):
            return
        present = np.fromiter((i for i in ids.tolist() if i in self._ids), dtype=np.int64)
        if len(present):
            self._remove_present(present)
        _use_threads(1 if len(ids) < BATCH_QUERIES else self.threads)
        self._index.add_with_ids(vectors, ids)
        self._ids.update(ids.tolist())
        self._rebalance()

    def remove(self, ids: Iterable[int]) -> int:
        """Remove ids; unknown ids are ignored. Returns how many were removed."""
        present = np.fromiter((int(i) for i in ids if int(i) in self._ids), dtype=np.int64)
        if not len(present):
            return 0
        removed = self._remove_present(present)
        self._ids.difference_update(present.tolist())
        self._rebalance()
        return removed

    def _remove_present(self, present: np.ndarray) -> int:
        # The IVF hash-table direct map removes in O(1) per id but only takes an array selector.
        selector = faiss.IDSelectorArray(present) if self.kind == IVF else faiss.IDSelectorBatch(present)
        return int(self._index.remove_ids(selector))

    def _rebalance(self) -> None:
        n = len(self._ids)
        if self.kind == EXACT:
            outgrown = n > self.exact_max
        else:  # half of exact_max as the way back, so that one add and one removal do not flip kinds
            outgrown = n < self.exact_max // 2 or n > self.retrain_growth * self.trained_on
        if outgrown:
            self._rebuild(*self._export())

    # ------------------------------------------------------------------ build

    @classmethod
    def build(
        cls,
        ids: Any,
        vectors: Any,
        *,
        dim: int,
        model_id: str,
        exact_max: int | None = None,
        progress: Progress | None = None,
        nprobe: int | None = None,
        nlist_factor: float | None = None,
    ) -> VectorIndex:
        """A fresh index over all vectors (the full rebuild); progress(done, total)."""
        index = cls(dim, model_id=model_id, exact_max=exact_max, nprobe=nprobe, nlist_factor=nlist_factor)
        ids = _check_ids(ids)
        vectors = _check_vectors(vectors, dim, len(ids))
        index._rebuild(ids, vectors, progress)
        return index

    def _nlist_for(self, n: int) -> int:
        # sqrt(n) lists balance the coarse search against the list scans; the factor is tuned
        # by benchmarks/recommend.py. Each list needs enough training points to be meaningful.
        return max(1, min(round(self.nlist_factor * math.sqrt(n)), n // 39))

    def _rebuild(self, ids: np.ndarray, vectors: np.ndarray, progress: Progress | None = None) -> None:
        n = len(ids)
        total = n
        _use_threads(self.threads)
        index: Any
        if n > self.exact_max and n > 0:
            nlist = self._nlist_for(n)
            quantizer = faiss.IndexFlatIP(self.dim)
            index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            index.cp.max_points_per_centroid = self.train_per_list
            # faiss defaults to 25 k-means iterations; 10 make a large build 2.5x shorter, and
            # the recall figures of `hearth bench recommend` are measured with 10.
            index.cp.niter = TRAIN_ITERATIONS
            sample_size = min(n, nlist * self.train_per_list)
            rng = np.random.default_rng(n)  # deterministic for a given size
            sample = (
                vectors if sample_size == n else vectors[np.sort(rng.choice(n, sample_size, replace=False))]
            )
            index.train(sample)
            index.set_direct_map_type(_HASHTABLE)
            index.nprobe = self.nprobe
            kind, self.nlist, self.trained_on = IVF, nlist, n
        else:
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
            kind, self.nlist, self.trained_on = EXACT, 0, 0
        if progress:
            progress(0, total)
        for start in range(0, n, ADD_CHUNK):
            stop = min(start + ADD_CHUNK, n)
            index.add_with_ids(vectors[start:stop], ids[start:stop])
            if progress:
                progress(stop, total)
        self._index = index
        self.kind = kind
        self._ids = set(ids.tolist())

    def _stored_ids(self) -> np.ndarray:
        if self.kind == EXACT:
            return faiss.vector_to_array(self._index.id_map).astype(np.int64)
        invlists = self._index.invlists
        parts = [
            faiss.rev_swig_ptr(invlists.get_ids(lst), invlists.list_size(lst)).copy()
            for lst in range(invlists.nlist)
            if invlists.list_size(lst)
        ]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)

    def _export(self) -> tuple[np.ndarray, np.ndarray]:
        """Every (id, vector) held, read straight from FAISS's storage (no second copy kept)."""
        n = self._index.ntotal
        if self.kind == EXACT:
            flat: Any = faiss.downcast_index(self._index.index)
            vectors = faiss.rev_swig_ptr(flat.get_xb(), n * self.dim).reshape(n, self.dim).copy()
            ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
            return ids, vectors
        invlists = self._index.invlists
        id_parts: list[np.ndarray] = []
        vec_parts: list[np.ndarray] = []
        for lst in range(invlists.nlist):
            size = invlists.list_size(lst)
            if not size:
                continue
            id_parts.append(faiss.rev_swig_ptr(invlists.get_ids(lst), size).copy())
            codes = faiss.rev_swig_ptr(invlists.get_codes(lst), size * invlists.code_size)
            vec_parts.append(codes.view(np.float32).reshape(size, self.dim).copy())
        if not id_parts:
            return np.zeros(0, dtype=np.int64), np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(id_parts).astype(np.int64), np.concatenate(vec_parts)

    # ------------------------------------------------------------------ search

    def search(self, queries: Any, k: int, *, exclude: Collection[int] = ()) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query row, best first; missing results are id -1, score -inf."""
        queries = _check_vectors(queries, self.dim)
        if k < 1:
            raise ValueError(f"k must be >= 1, not {k}")
        nq = queries.shape[0]
        if not self._ids:
            return np.full((nq, k), -np.inf, dtype=np.float32), np.full((nq, k), -1, dtype=np.int64)
        params: Any = None
        if exclude:
            excluded = np.fromiter((int(i) for i in exclude), dtype=np.int64)
            selector = faiss.IDSelectorNot(faiss.IDSelectorBatch(excluded))
            params = faiss.SearchParametersIVF() if self.kind == IVF else faiss.SearchParameters()
            params.sel = selector
            if self.kind == IVF:
                params.nprobe = self.nprobe
            params._keep = selector  # the SWIG object does not own the selector
        _use_threads(1 if nq < BATCH_QUERIES else self.threads)
        scores, ids = self._index.search(queries, k, params=params)
        missing = ids < 0
        if missing.any():
            scores[missing] = -np.inf
        return scores, ids

    # ------------------------------------------------------------------ persistence

    def manifest(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "model_id": self.model_id,
            "dim": self.dim,
            "kind": self.kind,
            "count": len(self._ids),
            "params": {
                "exact_max": self.exact_max,
                "nlist": self.nlist,
                "nprobe": self.nprobe,
                "nlist_factor": self.nlist_factor,
                "trained_on": self.trained_on,
            },
            "faiss": faiss.__version__,
        }

    def save(self, path: Path) -> None:
        """Write `<path>` and its manifest atomically (temporary files, fsync, rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_index = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        meta_path = manifest_path(path)
        tmp_meta = meta_path.with_name(f".{meta_path.name}.{os.getpid()}.tmp")
        try:
            faiss.write_index(self._index, str(tmp_index))
            with tmp_index.open("rb+") as fh:
                os.fsync(fh.fileno())
            meta = self.manifest()
            meta["index_bytes"] = tmp_index.stat().st_size
            meta["index_sha256"] = _sha256(tmp_index)
            meta["saved_at"] = datetime.now(UTC).isoformat()
            with tmp_meta.open("w", encoding="utf-8") as fh:
                json.dump(meta, fh, indent=2)
                fh.flush()
                os.fsync(fh.fileno())
            # Index first: a crash between the renames leaves a manifest whose checksum no
            # longer matches, which load() reports as stale rather than serving a mix.
            os.replace(tmp_index, path)
            os.replace(tmp_meta, meta_path)
        finally:
            for tmp in (tmp_index, tmp_meta):
                tmp.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: Path, *, model_id: str, dim: int | None = None, verify: bool = True) -> VectorIndex:
        path = Path(path)
        meta_path = manifest_path(path)
        if not path.exists() or not meta_path.exists():
            raise IndexStale(f"no index at {path}")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise IndexStale(f"unreadable manifest {meta_path}: {exc}") from exc
        if meta.get("format") != FORMAT_VERSION:
            raise IndexStale(f"index format {meta.get('format')!r}, this Hearth reads {FORMAT_VERSION}")
        if meta.get("model_id") != model_id:
            raise IndexStale(f"index built with {meta.get('model_id')!r}, not {model_id!r}")
        if dim is not None and meta.get("dim") != dim:
            raise IndexStale(f"index has dim {meta.get('dim')!r}, expected {dim}")
        if path.stat().st_size != meta.get("index_bytes") or (
            verify and _sha256(path) != meta.get("index_sha256")
        ):
            raise IndexStale(f"{path} does not match its manifest (interrupted save?)")
        params = meta.get("params", {})
        index = cls(
            int(meta["dim"]),
            model_id=model_id,
            exact_max=params.get("exact_max"),
            nprobe=params.get("nprobe"),
            nlist_factor=params.get("nlist_factor"),
        )
        raw: Any = faiss.read_index(str(path))
        if raw.d != index.dim or raw.ntotal != meta.get("count"):
            raise IndexStale(
                f"{path} holds {raw.ntotal} x {raw.d}, manifest says {meta.get('count')} x {index.dim}"
            )
        expected_type: Any = {EXACT: faiss.IndexIDMap2, IVF: faiss.IndexIVFFlat}.get(meta.get("kind"))
        if expected_type is None or not isinstance(raw, expected_type):
            raise IndexStale(f"{path} is a {type(raw).__name__}, manifest says kind {meta.get('kind')!r}")
        index.kind = meta["kind"]
        index.nlist = int(params.get("nlist", 0))
        index.trained_on = int(params.get("trained_on", 0))
        if index.kind == IVF:
            raw.nprobe = index.nprobe
            raw.set_direct_map_type(_HASHTABLE)  # not serialised
        index._index = raw
        index._ids = set(index._stored_ids().tolist())
        return index

    def __repr__(self) -> str:
        return (
            f"VectorIndex(kind={self.kind!r}, count={len(self)}, dim={self.dim}, model_id={self.model_id!r})"
        )

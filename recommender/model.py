"""The recommender: people, events, courses and threads for one member, each with one reason.

`RecommenderModel.fit` precomputes everything a request needs from a `Corpus`:

- content: one vector per item (title + text) and per member (profile + interests), and a
  *taste* vector per member that blends the profile with the items the member engaged with
  (so a member with a vague profile still has a content signal, in any language);
- behaviour: one sparse member x target matrix (targets = items and members) with weights per
  interaction kind and a mild recency decay, its transpose capped to the most recent members per
  target (so a request's cost does not grow with an item's popularity), and the member x member
  social graph (follow, reply, tip; both directions) as the transition matrix of a people walk;
- popularity (distinct members, all time and recent) and freshness inputs.

A request (`recommend`) gathers candidates from the vector search of the kind, from the
behaviour graph (for items, what co-participants and followed people chose; for people, a
short personalised PageRank over ties and co-participation) and from the popular and fresh
lists, scores every candidate on each channel, blends, drops what must not appear, pushes
down what resembles "not interested" feedback, diversifies with MMR, applies tier access (with
at most `upgrade_slots` locked upgrade suggestions) and explains each result by its strongest
channel. The work per request is bounded
by caps (history, neighbours, candidates), not by the community's size.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import scipy.sparse as sp

from recommender.corpus import (
    DEFINES,
    INTERACTION_KINDS,
    KINDS,
    Corpus,
    InteractionKind,
    Item,
    ItemKind,
    Kind,
    Member,
)
from recommender.embedder import Embedder
from recommender.index import VectorIndex

# How much one interaction says about a member's interest in its target.
INTERACTION_WEIGHT: dict[InteractionKind, float] = {
    "follow": 1.0,
    "tip": 2.0,
    "reply": 1.5,
    "rsvp": 1.0,
    "attend": 1.5,
    "enrol": 2.0,
    "view": 0.3,
}
DAY = 86400.0


@dataclass(frozen=True)
class Reason:
    """Why a result is shown: a code, the params it is worded with, and `member`, the corpus id
    of the member whose name it shows (if any), so privacy checks go by who, not by a display
    name that two members may share."""

    code: str
    params: Mapping[str, str | int] = field(default_factory=dict)
    member: str | None = None


@dataclass(frozen=True)
class Recommendation:
    id: str
    kind: Kind
    score: float
    reason: Reason
    locked: bool = False


@dataclass(frozen=True)
class Weights:
    """Blend weights per channel (each channel is scaled to [0, 1] per request).

    Chosen by hand on a development community (`synthetic.generate(members=800, seed=1)`, hashing
    embedder); the reported synthetic figures use another seed (7). The graphs had no weights of
    their own, but the people walk (a short personalised PageRank) was picked over common
    neighbours and Adamic-Adar after comparing them on karate and Les Misérables, so those two
    are not untouched. Content and collaborative evidence lead, the social channel adds what
    friends do, popularity and freshness break ties and carry members with no history.

    `cf` weighs the same channel for every kind: what the member's co-participants chose (for
    people, whom those who join the member's events, courses and threads are tied to). People
    had none before the reference methods of `recommender.reference` showed user-kNN at +134%
    over popularity on synthetic people where Hearth had +34%; it takes the items' weight
    unchanged (the development community gains from 0.5 to 5 alike, +112% to +165%, with
    nothing to choose between them but not drowning the walk and popularity).
    """

    content: float = 1.0
    cf: float = 1.2
    social: float = 0.5
    graph: float = 1.0
    popularity: float = 0.35
    freshness: float = 0.3
    trend_share: float = 0.5  # of the popularity channel: recent (30-day) vs all-time
    mmr_lambda: float = 0.8
    not_interested: float = 0.6


# Per kind, because the kinds age differently: an event is worth little once it is over and a
# thread is a conversation of the moment (freshness and the recent trend count), a course stays
# useful for months, and a person's standing is durable (all-time popularity).
DEFAULT_WEIGHTS: dict[Kind, Weights] = {
    "people": Weights(popularity=0.45, trend_share=0.0),
    "event": Weights(freshness=0.8, trend_share=1.0),
    "course": Weights(freshness=0.2, trend_share=0.5),
    "thread": Weights(freshness=0.8, trend_share=1.0),
}


# Freshness counts in full for a candidate whose personal channels (content, cf, social) add up
# to RELEVANT, and for FRESH_FLOOR of itself when none of them speaks for it.
RELEVANT = 0.5
FRESH_FLOOR = 0.25
# A personal channel explains a recommendation when it carries at least this share of the
# strongest channel: "you both tipped X" says more than "starts in 3 days".
PERSONAL = frozenset({"content", "cf", "social", "graph"})
PERSONAL_SHARE = 1 / 3

# Caps that bound a request's work.
HISTORY_CAP = 64
TARGET_MEMBERS_CAP = 200
NEIGHBOURS = 100
CANDIDATES = 200
REASON_HISTORY = 24
WALK_FRONTIER = 500
WALK_STEPS = 3
WALK_RESTART = 0.3
CALIBRATION_MIN = 8


# Small integer codes for target kinds (people = 0, event = 1, course = 2, thread = 3).
KIND_CODE: dict[Kind, int] = {k: n for n, k in enumerate(KINDS)}


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def _rows(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Concatenated (row position, column, value) of the given CSR rows, without Python loops."""
    starts, stops = indptr[rows], indptr[rows + 1]
    lengths = stops - starts
    total = int(lengths.sum())
    if total == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float32)
    owner = np.repeat(np.arange(len(rows)), lengths)
    offsets = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    flat = np.repeat(starts, lengths) + offsets
    return owner, indices[flat], data[flat]


class RecommenderModel:
    # Filled by `fit` (see the module docstring for what each holds).
    now: datetime
    member_vec: np.ndarray
    item_vec: np.ndarray
    taste: np.ndarray
    item_kind: np.ndarray
    alive_member: np.ndarray
    alive_item: np.ndarray
    starts_ts: np.ndarray
    created_ts: np.ndarray
    B: sp.csr_matrix
    walk: sp.csr_matrix
    t_indptr: np.ndarray
    t_members: np.ndarray
    pop: np.ndarray
    trend: np.ndarray
    touch: np.ndarray
    degree: np.ndarray
    cal: dict[Kind, tuple[float, float]]
    _tipped: set[tuple[int, int]]
    _replied: set[tuple[int, int]]
    _followed: set[tuple[int, int]]
    index: dict[Kind, VectorIndex | _Translated]
    popularity: dict[tuple[Kind, float], np.ndarray]

    def __init__(self, embedder: Embedder, weights: Weights | Mapping[Kind, Weights] | None = None) -> None:
        self.embedder = embedder
        if isinstance(weights, Weights):
            weights = dict.fromkeys(KINDS, weights)
        self.weights: dict[Kind, Weights] = {**DEFAULT_WEIGHTS, **(weights or {})}
        self.dim = embedder.dim
        self.members: list[Member] = []
        self.items: list[Item] = []
        self.member_row: dict[str, int] = {}
        self.item_col: dict[str, int] = {}
        self._interest_vecs: dict[str, np.ndarray] = {}
        self._saved: dict[ItemKind, tuple[VectorIndex, Mapping[str, int]]] = {}

    # ------------------------------------------------------------------ fit

    @classmethod
    def fit(
        cls,
        corpus: Corpus,
        embedder: Embedder,
        *,
        vectors: Mapping[str, np.ndarray] | None = None,
        now: datetime | None = None,
        progress: Callable[[str], None] | None = None,
        weights: Weights | Mapping[Kind, Weights] | None = None,
        indexes: Mapping[ItemKind, tuple[VectorIndex, Mapping[str, int]]] | None = None,
    ) -> RecommenderModel:
        """`indexes`: saved item indexes to search instead of building them, each with the map
        from corpus id to the index's own id (the live service keeps one file per kind, updated
        as items change, so a process fits without training an index again)."""
        self = cls(embedder, weights)
        self._saved = dict(indexes or {})
        say = progress or (lambda _msg: None)
        self.now = now or datetime.now(UTC)
        now_s = self.now.timestamp()
        self.members = list(corpus.members.values())
        self.items = list(corpus.items.values())
        self.member_row = {m.id: r for r, m in enumerate(self.members)}
        self.item_col = {i.id: c for c, i in enumerate(self.items)}
        n_m, n_i = len(self.members), len(self.items)

        say(f"embedding {n_m} members and {n_i} items with {embedder.model_id}")
        self.member_vec = self._vectors(
            [m.id for m in self.members], [m.text() for m in self.members], vectors, say
        )
        self.item_vec = self._vectors(
            [i.id for i in self.items], [i.embed_text() for i in self.items], vectors, say
        )
        self.item_kind = np.array([KIND_CODE[i.kind] for i in self.items], dtype=np.int8)
        self.alive_member = np.ones(n_m, dtype=bool)
        self.alive_item = np.ones(n_i, dtype=bool)
        self.starts_ts = np.array([_ts(i.starts_at) for i in self.items], dtype=np.float64)
        self.created_ts = np.array([_ts(i.created_at) for i in self.items], dtype=np.float64)

        say(f"building the behaviour graph from {len(corpus.interactions)} interactions")
        # Targets: items are columns 0..n_i-1, members n_i..n_i+n_m-1. One pass in Python to map
        # ids, the rest in numpy (a 100k-member community has millions of interactions).
        target_col = {**{mid: n_i + r for r, mid in enumerate(self.member_row)}, **self.item_col}
        kind_code = {k: n for n, k in enumerate(INTERACTION_KINDS)}
        inter = corpus.interactions
        all_rows = np.fromiter((self.member_row.get(x.member, -1) for x in inter), np.int64, len(inter))
        all_cols = np.fromiter((target_col.get(x.target, -1) for x in inter), np.int64, len(inter))
        codes = np.fromiter((kind_code[x.kind] for x in inter), np.int64, len(inter))
        stamps = np.fromiter((x.ts.timestamp() for x in inter), np.float64, len(inter))
        ok = (all_rows >= 0) & (all_cols >= 0)
        rows, cols, codes, last_seen = all_rows[ok], all_cols[ok], codes[ok], stamps[ok]
        age = np.maximum(0.0, (now_s - last_seen) / DAY)
        # Recent behaviour says more about current taste, old behaviour still counts.
        base = np.array([INTERACTION_WEIGHT[k] for k in INTERACTION_KINDS])
        vals = base[codes] * (0.5 + 0.5 * np.exp(-age / 90.0))
        # Does the interaction define a choice of its target's kind (the popularity it counts for)?
        target_kind = np.zeros(len(cols), dtype=np.int64)  # people
        on_item = cols < n_i
        target_kind[on_item] = self.item_kind[cols[on_item]]
        defines = np.array([[k in DEFINES[kind] for k in INTERACTION_KINDS] for kind in KINDS], dtype=bool)[
            target_kind, codes
        ]
        defining_rows, defining_cols = rows[defines], cols[defines]
        recent = np.exp(-age[defines] / 30.0)
        self._tipped = set(
            zip(
                rows[codes == kind_code["tip"]].tolist(),
                cols[codes == kind_code["tip"]].tolist(),
                strict=True,
            )
        )
        self._replied = set(
            zip(
                rows[codes == kind_code["reply"]].tolist(),
                cols[codes == kind_code["reply"]].tolist(),
                strict=True,
            )
        )
        # Reasons name the tie as it is: "follows you" only for a follow, not a reply or a tip.
        self._followed = set(
            zip(
                rows[codes == kind_code["follow"]].tolist(),
                cols[codes == kind_code["follow"]].tolist(),
                strict=True,
            )
        )
        n_t = n_i + n_m
        self.B = sp.csr_matrix(
            (np.asarray(vals, dtype=np.float32), (np.asarray(rows), np.asarray(cols))), shape=(n_m, n_t)
        )
        self.B.sum_duplicates()
        self.B.sort_indices()
        self._capped_transpose(np.asarray(rows), np.asarray(cols), np.asarray(last_seen), n_t)
        # Popularity: distinct members choosing the target (all time) and a 30-day trend.
        d_rows = np.asarray(defining_rows, dtype=np.int64)
        d_cols = np.asarray(defining_cols, dtype=np.int64)
        pairs = np.unique(d_rows * n_t + d_cols) if len(d_rows) else np.zeros(0, dtype=np.int64)
        self.pop = np.bincount(pairs % n_t, minlength=n_t).astype(np.float32) if n_t else np.zeros(0)
        self.trend = np.bincount(d_cols, weights=np.asarray(recent), minlength=n_t).astype(np.float32)
        self.touch = np.bincount(np.asarray(cols, dtype=np.int64), minlength=n_t).astype(np.float32)
        self.degree = np.asarray(self.B.sum(axis=1)).ravel().astype(np.float32)
        # The social graph both ways (a tie is a tie whoever made it), rows summing to one: the
        # transition matrix of the people walk.
        social = self.B[:, n_i:]
        social = (social + social.T).tocsr()
        out_sum = np.asarray(social.sum(axis=1)).ravel()
        scale = sp.diags(np.where(out_sum > 0, 1.0 / np.maximum(out_sum, 1e-12), 0.0))
        self.walk = (scale @ social).tocsr().astype(np.float32)
        self.walk.sort_indices()

        say("computing taste vectors")
        self.taste = np.zeros_like(self.member_vec)
        for r in range(n_m):
            self.taste[r] = self._taste(r)
        self._calibrate()
        self._popularities()
        say("building the vector indexes")
        self._build_indexes()
        return self

    def _vectors(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        given: Mapping[str, np.ndarray] | None,
        say: Callable[[str], None],
    ) -> np.ndarray:
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        missing = []
        for n, (eid, text) in enumerate(zip(ids, texts, strict=True)):
            if given is not None and eid in given:
                out[n] = np.asarray(given[eid], dtype=np.float32)
            elif text.strip():
                missing.append(n)
        # A member with nothing written has no content vector rather than the vector of "".
        for start in range(0, len(missing), 512):
            chunk = missing[start : start + 512]
            out[chunk] = self.embedder.embed([texts[n] for n in chunk])
            if (start // 512) % 10 == 9:
                say(f"embedded {start + len(chunk)}/{len(missing)}")
        return out

    def _capped_transpose(self, rows: np.ndarray, cols: np.ndarray, ts: np.ndarray, n_t: int) -> None:
        """Target -> its most recent distinct members, at most TARGET_MEMBERS_CAP each."""
        if len(rows) == 0:
            self.t_indptr = np.zeros(n_t + 1, dtype=np.int64)
            self.t_members = np.zeros(0, dtype=np.int64)
            return
        order = np.lexsort((-ts, rows, cols))
        c, r = cols[order], rows[order]
        first = np.ones(len(c), dtype=bool)
        first[1:] = (c[1:] != c[:-1]) | (r[1:] != r[:-1])
        c, r, t = c[first], r[first], ts[order][first]
        order = np.lexsort((-t, c))
        c, r = c[order], r[order]
        start_of = np.searchsorted(c, c, side="left")
        keep = (np.arange(len(c)) - start_of) < TARGET_MEMBERS_CAP
        c, r = c[keep], r[keep]
        self.t_indptr = np.zeros(n_t + 1, dtype=np.int64)
        np.cumsum(np.bincount(c, minlength=n_t), out=self.t_indptr[1:])
        self.t_members = r.astype(np.int64)

    def _taste(self, r: int) -> np.ndarray:
        """Profile blended with the content of what the member engaged with, as one unit vector."""
        start, stop = self.B.indptr[r], self.B.indptr[r + 1]
        cols, vals = self.B.indices[start:stop], self.B.data[start:stop]
        n_i = len(self.items)
        item_mask = cols < n_i
        history = np.zeros(self.dim, dtype=np.float32)
        if item_mask.any():
            history = _unit(vals[item_mask] @ self.item_vec[cols[item_mask]])
        profile = self.member_vec[r]
        return _unit(profile + history).astype(np.float32)

    def _popularities(self) -> None:
        """Per kind and trend share: log all-time popularity and the 30-day trend, each scaled to
        [0, 1] over the kind, mixed. Computed once per fit, read per request."""
        n_i, n_m = len(self.items), len(self.members)
        self.popularity = {}
        for kind in KINDS:
            if kind == "people":
                cols, mask = slice(n_i, n_i + n_m), np.ones(n_m, dtype=bool)
            else:
                cols, mask = slice(0, n_i), self.item_kind[:n_i] == KIND_CODE[kind]
            parts = []
            for arr in (np.log1p(self.pop[cols]), self.trend[cols].astype(np.float64)):
                arr = np.where(mask, arr, 0.0)
                top = float(arr.max()) if len(arr) else 0.0
                parts.append(arr / top if top > 0 else arr)
            share = self.weights[kind].trend_share
            self.popularity[(kind, share)] = ((1.0 - share) * parts[0] + share * parts[1]).astype(np.float32)

    def _calibrate(self) -> None:
        """Typical taste-to-target cosine per kind, so content scores mean the same on every engine."""
        rng = np.random.default_rng(0)
        self.cal = {}
        members = np.flatnonzero(np.linalg.norm(self.taste, axis=1) > 0)
        for kind in KINDS:
            pool = (
                members
                if kind == "people"
                else np.flatnonzero(
                    (self.item_kind == KIND_CODE[kind]) & (np.linalg.norm(self.item_vec, axis=1) > 0)
                )
            )
            if len(members) < CALIBRATION_MIN or len(pool) < CALIBRATION_MIN:
                # Too few pairs to say what is typical: take cosines as they come.
                self.cal[kind] = (0.0, 0.25)
                continue
            a = self.taste[rng.choice(members, 2000)]
            b = (self.taste if kind == "people" else self.item_vec)[rng.choice(pool, 2000)]
            cos = np.einsum("ij,ij->i", a, b)
            self.cal[kind] = (float(cos.mean()), float(cos.std()) or 1.0)

    # ------------------------------------------------------------------ incremental updates

    def upsert_member(self, member: Member, vector: np.ndarray | None = None) -> None:
        """Add or update a member (profile edited, joined) without a refit."""
        vec = self._one_vector(member.text(), vector)
        r = self.member_row.get(member.id)
        if r is None:
            # A new member has no behaviour until the next fit: content (and popularity) only.
            r = len(self.members)
            self.members.append(member)
            self.member_row[member.id] = r
            self._reserve_members(r + 1)
            self.member_vec[r] = vec
            self.taste[r] = vec
        else:
            self.members[r] = member
            self.member_vec[r] = vec
            self.taste[r] = self._taste(r) if r < self.B.shape[0] else vec
        self.alive_member[r] = True
        self._index_put("people", r, self.taste[r])

    def upsert_item(self, item: Item, vector: np.ndarray | None = None) -> None:
        """Add or update an item (posted, edited) without a refit."""
        vec = self._one_vector(item.embed_text(), vector)
        c = self.item_col.get(item.id)
        if c is None:
            # New items get a column past the behaviour matrix: content, freshness, no popularity.
            c = len(self.items)
            self.items.append(item)
            self.item_col[item.id] = c
            self._reserve_items(c + 1)
        else:
            old = self.items[c].kind
            if old != item.kind:
                self.index[old].remove([c])
            self.items[c] = item
        self.item_vec[c] = vec
        self.item_kind[c] = KIND_CODE[item.kind]
        self.alive_item[c] = True
        self.starts_ts[c] = _ts(item.starts_at)
        self.created_ts[c] = _ts(item.created_at)
        self._index_put(item.kind, c, vec)

    def remove(self, entity_id: str) -> bool:
        """Forget a member (opted out, left) or an item (deleted): it is never recommended again."""
        if (r := self.member_row.get(entity_id)) is not None:
            self.alive_member[r] = False
            self.index["people"].remove([r])
            return True
        if (c := self.item_col.get(entity_id)) is not None:
            self.alive_item[c] = False
            self.index[self.items[c].kind].remove([c])
            return True
        return False

    def _index_put(self, kind: Kind, idx: int, vec: np.ndarray) -> None:
        if np.any(vec):
            self.index[kind].upsert(np.asarray([idx], dtype=np.int64), vec[None].astype(np.float32))
        else:
            self.index[kind].remove([idx])

    def _reserve_members(self, n: int) -> None:
        # Grow by half again, so a stream of new members costs amortised O(1) copies.
        have = len(self.alive_member)
        if n <= have:
            return
        size = max(n, have + have // 2 + 16)
        self.member_vec = _grown(self.member_vec, size)
        self.taste = _grown(self.taste, size)
        self.alive_member = _grown(self.alive_member, size)

    def _reserve_items(self, n: int) -> None:
        have = len(self.alive_item)
        if n <= have:
            return
        size = max(n, have + have // 2 + 16)
        self.item_vec = _grown(self.item_vec, size)
        self.item_kind = _grown(self.item_kind, size)
        self.alive_item = _grown(self.alive_item, size)
        self.starts_ts = _grown(self.starts_ts, size, np.nan)
        self.created_ts = _grown(self.created_ts, size, np.nan)

    def _build_indexes(self) -> None:
        """One FAISS index per kind: taste vectors of members, content vectors of items.

        Items may come with a saved index (see `fit`); people never do, because a member's
        taste blends the profile with what they engaged with and exists only in a fit.
        """
        self.index = {}
        for kind in KINDS:
            if kind != "people" and kind in self._saved:
                saved, ids = self._saved[kind]
                self.index[kind] = _Translated(saved, {self.item_col[cid]: i for cid, i in ids.items()})
                continue
            if kind == "people":
                rows = np.flatnonzero(np.any(self.taste, axis=1))
                vectors = self.taste[rows]
            else:
                rows = np.flatnonzero((self.item_kind == KIND_CODE[kind]) & np.any(self.item_vec, axis=1))
                vectors = self.item_vec[rows]
            self.index[kind] = VectorIndex.build(
                rows.astype(np.int64), vectors, dim=self.dim, model_id=self.embedder.model_id
            )

    def _one_vector(self, text: str, vector: np.ndarray | None) -> np.ndarray:
        if vector is not None:
            return np.asarray(vector, dtype=np.float32).reshape(self.dim)
        if not text.strip():
            return np.zeros(self.dim, dtype=np.float32)
        return np.asarray(self.embedder.embed([text])[0], dtype=np.float32)

    # ------------------------------------------------------------------ request

    def recommend(
        self,
        member_id: str,
        kind: Kind,
        k: int = 10,
        *,
        exclude: Collection[str] = (),
        not_interested: Collection[str] = (),
        can_access: Callable[[Item], bool] | None = None,
        upgrade_slots: int = 1,
        now: datetime | None = None,
    ) -> list[Recommendation]:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        if k <= 0:
            return []
        req = _Request(self, member_id, kind, now or self.now)
        cands = req.candidates()
        banned = req.known()
        for eid in (*exclude, *not_interested):
            idx = self._index_of(eid, kind)
            if idx is not None:
                banned.add(idx)
        if banned:
            cands = cands[~np.isin(cands, np.fromiter(banned, dtype=np.int64, count=len(banned)))]
        if len(cands) == 0:
            return []
        channels = req.channels(cands)
        score = req.blend(channels)
        ni = [i for i in (self._index_of(e, kind) for e in not_interested) if i is not None]
        if ni:
            score = score * (1.0 - self.weights[kind].not_interested * req.resemblance(cands, np.asarray(ni)))
        return req.select(cands, score, channels, k, can_access, upgrade_slots)

    def _index_of(self, eid: str, kind: Kind) -> int | None:
        """Position of an entity in the candidate space of `kind` (member rows or item columns)."""
        if kind == "people":
            return self.member_row.get(eid)
        return self.item_col.get(eid)

    def interest_vector(self, text: str) -> np.ndarray:
        vec = self._interest_vecs.get(text)
        if vec is None:
            vec = np.asarray(self.embedder.embed([text])[0], dtype=np.float32)
            self._interest_vecs[text] = vec
        return vec

    def name(self, r: int) -> str:
        m = self.members[r]
        return (m.name or m.id) if m else ""


class _Request:
    """One recommendation request: the member's neighbourhood, computed once, and its channels."""

    def __init__(self, model: RecommenderModel, member_id: str, kind: Kind, now: datetime) -> None:
        self.m = model
        self.kind = kind
        self.now = now
        self.n_i = model.B.shape[1] - model.B.shape[0]
        self.n_fit_m = model.B.shape[0]
        self.r = model.member_row.get(member_id)
        self.people = kind == "people"
        self.w = model.weights[kind]
        self._pop: np.ndarray | None = None
        self._fresh: np.ndarray | None = None
        self._pool: np.ndarray | None = None
        self._crowds: tuple[np.ndarray, ...] | None = None
        self._mark: np.ndarray | None = None
        if self.r is not None and self.r < self.n_fit_m:
            s, e = model.B.indptr[self.r], model.B.indptr[self.r + 1]
            self.hist_cols = model.B.indices[s:e].astype(np.int64)
            self.hist_vals = model.B.data[s:e]
        else:
            self.hist_cols = np.zeros(0, dtype=np.int64)
            self.hist_vals = np.zeros(0, dtype=np.float32)
        self.taste = model.taste[self.r] if self.r is not None else np.zeros(model.dim, dtype=np.float32)
        self._neighbours()

    # The member's neighbourhood: co-participants (shared targets, rarer ones count more) and
    # social ties, as one dense score over member rows.
    def _neighbours(self) -> None:
        self.co = self._co_participants(self.hist_cols, self.hist_vals)
        # Social: whom the member follows/tips/replies to, and who does so to the member.
        mcols = self.hist_cols[self.hist_cols >= self.n_i]
        self.out_rows = mcols - self.n_i
        self.out_vals = self.hist_vals[self.hist_cols >= self.n_i]

    def _co_participants(self, hist_cols: np.ndarray, hist_vals: np.ndarray) -> np.ndarray:
        """Members who chose the same targets, rarer targets counting more, over member rows."""
        m = self.m
        n_m = self.n_fit_m
        co = np.zeros(n_m, dtype=np.float32)
        if len(hist_cols):
            top = np.argsort(-hist_vals)[:HISTORY_CAP]
            cols, vals = hist_cols[top], hist_vals[top]
            owner, members, _ = _rows(m.t_indptr, m.t_members, m.t_members, cols)
            hit = vals[owner] / np.log(2.0 + m.touch[cols][owner])
            co = np.bincount(members, weights=hit, minlength=n_m).astype(np.float32)
            co /= np.sqrt(1.0 + m.degree[:n_m])
            if self.r is not None and self.r < n_m:
                co[self.r] = 0.0
        return co

    def history_crowds(self) -> tuple[np.ndarray, ...]:
        """The member's REASON_HISTORY strongest history items, and the members who chose each
        (concatenated: owner position, member row) with each crowd's size; computed once."""
        if self._crowds is None:
            m = self.m
            on_items = self.hist_cols < self.n_i
            hist = self.hist_cols[on_items][np.argsort(-self.hist_vals[on_items])][:REASON_HISTORY]
            owner, crowds, _ = _rows(m.t_indptr, m.t_members, m.t_members, hist)
            sizes = m.t_indptr[hist + 1] - m.t_indptr[hist]
            self._crowds = (hist, owner, crowds, sizes)
        return self._crowds

    def member_mark(self) -> np.ndarray:
        """A scratch mask over member rows, all False between uses."""
        if self._mark is None:
            self._mark = np.zeros(self.n_fit_m, dtype=bool)
        return self._mark

    def known(self) -> set[int]:
        """Indices (in the kind's space) the member already knows, and the member."""
        if self.people:
            known = {int(c) for c in self.out_rows}
            if self.r is not None:
                known.add(self.r)
            return known
        return {int(c) for c in self.hist_cols[self.hist_cols < self.n_i]}

    def _alive_pool(self) -> np.ndarray:
        """Mask over the kind's space (member rows or item columns) of what may be suggested."""
        if self._pool is None:
            m = self.m
            if self.people:
                self._pool = m.alive_member[: len(m.members)]
            else:
                n = len(m.items)
                self._pool = m.alive_item[:n] & (m.item_kind[:n] == KIND_CODE[self.kind])
        return self._pool

    def candidates(self) -> np.ndarray:
        pool = self._alive_pool()
        found: list[np.ndarray] = []
        # Content: nearest by taste in the kind's FAISS index.
        if np.any(self.taste):
            _, near = self.m.index[self.kind].search(self.taste[None].astype(np.float32), CANDIDATES)
            found.append(near[0][near[0] >= 0])
        # Behaviour.
        b = self._behaviour_scores()
        if b is not None:
            nz = np.flatnonzero(b > 0)
            if len(nz) > CANDIDATES:
                nz = nz[np.argpartition(-b[nz], CANDIDATES)[:CANDIDATES]]
            found.append(nz)
        # Popular and fresh.
        pop = self._popularity_all()
        found.append(_top(pop, pool, 50))
        if not self.people:
            found.append(_top(self._freshness_all(), pool, 50))
        cands = np.unique(np.concatenate(found)).astype(np.int64)
        cands = cands[pool[cands]]
        return cands

    def _space(self) -> np.ndarray:
        return self.m.taste if self.people else self.m.item_vec

    def _behaviour_scores(self) -> np.ndarray | None:
        """Collaborative score over the kind's space (dense), from the neighbourhood."""
        m = self.m
        if self.people:
            self.graph = self._pad(self._people_walk(), len(m.members))
            self.cf = self._pad(self._neighbour_votes(), len(m.members))
            return self._norm(self.graph) * self.w.graph + self._norm(self.cf) * self.w.cf
        size = len(m.items)
        self.cf = self._neighbour_votes()
        # Friends: what the people the member follows chose.
        self.social = np.zeros(size, dtype=np.float32)
        if len(self.out_rows):
            owner, targets, vals = _rows(m.B.indptr, m.B.indices, m.B.data, self.out_rows)
            sel = targets < self.n_i
            self.social[: self.n_i] = np.bincount(
                targets[sel], weights=self.out_vals[owner[sel]] * vals[sel], minlength=self.n_i
            )
        return self._norm(self.cf) * self.w.cf + self._norm(self.social) * self.w.social

    def _neighbour_votes(self) -> np.ndarray:
        """What the member's nearest co-participants chose of the kind, weighted by closeness:
        for items, "people who did what you did joined this"; for people, "people who join the
        events, courses and threads you join follow this person"."""
        m = self.m
        nb = self.co
        if self.people:
            # Neighbours by what they joined, not by whom they know: the walk already follows
            # ties, and on a graph of ties alone friends of look-alikes are a step too far.
            on_items = self.hist_cols < self.n_i
            nb = self._co_participants(self.hist_cols[on_items], self.hist_vals[on_items])
        top = np.flatnonzero(nb > 0)
        if len(top) > NEIGHBOURS:
            top = top[np.argpartition(-nb[top], NEIGHBOURS)[:NEIGHBOURS]]
        size = self.n_fit_m if self.people else len(m.items)
        votes = np.zeros(size, dtype=np.float32)
        if len(top):
            owner, targets, vals = _rows(m.B.indptr, m.B.indices, m.B.data, top)
            sel = targets >= self.n_i if self.people else targets < self.n_i
            offset = self.n_i if self.people else 0
            votes[: self.n_fit_m if self.people else self.n_i] = np.bincount(
                targets[sel] - offset,
                weights=nb[top][owner[sel]] * vals[sel],
                minlength=self.n_fit_m if self.people else self.n_i,
            )
        return votes

    def _people_walk(self) -> np.ndarray:
        """A short random walk with restart from the member over people (personalised PageRank).

        The first step goes to the member's ties (both directions) and co-participants; the
        next steps follow ties. Three steps with a 0.3 restart, the frontier capped at
        WALK_FRONTIER members, so the cost is bounded on any community size.
        """
        m = self.m
        n_m = self.n_fit_m
        step = np.zeros(n_m, dtype=np.float64)
        if self.r is None or self.r >= n_m:
            return step.astype(np.float32)
        s, e = m.walk.indptr[self.r], m.walk.indptr[self.r + 1]
        ties = np.zeros(n_m, dtype=np.float64)
        ties[m.walk.indices[s:e]] = m.walk.data[s:e]
        co_total = float(self.co.sum())
        co = self.co / co_total if co_total > 0 else self.co
        step = 0.5 * ties + 0.5 * co if e > s and co_total > 0 else ties + co
        total = step.copy()
        decay = 1.0
        for _ in range(WALK_STEPS - 1):
            decay *= 1.0 - WALK_RESTART
            frontier = np.flatnonzero(step)
            if len(frontier) == 0:
                break
            if len(frontier) > WALK_FRONTIER:
                frontier = frontier[np.argpartition(-step[frontier], WALK_FRONTIER)[:WALK_FRONTIER]]
            owner, targets, vals = _rows(m.walk.indptr, m.walk.indices, m.walk.data, frontier)
            step = np.bincount(targets, weights=step[frontier][owner] * vals, minlength=n_m)
            total += decay * step
        total[self.r] = 0.0
        return total.astype(np.float32)

    @staticmethod
    def _norm(v: np.ndarray) -> np.ndarray:
        top = float(v.max()) if len(v) else 0.0
        return v / top if top > 0 else v

    def _popularity_all(self) -> np.ndarray:
        """Popularity over the kind's space in [0, 1]: all-time and recent, mixed per kind."""
        if self._pop is None:
            pop = self.m.popularity[(self.kind, self.w.trend_share)]
            size = len(self.m.members) if self.people else len(self.m.items)
            self._pop = self._pad(pop, size)
        return self._pop

    def _freshness_all(self) -> np.ndarray:
        if self._fresh is None:
            n = len(self.m.items)
            self._fresh = freshness_of(self.m.starts_ts[:n], self.m.created_ts[:n], self.now.timestamp())
        return self._fresh

    def channels(self, cands: np.ndarray) -> dict[str, np.ndarray]:
        m, w = self.m, self.w
        mu, sigma = m.cal[self.kind]
        space = self._space()
        cos = space[cands] @ self.taste if np.any(self.taste) else np.zeros(len(cands), np.float32)
        # Content as calibrated excess similarity: zero for a typical pair, 1 at four deviations.
        content = np.clip((cos - mu) / (4.0 * sigma), 0.0, 1.0) * (np.linalg.norm(space[cands], axis=1) > 0)
        out: dict[str, np.ndarray] = {"content": content * w.content}
        if self.people:
            out["graph"] = self._norm(self.graph)[cands] * w.graph
            out["cf"] = self._norm(self.cf)[cands] * w.cf
        else:
            out["cf"] = self._norm(self.cf)[cands] * w.cf
            out["social"] = self._norm(self.social)[cands] * w.social
            # Freshness lifts what is relevant to the member; on its own it only breaks ties, so a
            # brand-new thread nobody like them engaged with cannot outrank the ones that match.
            personal = out["content"] + out["cf"] + out["social"]
            gate = FRESH_FLOOR + (1.0 - FRESH_FLOOR) * np.clip(personal / RELEVANT, 0.0, 1.0)
            out["freshness"] = self._freshness_all()[cands] * w.freshness * gate
        out["popularity"] = self._popularity_all()[cands] * w.popularity
        return out

    @staticmethod
    def _pad(v: np.ndarray, size: int) -> np.ndarray:
        if len(v) >= size:
            return v
        return np.concatenate([v, np.zeros(size - len(v), dtype=v.dtype)])

    @staticmethod
    def blend(channels: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.sum(np.stack(list(channels.values())), axis=0)

    def _vecs(self, idx: np.ndarray) -> np.ndarray:
        return (self.m.member_vec if self.people else self.m.item_vec)[idx]

    def resemblance(self, cands: np.ndarray, to: np.ndarray) -> np.ndarray:
        """How close each candidate is to the given ones, in [0, 1].

        By content (cosine above the typical one) and by behaviour (the share of the members who
        chose one of `to` who also chose the candidate), whichever is stronger: "not interested"
        in a hiking meetup also pushes down what the same crowd goes to, even with no text.
        """
        sims = self._vecs(cands) @ self._vecs(to).T
        mu, sigma = self.m.cal[self.kind]
        content = np.clip((sims.max(axis=1) - mu) / (4.0 * sigma), 0.0, 1.0)
        m = self.m
        cols = np.asarray([c for c in (_col(self, int(t)) for t in to) if c is not None], dtype=np.int64)
        if len(cols) == 0:
            return content
        _, members, _ = _rows(m.t_indptr, m.t_members, m.t_members, cols)
        members = np.unique(members)
        if len(members) == 0:
            return content
        _, targets, _ = _rows(m.B.indptr, m.B.indices, m.B.data, members)
        counts = np.bincount(targets, minlength=m.B.shape[1])
        cand_cols = np.asarray([_col(self, int(c)) if _col(self, int(c)) is not None else -1 for c in cands])
        shared = np.where(cand_cols >= 0, counts[np.maximum(cand_cols, 0)], 0) / len(members)
        return np.maximum(content, np.clip(shared, 0.0, 1.0))

    def select(
        self,
        cands: np.ndarray,
        score: np.ndarray,
        channels: Mapping[str, np.ndarray],
        k: int,
        can_access: Callable[[Item], bool] | None,
        upgrade_slots: int,
    ) -> list[Recommendation]:
        m = self.m
        # The pool MMR chooses from: the best accessible candidates, plus the best inaccessible
        # ones up to the upgrade slots (they compete on score and come back labelled locked).
        size = max(4 * k, 40)
        order = np.argsort(-score)
        pool: list[int] = []
        locked: set[int] = set()
        for p in order:
            if len(pool) - len(locked) >= size:
                break
            p = int(p)
            if not self.people and can_access is not None and not can_access(m.items[int(cands[p])]):
                if len(locked) >= max(0, upgrade_slots):
                    continue
                locked.add(p)
            pool.append(p)
        picked = _mmr(score[pool], self._vecs(cands[pool]), k, self.w.mmr_lambda)
        chosen: list[Recommendation] = []
        for n in picked:
            p = pool[n]
            idx = int(cands[p])
            if p in locked:
                reason = Reason("upgrade", {"tier": m.items[idx].tier})
            else:
                said = [r.reason for r in chosen]
                reason = explain(self, idx, {name: float(v[p]) for name, v in channels.items()}, said)
            eid = m.members[idx].id if self.people else m.items[idx].id
            chosen.append(Recommendation(eid, self.kind, round(float(score[p]), 6), reason, p in locked))
        return chosen


class _Translated:
    """A saved index searched and updated through item positions.

    Its ids are the live service's row ids; ids it holds that are not in the fit (an ended
    event, a thread deleted since) come back as -1, and items added after the fit get ids
    past FRESH_ID_BASE so they can never collide with a row id.
    """

    FRESH_ID_BASE = 1 << 60

    def __init__(self, index: VectorIndex, index_id_of: Mapping[int, int]) -> None:
        self.index = index
        self.index_id_of = dict(index_id_of)
        self.position_of = {i: p for p, i in self.index_id_of.items()}

    def _index_ids(self, positions: Sequence[int]) -> np.ndarray:
        ids = [self.index_id_of.setdefault(int(p), self.FRESH_ID_BASE + int(p)) for p in positions]
        for p, i in zip(positions, ids, strict=True):
            self.position_of[i] = int(p)
        return np.asarray(ids, dtype=np.int64)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, ids = self.index.search(queries, k)
        positions = np.vectorize(lambda i: self.position_of.get(int(i), -1), otypes=[np.int64])(ids)
        return scores, positions

    def upsert(self, positions: np.ndarray, vectors: np.ndarray) -> None:
        self.index.upsert(self._index_ids(positions.tolist()), vectors)

    def remove(self, positions: Iterable[int]) -> int:
        return self.index.remove(self._index_ids(list(positions)).tolist())


def _mmr(score: np.ndarray, vecs: np.ndarray, k: int, lam: float) -> list[int]:
    """Positions picked greedily by multiplicative MMR.

    A near-duplicate of what is already picked loses up to (1 - lambda) of its score, so
    diversity reorders comparable candidates but never lifts an irrelevant one over a relevant
    one (the additive form does when one score dominates).
    """
    sims = np.clip(vecs @ vecs.T, 0.0, 1.0)
    penalty = np.zeros(len(score))
    left = np.ones(len(score), dtype=bool)
    picked: list[int] = []
    while len(picked) < k and left.any():
        mmr = np.where(left, score * (1.0 - (1.0 - lam) * penalty), -np.inf)
        best = int(np.argmax(mmr))
        picked.append(best)
        left[best] = False
        np.maximum(penalty, sims[best], out=penalty)
    return picked


def _grown(arr: np.ndarray, size: int, fill: float = 0) -> np.ndarray:
    out = np.full((size, *arr.shape[1:]), fill, dtype=arr.dtype)
    out[: len(arr)] = arr
    return out


def _ts(when: datetime | None) -> float:
    return when.timestamp() if when is not None else math.nan


def freshness_of(starts: np.ndarray, created: np.ndarray, now: float) -> np.ndarray:
    """1 for an event about to start or an item just posted, decaying with distance in time.

    Past events fade fast (a week) but are not zeroed: in a replayed history "now" is the last
    thing seen, and an event just past is still what the community is talking about. An item
    created after `now` did not exist yet at that moment (a replayed request, a clock skew):
    freshness 0, which also keeps it out of the fresh candidate list.
    """
    out = np.zeros(len(starts), dtype=np.float32)
    has_start = ~np.isnan(starts)
    days = (starts[has_start] - now) / DAY
    out[has_start] = np.where(
        days >= 0, np.exp(-np.maximum(days, 0) / 14.0), 0.5 * np.exp(np.minimum(days, 0) / 7.0)
    )
    has_created = ~has_start & ~np.isnan(created)
    age = np.maximum(0.0, (now - created[has_created]) / DAY)
    out[has_created] = np.exp(-age / 30.0)
    out[created > now] = 0.0  # NaN (no creation date) compares False: kept
    return out


def _top(values: np.ndarray, pool: np.ndarray, k: int) -> np.ndarray:
    idx = np.flatnonzero(pool & (values > 0))
    if len(idx) > k:
        idx = idx[np.argpartition(-values[idx], k)[:k]]
    return idx.astype(np.int64)


# ---------------------------------------------------------------------- reasons

ACTION: dict[ItemKind, str] = {"event": "rsvp", "course": "enrol", "thread": "reply"}


def explain(req: _Request, idx: int, contrib: Mapping[str, float], said: Collection[Reason] = ()) -> Reason:
    """One reason from the strongest channel, with concrete names or titles; a personal channel
    (content, behaviour, friends) goes first when it carries a fair share of the score.

    A reason already given on the page (`said`) yields to the next channel's: four results
    all "chosen by people who replied to X" tell the member less than four different reasons.
    """
    ranked = [name for name, v in sorted(contrib.items(), key=lambda kv: -kv[1]) if v > 0]
    top = contrib[ranked[0]] if ranked else 0.0
    personal = [name for name in ranked if name in PERSONAL and contrib[name] >= PERSONAL_SHARE * top]
    first: Reason | None = None
    for channel in personal + [name for name in ranked if name not in personal]:
        reason = _REASONS[channel](req, idx)
        if reason is None:
            continue
        if reason not in said:
            return reason
        first = first or reason
    return first or _popular(req, idx) or Reason("for_you", {})


def _col(req: _Request, idx: int, people: bool | None = None) -> int | None:
    """The behaviour column of a candidate; None for one added after the fit (no behaviour yet)."""
    if req.people if people is None else people:
        return req.n_i + idx if idx < req.n_fit_m else None
    return idx if idx < req.n_i else None


def _target_members(req: _Request, col: int | None) -> np.ndarray:
    m = req.m
    if col is None:
        return np.zeros(0, dtype=np.int64)
    return m.t_members[m.t_indptr[col] : m.t_indptr[col + 1]]


def _reason_cf(req: _Request, idx: int) -> Reason | None:
    m = req.m
    if req.people:
        # The rarest target both chose: "you both tipped X", "you both replied in '<thread>'".
        if req.r is None or idx >= req.n_fit_m:
            return None
        s, e = m.B.indptr[idx], m.B.indptr[idx + 1]
        shared = np.intersect1d(req.hist_cols, m.B.indices[s:e])
        if len(shared) == 0:
            return None
        t = int(shared[np.argmin(m.touch[shared])])
        return _shared_reason(req, idx, t)
    item = _crowd_item(req, idx)
    if item is None:
        return None
    return Reason("also_joined", {"title": item.title or item.id, "action": ACTION[item.kind]})


def _crowd_item(req: _Request, idx: int) -> Item | None:
    """The member's history item whose crowd overlaps most, for its size, with the members who
    chose the candidate: a thread everybody replied to (the rules, a welcome thread) explains
    nothing."""
    members = _target_members(req, _col(req, idx))
    if len(members) == 0 or len(req.hist_cols) == 0:
        return None
    hist, owner, crowds, sizes = req.history_crowds()
    if len(hist) == 0:
        return None
    # One pass over the crowds of all history items (the same for every candidate of the page),
    # through a reused mask over member rows rather than a sort per candidate.
    mark = req.member_mark()
    mark[members] = True
    shared = np.bincount(owner[mark[crowds]], minlength=len(hist))
    mark[members] = False
    score = shared / np.sqrt(np.maximum(sizes, 1))
    best = int(np.argmax(score))
    return req.m.items[int(hist[best])] if score[best] > 0 else None


def _reason_neighbours(req: _Request, idx: int) -> Reason | None:
    """The collaborative channel: for a person, "popular with people who joined '<title>'"
    (people who join what the member joins chose them), else what the two did together; a
    direct tie ("X follows you") says more than either and goes first."""
    if not req.people:
        return _reason_cf(req, idx)
    if code := _tie_to_you(req, idx):
        return _naming(req, code, idx)
    item = _crowd_item(req, idx)
    if item is not None:
        return Reason("popular_with", {"title": item.title or item.id, "action": ACTION[item.kind]})
    return _reason_cf(req, idx)


def _shared_reason(req: _Request, other: int, t: int) -> Reason:
    m = req.m
    if t >= req.n_i:
        if (req.r, t) in m._tipped and (other, t) in m._tipped:
            return _naming(req, "co_tipped", t - req.n_i)
        if (req.r, t) in m._followed and (other, t) in m._followed:
            return _naming(req, "both_follow", t - req.n_i)
        return _naming(req, "both_replied_to", t - req.n_i)
    item = m.items[t]
    assert item is not None
    title = item.title or item.id
    if (req.r, t) in m._tipped and (other, t) in m._tipped:
        return Reason("co_tipped", {"name": title})
    if item.kind == "thread":
        both = (req.r, t) in m._replied and (other, t) in m._replied
        return Reason("replied_together" if both else "same_thread", {"title": title})
    return Reason("same_event" if item.kind == "event" else "same_course", {"title": title})


def _strongest(req: _Request, rows: np.ndarray) -> int:
    """The member row, of those given, the member is most strongly tied to."""
    return int(rows[np.argmax([req.out_vals[req.out_rows == f].max() for f in rows])])


def _naming(req: _Request, code: str, r: int, **params: str | int) -> Reason:
    """A reason that names the member of row r (their display name, and their id to check)."""
    member = req.m.members[r]
    return Reason(code, {**params, "name": req.m.name(r)}, member=member.id if member else None)


def _follows(req: _Request, follower: int | None, followee: int) -> bool:
    return follower is not None and (follower, req.n_i + followee) in req.m._followed


def _reason_social(req: _Request, idx: int) -> Reason | None:
    """People the member is tied to chose it: "people you follow" only when they are followed."""
    members = _target_members(req, _col(req, idx))
    friends = np.intersect1d(req.out_rows, members)
    if len(friends) == 0:
        return None
    item = req.m.items[idx]
    assert item is not None
    followed = np.asarray([f for f in friends if _follows(req, req.r, int(f))], dtype=np.int64)
    rows, code = (followed, "friends_joined") if len(followed) else (friends, "contacts_joined")
    return _naming(req, code, _strongest(req, rows), n=len(rows), action=ACTION[item.kind])


def _reason_fof(req: _Request, idx: int) -> Reason | None:
    members = _target_members(req, _col(req, idx))
    via = np.intersect1d(req.out_rows, members)
    if len(via) == 0:
        return None
    following = np.asarray(
        [f for f in via if _follows(req, req.r, int(f)) and _follows(req, int(f), idx)], dtype=np.int64
    )
    if len(following):
        return _naming(req, "followed_by", _strongest(req, following), n=len(following))
    return _naming(req, "connected_to", _strongest(req, via), n=len(via))


def _tie_to_you(req: _Request, idx: int) -> str | None:
    """How the candidate reached out to the member, if they did: follow, tip or reply."""
    if req.r is None or idx >= req.n_fit_m:
        return None
    col = req.n_i + req.r
    for code, ties in (("follows_you", req.m._followed), ("tipped_you", req.m._tipped)):
        if (idx, col) in ties:
            return code
    return "replied_to_you" if (idx, col) in req.m._replied else None


def _reason_graph(req: _Request, idx: int) -> Reason | None:
    """The most personal tie behind a people walk: they follow, tipped or replied to you, people
    you know know them, or the rarest thing you both did."""
    if code := _tie_to_you(req, idx):
        return _naming(req, code, idx)
    return _reason_fof(req, idx) or _reason_cf(req, idx)


def _reason_content(req: _Request, idx: int) -> Reason | None:
    m = req.m
    vec = req._vecs(np.asarray([idx]))[0]
    if not np.any(vec):
        return None
    member = m.members[req.r] if req.r is not None else None
    # The member's own history item closest to the candidate: "similar to '<title>' you replied to".
    best_item, best_sim = -1, -1.0
    if not req.people:
        hist = req.hist_cols[req.hist_cols < req.n_i][:HISTORY_CAP]
        if len(hist):
            sims = m.item_vec[hist] @ vec
            j = int(np.argmax(sims))
            best_item, best_sim = int(hist[j]), float(sims[j])
    best_topic, topic_sim = "", -1.0
    if member is not None:
        for interest in member.interests or _phrases(member.profile):
            sim = float(m.interest_vector(interest) @ vec)
            if sim > topic_sim:
                best_topic, topic_sim = interest, sim
    if best_item >= 0 and best_sim >= topic_sim:
        item = m.items[best_item]
        assert item is not None
        return Reason("similar_to", {"title": item.title or item.id, "action": ACTION[item.kind]})
    if best_topic:
        return Reason("shared_interest", {"topic": best_topic})
    return None


_PHRASE_BREAK = re.compile(r"[，。、；;,.!！?？\n]+")


def _phrases(profile: str) -> list[str]:
    """Short phrases of a profile, the member's own words, when no interests are listed."""
    return [p.strip() for p in _PHRASE_BREAK.split(profile) if 2 <= len(p.strip()) <= 24][:6]


def _popular(req: _Request, idx: int) -> Reason | None:
    col = _col(req, idx)
    n = int(req.m.pop[col]) if col is not None else 0
    if n <= 0:
        return None
    return Reason("many_followers" if req.people else "popular", {"n": n})


def _reason_fresh(req: _Request, idx: int) -> Reason | None:
    item = req.m.items[idx]
    if item is None:
        return None
    now = req.now.timestamp()
    if item.starts_at is not None and item.starts_at.timestamp() >= now:
        return Reason("starting_soon", {"days": int((item.starts_at.timestamp() - now) // DAY)})
    if item.created_at is not None:
        return Reason("fresh", {"days": max(0, int((now - item.created_at.timestamp()) // DAY))})
    return None


_REASONS: dict[str, Callable[[_Request, int], Reason | None]] = {
    "content": _reason_content,
    "cf": _reason_neighbours,
    "social": _reason_social,
    "graph": _reason_graph,
    "popularity": _popular,
    "freshness": _reason_fresh,
}


__all__ = ["Reason", "Recommendation", "RecommenderModel", "Weights", "freshness_of"]

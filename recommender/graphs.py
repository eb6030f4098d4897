"""Real social graphs from networkx as evaluation corpora (behaviour only: no text).

- karate club (Zachary): 34 members, 78 friendships -> people;
- Davis Southern Women: 18 women x 14 events, who attended what -> events;
- Les Misérables: 77 characters, 254 co-appearance edges weighted by scenes shared -> people.

A friendship is mutual, so each edge becomes interactions in both directions. Its weight (how
often the two met) becomes kinds of growing strength: always "follow", plus "reply" from weight
2 and "tip" from weight 4, so the model's interaction weights carry the tie strength.

None of the three has dates, and the evaluation hides each member's latest 20%, so the
timestamps are synthetic and deterministic, and their only information is a seeded order: the
i-th tie (or attendance) of a `random.Random(seed)` shuffle happens on day i (a method that
reads ages sees made-up ones; every method sees the same). "The latest 20%" is then a
seeded random fifth of each member's choices, and a figure is reported over seeds 0-9
(`evaluate.evaluate_seeds`), never from one shuffle. Both directions and all kinds of one tie
share its timestamp, so a tie is hidden or kept as a whole.

Davis's events carry no dates either (`created_at` and `starts_at` unset): we do not know when
each was announced or held, so every event is a candidate at every request, for every method
alike. See docs/recommendations.md ("Graphs without dates") for why this protocol and not one
with invented event dates.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import networkx as nx

from recommender.corpus import Corpus, Interaction, InteractionKind, Item, Member

EPOCH = datetime(2025, 1, 6, 18, 0, tzinfo=UTC)

GRAPHS: tuple[str, ...] = ("karate", "davis", "lesmis")


def _edge_kinds(weight: float) -> tuple[InteractionKind, ...]:
    kinds: list[InteractionKind] = ["follow"]
    if weight >= 2:
        kinds.append("reply")
    if weight >= 4:
        kinds.append("tip")
    return tuple(kinds)


def _people_corpus(graph: nx.Graph, *, prefix: str, seed: int) -> Corpus:
    corpus = Corpus()
    ids = {node: f"{prefix}:{node}" for node in graph.nodes}
    for node, mid in ids.items():
        corpus.members[mid] = Member(id=mid, lang="en", name=str(node))
    edges = sorted(graph.edges(data="weight", default=1), key=lambda e: (str(e[0]), str(e[1])))
    random.Random(seed).shuffle(edges)
    for day, (u, v, weight) in enumerate(edges):
        ts = EPOCH + timedelta(days=day)
        for kind in _edge_kinds(float(weight)):
            corpus.interactions.append(Interaction(ids[u], ids[v], kind, ts))
            corpus.interactions.append(Interaction(ids[v], ids[u], kind, ts))
    return corpus


def karate(seed: int = 0) -> Corpus:
    """Zachary's karate club: 34 members, friendships weighted by shared contexts."""
    return _people_corpus(nx.karate_club_graph(), prefix="karate", seed=seed)


def lesmis(seed: int = 0) -> Corpus:
    """Les Misérables co-appearances: 77 characters, weighted by scenes shared."""
    return _people_corpus(nx.les_miserables_graph(), prefix="lesmis", seed=seed)


def davis(seed: int = 0) -> Corpus:
    """Davis Southern Women: who attended which of 14 social events (undated; order by seed)."""
    graph = nx.davis_southern_women_graph()
    corpus = Corpus()
    women = graph.graph["top"]
    for name in women:
        corpus.members[f"davis:{name}"] = Member(id=f"davis:{name}", lang="en", name=name)
    for event in graph.graph["bottom"]:
        # Behaviour only: a made-up title would be content noise, made-up dates a made-up protocol.
        corpus.items[f"davis:{event}"] = Item(id=f"davis:{event}", kind="event", lang="en", title="")
    attended = sorted((name, event) for name in women for event in graph.neighbors(name))
    random.Random(seed).shuffle(attended)
    for day, (name, event) in enumerate(attended):
        ts = EPOCH + timedelta(days=day)
        corpus.interactions.append(Interaction(f"davis:{name}", f"davis:{event}", "attend", ts))
    return corpus


LOADERS: dict[str, Callable[[int], Corpus]] = {"karate": karate, "davis": davis, "lesmis": lesmis}


def load(name: str, seed: int = 0) -> Corpus:
    try:
        return LOADERS[name](seed)
    except KeyError:
        raise ValueError(f"unknown graph {name!r}; one of {', '.join(GRAPHS)}") from None

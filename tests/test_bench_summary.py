"""The ledger benchmark's summary: one-process figures, and the multi-process layout beside them."""

from __future__ import annotations

from typing import Any

from benchmarks.ledger import TARGETS, summarise


def _row(tps: float, processes: int = 1, threads: int = 8, p99: float = 5.0) -> dict[str, Any]:
    return {"transfers_per_s": tps, "processes": processes, "threads_per_process": threads, "p99_ms": p99}


def test_each_layout_is_judged_on_its_own_figures() -> None:
    result = {
        "config": {"clients": 8},
        "single": {
            "uniform_8_clients": _row(1974.5),
            "hot_8_clients": _row(2013.7),
            "uniform_2x4_clients": _row(3083.9, 2, 4),
            "hot_2x4_clients": _row(2684.1, 2, 4, p99=30.0),
        },
        "batch": {"4_clients": {"transfers_per_s": 17956.7}},
        "baseline": {"pgbench_tps": 7000.0},
    }
    summary = summarise(result)
    assert summary["single_uniform_multi_tps"] == 1974.5  # the one-process figure stays the headline
    assert summary["meets"] == {"single_uniform": False, "single_hot": True, "batched": False, "p99": False}
    assert summary["multi_process"] == {
        "layout": "2 processes x 4 threads",
        "single_uniform_tps": 3083.9,
        "single_hot_tps": 2684.1,
        "meets": {"single_uniform": True, "single_hot": True},
    }
    assert TARGETS["single_uniform_8_clients_tps"] == 3000


def test_without_the_multi_process_variant_there_is_no_such_summary() -> None:
    result = {"config": {"clients": 8}, "single": {"uniform_8_clients": _row(100), "hot_8_clients": _row(90)}}
    assert summarise(result)["multi_process"] is None


def test_all_targets_need_one_layout_meeting_both_single_targets() -> None:
    def result(
        uniform: float, hot: float, uniform_2x4: float, hot_2x4: float, batch: float
    ) -> dict[str, Any]:
        return {
            "config": {"clients": 8},
            "single": {
                "uniform_8_clients": _row(uniform),
                "hot_8_clients": _row(hot),
                "uniform_2x4_clients": _row(uniform_2x4, 2, 4),
                "hot_2x4_clients": _row(hot_2x4, 2, 4),
            },
            "batch": {"4_clients": {"transfers_per_s": batch}},
        }

    met = summarise(result(2900, 3000, 3100, 2900, 30500))["all_targets"]
    assert met == {"met": True, "single_targets_met_by": ["2 processes x 4 threads"]}
    # Uniform met by one layout and hot only by the other is no deployment that meets both.
    split = summarise(result(3100, 1900, 2900, 2100, 30500))["all_targets"]
    assert split == {"met": False, "single_targets_met_by": []}
    assert summarise(result(3100, 2100, 2900, 2100, 29000))["all_targets"]["met"] is False
    both = summarise(result(3100, 2100, 3200, 2100, 31000))["all_targets"]
    assert both == {"met": True, "single_targets_met_by": ["1 process", "2 processes x 4 threads"]}

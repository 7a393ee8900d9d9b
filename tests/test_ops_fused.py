"""Fused per-anchor reductions: compiled ops against the materialised
pure-TF reductions and against naive numpy loops (values and gradients)."""

import math

import numpy as np
import pytest
import tensorflow as tf

import metrix_tf.ops as ops

COMPILED = ops.backend() == "compiled"
requires_op = pytest.mark.skipif(
    not COMPILED,
    reason="compiled op not built: " + ops.library_info().get("reason", ""),
)

# (scale_pos, shift_pos, scale_neg, shift_neg): MS defaults, proxy anchor
# (alpha 32, margin 0.1) and a mild setting.
MS = (17.97, 0.77, 75.66, 0.77)
PA = (32.0, 0.1, 32.0, -0.1)
MILD = (2.0, 0.5, 3.0, 0.25)


def unit_rows(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def random_inputs(m, n, d, seed, dtype=np.float64, classes=3, soft=True):
    """Unit embeddings loosely clustered by class (so the miner has easy
    positives and negatives to drop), labels, and mixes when soft."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, d))
    al = rng.integers(0, classes, m).astype(np.int32)
    la = rng.integers(0, classes, n).astype(np.int32)
    a = unit_rows(centers[al] + rng.normal(size=(m, d))).astype(dtype) if m else np.zeros((0, d), dtype)
    c = unit_rows(centers[la] + rng.normal(size=(n, d))).astype(dtype) if n else np.zeros((0, d), dtype)
    lb = la.copy()
    lam = np.ones(n, dtype)
    if soft:
        mixed = rng.uniform(size=n) < 0.5
        lb[mixed] = rng.integers(0, classes, mixed.sum())
        lam[mixed] = rng.uniform(size=mixed.sum())
    return a, al, c, la, lb, lam


def numpy_matrices(a, al, c, la, lb, lam, exclude_self):
    s = np.asarray(a, np.float64) @ np.asarray(c, np.float64).T
    y = np.zeros_like(s)
    for i in range(len(a)):
        for j in range(len(c)):
            y[i, j] = -1.0 if (exclude_self and i == j) else (
                lam[j] * (la[j] == al[i]) + (1 - lam[j]) * (lb[j] == al[i]))
    return s, y


def numpy_exp(s, y, scale_pos, shift_pos, scale_neg, shift_neg, epsilon):
    """Loop oracle of the "exp" kind (PML 1.3.0 miner semantics)."""
    out = {k: [] for k in ("lse_pos", "lse_neg", "min_pos", "max_neg", "pos_count", "neg_count")}
    for i in range(s.shape[0]):
        pos_sims = [s[i, j] for j in range(s.shape[1]) if y[i, j] == 1]
        neg_sims = [s[i, j] for j in range(s.shape[1]) if y[i, j] == 0]
        min_pos = min(pos_sims) if pos_sims else math.inf
        max_neg = max(neg_sims) if neg_sims else -math.inf
        pos_terms, neg_terms = [0.0], [0.0]  # the "1 +"
        for j in range(s.shape[1]):
            if y[i, j] < 0:
                continue
            w_pos, w_neg = y[i, j], 1 - y[i, j]
            if epsilon is not None:
                if y[i, j] == 1 and not s[i, j] - epsilon < max_neg:
                    w_pos = 0
                if y[i, j] == 0 and not s[i, j] + epsilon > min_pos:
                    w_neg = 0
            if w_pos > 0:
                pos_terms.append(math.log(w_pos) - scale_pos * (s[i, j] - shift_pos))
            if w_neg > 0:
                neg_terms.append(math.log(w_neg) + scale_neg * (s[i, j] - shift_neg))
        out["lse_pos"].append(np.logaddexp.reduce(pos_terms))
        out["lse_neg"].append(np.logaddexp.reduce(neg_terms))
        out["min_pos"].append(min_pos)
        out["max_neg"].append(max_neg)
        out["pos_count"].append(len(pos_terms) - 1)
        out["neg_count"].append(len(neg_terms) - 1)
    return ops.ExpReductions(**{k: np.array(v, np.float64) for k, v in out.items()})


def numpy_contrastive(s, y, pos_margin, neg_margin):
    out = {k: [] for k in ("pos_sum", "pos_count", "neg_sum", "neg_count")}
    for i in range(s.shape[0]):
        ps = pc = ns = nc = 0.0
        for j in range(s.shape[1]):
            if y[i, j] < 0:
                continue
            d = math.sqrt(max(2 - 2 * s[i, j], 0.0))
            p = y[i, j] * max(d - pos_margin, 0.0)
            q = (1 - y[i, j]) * max(neg_margin - d, 0.0)
            ps, pc = ps + p, pc + (p > 0)
            ns, nc = ns + q, nc + (q > 0)
        for k, v in zip(("pos_sum", "pos_count", "neg_sum", "neg_count"), (ps, pc, ns, nc)):
            out[k].append(v)
    return ops.ContrastiveReductions(**{k: np.array(v, np.float64) for k, v in out.items()})


def assert_results_close(got, want, rtol, atol):
    for name, g, w in zip(want._fields, got, want):
        np.testing.assert_allclose(np.asarray(g, np.float64), w, rtol=rtol, atol=atol, err_msg=name)


EXP_CASES = [
    # (m, n, d, exclude_self, params, epsilon, soft)
    (40, 40, 8, True, MS, 0.39, False),  # clean batch, MS with miner
    (40, 40, 8, True, MS, 0.1, False),  # a miner that drops pairs
    (40, 40, 8, True, MS, None, True),
    (70, 300, 16, False, PA, None, True),  # several tiles, proxies-like
    (130, 130, 4, True, MILD, 0.1, True),  # miner with soft labels
    (5, 9, 1, False, MILD, 0.2, True),  # D = 1
]


@pytest.mark.parametrize("m,n,d,exclude_self,params,epsilon,soft", EXP_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_reductions_match_numpy_loop(m, n, d, exclude_self, params, epsilon, soft, dtype):
    inputs = random_inputs(m, n, d, seed=m * n + d, dtype=dtype, soft=soft)
    s, y = numpy_matrices(*inputs, exclude_self)
    want = numpy_exp(s, y, *params, epsilon)
    tol = 2e-4 if dtype == np.float32 else 1e-10
    reference = ops.soft_label_exp_reductions_reference(
        *inputs, *params, epsilon=epsilon, exclude_self=exclude_self)
    assert_results_close(reference, want, tol, tol)
    if COMPILED:
        compiled = ops.soft_label_exp_reductions(
            *inputs, *params, epsilon=epsilon, exclude_self=exclude_self)
        assert all(t.dtype == dtype for t in compiled)
        assert_results_close(compiled, want, tol, tol)


def test_miner_drops_pairs():
    """The oracle itself: with the MS miner some pairs must go (else the
    miner tests above would pass with a no-op miner)."""
    inputs = random_inputs(40, 40, 8, seed=1, soft=False)
    s, y = numpy_matrices(*inputs, True)
    mined = numpy_exp(s, y, *MS, 0.1)
    unmined = numpy_exp(s, y, *MS, None)
    assert mined.pos_count.sum() < unmined.pos_count.sum()
    assert mined.neg_count.sum() < unmined.neg_count.sum()


CONTRASTIVE_CASES = [
    (40, 40, 8, True, 0.0, 0.5, False),  # PML defaults on a clean batch
    (70, 300, 16, False, 0.1, 0.9, True),
    (5, 9, 1, False, 0.0, 1.2, True),  # D = 1: d is 0 or 2, gradient 0-safe
]


@pytest.mark.parametrize("m,n,d,exclude_self,pos_margin,neg_margin,soft", CONTRASTIVE_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_contrastive_reductions_match_numpy_loop(m, n, d, exclude_self, pos_margin, neg_margin, soft, dtype):
    inputs = random_inputs(m, n, d, seed=m + 7 * n, dtype=dtype, soft=soft)
    s, y = numpy_matrices(*inputs, exclude_self)
    want = numpy_contrastive(s, y, pos_margin, neg_margin)
    tol = 2e-4 if dtype == np.float32 else 1e-10
    reference = ops.soft_label_contrastive_reductions_reference(
        *inputs, pos_margin, neg_margin, exclude_self=exclude_self)
    assert_results_close(reference, want, tol, tol)
    if COMPILED:
        compiled = ops.soft_label_contrastive_reductions(
            *inputs, pos_margin, neg_margin, exclude_self=exclude_self)
        assert_results_close(compiled, want, tol, tol)


def loss_of(kind, anchors, candidates, inputs, exclude_self, weights, pure, options):
    _, al, _, la, lb, lam = inputs
    if kind == "exp":
        params, epsilon = options
        if pure:
            with ops.use_pure_tf():
                r = ops.soft_label_exp_reductions(anchors, al, candidates, la, lb, lam, *params,
                                                  epsilon=epsilon, exclude_self=exclude_self)
        else:
            r = ops.soft_label_exp_reductions(anchors, al, candidates, la, lb, lam, *params,
                                              epsilon=epsilon, exclude_self=exclude_self)
        return tf.reduce_sum(weights[0] * r.lse_pos + weights[1] * r.lse_neg)
    pos_margin, neg_margin = options
    fn = ops.soft_label_contrastive_reductions
    if pure:
        with ops.use_pure_tf():
            r = fn(anchors, al, candidates, la, lb, lam, pos_margin, neg_margin, exclude_self=exclude_self)
    else:
        r = fn(anchors, al, candidates, la, lb, lam, pos_margin, neg_margin, exclude_self=exclude_self)
    return tf.reduce_sum(weights[0] * r.pos_sum + weights[1] * r.neg_sum)


GRAD_CASES = [
    ("exp", 30, 30, 6, True, (MS, 0.39), False),
    ("exp", 70, 290, 5, False, (PA, None), True),
    ("exp", 33, 33, 4, True, (MILD, 0.1), True),
    ("contrastive", 30, 30, 6, True, (0.0, 0.5), False),
    ("contrastive", 70, 290, 5, False, (0.1, 0.9), True),
]


@requires_op
@pytest.mark.parametrize("kind,m,n,d,exclude_self,options,soft", GRAD_CASES)
def test_fused_gradients_match_materialised(kind, m, n, d, exclude_self, options, soft):
    inputs = random_inputs(m, n, d, seed=5 * m + n, soft=soft)
    rng = np.random.default_rng(0)
    weights = (rng.normal(size=m), rng.normal(size=m))
    a, c = tf.constant(inputs[0]), tf.constant(inputs[2])
    grads = []
    for pure in (False, True):
        with tf.GradientTape() as tape:
            tape.watch([a, c])
            loss = loss_of(kind, a, c, inputs, exclude_self, weights, pure, options)
        grads.append(tape.gradient(loss, [a, c]))
    for fused, materialised in zip(*grads):
        assert float(tf.reduce_max(tf.abs(materialised))) > 0  # the case has gradient
        np.testing.assert_allclose(fused, materialised, rtol=1e-9, atol=1e-9)


@requires_op
@pytest.mark.parametrize("kind,options", [
    ("exp", (MILD, None)), ("exp", (MILD, 0.2)), ("contrastive", (0.1, 1.0))])
def test_fused_gradients_numerically(kind, options):
    inputs = random_inputs(8, 11, 3, seed=21)
    weights = (np.linspace(0.5, 1.5, 8), np.linspace(-1.0, 1.0, 8))

    def loss(anchors, candidates):
        return loss_of(kind, anchors, candidates, inputs, False, weights, False, options)

    theoretical, numerical = tf.test.compute_gradient(
        loss, [tf.constant(inputs[0]), tf.constant(inputs[2])], delta=1e-6)
    for t, n in zip(theoretical, numerical):
        np.testing.assert_allclose(t, n, rtol=1e-5, atol=1e-6)


@requires_op
def test_same_tensor_as_anchors_and_candidates():
    """A clean batch passes one tensor twice: both gradient paths add up."""
    a, al, _, _, _, _ = random_inputs(25, 25, 5, seed=2, soft=False)
    x = tf.constant(a)
    grads = []
    for pure in (False, True):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = loss_of("exp", x, x, (a, al, a, al, al, np.ones(25)), True,
                           (np.ones(25) / 17.97, np.ones(25) / 75.66), pure, (MS, 0.39))
        grads.append(tape.gradient(loss, x))
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-9, atol=1e-10)


@requires_op
@pytest.mark.parametrize("m,n", [(0, 5), (5, 0), (0, 0)])
def test_fused_empty_shapes(m, n):
    inputs = random_inputs(m, n, 4, seed=0)
    a, c = tf.constant(inputs[0]), tf.constant(inputs[2])
    with tf.GradientTape() as tape:
        tape.watch([a, c])
        r = ops.soft_label_exp_reductions(a, inputs[1], c, *inputs[3:], *MS, epsilon=0.39)
        q = ops.soft_label_contrastive_reductions(a, inputs[1], c, *inputs[3:])
        loss = tf.reduce_sum(r.lse_pos) + tf.reduce_sum(r.lse_neg) + tf.reduce_sum(q.pos_sum)
    grad_a, grad_c = tape.gradient(loss, [a, c])
    assert r.lse_pos.shape == (m,) and q.neg_count.shape == (m,)
    np.testing.assert_array_equal(r.lse_pos, np.zeros(m))  # log(1 + 0)
    np.testing.assert_array_equal(r.min_pos, np.full(m, np.inf))
    np.testing.assert_array_equal(r.max_neg, np.full(m, -np.inf))
    assert grad_a.shape == (m, 4) and grad_c.shape == (n, 4)


@requires_op
def test_large_exponents_stay_finite_in_float32():
    """scale 75.66 on s - shift up to 1.77 overflows a naive float32 exp."""
    inputs = random_inputs(50, 60, 3, seed=3, dtype=np.float32)
    params = (75.66, 0.77, 75.66, -0.77)
    r = ops.soft_label_exp_reductions(*inputs, *params)
    s, y = numpy_matrices(*inputs, False)
    want = numpy_exp(s, y, *params, None)
    assert np.all(np.isfinite(r.lse_pos)) and np.all(np.isfinite(r.lse_neg))
    np.testing.assert_allclose(r.lse_pos, want.lse_pos, rtol=1e-4)
    np.testing.assert_allclose(r.lse_neg, want.lse_neg, rtol=1e-4)


def test_ms_loss_from_fused_terms_equals_loop():
    """How a loss consumes the kind: MS on a clean batch, PML reduction."""
    inputs = random_inputs(32, 32, 6, seed=9, soft=False)
    r = ops.soft_label_exp_reductions(*inputs, *MS, epsilon=0.39, exclude_self=True)
    loss = float(tf.reduce_mean(r.lse_pos / MS[0] + r.lse_neg / MS[2]))
    s, y = numpy_matrices(*inputs, True)
    want = numpy_exp(s, y, *MS, 0.39)
    assert loss == pytest.approx(float(np.mean(want.lse_pos / MS[0] + want.lse_neg / MS[2])), rel=1e-9)


@requires_op
def test_fused_scalar_argument_errors():
    inputs = random_inputs(4, 4, 2, seed=0)
    with pytest.raises(ValueError, match="scale_pos must be a scalar"):
        ops.soft_label_exp_reductions(*inputs, [1.0, 2.0], 0.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="neg_margin must be a scalar"):
        ops.soft_label_contrastive_reductions(*inputs, 0.0, [0.5])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_coincident_points_are_at_distance_zero_in_op_and_pure_tf(dtype):
    # Every row twice, scored against itself (no self-exclusion): the
    # coincident entries have d = 0, so they are no positive term, while
    # float32 rounding of s = x . x alone would give d ~ 3e-4.
    rng = np.random.default_rng(5)
    x = rng.normal(size=(6, 64)).astype(dtype)
    x = np.repeat(x / np.linalg.norm(x, axis=1, keepdims=True), 2, axis=0)
    labels = np.repeat(np.arange(6), 2).astype(np.int32)
    args = (x, labels, x, labels, labels, np.ones(12, dtype), 0.0, 0.5)
    with ops.use_pure_tf():
        pure = ops.soft_label_contrastive_reductions(*args)
    np.testing.assert_array_equal(np.asarray(pure.pos_count), np.zeros(12))
    np.testing.assert_array_equal(np.asarray(pure.pos_sum), np.zeros(12))
    s = ops.soft_label_similarity(x, labels, x, labels, labels, np.ones(12, dtype))[0]
    np.testing.assert_array_equal(
        np.asarray(ops.distance_from_similarity(s))[np.arange(12), np.arange(12) ^ 1], 0.0)
    if COMPILED:
        fused = ops.soft_label_contrastive_reductions(*args)
        assert_results_close(fused, pure, 1e-6, 1e-7)
        np.testing.assert_array_equal(np.asarray(fused.pos_count), np.zeros(12))

"""Normalisation at any scale: every loss gives the loss of the rows'
directions, evaluation likewise, and an all-zero row has one documented
value (the zero vector: similarity 0, no gradient) in both."""

import numpy as np
import pytest
import tensorflow as tf

import oracle
from metrix_tf import losses
from metrix_tf.evaluation import evaluate_retrieval
from metrix_tf.ops.normalization import l2_normalize
from metrix_tf.ops.normalization import l2_normalize_numpy

RNG = np.random.default_rng(0)
X = RNG.normal(size=(8, 4)).astype("float32")
Y = np.arange(8) % 4
PROXIES = RNG.normal(size=(4, 4)).astype("float32")
SCALES = [1e-30, 1e-7, 1e20, 1e30]

LOSSES = {
    "contrastive": lambda y, x: losses.contrastive(y, x),
    "multi_similarity": lambda y, x: losses.multi_similarity(y, x),
    "proxy_anchor": lambda y, x: losses.proxy_anchor(y, x, PROXIES),
    "proxy_anchor_scaled_proxies": lambda y, x: losses.proxy_anchor(y, X, PROXIES * (x[0, 0] / X[0, 0])),
    "contrastive_metrix": lambda y, x: losses.contrastive(
        y, x, metrix=__import__("metrix_tf").Metrix("embedding", lam=0.3, strategy="both", seed=0)
    ),
}


def value_and_gradient(fn, x):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = fn(Y, x)
    return float(value), tape.gradient(value, x).numpy()


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("scale", SCALES)
def test_every_loss_is_the_loss_of_the_direction_at_any_scale(name, scale):
    want, grad = value_and_gradient(LOSSES[name], X)
    got, grad_scaled = value_and_gradient(LOSSES[name], X * np.float32(scale))
    assert np.isfinite(got)
    np.testing.assert_allclose(got, want, rtol=2e-5)
    if name != "proxy_anchor_scaled_proxies":  # that one's x is not an input
        # d loss(s x) / d(s x) = (d loss(x) / dx) / s
        np.testing.assert_allclose(grad_scaled * np.float32(scale), grad, rtol=1e-3, atol=1e-6)


def test_the_issue_example():
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    y = np.arange(8) % 4
    want = float(losses.contrastive(y, x))
    assert abs(float(losses.contrastive(y, x * 1e-7)) - want) < 1e-5
    assert abs(float(losses.contrastive(y, x * 1e20)) - want) < 1e-5
    want_oracle = oracle.contrastive(y, x.astype("float64"))
    assert abs(want - want_oracle) < 1e-5


def zero_safe(x):
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)


@pytest.mark.parametrize("name", ["contrastive", "multi_similarity", "proxy_anchor"])
def test_an_all_zero_row_is_the_zero_vector_with_no_gradient(name, monkeypatch):
    x = X.copy()
    x[2] = 0.0
    got, grad = value_and_gradient(LOSSES[name], x)
    # The oracle's loops with the documented value: a zero row's similarity is 0.
    monkeypatch.setattr(oracle, "normalize", zero_safe)
    if name == "proxy_anchor":
        want = oracle.proxy_anchor(Y, x, PROXIES)
    else:
        want = getattr(oracle, name)(Y, x)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert np.all(np.isfinite(grad)) and np.all(grad[2] == 0)


def test_the_tf_and_numpy_rules_agree():
    x = np.concatenate([X * 1e-30, X[:3] * 1e30, np.zeros((1, 4), "float32")])
    got = l2_normalize(tf.constant(x)).numpy()
    want = l2_normalize_numpy(x)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(want[:-1], axis=1), 1.0, rtol=1e-12)
    assert np.all(want[-1] == 0)
    half = l2_normalize(tf.constant(X * 1e-3, tf.float16)).numpy().astype("float32")
    np.testing.assert_allclose(half, want[:8], atol=2e-3)


@pytest.mark.parametrize("scale", [1e-200, 1e-30, 1e30, 1e200])
def test_evaluation_at_any_scale(scale):
    import faiss

    faiss.omp_set_num_threads(1)
    x = np.random.default_rng(1).normal(size=(40, 8))
    labels = np.arange(40) % 5
    want = evaluate_retrieval(x, labels, ks=(1, 2, 4))
    got = evaluate_retrieval(x * scale, labels, ks=(1, 2, 4))
    assert got == want

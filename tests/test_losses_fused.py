"""The losses give the same values and gradients on the fused (no M x N
matrices) and the materialised paths, clean and with Metrix."""

import numpy as np
import pytest
import tensorflow as tf

import metrix_tf
from metrix_tf.losses import metric_loss

LOSSES = {
    "contrastive": lambda y, x, **kw: metrix_tf.losses.contrastive(y, x, **kw),
    "multi_similarity": lambda y, x, **kw: metrix_tf.losses.multi_similarity(y, x, **kw),
    "proxy_anchor": lambda y, x, **kw: metrix_tf.losses.proxy_anchor(y, x, PROXIES, **kw),
}
PROXIES = tf.constant(np.random.default_rng(1).normal(size=(7, 5)))


def batch():
    rng = np.random.default_rng(0)
    labels = np.array([0, 0, 1, 1, 1, 2, 3, 3, 4, 6])
    centers = rng.normal(size=(7, 5))
    x = centers[labels] + 0.6 * rng.normal(size=(len(labels), 5))
    return tf.constant(labels), tf.constant(x)


def value_and_gradient(fn, labels, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = fn(labels, x)
    return value.numpy(), tape.gradient(value, x).numpy()


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize(
    "metrix",
    [
        None,
        dict(strategy="both", scoring="all_pairs", lam=0.35),
        dict(strategy="positive_negative", scoring="per_anchor", lam=0.6),
    ],
    ids=["clean", "all_pairs", "per_anchor"],
)
def test_fused_equals_materialised(name, metrix):
    if metrix_tf.ops.backend() != "compiled":
        pytest.skip("the compiled op is not loaded: both paths are the pure-TF one")
    labels, x = batch()
    kwargs = {} if metrix is None else {"metrix": metrix_tf.Metrix(**metrix)}
    fused = value_and_gradient(lambda y, e: LOSSES[name](y, e, fused=True, **kwargs), labels, x)
    plain = value_and_gradient(lambda y, e: LOSSES[name](y, e, fused=False, **kwargs), labels, x)
    np.testing.assert_allclose(fused[0], plain[0], rtol=1e-10)
    np.testing.assert_allclose(fused[1], plain[1], rtol=1e-8, atol=1e-12)


def test_automatic_choice_uses_fused_above_the_size(monkeypatch):
    labels, x = batch()
    plain = metrix_tf.losses.multi_similarity(labels, x, fused=False).numpy()
    monkeypatch.setattr(metric_loss, "FUSED_MIN_ENTRIES", 1)
    calls = []
    original = metrix_tf.losses.multi_similarity_loss.soft_label_exp_reductions

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(metrix_tf.losses.multi_similarity_loss, "soft_label_exp_reductions", spy)
    auto = metrix_tf.losses.multi_similarity(labels, x).numpy()
    assert bool(calls) == (metrix_tf.ops.backend() == "compiled")
    np.testing.assert_allclose(auto, plain, rtol=1e-10)


def test_fused_argument_is_validated_and_serialised():
    loss = metrix_tf.losses.ContrastiveLoss(fused=True)
    assert metrix_tf.losses.ContrastiveLoss.from_config(loss.get_config()).fused is True
    with pytest.raises(ValueError, match="fused='yes'"):
        metrix_tf.losses.MultiSimilarityLoss(fused="yes")

"""The supervised contrastive loss against the naive oracle
(tests/oracle.py): values and gradients, clean and with Metrix (both
strategies, both scorings), hand-computed cases, config round trip."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import oracle
from metrix_tf import losses
from test_losses_oracle import BATCHES
from test_losses_oracle import MIXES
from loss_checks import CASES
from loss_checks import assert_value_and_gradient
from test_losses_oracle import make_metrix


def test_oracle_by_hand():
    # Unit vectors at 0, 60, 90 degrees, labels 0, 0, 1, t = 0.5. Anchor 0:
    # -log(e^{c60/t} / (e^{c60/t} + e^{c90/t})), anchor 1 likewise with
    # cos 30 for the negative; anchor 2 has no positive (0, not counted).
    c = lambda t: math.cos(math.radians(t))
    x = np.array([[c(a), math.sin(math.radians(a))] for a in (0, 60, 90)]) * [[1.0], [3.0], [0.5]]
    t = 0.5
    l0 = -math.log(math.exp(c(60) / t) / (math.exp(c(60) / t) + math.exp(c(90) / t)))
    l1 = -math.log(math.exp(c(60) / t) / (math.exp(c(60) / t) + math.exp(c(30) / t)))
    got = oracle.supervised_contrastive([0, 0, 1], x, temperature=t)
    assert got == pytest.approx((l0 + l1) / 2, rel=1e-12)
    # No negative pair (one class) or no positive pair: 0, as PML.
    assert oracle.supervised_contrastive([4, 4, 4], x) == 0.0
    assert oracle.supervised_contrastive([0, 1, 2], x) == 0.0


def test_oracle_soft_labels_weight_the_positives():
    anchor = np.array([1.0, 0.0])
    cands = [(np.array([0.6, 0.8]), 0.7), (np.array([0.0, 1.0]), 0.2)]
    lse = math.log(math.exp(0.6 / 0.1) + math.exp(0.0))
    expected = -(0.7 * (6.0 - lse) + 0.2 * (0.0 - lse)) / 0.9
    assert oracle.supervised_contrastive_term(anchor, cands) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("batch,mix", CASES)
def test_value_and_gradient_match_oracle(batch, mix):
    labels, spec = BATCHES[batch], MIXES[mix]
    assert_value_and_gradient(
        lambda x: losses.supervised_contrastive(tf.constant(labels), x, metrix=make_metrix(spec)),
        lambda z: oracle.supervised_contrastive(labels, z, mix=spec),
        oracle.clustered_embeddings(labels),
    )


@pytest.mark.parametrize("labels", [[3, 3, 3], [0, 1, 2, 3], [5]])
def test_degenerate_batches_are_zero_with_finite_gradients(labels):
    x = tf.constant(oracle.clustered_embeddings(labels, seed=2))
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = losses.supervised_contrastive(tf.constant(labels), x)
    assert float(value) == oracle.supervised_contrastive(labels, x.numpy()) == 0.0
    grad = tape.gradient(value, x)
    assert grad is None or np.all(grad.numpy() == 0.0)


def test_loss_class_in_float32_and_round_trip():
    labels = BATCHES["random"]
    x = oracle.clustered_embeddings(labels, seed=7)
    spec = MIXES["both_all_pairs"]
    loss = losses.SupervisedContrastiveLoss(temperature=0.5, metrix=make_metrix(spec))
    got = loss(tf.constant(labels, tf.float32), tf.constant(x, tf.float32))
    expected = oracle.supervised_contrastive(labels, x, 0.5, mix=spec)
    np.testing.assert_allclose(float(got), expected, rtol=2e-4, atol=1e-5)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert restored.get_config() == loss.get_config() and restored.temperature == 0.5
    with pytest.raises(ValueError, match="temperature=0"):
        losses.SupervisedContrastiveLoss(temperature=0)

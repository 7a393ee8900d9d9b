"""The triplet margin loss against the naive oracle (tests/oracle.py):
values and gradients, clean (each selection) and with Metrix (both
strategies, both scorings), hand-computed cases, config round trip."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import metrix_tf
import oracle
from metrix_tf import losses
from test_losses_oracle import BATCHES
from test_losses_oracle import MIXES
from loss_checks import CASES
from loss_checks import assert_value_and_gradient
from test_losses_oracle import make_metrix


def _circle(angles_deg):
    return np.array([[2.0 * math.cos(math.radians(t)), 2.0 * math.sin(math.radians(t))]
                     for t in angles_deg])


def _chord(delta_deg):
    return 2.0 * math.sin(math.radians(abs(delta_deg)) / 2.0)


def test_oracle_by_hand():
    # labels 0, 0, 1 at 0, 30, 40 degrees, margin 0.3: anchor 0 has the
    # triplet (p=1, n=2): chord 30 - chord 40 + 0.3 > 0; anchor 1 the
    # triplet (p=0, n=2): chord 30 - chord 10 + 0.3; anchor 2 has none.
    x = _circle([0, 30, 40])
    t0 = _chord(30) - _chord(40) + 0.3
    t1 = _chord(30) - _chord(10) + 0.3
    assert t0 > 0 and t1 > 0
    got = oracle.triplet_margin([0, 0, 1], x, margin=0.3)
    assert got == pytest.approx((t0 + t1) / 2, rel=1e-12)
    # Semi-hard keeps 0 < d(a, n) - d(a, p) <= margin: only anchor 0's.
    assert oracle.triplet_margin([0, 0, 1], x, margin=0.3, selection="semi_hard") == (
        pytest.approx(t0, rel=1e-12))
    # Margin 0.05: only anchor 1's triplet is violated.
    assert oracle.triplet_margin([0, 0, 1], x) == pytest.approx(
        _chord(30) - _chord(10) + 0.05, rel=1e-12)


def test_oracle_hard_selection_by_hand():
    # Anchor 0 (class 0) with positives at 20 and 50 degrees and negatives
    # at 30 and 90: batch-hard takes the positive at 50, the negative at 30.
    x = _circle([0, 20, 50, 30, 90])
    labels = [0, 0, 0, 1, 1]
    terms = oracle.triplet_margin_terms(oracle.normalize(x)[0],
                                        oracle.anchor_candidates(labels, x)[0], 0.05, "hard")
    assert terms == [pytest.approx(_chord(50) - _chord(30) + 0.05, rel=1e-12)]


@pytest.mark.parametrize("batch,mix", CASES)
def test_value_and_gradient_match_oracle(batch, mix):
    labels, spec = BATCHES[batch], MIXES[mix]
    assert_value_and_gradient(
        lambda x: losses.triplet_margin(tf.constant(labels), x, metrix=make_metrix(spec)),
        lambda z: oracle.triplet_margin(labels, z, mix=spec),
        oracle.clustered_embeddings(labels),
    )


@pytest.mark.parametrize("selection", ["semi_hard", "hard"])
@pytest.mark.parametrize("batch", ["balanced", "random"])
@pytest.mark.parametrize("mix", ["clean", "both_all_pairs"])
def test_selections_match_oracle(selection, batch, mix):
    labels = BATCHES[batch]
    x0 = oracle.clustered_embeddings(labels, seed=4)
    spec = MIXES[mix]
    x = tf.constant(x0)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = losses.triplet_margin(tf.constant(labels), x, margin=0.2,
                                      selection=selection, metrix=make_metrix(spec))
    expected = oracle.triplet_margin(labels, x0, margin=0.2, selection=selection, mix=spec)
    assert expected > 0.0
    np.testing.assert_allclose(float(value), expected, rtol=1e-9)
    want = oracle.numerical_gradient(
        lambda z: oracle.triplet_margin(labels, z, 0.2, selection, mix=spec), x0)
    np.testing.assert_allclose(tape.gradient(value, x).numpy(), want, rtol=1e-5,
                               atol=1e-6 * max(1.0, float(np.abs(want).max())))


def test_selections_differ_and_pick_fewer_triplets():
    labels = BATCHES["balanced"]
    x = oracle.clustered_embeddings(labels, seed=4)
    values = {s: oracle.triplet_margin(labels, x, 0.2, s) for s in ("all", "semi_hard", "hard")}
    assert len(set(values.values())) == 3, values


def test_loss_class_in_float32_and_round_trip():
    labels = BATCHES["random"]
    x = oracle.clustered_embeddings(labels, seed=7)
    spec = MIXES["both_all_pairs"]
    loss = losses.TripletMarginLoss(margin=0.1, selection="semi_hard", metrix=make_metrix(spec))
    got = loss(tf.constant(labels, tf.float32), tf.constant(x, tf.float32))
    expected = oracle.triplet_margin(labels, x, 0.1, "semi_hard", mix=spec)
    np.testing.assert_allclose(float(got), expected, rtol=2e-4, atol=1e-5)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert restored.get_config() == loss.get_config()
    assert (restored.margin, restored.selection) == (0.1, "semi_hard")
    with pytest.raises(ValueError, match="selection='semi'"):
        losses.TripletMarginLoss(selection="semi")


def test_duplicated_rows_are_at_distance_zero():
    # Two copies of each example: the coincident positives are at distance
    # exactly 0, so their triplets equal the reference's in float32.
    labels = [0, 0, 1, 1, 2, 2]
    x = _circle([0, 0, 20, 20, 45, 45]) + 0.3  # off the axes: float32 rounds s
    expected = oracle.triplet_margin(labels, x, margin=0.5)
    assert expected > 0.0
    got = losses.triplet_margin(tf.constant(labels), tf.constant(x, tf.float32), margin=0.5)
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)

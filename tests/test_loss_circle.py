"""The circle loss against the naive oracle (tests/oracle.py) and Keras'
`Circle`: values and gradients, clean and with Metrix (both strategies,
both scorings), hand-computed cases, config round trip."""

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


def test_oracle_by_hand():
    # Unit vectors at 0, 60, 100 degrees, labels 0, 0, 1, m = 0.25,
    # gamma = 4: each of anchors 0 and 1 has one positive and one negative.
    m, g = 0.25, 4.0
    c = lambda t: math.cos(math.radians(t))
    x = np.array([[c(a), math.sin(math.radians(a))] for a in (0, 60, 100)])

    def term(sp, sn):
        lp = -g * max(1 + m - sp, 0) * (sp - (1 - m))
        ln = g * max(sn + m, 0) * (sn - m)
        return math.log1p(math.exp(lp + ln))

    expected = (term(c(60), c(100)) + term(c(60), c(40))) / 2
    got = oracle.circle([0, 0, 1], x, margin=m, gamma=g)
    assert got == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("batch", list(BATCHES))
def test_clean_value_equals_keras_circle(batch):
    labels = BATCHES[batch]
    x = oracle.normalize(oracle.clustered_embeddings(labels, seed=3)).astype("float32")
    expected = keras.losses.Circle()(np.asarray(labels), x)
    got = losses.CircleLoss()(tf.constant(labels), tf.constant(x))
    np.testing.assert_allclose(float(got), float(expected), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(got), oracle.circle(labels, x), rtol=1e-4)


@pytest.mark.parametrize("batch,mix", CASES)
def test_value_and_gradient_match_oracle(batch, mix):
    labels, spec = BATCHES[batch], MIXES[mix]
    x0 = oracle.clustered_embeddings(labels)
    # gamma 8 keeps the finite differences well conditioned; the self-paced
    # weights carry no gradient: the oracle holds them at x0.
    assert_value_and_gradient(
        lambda x: losses.circle(tf.constant(labels), x, gamma=8.0, metrix=make_metrix(spec)),
        lambda z: oracle.circle(labels, z, gamma=8.0, mix=spec),
        x0,
        lambda z: oracle.circle(labels, z, gamma=8.0, mix=spec, weight_embeddings=x0),
    )


def test_default_scale_matches_oracle_with_metrix():
    labels = BATCHES["random"]
    x = oracle.clustered_embeddings(labels, seed=5)
    spec = MIXES["both_per_anchor"]
    got = losses.circle(tf.constant(labels), tf.constant(x), metrix=make_metrix(spec))
    np.testing.assert_allclose(float(got), oracle.circle(labels, x, mix=spec), rtol=1e-9)


def test_loss_class_in_float32_and_round_trip():
    labels = BATCHES["random"]
    x = oracle.clustered_embeddings(labels, seed=7)
    spec = MIXES["both_all_pairs"]
    loss = losses.CircleLoss(margin=0.25, gamma=32.0, metrix=make_metrix(spec))
    got = loss(tf.constant(labels, tf.float32), tf.constant(x, tf.float32))
    expected = oracle.circle(labels, x, 0.25, 32.0, mix=spec)
    np.testing.assert_allclose(float(got), expected, rtol=2e-4, atol=1e-5)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert restored.get_config() == loss.get_config()
    assert (restored.margin, restored.gamma) == (0.25, 32.0)
    with pytest.raises(ValueError, match="gamma=-1"):
        losses.CircleLoss(gamma=-1)


def test_fit_with_metrix_lowers_the_clean_loss_and_improves_retrieval():
    # With Metrix the total includes the mixed term's floor (see
    # test_training.FIT_CASES): the clean loss of the data must fall.
    from test_training import clustered_problem
    from test_training import recall_at_1
    from test_training import small_model

    x, y = clustered_problem()
    model = small_model()
    model.compile(keras.optimizers.Adam(1e-2),
                  loss=losses.CircleLoss(metrix=metrix_tf.Metrix(level="embedding", seed=1)))
    clean = losses.CircleLoss()

    def clean_loss_and_recall():
        embeddings = model.predict(x, verbose=0)
        return float(clean(tf.constant(y), tf.constant(embeddings))), recall_at_1(embeddings, y)

    loss_before, recall_before = clean_loss_and_recall()
    history = model.fit(x, y, batch_size=48, epochs=8, verbose=0, shuffle=True)
    assert np.all(np.isfinite(history.history["loss"]))
    loss_after, recall_after = clean_loss_and_recall()
    assert loss_after < 0.8 * loss_before, (loss_before, loss_after)
    assert recall_after > recall_before + 0.05, (recall_before, recall_after)

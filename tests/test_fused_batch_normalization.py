"""FusedBatchNormalization against keras.layers.BatchNormalization."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from metrix_tf.models import FusedBatchNormalization
from metrix_tf.models import fuse_batchnorm
from metrix_tf.models import small_cnn_backbone


def pair(shape, **kwargs):
    """A Keras and a fused layer with the same (non-trivial) weights."""
    keras_bn = keras.layers.BatchNormalization(**kwargs)
    fused_bn = FusedBatchNormalization(**kwargs)
    keras_bn.build(shape)
    fused_bn.build(shape)
    rng = np.random.default_rng(0)
    channels = shape[-1]
    weights = [w for w in (
        rng.uniform(0.5, 1.5, channels) if kwargs.get("scale", True) else None,
        rng.normal(size=channels) if kwargs.get("center", True) else None,
        rng.normal(size=channels), rng.uniform(0.5, 2.0, channels)) if w is not None]
    keras_bn.set_weights(weights)
    fused_bn.set_weights(weights)
    return keras_bn, fused_bn


def run(layer, x, training):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * tf.cos(tf.range(tf.size(y), dtype=tf.float32)[: y.shape[-1]]))
    grads = tape.gradient(loss, [x] + layer.trainable_weights)
    return y, grads, [v.numpy() for v in layer.weights]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("center,scale", [(True, True), (False, False)])
def test_matches_keras_values_gradients_and_moving_statistics(training, center, scale):
    shape = (6, 5, 4, 3)
    x = np.random.default_rng(1).normal(2.0, 3.0, shape).astype("float32")
    keras_bn, fused_bn = pair(shape, momentum=0.9, center=center, scale=scale)
    initial = fused_bn.get_weights()
    y_k, g_k, w_k = run(keras_bn, x, training)
    y_f, g_f, w_f = run(fused_bn, x, training)
    np.testing.assert_allclose(y_f, y_k, rtol=1e-5, atol=1e-5)
    assert len(g_f) == len(g_k)
    for a, b in zip(g_f, g_k):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    for a, b in zip(w_f, w_k):  # moving statistics: biased variance, as Keras
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert np.allclose(w_f[-1], initial[-1]) != training


def test_frozen_layer_runs_in_inference_mode():
    shape = (4, 3, 3, 2)
    x = np.random.default_rng(2).normal(size=shape).astype("float32")
    keras_bn, fused_bn = pair(shape)
    keras_bn.trainable = fused_bn.trainable = False
    before = [w.copy() for w in fused_bn.get_weights()]
    np.testing.assert_allclose(fused_bn(x, training=True), keras_bn(x, training=True), rtol=1e-5, atol=1e-5)
    for a, b in zip(before, fused_bn.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_inputs_use_float32_statistics(dtype):
    shape = (8, 4, 4, 3)
    x = np.random.default_rng(3).normal(100.0, 10.0, shape).astype("float32")
    keras_bn, fused_bn = pair(shape)
    fused_bn = FusedBatchNormalization(dtype=f"mixed_{dtype}")
    fused_bn.build(shape)
    fused_bn.set_weights(keras_bn.get_weights())
    y = fused_bn(tf.cast(x, dtype), training=True)
    assert y.dtype == dtype
    expected = keras_bn(x, training=True)
    np.testing.assert_allclose(tf.cast(y, tf.float32), expected, atol=0.05)
    assert np.isfinite(fused_bn.moving_variance.numpy()).all()


def test_other_inputs_use_the_keras_computation():
    x = np.random.default_rng(4).normal(size=(5, 3)).astype("float32")
    keras_bn, fused_bn = pair((5, 3))
    np.testing.assert_allclose(fused_bn(x, training=True), keras_bn(x, training=True), rtol=1e-6)


def test_config_round_trip_and_fuse_batchnorm_keeps_weights():
    layer = FusedBatchNormalization(momentum=0.8, epsilon=1e-4)
    clone = FusedBatchNormalization.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.BatchNormalization()(x)
    model = keras.Model(inputs, x)
    model.layers[-1].set_weights([np.full(4, 2.0), np.ones(4), np.full(4, 0.5), np.full(4, 3.0)])
    fused = fuse_batchnorm(model)
    assert isinstance(fused.layers[-1], FusedBatchNormalization)
    data = np.random.default_rng(5).normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(fused(data), model(data), rtol=1e-5, atol=1e-5)


def test_backbones_use_the_fused_layer():
    backbone = small_cnn_backbone((16, 16, 1), width=4)
    norms = [l for l in backbone.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert norms and all(isinstance(l, FusedBatchNormalization) for l in norms)

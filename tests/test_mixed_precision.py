"""Mixed precision end to end: each loss at each Metrix level under
mixed_float16 (with Keras' loss scaling) and mixed_bfloat16, against the same
model in float32; saved models and the export keep float32 embeddings."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import metrix_tf
from metrix_tf.mixing.mixed_batch import MixedBatch
from metrix_tf.models import EmbeddingModel
from metrix_tf.models import small_cnn_backbone

LOSSES = {
    "contrastive": lambda m: metrix_tf.losses.ContrastiveLoss(metrix=m),
    "multi_similarity": lambda m: metrix_tf.losses.MultiSimilarityLoss(metrix=m),
    "proxy_anchor": lambda m: metrix_tf.losses.ProxyAnchorLoss(4, 16, metrix=m),
}
LEVELS = ("none", "embedding", "feature", "input")
# Relative difference of the first-step loss of the low-precision model from
# the float32 one (same weights, same batch, same mixes): measured at most
# 6.4e-3 (mixed_float16) and 3.9e-3 (mixed_bfloat16) over these 24 cases.
TOLERANCE = {"mixed_float16": 2e-2, "mixed_bfloat16": 2e-2}


@pytest.fixture
def restore_policy():
    previous = keras.config.dtype_policy()
    yield
    keras.config.set_dtype_policy(previous)


def batch():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 3).astype("int32")
    images = rng.normal(size=(12, 16, 16, 1)) + labels[:, None, None, None] * 0.5
    return images.astype("float32"), labels


def build(policy, loss_name, level, run_eagerly=False):
    keras.config.set_dtype_policy(policy)
    keras.utils.set_random_seed(0)
    metrix = None if level == "none" else metrix_tf.Metrix(
        level=level, strategy="positive_negative", lam=0.3, seed=0)
    model = EmbeddingModel(small_cnn_backbone((16, 16, 1), width=4), embedding_dim=16,
                           metrix=metrix, max_mixes=1000)
    loss = LOSSES[loss_name](metrix)
    model.compile(keras.optimizers.Adam(1e-3), loss=loss, run_eagerly=run_eagerly)
    model(np.zeros((2, 16, 16, 1), "float32"))
    return model, loss


def first_loss(model, loss, images, labels):
    """The loss of one training-mode forward pass (no update)."""
    return float(loss(labels, model(images, training=True, labels=labels)))


# Eager steps: the dtype flow is the same as in graph mode (which
# test_saved_model_and_export_keep_float32_embeddings and the graph-mode fit
# of every loss and level in test_mixing.py cover) and 24 traced train
# functions would cost minutes of CI.
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("loss_name", sorted(LOSSES))
def test_each_loss_and_level_trains_under_mixed_precision(policy, level, loss_name,
                                                          restore_policy):
    images, labels = batch()
    reference, reference_loss = build("float32", loss_name, level, run_eagerly=True)
    model, loss = build(policy, loss_name, level, run_eagerly=True)
    low = "float16" if policy == "mixed_float16" else "bfloat16"
    assert model.backbone.layers[1].compute_dtype == low
    if policy == "mixed_float16":  # Keras' dynamic loss scaling
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    model.set_weights(reference.get_weights())
    if loss_name == "proxy_anchor":
        loss.proxies.assign(reference_loss.proxies)
    outputs = model(images, training=True, labels=labels)
    mixed = isinstance(outputs, MixedBatch)
    for embeddings in (outputs.embeddings, outputs.mixed_embeddings) if mixed else (outputs,):
        assert embeddings.dtype == tf.float32  # normalised, and scored, in float32
    expected = first_loss(reference, reference_loss, images, labels)
    got = first_loss(model, loss, images, labels)
    np.testing.assert_allclose(got, expected, rtol=TOLERANCE[policy])
    before = [w.copy() for w in model.get_weights()]
    for _ in range(3):
        value = model.train_on_batch(images, labels)
        assert np.isfinite(value), value
    after = model.get_weights()
    assert all(np.isfinite(w).all() for w in after)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))


def test_saved_model_and_export_keep_float32_embeddings(tmp_path, restore_policy):
    images, labels = batch()
    model, _ = build("mixed_float16", "contrastive", "feature")
    history = model.fit(images, labels, batch_size=12, epochs=2, verbose=0)  # graph mode
    assert np.isfinite(history.history["loss"]).all()
    expected = model.predict(images, verbose=0)
    assert expected.dtype == np.float32
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(restored.predict(images, verbose=0), expected, atol=1e-6)
    preprocessing = metrix_tf.data.Preprocessing(
        image_size=16, resize_size=16, channels=1, mean=(0.0,), std=(1.0,))
    export = metrix_tf.export.export_saved_model(model, preprocessing, str(tmp_path / "export"))
    serve = tf.saved_model.load(export).signatures["serving_default"]
    served = serve(images=tf.constant(images * 255.0))["embeddings"]
    assert served.dtype == tf.float32
    np.testing.assert_allclose(served.numpy(), expected, atol=2e-3)

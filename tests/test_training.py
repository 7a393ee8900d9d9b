"""The losses under `model.compile` + `model.fit`."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import metrix_tf
from metrix_tf.mixing import mixed_batch as mb


def clustered_problem(num_classes=12, per_class=16, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_classes, dim))
    labels = np.repeat(np.arange(num_classes), per_class)
    rng.shuffle(labels)
    x = centers[labels] + 0.9 * rng.normal(size=(len(labels), dim))
    return x.astype("float32"), labels


def recall_at_1(embeddings, labels):
    e = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    sim = e @ e.T
    np.fill_diagonal(sim, -np.inf)
    return float(np.mean(labels[np.argmax(sim, axis=1)] == labels))


def small_model(dim_in=16, dim_out=8, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((dim_in,))
    hidden = keras.layers.Dense(32, activation="relu")(inputs)
    return metrix_tf.models.MetricModel(inputs, keras.layers.Dense(dim_out)(hidden))


# Every registered loss, with its defaults (12 classes, 8-d embeddings).
LOSSES = {
    entry.name: (lambda m, entry=entry: entry.make(metrix=m, num_classes=12, embedding_dim=8))
    for entry in metrix_tf.losses.registry.entries()
}


# Circle's soft-labelled mixed term has a floor (a mix is pulled towards
# s = 1/2 by its positive and its negative term: about 14 at gamma 80), so
# its total loss with Metrix need not fall by a fifth in 8 epochs:
# tests/test_loss_circle.py checks its clean loss and retrieval instead.
FIT_CASES = [
    (name, with_metrix)
    for name in sorted(LOSSES)
    for with_metrix in (False, True)
    if (name, with_metrix) != ("circle", True)
]


@pytest.mark.parametrize(
    "name,with_metrix", FIT_CASES, ids=[f"{'metrix' if m else 'clean'}-{n}" for n, m in FIT_CASES]
)
def test_fit_lowers_loss_and_improves_retrieval(name, with_metrix):
    x, y = clustered_problem()
    metrix = metrix_tf.Metrix(level="embedding", seed=1) if with_metrix else None
    loss = LOSSES[name](metrix)
    model = small_model()
    model.compile(keras.optimizers.Adam(1e-2), loss=loss)
    before = recall_at_1(model.predict(x, verbose=0), y)
    proxies_before = (
        np.array(loss.proxies.numpy()) if hasattr(loss, "proxies") else None
    )
    history = model.fit(x, y, batch_size=48, epochs=8, verbose=0, shuffle=True)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-2:]) < 0.8 * np.mean(losses[:2]), losses
    after = recall_at_1(model.predict(x, verbose=0), y)
    assert after > before + 0.05, (before, after)
    if proxies_before is not None:
        assert np.abs(loss.proxies.numpy() - proxies_before).max() > 1e-3


def test_proxies_are_model_variables_and_survive_save_and_load(tmp_path):
    x, y = clustered_problem()
    loss = metrix_tf.losses.ProxyAnchorLoss(
        12, 8, metrix=metrix_tf.Metrix(strategy="both", scoring="all_pairs", lam=0.4)
    )
    model = small_model()
    model.compile(keras.optimizers.Adam(1e-2), loss=loss)
    assert any(v is loss.proxies for v in model.trainable_variables)
    model.fit(x, y, batch_size=48, epochs=1, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.loss, metrix_tf.losses.ProxyAnchorLoss)
    assert loaded.loss.metrix == loss.metrix
    np.testing.assert_array_equal(loaded.loss.proxies.numpy(), loss.proxies.numpy())
    np.testing.assert_allclose(loaded.predict(x[:5], verbose=0), model.predict(x[:5], verbose=0))
    # Training resumes with the restored proxies.
    loaded.fit(x, y, batch_size=48, epochs=1, verbose=0)


def test_proxy_lr_multiplier_speeds_up_the_proxies_under_adam():
    x, y = clustered_problem()

    def proxy_rotation(multiplier):
        keras.utils.set_random_seed(3)
        loss = metrix_tf.losses.ProxyAnchorLoss(12, 8, proxy_lr_multiplier=multiplier)
        start = loss.proxies.numpy().copy()
        model = small_model()
        model.compile(keras.optimizers.Adam(1e-4), loss=loss)
        model.fit(x, y, batch_size=48, epochs=1, verbose=0, shuffle=False)
        before = start / np.linalg.norm(start, axis=1, keepdims=True)
        end = loss.proxies.numpy()
        after = end / np.linalg.norm(end, axis=1, keepdims=True)
        return np.arccos(np.clip(np.sum(before * after, axis=1), -1, 1)).mean()

    slow, fast = proxy_rotation(1.0), proxy_rotation(100.0)
    # Four Adam steps: the first step of Adam is sign-like, so the rotation
    # ratio is close to the multiplier.
    assert 50 < fast / slow < 150, (slow, fast)
    with pytest.raises(ValueError, match="proxy_lr_multiplier=0"):
        metrix_tf.losses.ProxyAnchorLoss(3, 2, proxy_lr_multiplier=0)


class DictOutputModel(metrix_tf.models.MetricModel):
    """Returns a mixed batch in training (as a mixing layer will)."""

    def __init__(self, metrix, **kwargs):
        super().__init__(**kwargs)
        self.metrix = metrix
        self.dense = keras.layers.Dense(8)

    def call(self, inputs, training=False):
        embeddings = self.dense(inputs)
        if not training:
            return embeddings
        # The labels are not known to the model: mix by pairs of rows of a
        # fixed pattern (rows 0..B/2 vs B/2..B) just to exercise the path.
        half = tf.shape(embeddings)[0] // 2
        mixed = 0.5 * embeddings[:half] + 0.5 * embeddings[half : 2 * half]
        index = tf.range(half)
        return {
            mb.EMBEDDINGS: embeddings,
            mb.MIXED_EMBEDDINGS: mixed,
            mb.MIX_LABELS_A: tf.zeros([half], tf.int32),
            mb.MIX_LABELS_B: tf.ones([half], tf.int32),
            mb.MIX_LAMBDA: tf.fill([half], 0.5),
            mb.MIX_STRATEGY: tf.zeros([half], tf.int32),
            mb.ENTRY_ANCHOR: index,
            mb.ENTRY_MIX: index,
        }


def test_dict_training_output_reaches_the_loss_whole():
    x, y = clustered_problem()
    metrix = metrix_tf.Metrix(level="feature", strategy="positive_negative", lam=0.5)
    model = DictOutputModel(metrix)
    model.compile(keras.optimizers.Adam(1e-2), loss=metrix_tf.losses.ContrastiveLoss(metrix=metrix))
    history = model.fit(x, y, batch_size=48, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    # Inference returns the plain embeddings; evaluate scores them clean.
    assert model.predict(x[:4], verbose=0).shape == (4, 8)
    assert np.isfinite(model.evaluate(x, y, verbose=0))


def test_plain_keras_model_trains_pairwise_losses():
    x, y = clustered_problem()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16,))
    model = keras.Model(inputs, keras.layers.Dense(8)(inputs))
    model.compile(keras.optimizers.Adam(1e-2), loss=metrix_tf.losses.MultiSimilarityLoss())
    history = model.fit(x, y, batch_size=48, epochs=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_sample_weight_is_rejected_with_a_clear_error():
    loss = metrix_tf.losses.ContrastiveLoss()
    with pytest.raises(ValueError, match="sample_weight"):
        loss(np.array([0, 0, 1]), np.ones((3, 2), "float32"), sample_weight=np.ones(3))

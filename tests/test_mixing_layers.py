"""Input- and feature-level Metrix: pair selection, mixing layers and the
embedding model under model.fit."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import metrix_tf
from metrix_tf.mixing.pair_selection import cap_mixes
from metrix_tf.mixing.pair_selection import select_hardest_negative_pairs
from metrix_tf.mixing.pair_selection import select_mix_pairs


def naive_hardest_negative_pairs(labels, sim, positive_negative=True, anchor_negative=True):
    b = len(labels)
    mixes = []  # (strategy, source_a, source_b, anchor)
    for a in range(b):
        negatives = [n for n in range(b) if labels[n] != labels[a]]
        if not negatives:
            continue
        best = max(negatives, key=lambda n: (sim[a, n], -n))  # ties: lowest index
        positives = [p for p in range(b) if p != a and labels[p] == labels[a]]
        if positives and positive_negative:
            mixes += [(0, p, best, a) for p in positives]
        if not positives and anchor_negative:
            mixes.append((1, a, best, a))
    return mixes


@pytest.mark.parametrize(
    "labels",
    [[0, 0, 1, 1, 2, 2], [0, 1, 2, 3], [0, 0, 0, 1, 2, 2, 3], [5, 5, 5]],
)
@pytest.mark.parametrize("pn,an", [(True, True), (True, False), (False, True)])
def test_hardest_negative_selection_matches_loops(labels, pn, an):
    rng = np.random.default_rng(len(labels))
    sim = rng.normal(size=(len(labels), len(labels)))
    sim[0, -1] = sim[0, 1] = 9.0  # a tie on anchor 0 (lowest index wins)
    pairs = select_hardest_negative_pairs(tf.constant(labels), tf.constant(sim), pn, an)
    got = sorted(
        zip(
            pairs.strategy.numpy().tolist(),
            pairs.source_a.numpy().tolist(),
            pairs.source_b.numpy().tolist(),
            pairs.entry_anchor.numpy().tolist(),
        )
    )
    assert pairs.entry_mix.numpy().tolist() == list(range(len(got)))
    assert got == sorted(naive_hardest_negative_pairs(labels, sim, pn, an))


def test_cap_mixes_keeps_a_consistent_random_subset():
    labels = tf.constant([0, 0, 1, 1, 2, 2, 3])
    full = select_mix_pairs(labels)
    full_mixes = list(zip(full.source_a.numpy(), full.source_b.numpy()))
    full_entries = {
        (a, full_mixes[v]) for a, v in zip(full.entry_anchor.numpy(), full.entry_mix.numpy())
    }
    capped = cap_mixes(full, 5, keras.random.SeedGenerator(0))
    mixes = list(zip(capped.source_a.numpy(), capped.source_b.numpy()))
    assert len(mixes) == 5 and set(mixes) <= set(full_mixes)
    assert [full_mixes.index(m) for m in mixes] == sorted(full_mixes.index(m) for m in mixes)
    entries = {
        (a, mixes[v]) for a, v in zip(capped.entry_anchor.numpy(), capped.entry_mix.numpy())
    }
    assert entries == {e for e in full_entries if e[1] in set(mixes)}
    uncapped = cap_mixes(full, 10_000, keras.random.SeedGenerator(0))
    np.testing.assert_array_equal(uncapped.source_a.numpy(), full.source_a.numpy())
    np.testing.assert_array_equal(uncapped.entry_mix.numpy(), full.entry_mix.numpy())


@pytest.mark.parametrize("cls,level", [
    (metrix_tf.mixing.FeatureMixing, "feature"),
    (metrix_tf.mixing.InputMixing, "input"),
])
def test_mixing_layer_config_round_trip_and_argument_checks(cls, level):
    layer = cls(metrix_tf.Metrix(level=level, lam=0.3, strategy="both"), max_mixes=7, name="mix")
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(again) is cls
    assert again.metrix == layer.metrix and again.max_mixes == 7 and again.name == "mix"
    assert cls.from_config(layer.get_config()).get_config() == layer.get_config()
    with pytest.raises(ValueError, match="level='embedding'"):
        cls(metrix_tf.Metrix(level="embedding"))
    with pytest.raises(ValueError, match="max_mixes=0"):
        cls(metrix_tf.Metrix(level=level), max_mixes=0)
    with pytest.raises(TypeError, match="metrix=None"):
        cls(None)


def test_mixing_layer_for_each_level():
    expected = {"feature": metrix_tf.mixing.FeatureMixing, "input": metrix_tf.mixing.InputMixing}
    for level, cls in expected.items():
        metrix = metrix_tf.Metrix(level=level, lam=0.3)
        layer = metrix_tf.mixing.mixing_layer_for(metrix, max_mixes=5)
        assert type(layer) is cls and layer.name == f"{level}_mixing"
        assert layer.metrix == metrix and layer.max_mixes == 5
        again = metrix_tf.mixing.mixing_layer_for(metrix.get_config())  # a config dict
        assert type(again) is cls and again.metrix == metrix
    assert metrix_tf.mixing.mixing_layer_for(metrix_tf.Metrix(level="embedding")) is None
    assert metrix_tf.mixing.mixing_layer_for(None) is None


def test_feature_mixing_mixes_with_lambda_and_never_outside_training():
    metrix = metrix_tf.Metrix(level="feature", lam=0.25, strategy="positive_negative")
    layer = metrix_tf.mixing.FeatureMixing(metrix, max_mixes=100)
    features = tf.random.normal([4, 3, 3, 2])
    labels = tf.constant([0, 0, 1, 1])
    mixed, pairs, lam = layer(features, labels, training=True)
    want = 0.25 * tf.gather(features, pairs.source_a) + 0.75 * tf.gather(features, pairs.source_b)
    np.testing.assert_allclose(mixed.numpy(), want.numpy(), rtol=1e-6)
    assert mixed.shape[0] == 8  # each of the 4 examples with each of its 2 negatives
    mixed, _, _ = layer(features, labels, training=False)
    assert mixed.shape[0] == 0


def tiny_problem(num_classes=6, per_class=8, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(num_classes), per_class)
    patterns = rng.normal(size=(num_classes, 16, 16, 1))
    x = patterns[labels] + 0.7 * rng.normal(size=(len(labels), 16, 16, 1))
    return x.astype("float32"), labels


def tiny_model(metrix, seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    backbone = metrix_tf.models.small_cnn_backbone((16, 16, 1), width=8)
    return metrix_tf.models.EmbeddingModel(backbone, embedding_dim=16, metrix=metrix, **kwargs)


# Every registered loss, with its defaults (6 classes, 16-d embeddings).
LOSSES = {
    entry.name: (lambda m, entry=entry: entry.make(metrix=m, num_classes=6, embedding_dim=16))
    for entry in metrix_tf.losses.registry.entries()
}


@pytest.mark.parametrize("level", [None, "input", "feature", "embedding"])
@pytest.mark.parametrize("loss_name", sorted(LOSSES))
def test_every_loss_trains_at_every_level(loss_name, level):
    x, y = tiny_problem()
    metrix = None if level is None else metrix_tf.Metrix(level=level, strategy="both", seed=0)
    model = tiny_model(metrix)
    model.compile(keras.optimizers.Adam(3e-3), loss=LOSSES[loss_name](metrix))
    history = model.fit(x, y, batch_size=24, epochs=4, verbose=0, shuffle=True)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0], losses


@pytest.mark.parametrize("level", ["input", "feature"])
def test_mixed_embeddings_carry_gradient_to_the_backbone(level):
    x, y = tiny_problem()
    model = tiny_model(metrix_tf.Metrix(level=level, lam=0.4, strategy="positive_negative"))
    with tf.GradientTape() as tape:
        out = model(x[:24], training=True, labels=y[:24])
        target = tf.reduce_sum(out.mixed_embeddings * tf.random.normal(out.mixed_embeddings.shape))
    grads = tape.gradient(target, model.backbone.trainable_variables)
    assert all(g is not None for g in grads)
    assert sum(float(tf.reduce_sum(tf.abs(g))) for g in grads) > 0
    assert out.mixed_embeddings.shape[0] > 0


@pytest.mark.parametrize("level", ["input", "feature", "embedding"])
def test_inference_never_mixes_and_is_deterministic(level):
    x, y = tiny_problem()
    model = tiny_model(metrix_tf.Metrix(level=level))
    model.compile(keras.optimizers.Adam(1e-3), loss=metrix_tf.losses.ContrastiveLoss(metrix=model.metrix))
    model.fit(x, y, batch_size=24, epochs=1, verbose=0)
    first = model.predict(x, verbose=0)
    assert first.shape == (len(x), 16)
    np.testing.assert_allclose(model.predict(x, verbose=0), first, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(model(x, training=False).numpy(), first, rtol=1e-5, atol=1e-5)
    # Training mode without labels also returns the plain embeddings.
    assert model(x[:8], training=True).shape == (8, 16)


@pytest.mark.parametrize("level,stage", [("input", None), ("feature", None),
                                         ("feature", "block2_pool")])
def test_a_step_without_mixes_skips_the_mixed_pass(level, stage):
    # Every anchor has a positive: the anchor-negative strategy mixes nothing.
    # The mixed pass must not run on an empty batch (oneDNN's convolutions
    # reject it; BN statistics would take NaN), also inside the backbone.
    x, y = tiny_problem()
    metrix = metrix_tf.Metrix(level=level, strategy="anchor_negative")
    model = tiny_model(metrix, feature_stage=stage)
    out = model(x[:24], training=True, labels=y[:24])
    assert out.mixed_embeddings.shape[0] == 0
    model.compile(keras.optimizers.Adam(1e-3), loss=metrix_tf.losses.ContrastiveLoss(metrix=metrix))
    history = model.fit(x, y, batch_size=24, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    for variable in model.backbone.non_trainable_variables:  # BN moving stats
        assert np.all(np.isfinite(variable.numpy()))


def test_embedding_model_config_round_trip_and_save(tmp_path):
    x, y = tiny_problem()
    metrix = metrix_tf.Metrix(level="feature", lam=0.5)
    model = tiny_model(metrix)
    model.compile(keras.optimizers.Adam(1e-3), loss=metrix_tf.losses.MultiSimilarityLoss(metrix=metrix))
    model.fit(x, y, batch_size=24, epochs=1, verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, metrix_tf.models.EmbeddingModel)
    assert loaded.metrix == metrix and loaded.embedding_dim == 16
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_head_only_warm_up_freezes_the_backbone():
    from metrix_tf.callbacks.head_warm_up import HeadWarmUp

    x, y = tiny_problem()
    model = tiny_model(None)
    model(x[:2])  # build, so that the head has its variables
    model.compile(keras.optimizers.Adam(1e-2), loss=metrix_tf.losses.ContrastiveLoss())
    backbone_before = [v.numpy().copy() for v in model.backbone.trainable_variables]
    head_before = [v.numpy().copy() for v in model.head.trainable_variables]
    model.fit(x, y, batch_size=24, epochs=2, verbose=0, callbacks=[HeadWarmUp(2)])
    for before, v in zip(backbone_before, model.backbone.trainable_variables):
        np.testing.assert_array_equal(before, v.numpy())
    assert any(
        np.abs(before - v.numpy()).max() > 0
        for before, v in zip(head_before, model.head.trainable_variables)
    )
    # Resumed after the warm-up epochs, the backbone trains.
    model.fit(x, y, batch_size=24, epochs=3, initial_epoch=2, verbose=0, callbacks=[HeadWarmUp(2)])
    assert any(
        np.abs(before - v.numpy()).max() > 0
        for before, v in zip(backbone_before, model.backbone.trainable_variables)
    )
    with pytest.raises(ValueError, match="epochs=-1"):
        HeadWarmUp(-1)


def test_embedding_head_pools_avg_plus_max_and_normalises():
    head = metrix_tf.models.EmbeddingHead(4)
    features = tf.random.normal([2, 3, 3, 5])
    out = head(features).numpy()
    pooled = features.numpy().mean(axis=(1, 2)) + features.numpy().max(axis=(1, 2))
    kernel, bias = (v.numpy() for v in head.projection.weights)
    want = pooled @ kernel + bias
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="embedding_dim=0"):
        metrix_tf.models.EmbeddingHead(0)


def staged_model(stage="block2_pool", lam=0.3, seed=0):
    metrix = metrix_tf.Metrix(level="feature", lam=lam, strategy="positive_negative")
    return tiny_model(metrix, seed=seed, max_mixes=1000, feature_stage=stage)


def test_feature_stage_mixes_inside_the_backbone():
    # Oracle: cut the backbone by hand, mix the stage's maps of every
    # positive-negative pair, run the rest of the backbone and the head.
    x, y = tiny_problem(num_classes=3, per_class=4)
    model = staged_model(lam=0.3)
    out = model(x, training=True, labels=y)
    stem = keras.Model(model.backbone.input, model.backbone.get_layer("block2_pool").output)
    rest = keras.Model(stem.output, model.backbone.output)
    pairs = select_mix_pairs(tf.constant(y, tf.int32), True, False)
    maps = stem(x, training=True)
    assert maps.shape[1:] == (4, 4, 16)  # block2: H/4, 2 * width
    mixed = 0.3 * tf.gather(maps, pairs.source_a) + 0.7 * tf.gather(maps, pairs.source_b)
    want = model.head(rest(mixed, training=True))
    assert out.mixed_embeddings.shape[0] == 3 * 4 * 8  # every (p, n) pair
    np.testing.assert_allclose(out.mixed_embeddings.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out.labels_a.numpy(), y[pairs.source_a.numpy()])
    np.testing.assert_allclose(
        out.embeddings.numpy(), model.embed(x, training=True).numpy(), rtol=1e-5, atol=1e-5
    )
    # Mixing earlier is not the default feature level, which mixes the output maps.
    default = metrix_tf.models.EmbeddingModel(
        model.backbone, embedding_dim=16, metrix=model.metrix, max_mixes=1000
    )
    default(x[:2])
    default.head.set_weights(model.head.get_weights())
    other = default(x, training=True, labels=y).mixed_embeddings
    assert np.abs(other.numpy() - out.mixed_embeddings.numpy()).max() > 1e-3


def test_feature_stage_trains_the_whole_backbone_once():
    x, y = tiny_problem()
    model = staged_model(stage="block1_pool")
    plain = tiny_model(metrix_tf.Metrix(level="feature"))
    for m in (model, plain):
        m(x[:2])
    # The stem and the rest share the backbone's layers: no variable twice.
    assert len(model.weights) == len(plain.weights)
    assert len({id(v) for v in model.trainable_weights}) == len(model.trainable_weights)
    with tf.GradientTape() as tape:
        out = model(x[:24], training=True, labels=y[:24])
        target = tf.reduce_sum(out.mixed_embeddings * tf.random.normal(out.mixed_embeddings.shape))
    grads = tape.gradient(target, model.backbone.trainable_variables)
    assert all(g is not None and float(tf.reduce_sum(tf.abs(g))) > 0 for g in grads)
    model.compile(keras.optimizers.Adam(3e-3), loss=metrix_tf.losses.ContrastiveLoss(metrix=model.metrix))
    history = model.fit(x, y, batch_size=24, epochs=4, verbose=0, shuffle=True)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_feature_stage_round_trips_and_checks_its_argument(tmp_path):
    x, y = tiny_problem()
    model = staged_model()
    model.compile(keras.optimizers.Adam(1e-3), loss=metrix_tf.losses.ContrastiveLoss(metrix=model.metrix))
    model.fit(x, y, batch_size=24, epochs=1, verbose=0)
    path = str(tmp_path / "staged.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.feature_stage == "block2_pool"
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    with pytest.raises(ValueError, match="not an inner layer.*feature_stage='block9'"):
        staged_model(stage="block9")
    with pytest.raises(ValueError, match="backbone's output"):
        staged_model(stage="block3_pool")
    backbone = metrix_tf.models.small_cnn_backbone((16, 16, 1), width=8)
    with pytest.raises(ValueError, match="feature-level Metrix.*level='input'"):
        metrix_tf.models.EmbeddingModel(
            backbone, metrix=metrix_tf.Metrix(level="input"), feature_stage="block2_pool"
        )
    inputs = keras.Input((4,))
    first = keras.layers.Dense(4, name="first")(inputs)
    skip = keras.layers.Add()([keras.layers.Dense(4)(first), inputs])
    with pytest.raises(ValueError, match="bypasses layer 'first'"):
        metrix_tf.models.split_backbone(keras.Model(inputs, skip), "first")


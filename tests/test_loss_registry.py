"""What the library derives from a loss declaration, for every registered
loss: the function and class signatures, the config round trip, the
hyper-parameter checks, the fused option, the registry's readers, and the
typed mixed batch. A toy declaration shows a loss made from one file."""

import inspect
import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import metrix_tf
import oracle
from metrix_tf.losses import registry
from metrix_tf.mixing.mixed_batch import MixedBatch
from metrix_tf.mixing.mixed_batch import mix_embeddings

ENTRIES = registry.entries()
NAMES = [entry.name for entry in ENTRIES]
LABELS = [2, 0, 3, 0, 1, 2, 0, 3, 3]


def make(entry, **kwargs):
    return entry.make(num_classes=4, embedding_dim=4, **kwargs)


def call(entry, labels, x, **kwargs):
    proxies = [tf.ones([4, 4], x.dtype) + tf.eye(4, dtype=x.dtype)] if entry.uses_proxies else []
    return entry.function(labels, x, *proxies, **kwargs)


def test_the_paper_losses_are_registered_and_read_by_their_users():
    assert {"contrastive", "multi_similarity", "proxy_anchor"} <= set(NAMES)
    from metrix_tf.training import train_config

    assert train_config.LOSSES == tuple(NAMES)
    configs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
    if os.path.isdir(configs):
        sys.path.insert(0, configs)
        try:
            import make_configs
        finally:
            sys.path.remove(configs)
        assert tuple(make_configs.LOSSES) == tuple(NAMES)
    with pytest.raises(ValueError, match="'no_such_loss'"):
        registry.get("no_such_loss")


@pytest.mark.parametrize("entry", ENTRIES, ids=NAMES)
def test_signatures_carry_each_hyper_parameter_once(entry):
    declaration = entry.declaration
    function = inspect.signature(entry.function).parameters
    loss_class = inspect.signature(entry.loss_class).parameters
    for parameter in declaration.hyper_parameters:
        assert function[parameter.name].default == parameter.default
        assert loss_class[parameter.name].default == parameter.default
        assert parameter.name in entry.loss_class.__doc__
        assert parameter.name in entry.function.__doc__
    assert entry.function.__name__ == entry.name
    assert entry.loss_class.__name__ == declaration.class_name
    assert getattr(metrix_tf.losses, entry.name) is entry.function
    assert getattr(metrix_tf.losses, declaration.class_name) is entry.loss_class


@pytest.mark.parametrize("entry", ENTRIES, ids=NAMES)
def test_config_round_trip_and_value(entry):
    metrix = metrix_tf.Metrix(strategy="both", scoring="all_pairs", lam=0.3)
    loss = make(entry, metrix=metrix)
    config = loss.get_config()
    for parameter in entry.declaration.hyper_parameters:
        assert config[parameter.name] == parameter.default
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is entry.loss_class
    assert restored.get_config() == config
    if entry.uses_proxies:
        restored.proxies.assign(loss.proxies)
    x = tf.constant(oracle.clustered_embeddings(LABELS), tf.float32)
    value = loss(tf.constant(LABELS), x)
    assert np.isfinite(float(value))
    np.testing.assert_allclose(float(restored(tf.constant(LABELS), x)), float(value), rtol=1e-6)


@pytest.mark.parametrize("entry", ENTRIES, ids=NAMES)
def test_bad_hyper_parameters_are_refused_naming_them(entry):
    for parameter in entry.declaration.hyper_parameters:
        bad = "not_a_choice" if parameter.choices else (
            "abc" if parameter.minimum is None else parameter.minimum - 1.0
        )
        with pytest.raises(ValueError, match=parameter.name) as info:
            make(entry, **{parameter.name: bad})
        assert repr(bad) in str(info.value)
        with pytest.raises(ValueError, match=parameter.name):
            call(entry, tf.constant(LABELS), tf.ones([9, 4]), **{parameter.name: bad})


@pytest.mark.parametrize("entry", ENTRIES, ids=NAMES)
def test_fused_is_an_option_only_with_kernels(entry):
    x = tf.constant(oracle.clustered_embeddings(LABELS))
    plain = call(entry, tf.constant(LABELS), x, fused=False)
    if entry.has_fused_kernels:
        fused = call(entry, tf.constant(LABELS), x, fused=True)
        np.testing.assert_allclose(float(fused), float(plain), rtol=1e-10)
        assert make(entry, fused=True).fused is True
    else:
        with pytest.raises(ValueError, match="no fused kernels"):
            make(entry, fused=True)
        # The materialised path, whatever the op's state.
        np.testing.assert_allclose(float(call(entry, tf.constant(LABELS), x)), float(plain))


@pytest.mark.parametrize("entry", ENTRIES, ids=NAMES)
def test_typed_mixed_batch_keeps_integer_indices(entry):
    labels = tf.constant(LABELS)
    x = tf.constant(oracle.clustered_embeddings(LABELS), tf.float32)
    metrix = metrix_tf.Metrix(level="feature", strategy="both", scoring="per_anchor", lam=0.3)
    batch = mix_embeddings(labels, x, metrix)
    assert isinstance(batch, MixedBatch) and batch.entry_anchor.dtype == tf.int32
    loss = make(entry, metrix=metrix)
    seen = {}
    original = loss.call

    def spy(y_true, y_pred):
        seen["dtypes"] = {f: getattr(y_pred, f).dtype for f in ("labels_a", "strategy", "entry_mix")}
        return original(y_true, y_pred)

    loss.call = spy
    typed = float(loss(labels, batch))
    assert seen["dtypes"] == {"labels_a": tf.int32, "strategy": tf.int32, "entry_mix": tf.int32}
    # The dict form (floats, as Keras hands a dict over) gives the same value.
    as_dict = {
        "embeddings": batch.embeddings, "mixed_embeddings": batch.mixed_embeddings,
        "mix_labels_a": tf.cast(batch.labels_a, tf.float32),
        "mix_labels_b": tf.cast(batch.labels_b, tf.float32), "mix_lambda": batch.lam,
        "mix_strategy": tf.cast(batch.strategy, tf.float32),
        "entry_anchor": tf.cast(batch.entry_anchor, tf.float32),
        "entry_mix": tf.cast(batch.entry_mix, tf.float32),
    }
    np.testing.assert_allclose(float(original(tf.cast(labels, tf.float32), as_dict)), typed, rtol=1e-6)


class _SquaredHinge(metrix_tf.losses.LossDeclaration):
    """Test loss: y [m - s]+^2 + (1 - y) [s]+^2, mean over the scored pairs."""

    name = "test_squared_hinge"
    class_name = "TestSquaredHingeLoss"
    hyper_parameters = (metrix_tf.losses.HyperParameter("margin", 0.8, "float >= 0.", minimum=0.0),)

    def row_statistics(self, similarity, soft_labels, clean):
        positive, negative = metrix_tf.ops.pair_weights(soft_labels)
        terms = positive * tf.nn.relu(self.margin - similarity) ** 2 + negative * tf.nn.relu(similarity) ** 2
        return tf.reduce_sum(terms, 1), tf.reduce_sum(tf.cast(soft_labels >= 0.0, terms.dtype), 1)

    def ratios(self, statistics, clean):
        total, count = statistics
        return [(tf.reduce_sum(total), tf.reduce_sum(count))]


@pytest.fixture
def squared_hinge():
    function, loss_class = metrix_tf.losses.define_loss(_SquaredHinge)
    yield function, loss_class
    registry._ENTRIES.pop(_SquaredHinge.name)


def test_a_declaration_alone_makes_a_loss_with_metrix(squared_hinge):
    function, loss_class = squared_hinge
    assert registry.get("test_squared_hinge").loss_class is loss_class
    labels = [0, 0, 1, 2]
    x0 = oracle.clustered_embeddings(labels)
    unit = oracle.normalize(x0)
    spec = oracle.MixSpec("positive_negative", "per_anchor", 0.3, 0.5)

    def expected_part(candidates):
        terms = [
            y * max(0.5 - oracle.similarity(unit[a], v), 0.0) ** 2
            + (1 - y) * max(oracle.similarity(unit[a], v), 0.0) ** 2
            for a, cands in candidates.items() for v, y in cands
        ]
        return sum(terms) / len(terms)

    expected = expected_part(oracle.anchor_candidates(labels, x0)) + 0.5 * expected_part(
        oracle.anchor_candidates(labels, x0, spec, "positive_negative"))
    metrix = metrix_tf.Metrix(strategy="positive_negative", lam=0.3, weight=0.5)
    got = function(tf.constant(labels), tf.constant(x0), margin=0.5, metrix=metrix)
    np.testing.assert_allclose(float(got), expected, rtol=1e-9)
    loss = loss_class(margin=0.5, metrix=metrix)
    assert loss.get_config()["margin"] == 0.5
    np.testing.assert_allclose(float(loss(tf.constant(labels), tf.constant(x0, tf.float32))),
                               expected, rtol=1e-5)

"""The losses' public surface: serialisation, bad input, degenerate batches,
float32 / mixed_bfloat16 stability and the label forms Keras hands over.

Expected values come from the numpy oracle (tests/oracle.py).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
import tensorflow as tf

import metrix_tf
import oracle
from metrix_tf import losses
from oracle import MixSpec

LOSSES = ("contrastive", "multi_similarity", "proxy_anchor")
DIM = 4
NUM_CLASSES = 6
DATA_ERRORS = (ValueError, tf.errors.InvalidArgumentError)

SPEC = MixSpec("both", "all_pairs", 0.3,
               {"positive_negative": 0.4, "anchor_negative": 0.3})


def make_metrix(spec=SPEC):
    if spec is None:
        return None
    return metrix_tf.Metrix(level="embedding", weight=spec.weight,
                            strategy=spec.strategy, scoring=spec.scoring,
                            lam=spec.lam)


def make_proxies(num_classes=NUM_CLASSES, seed=1):
    rng = np.random.default_rng(seed)
    return np.ones(DIM) + rng.normal(size=(num_classes, DIM))


def call_function(name, labels, x, proxies=None, metrix=None, **kwargs):
    if name == "contrastive":
        return losses.contrastive(labels, x, metrix=metrix, **kwargs)
    if name == "multi_similarity":
        return losses.multi_similarity(labels, x, metrix=metrix, **kwargs)
    return losses.proxy_anchor(labels, x, proxies, metrix=metrix, **kwargs)


def call_oracle(name, labels, x, proxies=None, mix=None):
    if name == "contrastive":
        return oracle.contrastive(labels, x, mix=mix)
    if name == "multi_similarity":
        return oracle.multi_similarity(labels, x, mix=mix)
    return oracle.proxy_anchor(labels, x, proxies, mix=mix)


def make_class(name, metrix=None, **kwargs):
    if name == "contrastive":
        return losses.ContrastiveLoss(metrix=metrix, **kwargs)
    if name == "multi_similarity":
        return losses.MultiSimilarityLoss(metrix=metrix, **kwargs)
    return losses.ProxyAnchorLoss(NUM_CLASSES, DIM, metrix=metrix, **kwargs)


NON_DEFAULT = {
    "contrastive": {"pos_margin": 0.1, "neg_margin": 0.8},
    "multi_similarity": {"alpha": 3.0, "beta": 50.0, "base": 0.6,
                         "epsilon": 0.2},
    "proxy_anchor": {"margin": 0.2, "alpha": 16.0},
}

LABELS = [2, 0, 3, 0, 1, 2, 0, 3, 3]


def _batch(seed=0):
    return oracle.clustered_embeddings(LABELS, dim=DIM, seed=seed)


# ---------------------------------------------------------- serialisation


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("with_metrix", [False, True])
def test_serialize_round_trip(name, with_metrix):
    metrix = make_metrix() if with_metrix else None
    obj = make_class(name, metrix=metrix, **NON_DEFAULT[name])
    config = obj.get_config()
    for key, value in NON_DEFAULT[name].items():
        assert config[key] == pytest.approx(value), key
    if name == "proxy_anchor":
        assert config["num_classes"] == NUM_CLASSES
        assert config["embedding_dim"] == DIM

    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(obj))
    assert type(restored) is type(obj)
    assert restored.get_config() == config
    rebuilt = type(obj).from_config(obj.get_config())
    assert rebuilt.get_config() == config

    labels = tf.constant(LABELS)
    x = tf.constant(_batch(), tf.float32)
    for other in (restored, rebuilt):
        if name == "proxy_anchor":
            other.proxies.assign(obj.proxies)
        np.testing.assert_allclose(float(other(labels, x)), float(obj(labels, x)),
                                   rtol=1e-6)


@pytest.mark.parametrize("weight", [0.25, {"positive_negative": 0.4,
                                           "anchor_negative": 0.3}])
def test_metrix_round_trip(weight):
    metrix = metrix_tf.Metrix(level="embedding", alpha=1.5, weight=weight,
                              strategy="anchor_negative", scoring="all_pairs",
                              lam=0.6, seed=3)
    config = metrix.get_config()
    assert config["alpha"] == 1.5
    assert config["weight"] == weight
    assert config["strategy"] == "anchor_negative"
    assert config["scoring"] == "all_pairs"
    assert config["lam"] == 0.6
    assert metrix_tf.Metrix.from_config(config).get_config() == config
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(metrix))
    assert isinstance(restored, metrix_tf.Metrix)
    assert restored.get_config() == config


def test_proxy_anchor_owns_trainable_proxies():
    obj = losses.ProxyAnchorLoss(NUM_CLASSES, DIM)
    assert tuple(obj.proxies.shape) == (NUM_CLASSES, DIM)
    assert obj.proxies.trainable
    x = tf.constant(_batch(), tf.float32)
    with tf.GradientTape() as tape:
        value = obj(tf.constant(LABELS), x)
    grad = tape.gradient(value, obj.proxies)
    assert grad is not None
    assert np.all(np.isfinite(np.asarray(grad)))
    assert np.abs(np.asarray(grad)).max() > 0


# --------------------------------------------------------------- bad input


def _raises_naming(errors, words, fn):
    with pytest.raises(errors) as info:
        fn()
    message = str(info.value)
    for word in words:
        assert word in message, (word, message)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_embeddings_raise(name, bad):
    x = _batch()
    x[3, 1] = bad
    _raises_naming(DATA_ERRORS, ["embeddings"], lambda: call_function(
        name, tf.constant(LABELS), tf.constant(x),
        tf.constant(make_proxies())))


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("shape", [(9,), (9, DIM, 1)])
def test_embeddings_rank_raises(name, shape):
    x = np.ones(shape)
    _raises_naming(DATA_ERRORS, ["embeddings"], lambda: call_function(
        name, tf.constant(LABELS), tf.constant(x),
        tf.constant(make_proxies())))


@pytest.mark.parametrize("name", LOSSES)
def test_length_mismatch_raises(name):
    x = _batch()[:7]
    _raises_naming(DATA_ERRORS, ["labels"], lambda: call_function(
        name, tf.constant(LABELS), tf.constant(x),
        tf.constant(make_proxies())))


@pytest.mark.parametrize("bad_label", [NUM_CLASSES, NUM_CLASSES + 4, -1])
def test_proxy_anchor_label_out_of_range_raises(bad_label):
    labels = list(LABELS)
    labels[2] = bad_label
    _raises_naming(DATA_ERRORS, ["labels"], lambda: losses.proxy_anchor(
        tf.constant(labels), tf.constant(_batch()),
        tf.constant(make_proxies())))
    obj = losses.ProxyAnchorLoss(NUM_CLASSES, DIM)
    _raises_naming(DATA_ERRORS, ["labels"], lambda: obj(
        tf.constant(labels), tf.constant(_batch(), tf.float32)))


@pytest.mark.parametrize("kwargs,words", [
    ({"alpha": 0.0}, ["alpha", "0"]),
    ({"alpha": -1.0}, ["alpha", "-1"]),
    ({"weight": -0.1}, ["weight", "-0.1"]),
    ({"weight": {"positive_negative": 0.4, "anchor_negative": -0.3}},
     ["weight", "-0.3"]),
    ({"weight": {"positive_negative": 0.4, "hard_negative": 0.3}},
     ["weight", "hard_negative"]),
    ({"lam": 1.5}, ["lam", "1.5"]),
    ({"lam": -0.1}, ["lam", "-0.1"]),
    ({"level": "pixel"}, ["level", "pixel"]),
    ({"strategy": "hardest"}, ["strategy", "hardest"]),
    ({"scoring": "per_pair"}, ["scoring", "per_pair"]),
])
def test_metrix_bad_arguments_raise(kwargs, words):
    _raises_naming(ValueError, words, lambda: metrix_tf.Metrix(**kwargs))


@pytest.mark.parametrize("name,kwargs,words", [
    ("multi_similarity", {"alpha": 0.0}, ["alpha", "0"]),
    ("multi_similarity", {"beta": -2.0}, ["beta", "-2"]),
    ("proxy_anchor", {"alpha": -32.0}, ["alpha", "-32"]),
])
def test_loss_scale_must_be_positive(name, kwargs, words):
    _raises_naming(ValueError, words, lambda: make_class(name, **kwargs))


@pytest.mark.parametrize("kwargs,words", [
    ({"num_classes": 0, "embedding_dim": DIM}, ["num_classes", "0"]),
    ({"num_classes": NUM_CLASSES, "embedding_dim": -3},
     ["embedding_dim", "-3"]),
])
def test_proxy_anchor_table_shape_must_be_positive(kwargs, words):
    _raises_naming(ValueError, words, lambda: losses.ProxyAnchorLoss(**kwargs))


def test_limits_of_lam_and_weight_are_accepted():
    for lam in (0.0, 1.0):
        metrix_tf.Metrix(lam=lam)
    metrix_tf.Metrix(weight=0.0)


# -------------------------------------------------------- degenerate batches

DEGENERATE = {
    "no_positive_pair": [0, 1, 2, 3],
    "no_negative": [3, 3],
    "one_class": [2, 2, 2, 2],
    "one_example": [1],
}


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("batch", list(DEGENERATE))
@pytest.mark.parametrize("with_metrix", [False, True])
def test_degenerate_batch(name, batch, with_metrix):
    labels = DEGENERATE[batch]
    x0 = oracle.clustered_embeddings(labels, dim=DIM, seed=2)
    q0 = make_proxies()
    spec = SPEC if with_metrix else None
    x, q = tf.constant(x0), tf.constant(q0)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, q])
        value = call_function(name, tf.constant(labels), x, q,
                              metrix=make_metrix(spec))
    expected = call_oracle(name, labels, x0, q0, mix=spec)
    assert np.isfinite(float(value))
    np.testing.assert_allclose(float(value), expected, rtol=1e-9, atol=1e-12)
    grads = [tape.gradient(value, x)]
    if name == "proxy_anchor":
        grads.append(tape.gradient(value, q))
    for grad in grads:
        grad = np.zeros(1) if grad is None else np.asarray(grad)
        assert np.all(np.isfinite(grad))
        if expected == 0.0:
            assert np.all(grad == 0.0)


@pytest.mark.parametrize("name", ["contrastive", "multi_similarity"])
def test_nothing_to_score_is_exactly_zero(name):
    # No pair for any term: both pairwise losses are exactly 0 for a
    # single example, with or without Metrix (no mixes either).
    for spec in (None, SPEC):
        value = call_function(name, tf.constant([5]), tf.constant([[0.3, -2.0]]),
                              metrix=make_metrix(spec))
        assert float(value) == 0.0


# ------------------------------------------------- float32 / bfloat16 stability


def _coincident(labels):
    """Every embedding along one direction, with different norms."""
    direction = np.array([0.3, -1.1, 0.7, 0.2])
    return np.outer(np.linspace(0.5, 3.0, len(labels)), direction)


def _antipodal(labels):
    """Embeddings alternate between one direction and its opposite."""
    direction = np.array([0.3, -1.1, 0.7, 0.2])
    signs = np.array([1.0 if k % 2 == 0 else -1.0 for k in range(len(labels))])
    return np.outer(signs * np.linspace(0.5, 3.0, len(labels)), direction)


STABILITY = {
    "coincident": (_coincident, [0, 0, 1, 1, 2, 2]),
    "antipodal_same_class": (_antipodal, [0, 0, 1, 1, 2, 2]),
    "antipodal_other_class": (_antipodal, [0, 1, 0, 1, 2, 2]),
}


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("case", list(STABILITY))
@pytest.mark.parametrize("with_metrix", [False, True])
def test_float32_near_plus_and_minus_one(name, case, with_metrix):
    make, labels = STABILITY[case]
    x0 = make(labels)
    # Proxies on the same line: proxy similarities are +-1 as well.
    q0 = np.outer([1.0, -2.0, 0.5, -1.0, 3.0, 1.0], x0[0])
    spec = MixSpec("both", "all_pairs", 0.3, 0.4) if with_metrix else None
    x, q = tf.constant(x0, tf.float32), tf.constant(q0, tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, q])
        value = call_function(name, tf.constant(labels), x, q,
                              metrix=make_metrix(spec))
    assert value.dtype == tf.float32
    assert np.isfinite(float(value))
    # Contrastive's average-non-zero counts an entry with d = 1e-8 and drops
    # one with d = 0: on coincident points its value depends on rounding
    # (float64 libraries differ too), so only finiteness is checked there:
    # with Metrix, and where two points of one class coincide (rows 0 and 2
    # of "antipodal_other_class": the float64 oracle finds d ~ 1e-8 and
    # counts it, the scale-robust normalisation gives both rows the same
    # unit vector, d = 0, and drops it).
    if name != "contrastive" or not (with_metrix or case == "antipodal_other_class"):
        expected = call_oracle(name, labels, x0, q0, mix=spec)
        np.testing.assert_allclose(float(value), expected, rtol=2e-3,
                                   atol=2e-3)
    for grad in [tape.gradient(value, x), tape.gradient(value, q)]:
        if grad is not None:
            assert np.all(np.isfinite(np.asarray(grad)))


@pytest.mark.parametrize("name", LOSSES)
def test_antipodal_mix_stays_finite(name):
    # lam = 1/2 between antipodal sources is the zero vector: the mix's
    # normalisation must not produce NaN (value or gradient).
    labels = [0, 1]
    x = tf.constant(_antipodal(labels), tf.float32)
    q = tf.constant(make_proxies(), tf.float32)
    spec = MixSpec("anchor_negative", "all_pairs", 0.5, 0.4)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = call_function(name, tf.constant(labels), x, q,
                              metrix=make_metrix(spec))
    assert np.isfinite(float(value))
    assert np.all(np.isfinite(np.asarray(tape.gradient(value, x))))


@pytest.mark.parametrize("name,kwargs", [
    ("multi_similarity", {"alpha": 400.0, "beta": 400.0, "base": 0.0}),
    ("proxy_anchor", {"alpha": 128.0}),
])
def test_large_scales_use_log_sum_exp(name, kwargs):
    # exp(scale * (s + margin)) overflows float32 here (e^88.7 is the
    # limit); the log-sum-exp form keeps loss and gradient finite.
    labels = [0, 0, 1, 1]
    x0 = _coincident(labels)
    q0 = np.outer([1.0, 2.0], x0[0])
    x, q = tf.constant(x0, tf.float32), tf.constant(q0, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = call_function(name, tf.constant(labels), x, q, **kwargs)
    if name == "multi_similarity":
        expected = oracle.multi_similarity(labels, x0, **kwargs)
    else:
        expected = oracle.proxy_anchor(labels, x0, q0, **kwargs)
    np.testing.assert_allclose(float(value), expected, rtol=1e-3)
    assert np.all(np.isfinite(np.asarray(tape.gradient(value, x))))


@pytest.fixture
def bfloat16_policy():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    yield
    keras.config.set_dtype_policy(previous)


@pytest.mark.parametrize("name", LOSSES)
def test_mixed_bfloat16_model(name, bfloat16_policy):
    rng = np.random.default_rng(4)
    inputs = rng.normal(size=(len(LABELS), 8)).astype("float32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(DIM)])
    loss = make_class(name, metrix=make_metrix())
    with tf.GradientTape() as tape:
        embeddings = model(inputs, training=True)
        assert embeddings.dtype == tf.bfloat16
        value = loss(tf.constant(LABELS, tf.float32), embeddings)
    assert np.isfinite(float(value))
    # The loss computes from the bf16 embeddings as given.
    x64 = np.asarray(tf.cast(embeddings, tf.float64))
    q64 = (np.asarray(loss.proxies.numpy(), np.float64)
           if name == "proxy_anchor" else None)
    expected = call_oracle(name, LABELS, x64, q64, mix=SPEC)
    np.testing.assert_allclose(float(value), expected, rtol=2e-2, atol=1e-3)
    variables = model.trainable_variables
    if name == "proxy_anchor":
        variables = variables + [loss.proxies]
    for grad in tape.gradient(value, variables):
        assert grad is not None
        assert np.all(np.isfinite(np.asarray(tf.cast(grad, tf.float32))))


@pytest.mark.parametrize("name", LOSSES)
def test_bfloat16_embeddings_in_the_function(name):
    x = tf.constant(_batch(), tf.bfloat16)
    q = tf.constant(make_proxies(), tf.bfloat16)
    value = call_function(name, tf.constant(LABELS), x, q,
                          metrix=make_metrix())
    assert np.isfinite(float(value))


# ------------------------------------------------------------- label forms


@pytest.mark.parametrize("name", LOSSES)
def test_float_labels_of_shape_b_and_b1(name):
    x = tf.constant(_batch(), tf.float32)
    q = tf.constant(make_proxies(), tf.float32)
    obj = make_class(name, metrix=make_metrix())
    as_int = tf.constant(LABELS, tf.int32)
    forms = [tf.constant(LABELS, tf.int64),
             tf.constant(LABELS, tf.float32),
             tf.constant(np.asarray(LABELS, np.float32)[:, None])]
    reference_fn = float(call_function(name, as_int, x, q, metrix=make_metrix()))
    reference_cls = float(obj(as_int, x))
    for labels in forms:
        np.testing.assert_allclose(
            float(call_function(name, labels, x, q, metrix=make_metrix())),
            reference_fn, rtol=1e-6)
        np.testing.assert_allclose(float(obj(labels, x)), reference_cls,
                                   rtol=1e-6)


@pytest.mark.parametrize("name", LOSSES)
def test_graph_mode_with_unknown_batch_size(name):
    x = _batch()
    q = tf.constant(make_proxies())
    metrix = make_metrix()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32),
                                  tf.TensorSpec([None, DIM], tf.float64)])
    def traced(labels, embeddings):
        return call_function(name, labels, embeddings, q, metrix=metrix)

    for labels in (LABELS, [0, 0, 1, 2, 2]):
        x = oracle.clustered_embeddings(labels, dim=DIM, seed=9)
        expected = call_oracle(name, labels, x, make_proxies(), mix=SPEC)
        got = traced(tf.constant(labels, tf.int32), tf.constant(x))
        np.testing.assert_allclose(float(got), expected, rtol=1e-9)


def test_random_strategy_and_lam_are_drawn_per_call_in_graph_mode():
    # Inside tf.function (as under model.fit) the coin and lam must be drawn
    # per call, not frozen at trace time.
    x = _batch()
    options = [oracle.contrastive(LABELS, x, mix=MixSpec(s, "per_anchor", 0.3))
               for s in oracle.STRATEGIES]
    loss = losses.ContrastiveLoss(
        metrix=metrix_tf.Metrix(strategy="random", lam=0.3, seed=7))
    traced = tf.function(lambda: loss(tf.constant(LABELS), tf.constant(x)))
    seen = set()
    for _ in range(20):
        value = float(traced())
        matches = [k for k, o in enumerate(options)
                   if abs(value - o) <= 1e-4 * max(1.0, abs(o))]
        assert matches, (value, options)
        seen.update(matches)
    assert seen == {0, 1}

    loss = losses.MultiSimilarityLoss(
        metrix=metrix_tf.Metrix(strategy="both", lam=None, seed=7))
    traced = tf.function(lambda: loss(tf.constant(LABELS), tf.constant(x)))
    values = {float(traced()) for _ in range(4)}
    assert len(values) > 1


@pytest.mark.parametrize("name", LOSSES)
def test_bad_labels_raise(name):
    x, q = tf.constant(_batch()), tf.constant(make_proxies())
    fractional = np.asarray(LABELS, np.float32)
    fractional[4] = 1.5
    for labels in (tf.constant(fractional),
                   tf.constant(np.stack([LABELS, LABELS], axis=1))):
        _raises_naming(DATA_ERRORS, ["labels"], lambda: call_function(
            name, labels, x, q))


@pytest.mark.parametrize("name", LOSSES)
def test_length_mismatch_raises_in_graph_mode(name):
    q = tf.constant(make_proxies())

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32),
                                  tf.TensorSpec([None, DIM], tf.float64)])
    def traced(labels, embeddings):
        return call_function(name, labels, embeddings, q)

    _raises_naming(DATA_ERRORS, ["labels"], lambda: traced(
        tf.constant(LABELS), tf.constant(_batch()[:7])))

"""XLA for the model while the loss (the custom op) stays outside it."""

import keras
import numpy as np
import pytest

import metrix_tf
from metrix_tf.models import EmbeddingModel
from metrix_tf.models import MetricModel
from metrix_tf.models import metric_model
from metrix_tf.models import small_cnn_backbone

# What runs under XLA at each level: the whole call, or its fixed-shape parts.
COMPILED_PARTS = {"none": ["training_call"], "feature": ["backbone", "head"],
                  "input": ["backbone", "head"],
                  "feature_stage": ["rest_and_head", "stem"]}


def batch():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 3).astype("int32")
    return rng.normal(size=(12, 16, 16, 1)).astype("float32"), labels


def embedding_model(level, jit_compile):
    keras.utils.set_random_seed(0)
    stage = "block2_pool" if level == "feature_stage" else None  # mixes inside the backbone
    metrix = None if level == "none" else metrix_tf.Metrix(
        level="feature" if stage else level, strategy="positive_negative", lam=0.3, seed=0)
    model = EmbeddingModel(small_cnn_backbone((16, 16, 1), width=4), embedding_dim=16,
                           metrix=metrix, max_mixes=1000, feature_stage=stage)
    model.compile(keras.optimizers.SGD(0.1),
                  loss=metrix_tf.losses.ContrastiveLoss(metrix=metrix),
                  jit_compile=jit_compile)
    return model


@pytest.mark.parametrize("jit_compile,expected", [(True, True), (False, False), ("auto", False)])
def test_jit_compile_choice_with_a_loss_outside_xla(jit_compile, expected):
    # This machine has no GPU: "auto" follows Keras (no XLA on CPU only).
    model = embedding_model("none", jit_compile)
    assert model.jit_compile is False  # the step itself: the loss cannot compile
    assert model.model_jit_compile is expected


def test_losses_that_compile_leave_the_choice_to_keras():
    inputs = keras.Input((4,))
    model = MetricModel(inputs, keras.layers.Dense(3)(inputs))
    model.compile("sgd", loss=keras.losses.MeanSquaredError(), jit_compile=True)
    assert model.jit_compile is True and model.model_jit_compile is False


def test_bad_jit_compile_value_is_an_error():
    with pytest.raises(ValueError, match="jit_compile"):
        embedding_model("none", "yes")


@pytest.mark.parametrize("level", ["none", "feature", "input", "feature_stage"])
def test_compiled_model_trains_like_the_uncompiled_one(level):
    x, y = batch()
    results = {}
    for jit_compile in (False, True):
        model = embedding_model(level, jit_compile)
        losses = [float(model.train_on_batch(x, y)) for _ in range(2)]
        results[jit_compile] = (losses, model.get_weights())
        compiled = metric_model._XLA_FUNCTIONS.get(model, {})
        assert sorted(compiled) == (COMPILED_PARTS[level] if jit_compile else [])
        for function in compiled.values():
            assert function.experimental_get_tracing_count() >= 1
    np.testing.assert_allclose(results[True][0], results[False][0], rtol=1e-5)
    # Measured: weights within 2.1e-6 after three SGD steps of 0.1.
    for a, b in zip(results[True][1], results[False][1]):
        np.testing.assert_allclose(a, b, atol=2e-5)
    assert any(not np.array_equal(a, b) for a, b in zip(
        results[True][1], embedding_model(level, False).get_weights()))

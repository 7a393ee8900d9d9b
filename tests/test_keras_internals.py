"""Every Keras internal metrix-tf uses (metrix_tf/models/keras_internals.py)
still exists and behaves as relied on: a Keras release that changes one fails
here, by name."""

import inspect

import keras
import numpy as np
import pytest

from metrix_tf.models import keras_internals


def _compiled_model():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Dense(4)(inputs)))
    model.compile("sgd", loss="mse")
    model.fit(np.zeros((4, 3), "float32"), np.zeros((4, 2), "float32"), verbose=0)
    return model


def _parameters(function):
    return set(inspect.signature(function).parameters)


def test_installed_keras_is_in_the_known_range_and_the_pin():
    def version(text):
        return tuple(int(part) for part in text.split(".")[:2])

    low, high = (version(v) for v in keras_internals.KNOWN_WORKING)
    assert low <= version(keras.__version__) <= high, (
        f"Keras {keras.__version__} is outside the releases checked against "
        f"{keras_internals.KNOWN_WORKING}: run this file, then widen the range "
        "and setup.py's pin"
    )


def test_module_level_internals():
    assert issubclass(keras_internals.Functional, keras.Model)
    assert keras_internals.unpack_x_y_sample_weight((1, 2)) == (1, 2, None)
    assert keras_internals.unpack_x_y_sample_weight((1, 2, 3)) == (1, 2, 3)
    assert float(keras_internals.unscale_loss_for_distribution(2.0)) == 2.0


def test_model_internals():
    model = _compiled_model()
    assert {"x", "y", "y_pred", "sample_weight", "training"} <= _parameters(
        model._compute_loss
    ), "Model._compute_loss"
    x = np.ones((2, 3), "float32")
    loss = keras_internals.compute_loss(
        model, x=x, y=np.zeros((2, 2), "float32"), y_pred=model(x),
        sample_weight=None, training=True,
    )
    assert np.isfinite(float(loss))
    tracker = keras_internals.loss_tracker(model)
    assert hasattr(tracker, "update_state"), "Model._loss_tracker"
    extra = keras_internals.aggregate_additional_loss(model, keras.ops.convert_to_tensor(1.5))
    assert float(extra) == 1.5
    names = [layer.name for layer in keras_internals.sublayers(model)]
    assert len(names) == 3 and model.name not in names, "Model._flatten_layers"
    assert {"iterator", "data_batch"} <= _parameters(model._maybe_symbolic_build), (
        "Model._maybe_symbolic_build"
    )
    keras_internals.wrap_symbolic_build(model, lambda build: ("wrapped", build))
    assert model._maybe_symbolic_build[0] == "wrapped"


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(2)

    def call(self, inputs):
        return self.dense(inputs)


def test_unlocked_tracker_lets_a_built_model_track_new_state():
    model = _Subclassed()
    model(np.zeros((1, 3), "float32"))
    assert model._tracker.locked, "a built subclassed Keras model locks its tracker"
    with pytest.raises(ValueError):
        model.extra = keras.Variable(1.0)
    with keras_internals.unlocked_tracker(model):
        model.extra = keras.Variable(1.0)
    assert model._tracker.locked
    assert any(v is model.extra for v in model.variables)

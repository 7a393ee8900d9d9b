"""FusedAdam against keras.optimizers.Adam."""

import keras
import numpy as np
import pytest

from metrix_tf.optimizers import FusedAdam


def train(optimizer, steps=4):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, activation="tanh"),
                              keras.layers.Dense(3)])
    model.compile(optimizer, loss="mse")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 6)), rng.normal(size=(16, 3))
    for _ in range(steps):
        model.train_on_batch(x, y)
    return model.get_weights(), [v.numpy() for v in model.optimizer.variables]


@pytest.mark.parametrize("kwargs", [
    {"learning_rate": 0.05},
    {"learning_rate": 0.05, "weight_decay": 0.1, "beta_1": 0.5, "epsilon": 1e-3},
    {"learning_rate": 0.05, "amsgrad": True},  # the Keras update
])
def test_same_weights_and_moments_as_keras_adam(kwargs):
    expected_weights, expected_slots = train(keras.optimizers.Adam(**kwargs))
    weights, slots = train(FusedAdam(**kwargs))
    initial, _ = train(keras.optimizers.Adam(**kwargs), steps=0)
    assert any(not np.allclose(a, b) for a, b in zip(expected_weights, initial))
    for a, b in zip(weights, expected_weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert len(slots) == len(expected_slots)
    for a, b in zip(slots, expected_slots):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)  # (1-b) g + b m vs m + (1-b)(g-m)


def test_config_round_trip():
    optimizer = FusedAdam(learning_rate=0.01, beta_2=0.99, weight_decay=1e-4)
    clone = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(clone, FusedAdam)
    assert clone.get_config() == optimizer.get_config()

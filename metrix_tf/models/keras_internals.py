"""The Keras internals that metrix-tf relies on, all in one place.

`MetricModel` (labels into `call`, a mixed batch handed to the loss whole,
loss variables adopted after `build`), `freeze_batchnorm` and the
MultiWorkerMirroredStrategy fix of `metrix_tf.training.distribution` need a
few private Keras names. They are reached only through this module, and
`tests/test_keras_internals.py` checks every one of them (that it exists,
with the arguments used here, and behaves as relied on), so a Keras release
that changes one fails there with its name, not deep inside a training run.

Known to work: Keras `KNOWN_WORKING` (setup.py pins that range).
"""

import contextlib

from keras.src.losses.loss import unscale_loss_for_distribution  # noqa: F401
from keras.src.models.functional import Functional  # noqa: F401
from keras.src.trainers.data_adapters.data_adapter_utils import (  # noqa: F401
    unpack_x_y_sample_weight,
)

# The Keras releases this module was checked against (inclusive): setup.py
# pins the same range.
KNOWN_WORKING = ("3.15", "3.15")


@contextlib.contextmanager
def unlocked_tracker(model):
    """Let a built (locked) model track new attributes inside the block."""
    tracker = getattr(model, "_tracker", None)
    locked = tracker is not None and tracker.locked
    if locked:
        tracker.unlock()
    try:
        yield
    finally:
        if locked:
            tracker.lock()


def compute_loss(model, x, y, y_pred, sample_weight, training):
    """Keras' loss computation of a train step (`Model._compute_loss`)."""
    return model._compute_loss(
        x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
    )


def loss_tracker(model):
    """The `Mean` metric behind the `loss` log (`Model._loss_tracker`)."""
    return model._loss_tracker


def aggregate_additional_loss(model, loss):
    """An `add_loss` term as Keras adds it to the total."""
    return model._aggregate_additional_loss(loss)


def sublayers(model):
    """Every layer nested in `model`, itself excluded."""
    return model._flatten_layers(include_self=False)


def wrap_symbolic_build(model, wrapper):
    """Replace the model's first-batch build hook (`_maybe_symbolic_build`).

    `wrapper(keras_build)` returns the new hook, which takes
    `(iterator=None, data_batch=None)` and may call `keras_build(data_batch=...)`.
    """
    model._maybe_symbolic_build = wrapper(model._maybe_symbolic_build)

"""`MetricModel`: a `keras.Model` that trains with metric losses."""

import keras
from keras import tree
from keras.src.models.functional import Functional


def _functional_arguments(args, kwargs):
    return (
        len(args) == 2
        or (len(args) == 1 and "outputs" in kwargs)
        or ("inputs" in kwargs and "outputs" in kwargs)
    )


@keras.saving.register_keras_serializable(package="metrix_tf")
class MetricModel(keras.Model):
    """A `keras.Model` for metric losses: drop-in, same constructors.

    What it adds to `keras.Model`, and why:
    - `compile()` adopts the variables a loss owns (the proxies of
      `ProxyAnchorLoss`): Keras never looks inside a loss, so with a plain
      `keras.Model` the proxies would stay at their initial values and be
      missing from saved weights.
    - `compile(jit_compile="auto")` turns XLA off when a loss cannot be
      compiled by it (`supports_jit = False`: the custom op).
    - `compute_loss()` hands the whole model output to a single metric loss,
      so a training-time output that is a dict (a mixed batch from a Metrix
      mixing layer) reaches the loss intact; Keras 3 would otherwise look
      for one loss per dict key.

    Construct it exactly as a functional `keras.Model`
    (`MetricModel(inputs, outputs)`) or subclass it.

    Example:

    ```python
    inputs = keras.Input((32,))
    embeddings = keras.layers.Dense(64)(inputs)
    model = metrix_tf.models.MetricModel(inputs, embeddings)
    model.compile("adam", loss=metrix_tf.losses.ProxyAnchorLoss(10, 64))
    ```
    """

    def __new__(cls, *args, **kwargs):
        # keras.Model turns a class used functionally into a Functional
        # subclass for good (it rewrites the class's bases), which would break
        # subclassing MetricModel afterwards: route the functional form to a
        # class of its own instead.
        if cls is MetricModel and _functional_arguments(args, kwargs):
            return super().__new__(FunctionalMetricModel)
        return super().__new__(cls)

    def compile(self, *args, jit_compile="auto", **kwargs):
        losses = [
            loss
            for loss in tree.flatten(kwargs.get("loss", args[1] if len(args) > 1 else None))
            if isinstance(loss, keras.losses.Loss)
        ]
        if jit_compile == "auto" and any(
            getattr(loss, "supports_jit", True) is False for loss in losses
        ):
            jit_compile = False
        super().compile(*args, jit_compile=jit_compile, **kwargs)
        # Assigned outside compile() so that Keras' tracking sees them:
        # they become trainable variables of the model and part of its
        # saved state.
        self._metric_losses = losses
        self._loss_variables = [
            variable for loss in losses for variable in getattr(loss, "variables", [])
        ]

    def compile_from_config(self, config):
        # Keras skips compile() on load when it is overridden; ours only adds
        # to it, so run it: the loss variables must exist before the weights
        # are restored.
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if hasattr(self, "optimizer") and self.built:
            self.optimizer.build(self.trainable_variables)

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        losses = getattr(self, "_metric_losses", [])
        if not (isinstance(y_pred, dict) and len(losses) == 1):
            return super().compute_loss(
                x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
            )
        total = losses[0](y, y_pred, sample_weight)
        for extra in self.losses:
            total = total + self._aggregate_additional_loss(extra)
        return total


@keras.saving.register_keras_serializable(package="metrix_tf")
class FunctionalMetricModel(MetricModel, Functional):
    """The class of `MetricModel(inputs, outputs)` (internal)."""

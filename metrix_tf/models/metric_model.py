"""`MetricModel`: a `keras.Model` that trains with metric losses."""

import inspect
import weakref

import keras
import tensorflow as tf
from keras import tree

from metrix_tf.mixing.mixed_batch import MixedBatch
from metrix_tf.models import keras_internals
from metrix_tf.models.keras_internals import Functional


_XLA_FUNCTIONS = weakref.WeakKeyDictionary()  # model -> {name: tf.function}


def _xla_by_default():
    """Keras' "auto": XLA with an accelerator and no tf.distribute strategy."""
    accelerators = [d for d in tf.config.list_logical_devices() if d.device_type != "CPU"]
    return bool(accelerators) and not tf.distribute.has_strategy()


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
    - `compile(jit_compile=...)` splits the step when a loss cannot be
      compiled by XLA (`supports_jit = False`: the custom op): the loss runs
      outside XLA and the model's forward and backward pass (the backbone,
      most of the work) inside it, instead of losing XLA for the whole step.
      `jit_compile=True` always compiles the model; `"auto"` (the default)
      does where Keras' own "auto" would (a GPU, no tf.distribute
      strategy: XLA is slower than oneDNN on CPUs); `False` never does.
      `model_jit_compile` says what was chosen.
    - `train_step()` passes the batch labels to `call(..., labels=...)` when
      the model's `call` accepts them (the in-graph Metrix mixing layers need
      them), and lets subclasses rescale gradients (`transform_gradients`,
      used for head-only warm-up).
    - `compute_loss()` hands the whole model output to a single metric loss,
      so a training-time `MixedBatch` (from a Metrix mixing layer, or its
      dict form) reaches the loss intact; Keras 3 would otherwise look for
      one loss per output.

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
        if jit_compile not in (True, False, "auto"):
            raise ValueError(
                "Argument `jit_compile` must be True, False or 'auto'. "
                f"Received: jit_compile={jit_compile!r}"
            )
        losses = [
            loss
            for loss in tree.flatten(kwargs.get("loss", args[1] if len(args) > 1 else None))
            if isinstance(loss, keras.losses.Loss)
        ]
        split = any(getattr(loss, "supports_jit", True) is False for loss in losses)
        super().compile(*args, jit_compile=False if split else jit_compile, **kwargs)
        model_jit = split and (
            jit_compile is True or (jit_compile == "auto" and _xla_by_default())
        )
        # Assigned outside compile() so that Keras' tracking sees them:
        # they become trainable variables of the model and part of its
        # saved state.
        # A built subclassed model locks its state; adopting the variables of
        # a newly compiled loss is the one addition we allow.
        with keras_internals.unlocked_tracker(self):
            self._model_jit_compile = model_jit
            self._metric_losses = losses
            self._loss_variables = [
                variable
                for loss in losses
                for variable in getattr(loss, "variables", [])
            ]

    def compile_from_config(self, config):
        # Keras skips compile() on load when it is overridden; ours only adds
        # to it, so run it: the loss variables must exist before the weights
        # are restored.
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if hasattr(self, "optimizer") and self.built:
            self.optimizer.build(self.trainable_variables)

    @property
    def model_jit_compile(self):
        """Whether the model's forward/backward pass runs under XLA while the
        loss does not (set by `compile`, see the class docstring)."""
        return getattr(self, "_model_jit_compile", False)

    def _call_accepts_labels(self):
        return "labels" in inspect.signature(self.call).parameters

    def _training_call(self, x, y):
        if self._call_accepts_labels():
            return self(x, training=True, labels=y)
        return self(x, training=True)

    def xla_compiled(self, name, fn):
        """`fn` compiled by XLA when `model_jit_compile` is on, else `fn`.

        Subclasses whose `call` cannot compile whole (dynamic shapes, e.g.
        the Metrix mixing layers) wrap its static-shape parts with this
        (`EmbeddingModel` does) and return True from
        `compiles_parts_of_call()`. The gradient of a compiled part is
        compiled too.
        """
        if not self.model_jit_compile:
            return fn
        # Kept outside the model: Keras and SavedModel tracking never see them.
        functions = _XLA_FUNCTIONS.setdefault(self, {})
        if name not in functions:
            functions[name] = tf.function(fn, jit_compile=True, reduce_retracing=True)
        return functions[name]

    def compiles_parts_of_call(self):
        """True when `call` compiles its own parts (see `xla_compiled`)."""
        return False

    def transform_gradients(self, gradients, variables):
        """Hook: rescale gradients before the optimizer step (identity here)."""
        return gradients

    def train_step(self, data):
        # Keras' TensorFlow train_step, plus the labels and the gradient hook.
        x, y, sample_weight = keras_internals.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            if self.model_jit_compile and not self.compiles_parts_of_call():
                y_pred = self.xla_compiled("training_call", self._training_call)(x, y)
            else:
                y_pred = self._training_call(x, y)
            loss = keras_internals.compute_loss(
                self, x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True
            )
            keras_internals.loss_tracker(self).update_state(
                keras_internals.unscale_loss_for_distribution(loss),
                sample_weight=tf.shape(tree.flatten(x)[0])[0],
            )
            if self.optimizer is not None:
                loss = self.optimizer.scale_loss(loss)
        variables = self.trainable_weights
        if variables:
            gradients = tape.gradient(loss, variables)
            gradients = self.transform_gradients(gradients, variables)
            self.optimizer.apply_gradients(zip(gradients, variables))
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        losses = getattr(self, "_metric_losses", [])
        if not (isinstance(y_pred, (dict, MixedBatch)) and len(losses) == 1):
            return super().compute_loss(
                x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
            )
        total = losses[0](y, y_pred, sample_weight)
        for extra in self.losses:
            total = total + keras_internals.aggregate_additional_loss(self, extra)
        return total


@keras.saving.register_keras_serializable(package="metrix_tf")
class FunctionalMetricModel(MetricModel, Functional):
    """The class of `MetricModel(inputs, outputs)` (internal)."""

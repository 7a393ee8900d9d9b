"""`FusedBatchNormalization`: Keras' BatchNormalization on TF's fused kernel."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="metrix_tf")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` computed by TensorFlow's fused kernel.

    Same arguments, variables, results and moving-statistics update as
    `keras.layers.BatchNormalization` (a drop-in subclass: weights and
    checkpoints are interchangeable), but in training mode (batch
    statistics) on image maps `(B, H, W, C)` normalised over the channels it
    runs one `FusedBatchNormV3` op (oneDNN's on CPUs, cuDNN's on GPUs) and its
    fused gradient, instead of Keras 3's composition of moments, elementwise
    normalisation and their autodiff, which passes over every activation
    several times. A float16/bfloat16 input (mixed precision) is normalised
    with float32 statistics inside the kernel and returned in its own type.
    Inference mode (moving statistics, also a frozen layer in training) is a
    single scale and shift, which Keras' computation already is (measured no
    faster fused on this CPU), and other cases (a mask, renorm, synchronized
    statistics, another axis or rank, float64) use the Keras computation.

    Training mode updates the moving statistics as Keras does, with the
    biased batch variance (the fused kernel returns the unbiased one, which is
    rescaled by (n - 1) / n).

    Its arguments are those of `keras.layers.BatchNormalization`.

    Call arguments:
        inputs: float tensor, `(B, H, W, C)` for the fused path.
        training: bool, batch statistics (and moving-average update) or the
            moving statistics.
        mask: optional, as for `keras.layers.BatchNormalization`.

    Example:

    ```python
    x = keras.layers.Conv2D(64, 3)(inputs)
    x = metrix_tf.models.FusedBatchNormalization(epsilon=1.001e-5)(x)
    ```
    """

    def _fusable(self, inputs, mask):
        return (
            mask is None
            and not self.renorm
            and not self.synchronized
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and inputs.dtype in (tf.float32, tf.float16, tf.bfloat16)
        )

    def call(self, inputs, training=None, mask=None):
        inputs = tf.convert_to_tensor(inputs)
        if not (training and self.trainable and self._fusable(inputs, mask)):
            return super().call(inputs, training=training, mask=mask)
        channels = inputs.shape[-1]
        gamma = self.gamma if self.scale else tf.ones([channels], tf.float32)
        beta = self.beta if self.center else tf.zeros([channels], tf.float32)
        gamma = tf.cast(gamma, tf.float32)
        beta = tf.cast(beta, tf.float32)
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, gamma, beta, epsilon=self.epsilon, data_format="NHWC",
            is_training=True,
        )
        # The kernel's variance is the unbiased one; Keras averages the
        # biased one.
        count = tf.cast(tf.size(inputs) // channels, tf.float32)
        variance = variance * tf.math.divide_no_nan(count - 1.0, count)
        momentum = self.momentum
        self.moving_mean.assign(
            tf.cast(self.moving_mean, tf.float32) * momentum + mean * (1.0 - momentum)
        )
        self.moving_variance.assign(
            tf.cast(self.moving_variance, tf.float32) * momentum
            + variance * (1.0 - momentum)
        )
        return tf.cast(outputs, self.compute_dtype)


def fuse_batchnorm(model):
    """A copy of functional `model` with each BatchNormalization fused.

    Every `keras.layers.BatchNormalization` becomes a
    `FusedBatchNormalization` with the same config and weights; the other
    layers are cloned as they are.

    Args:
        model: a functional `keras.Model`.

    Returns:
        A new functional `keras.Model`, same name, same weights.
    """

    def clone(layer):
        if type(layer) is keras.layers.BatchNormalization:
            return FusedBatchNormalization.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    fused = keras.models.clone_model(model, clone_function=clone)
    fused.set_weights(model.get_weights())
    return fused

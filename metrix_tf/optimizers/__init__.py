"""Optimizers: Keras' own, computed by TensorFlow's fused kernels."""

from metrix_tf.optimizers.fused_adam import FusedAdam

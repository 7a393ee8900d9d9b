"""Backbones: ResNet-50 (the paper's) and small ones for tests and CPUs."""

import os

import keras

from metrix_tf.models import keras_internals
from metrix_tf.models.fused_batch_normalization import FusedBatchNormalization
from metrix_tf.models.fused_batch_normalization import fuse_batchnorm


def resnet50_backbone(input_shape=(224, 224, 3), weights=None):
    """ResNet-50 feature extractor (final stage maps, no pooling).

    Args:
        input_shape: image shape `(height, width, 3)`.
        weights: None (random init), `"imagenet"` (downloaded by Keras: needs
            network access), or the path of a local weights file for
            `keras.applications.ResNet50(include_top=False)` (`.weights.h5` or
            Keras' `.h5` notop file).

    Returns:
        A `keras.Model` mapping images `(B, H, W, 3)` (preprocessed as the
        data pipelines do: ImageNet mean/std) to features `(B, H/32, W/32, 2048)`.
        Its BatchNormalization layers are `FusedBatchNormalization` (same
        variables and results, one fused kernel each in training mode: with
        `FusedAdam`, 2.5x faster ResNet-50 steps with trainable BatchNorm on
        this CPU, `benchmarks/bench_vs_pytorch.py --with-plain-keras`).
    """
    if weights not in (None, "imagenet"):
        if not isinstance(weights, str) or not os.path.isfile(weights):
            raise ValueError(
                "Argument `weights` must be None, 'imagenet' or the path of an "
                f"existing weights file. Received: weights={weights!r}"
            )
    model = keras.applications.ResNet50(
        include_top=False,
        weights="imagenet" if weights == "imagenet" else None,
        input_shape=tuple(input_shape),
    )
    if weights not in (None, "imagenet"):
        try:
            model.load_weights(weights)
        except Exception as error:  # Keras raises several types here.
            raise ValueError(
                f"Could not load backbone weights from {weights!r}: {error}"
            ) from error
    return fuse_batchnorm(model)


def small_cnn_backbone(input_shape=(32, 32, 1), width=32, name="small_cnn"):
    """A small CNN for the built-in data set and tests (feature maps out).

    Args:
        input_shape: image shape `(height, width, channels)`.
        width: channels of the first block (doubled in each of 3 blocks).

    Returns:
        A `keras.Model` mapping images to `(B, H/8, W/8, 4 * width)` maps.
    """
    inputs = keras.Input(tuple(input_shape))
    x = inputs
    for i in range(3):
        filters = width * 2**i
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = FusedBatchNormalization()(x)
        x = keras.layers.Activation("relu")(x)
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = FusedBatchNormalization()(x)
        x = keras.layers.Activation("relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    return keras.Model(inputs, x, name=name)


def freeze_batchnorm(model):
    """Freeze every BatchNormalization layer of `model` (inference mode)."""
    for layer in keras_internals.sublayers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    return model

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
        Its blocks end in layers "block1_pool", "block2_pool" (maps
        `(B, H/4, W/4, 2 * width)`) and "block3_pool" (the output).
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
        # Named blocks: a stage for `EmbeddingModel(feature_stage=...)`.
        x = keras.layers.MaxPooling2D(name=f"block{i + 1}_pool")(x)
    return keras.Model(inputs, x, name=name)


def freeze_batchnorm(model):
    """Freeze every BatchNormalization layer of `model` (inference mode)."""
    for layer in keras_internals.sublayers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    return model


def split_backbone(backbone, layer_name):
    """`(stem, rest)`: `backbone` cut after its layer `layer_name`.

    `rest(stem(x))` computes `backbone(x)` with the same layers and weights
    (nothing is copied), so that the feature level can mix inside the
    backbone (`EmbeddingModel(feature_stage=...)`).

    Args:
        backbone: a functional `keras.Model` with one input and one output.
        layer_name: str, an inner layer of `backbone` that every path from
            the input to the output passes (a block's output, e.g.
            "block2_pool" of `small_cnn_backbone`, "conv4_block6_out" of
            ResNet-50).

    Returns:
        Two `keras.Model`s: images to the layer's output, and that output to
        the backbone's output.
    """
    layers = getattr(backbone, "layers", None)
    if layers is None or not hasattr(backbone, "inputs") or backbone.inputs is None:
        raise TypeError(
            "A feature stage needs a functional backbone (keras.Model built "
            f"from keras.Input). Received: backbone={backbone!r}"
        )
    if len(backbone.inputs) != 1 or len(backbone.outputs) != 1:
        raise ValueError(
            "A feature stage needs a backbone with one input and one output. "
            f"Received {len(backbone.inputs)} inputs and {len(backbone.outputs)} outputs."
        )
    names = [layer.name for layer in layers]
    inner = [layer.name for layer in layers[1:]
             if layer.output is not backbone.outputs[0]]
    if layer_name not in inner:
        if layer_name == names[0]:
            reason = "is the backbone's input (mixing there is the input level)"
        elif layer_name in names:
            reason = "is the backbone's output (the default feature level: use None)"
        else:
            reason = "is not an inner layer of the backbone"
        raise ValueError(
            f"Argument `feature_stage` {reason}. Received: feature_stage={layer_name!r}. "
            f"Inner layers of {backbone.name!r}: {inner}"
        )
    cut = backbone.get_layer(layer_name).output
    stem = keras.Model(backbone.inputs[0], cut, name=f"{backbone.name}_to_{layer_name}")
    try:
        rest = keras.Model(cut, backbone.outputs[0], name=f"{backbone.name}_after_{layer_name}")
    except ValueError as error:  # "Graph disconnected": a path bypasses the cut
        raise ValueError(
            f"Argument `feature_stage`: a path from the input to the output of "
            f"{backbone.name!r} bypasses layer {layer_name!r} (a skip connection); "
            "choose a layer every path passes, such as a block's output. "
            f"Received: feature_stage={layer_name!r}"
        ) from error
    return stem, rest

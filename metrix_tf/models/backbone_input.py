"""`BackboneInput`: the pixel convention a pretrained backbone expects."""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class BackboneInput:
    """How raw pixels become a backbone's input: an affine map per channel.

    A backbone's input is `(x / 255 - mean) / std` per channel of the RGB
    pixels `x` in [0, 255], taken in BGR order when `bgr`. Every ImageNet
    convention of keras.applications is of this form: "caffe" (BGR, the
    ImageNet mean subtracted: ResNet, VGG), "tf" (`x / 127.5 - 1`:
    MobileNet, Inception, Xception), "torch" (ImageNet mean and std:
    DenseNet), and none at all (EfficientNet, ConvNeXt, RegNet and
    MobileNetV3 normalise inside the model: `mean=0, std=1/255`);
    EfficientNet-Lite takes `(x - 127) / 128`. `metrix_tf.data.Preprocessing`
    applies it (`Preprocessing.for_backbone`), so the data pipelines, the
    evaluation and the exported SavedModel all feed the backbone alike.

    Args:
        mean: 3 floats, on the [0, 1] scale, in the backbone's channel order.
        std: 3 positive floats, on the [0, 1] scale.
        bgr: bool, the backbone takes BGR channels.
        channels: int, the channels the backbone takes (3; a grayscale data
            set is repeated into them).

    Example:

    >>> lite = BackboneInput.from_preprocess_input(
    ...     lambda x: (x - 127.0) / 128.0)
    >>> [round(v * 255, 3) for v in lite.mean], [round(v * 255, 3) for v in lite.std]
    ([127.0, 127.0, 127.0], [128.0, 128.0, 128.0])
    """

    mean: tuple
    std: tuple
    bgr: bool = False
    channels: int = 3

    def __post_init__(self):
        mean = tuple(float(v) for v in self.mean)
        std = tuple(float(v) for v in self.std)
        if len(mean) != self.channels or len(std) != self.channels:
            raise ValueError(
                f"`mean` and `std` need {self.channels} values. "
                f"Received: mean={mean!r}, std={std!r}")
        if not all(np.isfinite(mean)) or not all(s > 0 and np.isfinite(s) for s in std):
            raise ValueError(
                "`mean` must be finite and `std` positive. "
                f"Received: mean={mean!r}, std={std!r}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @classmethod
    def from_preprocess_input(cls, preprocess_input, name="preprocess_input"):
        """The convention of a `preprocess_input` function, measured.

        The function is applied to a few probe images; its output must be a
        per-channel affine map of the input, possibly with the channels
        reversed (anything else raises ValueError naming `name`).

        Args:
            preprocess_input: a function from RGB pixels `(B, H, W, 3)` in
                [0, 255] to the backbone's input of the same shape, such as
                `keras.applications.resnet.preprocess_input`.
            name: the function's name, for messages.

        Returns:
            A `BackboneInput`.
        """

        def apply(images):
            out = preprocess_input(np.array(images, np.float32))
            return np.asarray(out, np.float64).reshape(-1, 3)

        base = apply(np.zeros((1, 1, 1, 3)))[0]
        # Column c: how a unit of input channel c moves the output channels.
        columns = np.stack(
            [apply(np.eye(3)[c].reshape(1, 1, 1, 3))[0] - base for c in range(3)], axis=1
        )
        forward, reverse = np.diag(columns), np.diag(columns[:, ::-1])
        if np.allclose(columns, np.diag(forward), atol=1e-9):
            bgr, scale = False, forward
        elif np.allclose(columns[:, ::-1], np.diag(reverse), atol=1e-9):
            bgr, scale = True, reverse
        else:
            raise ValueError(
                f"{name} does not map each pixel channel on its own (matrix {columns.tolist()}): "
                "only per-channel affine conventions are supported")
        if not np.all(scale > 0):
            raise ValueError(f"{name} does not increase with the pixel values (scale {scale})")
        # Check on random pixels that the measured map is the function.
        pixels = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3))
        expected = (pixels[..., ::-1] if bgr else pixels).reshape(-1, 3) * scale + base
        if not np.allclose(apply(pixels), expected, rtol=1e-4, atol=1e-4):
            raise ValueError(f"{name} is not an affine map of the pixels")
        std = 1.0 / (255.0 * scale)
        return cls(mean=tuple(0.0 - base * std), std=tuple(std), bgr=bgr)

"""Image decoding and the train / eval transforms, with tf.image only."""

import tensorflow as tf

from metrix_tf.data.builtin_glyphs import LARGE_IMAGE_SIZE
from metrix_tf.data.icons import IMAGE_SIZE as ICONS_IMAGE_SIZE

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# File signatures tf.io.decode_image accepts (JPEG, PNG, GIF, BMP).
_MAGICS = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM")


def _check_signature(contents, path):
    """An assertion op: `contents` starts like a JPEG/PNG/GIF/BMP file."""
    head = tf.strings.substr(contents, 0, 4)
    known = tf.reduce_any(tf.stack([
        tf.strings.substr(head, 0, len(m)) == m for m in _MAGICS]))
    return tf.debugging.Assert(known, [
        "metrix_tf.data: cannot decode image file (empty, or not a "
        "JPEG/PNG/GIF/BMP):", path])


def decode_image(contents, path, channels=3):
    """Decodes JPEG/PNG/GIF/BMP bytes to a uint8 image, naming bad files.

    A file that is empty or does not start with one of those signatures
    fails an in-graph assertion whose message holds `path`. A file with a
    valid header but a corrupt body fails in TensorFlow's decoder, whose
    message cannot name it: `verify_images` finds those up front.

    Args:
        contents: scalar string tensor, the file's bytes.
        path: scalar string tensor, the file name (for the message).
        channels: 1 or 3; the decoded channels.

    Returns:
        A uint8 tensor of shape `(height, width, channels)` (first frame of
        an animated GIF).
    """
    check = _check_signature(contents, path)
    with tf.control_dependencies([check]):
        image = tf.io.decode_image(contents, channels=channels,
                                   expand_animations=False)
    image.set_shape([None, None, channels])
    return image


def sample_crop_window(shape, scale=(0.08, 1.0),
                       ratio=(3.0 / 4.0, 4.0 / 3.0), seed=(0, 0)):
    """Draws the random resized crop box of an image of the given shape.

    The Inception / torchvision `RandomResizedCrop` recipe: the box covers
    a fraction in `scale` of the image area with aspect ratio (width /
    height) in `ratio`; after 10 failed attempts the whole image is used.

    Args:
        shape: int tensor `(height, width, channels)` of the image.
        scale: (min, max) area fraction.
        ratio: (min, max) width / height.
        seed: int tensor of shape `(2,)` (stateless randomness).

    Returns:
        `(offset_y, offset_x, height, width)`, int32 scalars.
    """
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.cast(shape, tf.int32), bounding_boxes=tf.zeros([1, 0, 4]),
        seed=seed, min_object_covered=0.0, aspect_ratio_range=ratio,
        area_range=scale, max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    return begin[0], begin[1], crop_size[0], crop_size[1]


def random_resized_crop(image, size, scale=(0.08, 1.0),
                        ratio=(3.0 / 4.0, 4.0 / 3.0), seed=(0, 0)):
    """Crops a random area/aspect box and resizes it to `size` x `size`.

    See `sample_crop_window` for the box.

    Args:
        image: a tensor of shape `(height, width, channels)`, any dtype.
        size: int, output side.
        scale: (min, max) area fraction.
        ratio: (min, max) width / height.
        seed: int tensor of shape `(2,)` (stateless randomness).

    Returns:
        A float32 tensor of shape `(size, size, channels)`, in the input's
        value range.
    """
    y, x, h, w = sample_crop_window(tf.shape(image), scale, ratio, seed)
    crop = image[y:y + h, x:x + w, :]
    return tf.image.resize(tf.cast(crop, tf.float32), [size, size],
                           method="bilinear", antialias=True)


def resize_and_center_crop(image, resize_size, size):
    """Resizes the shorter side to `resize_size`, then centre-crops `size`.

    Args:
        image: a tensor of shape `(height, width, channels)`.
        resize_size: int, target of the shorter side (>= size).
        size: int, output side.

    Returns:
        A float32 tensor of shape `(size, size, channels)`.
    """
    shape = tf.shape(image)
    height = tf.cast(shape[0], tf.float32)
    width = tf.cast(shape[1], tf.float32)
    factor = float(resize_size) / tf.minimum(height, width)
    new_h = tf.maximum(tf.cast(tf.round(height * factor), tf.int32), size)
    new_w = tf.maximum(tf.cast(tf.round(width * factor), tf.int32), size)
    resized = tf.image.resize(tf.cast(image, tf.float32), [new_h, new_w],
                              method="bilinear", antialias=True)
    top = (new_h - size) // 2
    left = (new_w - size) // 2
    return resized[top:top + size, left:left + size, :]


class Preprocessing:
    """The train and eval image transforms of one data set.

    Train: random resized crop to `image_size` (area `crop_scale`, aspect
    `crop_ratio`), optional horizontal flip, then normalisation. Eval:
    shorter side to `resize_size`, centre crop `image_size`, normalisation.
    Normalisation maps uint8 to `(x / 255 - mean) / std` per channel, in
    the channel order and number the model takes (`model_channels`, `bgr`):
    a backbone's own input convention (`for_backbone`).
    All randomness is stateless: the same seed gives the same image.

    Args:
        image_size: int, output side (paper: 224).
        resize_size: int >= image_size, eval resize of the shorter side
            (paper: 256).
        channels: 1 (grayscale) or 3 (RGB).
        crop_scale: (min, max) area fraction of the random crop, in (0, 1].
        crop_ratio: (min, max) aspect ratio of the random crop.
        flip: bool, random horizontal flips in training (False for glyphs:
            a mirrored character is another character).
        mean: per-channel mean (length `model_channels`), on the [0, 1]
            scale, in the model's channel order.
        std: per-channel std (length `model_channels`), positive.
        model_channels: None (= `channels`) or 3 with `channels=1`: the
            channels the model takes; a grayscale image is repeated into
            RGB before normalisation.
        bgr: bool, reverse RGB to BGR before normalisation (the Caffe
            convention of keras.applications' ResNet and VGG weights).

    Call arguments (`train(image, seed)` / `evaluate(image)`):
        image: a tensor of shape `(height, width, channels)`, uint8 range.
        seed: int tensor of shape `(2,)`.
        Both return a float32 tensor `(image_size, image_size,
        model_channels)`.

    Example:

    >>> pre = Preprocessing.for_dataset("cub200")
    >>> pre.image_size, pre.resize_size, pre.flip
    (224, 256, True)

    Reference:
        Szegedy et al., "Going deeper with convolutions", CVPR 2015 (the
        random resized crop); METRIX.md section 6 (the paper's recipe).
    """

    def __init__(self, image_size=224, resize_size=256, channels=3,
                 crop_scale=(0.08, 1.0), crop_ratio=(3.0 / 4.0, 4.0 / 3.0),
                 flip=True, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                 model_channels=None, bgr=False):
        if not isinstance(image_size, int) or image_size < 1:
            raise ValueError("`image_size` must be a positive int. "
                             f"Received: image_size={image_size!r}")
        if not isinstance(resize_size, int) or resize_size < image_size:
            raise ValueError(
                f"`resize_size` must be an int >= image_size ({image_size}). "
                f"Received: resize_size={resize_size!r}")
        if channels not in (1, 3):
            raise ValueError("`channels` must be 1 or 3. "
                             f"Received: channels={channels!r}")
        crop_scale = tuple(float(v) for v in crop_scale)
        if len(crop_scale) != 2 or not 0 < crop_scale[0] <= crop_scale[1] <= 1:
            raise ValueError("`crop_scale` must be (min, max) with "
                             "0 < min <= max <= 1. "
                             f"Received: crop_scale={crop_scale!r}")
        crop_ratio = tuple(float(v) for v in crop_ratio)
        if len(crop_ratio) != 2 or not 0 < crop_ratio[0] <= crop_ratio[1]:
            raise ValueError("`crop_ratio` must be (min, max) with "
                             "0 < min <= max. "
                             f"Received: crop_ratio={crop_ratio!r}")
        model_channels = channels if model_channels is None else model_channels
        if model_channels not in (channels, 3):
            raise ValueError(
                "`model_channels` must be None, `channels` or 3 (grayscale "
                f"repeated into RGB). Received: model_channels={model_channels!r}"
                f", channels={channels!r}")
        if bgr and model_channels != 3:
            raise ValueError("`bgr=True` needs 3 model channels. Received: "
                             f"model_channels={model_channels!r}")
        mean = tuple(float(v) for v in mean)
        std = tuple(float(v) for v in std)
        if len(mean) != model_channels or len(std) != model_channels:
            raise ValueError(
                f"`mean` and `std` need {model_channels} values (one per "
                f"model channel). Received: mean={mean!r}, std={std!r}")
        if min(std) <= 0:
            raise ValueError(f"`std` must be positive. Received: std={std!r}")
        self.image_size = image_size
        self.resize_size = resize_size
        self.channels = channels
        self.crop_scale = crop_scale
        self.crop_ratio = crop_ratio
        self.flip = bool(flip)
        self.mean = mean
        self.std = std
        self.model_channels = model_channels
        self.bgr = bool(bgr)

    @classmethod
    def for_dataset(cls, name):
        """The paper's transforms for a data set name (see `load_dataset`).

        Real data sets: 224 crops, 256 eval resize, flips, ImageNet mean/std.
        The built-in glyph sets: 32x32 (the large set: 16x16) grayscale,
        crops of 70-100 % of the area with aspect 0.8-1.25, no flip, mean
        0.5 / std 0.5 (pixels to [-1, 1]).
        Icons: the stored 64x64 RGB, ImageNet mean / std (for pretrained
        backbones), crops of 60-100 % of the area with aspect 0.8-1.25
        (icons are centred with a margin, so a mild crop keeps the drawing
        while moving and scaling it), no flip: mirroring changes an icon's
        meaning ("go-next" / "go-previous", text, "format-justify-left").
        """
        if name in ("cub200", "cars196", "sop", "inshop"):
            return cls()
        if name in ("builtin", "builtin_large"):
            size = LARGE_IMAGE_SIZE if name == "builtin_large" else 32
            return cls(image_size=size, resize_size=size, channels=1,
                       crop_scale=(0.7, 1.0), crop_ratio=(0.8, 1.25),
                       flip=False, mean=(0.5,), std=(0.5,))
        if name == "icons":
            return cls(image_size=ICONS_IMAGE_SIZE,
                       resize_size=ICONS_IMAGE_SIZE, channels=3,
                       crop_scale=(0.6, 1.0), crop_ratio=(0.8, 1.25),
                       flip=False)
        raise ValueError("`name` must be one of 'cub200', 'cars196', 'sop', "
                         f"'inshop', 'builtin', 'builtin_large', 'icons'. "
                         f"Received: name={name!r}")

    def for_backbone(self, backbone_input):
        """These transforms with a backbone's input convention.

        Args:
            backbone_input: None (keep this normalisation: a backbone
                trained from scratch, such as the small CNN) or a
                `metrix_tf.models.BackboneInput` (its `channels`, `mean`,
                `std`, `bgr`: e.g. EfficientNet-Lite's `(x - 127) / 128`).

        Returns:
            A `Preprocessing`.
        """
        if backbone_input is None:
            return self
        config = self.get_config()
        config.update(model_channels=backbone_input.channels,
                      mean=backbone_input.mean, std=backbone_input.std,
                      bgr=backbone_input.bgr)
        return Preprocessing(**config)

    def with_image_size(self, image_size):
        """These transforms at another output side, e.g. the 32 x 32 glyphs
        upsampled for a pretrained backbone.

        Args:
            image_size: int > 0, the new `image_size`; `resize_size` keeps
                its ratio to it (224 / 256 -> 128 / 146; 32 / 32 -> 64 / 64).

        Returns:
            A `Preprocessing`.
        """
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ValueError("`image_size` must be a positive int. "
                             f"Received: image_size={image_size!r}")
        config = self.get_config()
        config.update(image_size=image_size, resize_size=max(image_size, round(
            image_size * self.resize_size / self.image_size)))
        return Preprocessing(**config)

    def normalize(self, image):
        """uint8-range float image `(..., channels)` -> the model's input
        `(..., model_channels)`: `(x / 255 - mean) / std`, float32."""
        image = tf.cast(image, tf.float32) / 255.0
        if self.model_channels != self.channels:
            image = tf.repeat(image, self.model_channels, axis=-1)
        if self.bgr:
            image = tf.reverse(image, axis=[-1])
        return (image - tf.constant(self.mean)) / tf.constant(self.std)

    def pixels(self, normalised):
        """The inverse of `normalize`: the model's input -> pixels
        `(..., channels)` in [0, 255] (a repeated channel: its first)."""
        image = (tf.cast(normalised, tf.float32) * tf.constant(self.std)
                 + tf.constant(self.mean)) * 255.0
        if self.bgr:
            image = tf.reverse(image, axis=[-1])
        return image[..., :self.channels]

    def _finish_train(self, crop, seed):
        """Resized crop -> optional flip -> normalisation."""
        image = tf.image.resize(tf.cast(crop, tf.float32),
                                [self.image_size, self.image_size],
                                method="bilinear", antialias=True)
        if self.flip:
            flip_seed = tf.random.experimental.stateless_fold_in(seed, 2)
            image = tf.image.stateless_random_flip_left_right(image,
                                                              flip_seed)
        return self.normalize(image)

    def train(self, image, seed):
        crop_seed = tf.random.experimental.stateless_fold_in(seed, 1)
        y, x, h, w = sample_crop_window(tf.shape(image), self.crop_scale,
                                        self.crop_ratio, crop_seed)
        return self._finish_train(image[y:y + h, x:x + w, :], seed)

    def train_from_file(self, contents, path, seed):
        """`train` on encoded bytes; JPEGs decode only the crop window.

        The crop box is drawn from the JPEG header's size exactly as
        `train` draws it from the decoded image, so both paths pick the
        same box; decoding only that window is much cheaper for the small
        crops the recipe takes. Other formats are fully decoded.

        Args:
            contents: scalar string tensor, the file's bytes.
            path: scalar string tensor, the file name (for messages).
            seed: int tensor of shape `(2,)`.
        """
        check = _check_signature(contents, path)
        with tf.control_dependencies([check]):
            is_jpeg = tf.strings.substr(contents, 0, 3) == _MAGICS[0]

        def jpeg():
            crop_seed = tf.random.experimental.stateless_fold_in(seed, 1)
            shape = tf.io.extract_jpeg_shape(contents)
            y, x, h, w = sample_crop_window(shape, self.crop_scale,
                                            self.crop_ratio, crop_seed)
            crop = tf.io.decode_and_crop_jpeg(
                contents, tf.stack([y, x, h, w]), channels=self.channels)
            return self._finish_train(crop, seed)

        def other():
            return self.train(decode_image(contents, path, self.channels),
                              seed)

        return tf.cond(is_jpeg, jpeg, other)

    def evaluate(self, image):
        return self.normalize(self.evaluate_pixels(image))

    def evaluate_pixels(self, image):
        """`evaluate` without the normalisation: float32 pixels in the input's
        range, the input a SavedModel export serves (see metrix_tf.export)."""
        if self.resize_size == self.image_size:
            shape = tf.shape(image)
            same = tf.logical_and(shape[0] == self.image_size,
                                  shape[1] == self.image_size)
            image = tf.cond(
                same, lambda: tf.cast(image, tf.float32),
                lambda: resize_and_center_crop(image, self.resize_size,
                                               self.image_size))
        else:
            image = resize_and_center_crop(image, self.resize_size,
                                           self.image_size)
        return tf.ensure_shape(
            image, [self.image_size, self.image_size, self.channels])

    def get_config(self):
        return {"image_size": self.image_size,
                "resize_size": self.resize_size, "channels": self.channels,
                "crop_scale": self.crop_scale, "crop_ratio": self.crop_ratio,
                "flip": self.flip, "mean": self.mean, "std": self.std,
                "model_channels": self.model_channels, "bgr": self.bgr}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"Preprocessing({args})"

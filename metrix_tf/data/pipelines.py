"""tf.data pipelines: class-balanced, shuffled and evaluation batches.

Every pipeline yields `(images, labels)`: images float32 of shape
`(batch, image_size, image_size, model_channels)` normalised by the
`Preprocessing` (the backbone's input convention), labels int32 of shape `(batch,)` (the split's labels).
Decoding and augmentation run in a parallel, order-preserving map followed
by prefetch; all randomness is stateless and keyed on `(seed, position in
the sequence)`, so a given seed always gives the same batches, whatever
the parallelism, and a resumed run can start mid-sequence.
"""

import tensorflow as tf

from metrix_tf.data.class_balanced_sampler import ClassBalancedSampler
from metrix_tf.data.class_balanced_sampler import seed_keys
from metrix_tf.data.image_split import ImageSplit
from metrix_tf.data.preprocessing import Preprocessing
from metrix_tf.data.preprocessing import decode_image

AUTOTUNE = tf.data.AUTOTUNE


def _check(split, preprocessing, batch_size=None):
    if not isinstance(split, ImageSplit):
        raise TypeError(f"`split` must be an ImageSplit. Received: {split!r}")
    if not isinstance(preprocessing, Preprocessing):
        raise TypeError("`preprocessing` must be a Preprocessing. "
                        f"Received: preprocessing={preprocessing!r}")
    if not split.is_files and split.images.shape[-1] != preprocessing.channels:
        raise ValueError(
            f"Split {split.name!r} has {split.images.shape[-1]} channel(s) "
            f"but preprocessing.channels={preprocessing.channels}")
    if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int)
            or batch_size < 1):
        raise ValueError("`batch_size` must be a positive int. "
                         f"Received: batch_size={batch_size!r}")


def image_loader(split, channels):
    """A function `index -> uint8 image (height, width, channels)`."""
    if split.is_files:
        paths = tf.constant([str(p) for p in split.images], tf.string)

        def load(index):
            path = tf.gather(paths, index)
            return decode_image(tf.io.read_file(path), path, channels)
    else:
        images = tf.constant(split.images)

        def load(index):
            return tf.gather(images, index)
    return load


def _finish(ds, split, preprocessing, batch_size, training, drop_remainder):
    """(index, seed) elements -> normalised (images, labels) batches."""
    labels = tf.constant(split.labels, tf.int32)
    size = preprocessing.image_size
    if split.is_files and training:
        paths = tf.constant([str(p) for p in split.images], tf.string)

        def image_of(index, seed):  # JPEGs decode only the crop window
            path = tf.gather(paths, index)
            return preprocessing.train_from_file(tf.io.read_file(path), path,
                                                 seed)
    else:
        load = image_loader(split, preprocessing.channels)

        def image_of(index, seed):
            if training:
                return preprocessing.train(load(index), seed)
            return preprocessing.evaluate(load(index))

    def transform(index, seed):
        image = tf.ensure_shape(image_of(index, seed),
                                [size, size, preprocessing.model_channels])
        return image, tf.gather(labels, index)

    ds = ds.map(transform, num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(AUTOTUNE)


def balanced_batches(split, preprocessing, classes_per_batch=20,
                     images_per_class=5, seed=0, start_step=0,
                     num_steps=None):
    """Training batches of P classes x m images (see ClassBalancedSampler).

    Args:
        split: the training `ImageSplit`.
        preprocessing: a `Preprocessing` (its `train` transform is used).
        classes_per_batch: P.
        images_per_class: m (paper: 5 for SOP and In-Shop).
        seed: int; fixes the batches and their augmentation.
        start_step: first batch (resume at `epoch * steps_per_epoch`).
        num_steps: optional number of batches; default: infinite (pass
            `steps_per_epoch` to `fit`, e.g. `sampler.steps_per_epoch`).

    Returns:
        A `tf.data.Dataset` of `(images, labels)`, batch `P * m`, where the
        m images of a class are consecutive.
    """
    _check(split, preprocessing)
    sampler = ClassBalancedSampler(split.labels, classes_per_batch,
                                   images_per_class, seed=seed)
    aug_key = seed_keys(seed, 4)[3]
    batch = sampler.batch_size

    def with_seeds(step, indices):
        position = step * batch + tf.range(batch, dtype=tf.int64)
        seeds = tf.stack([tf.fill([batch], tf.constant(aug_key, tf.int64)),
                          position], axis=1)
        return tf.data.Dataset.from_tensor_slices((indices, seeds))

    ds = sampler.dataset(start_step, num_steps).flat_map(with_seeds)
    return _finish(ds, split, preprocessing, batch, True, True)


def shuffled_batches(split, preprocessing, batch_size=100, seed=0,
                     start_epoch=0, num_epochs=None, drop_remainder=True):
    """Training batches from a fresh seeded permutation each epoch.

    Epoch `e` is the permutation keyed on `(seed, e)`; with
    `drop_remainder` it is cut to `N // batch_size` full batches (so no
    batch straddles two epochs), else the last batch is smaller.

    Args:
        split: the training `ImageSplit`.
        preprocessing: a `Preprocessing` (its `train` transform is used).
        batch_size: int.
        seed: int; fixes the order and the augmentation.
        start_epoch: first epoch (resume).
        num_epochs: optional number of epochs; default: infinite (pass
            `steps_per_epoch = N // batch_size` to `fit`).
        drop_remainder: bool.

    Returns:
        A `tf.data.Dataset` of `(images, labels)`.
    """
    _check(split, preprocessing, batch_size)
    num = split.num_examples
    if drop_remainder and batch_size > num:
        raise ValueError(f"`batch_size` ({batch_size}) exceeds the "
                         f"{num} images of {split.name!r}")
    keep = (num // batch_size) * batch_size if drop_remainder else num
    order_key, aug_key = seed_keys(seed, 6)[4:]

    def epoch_elements(epoch):
        keys = tf.random.stateless_uniform(
            [num], seed=tf.stack([tf.constant(order_key, tf.int64), epoch]))
        indices = tf.cast(tf.argsort(keys)[:keep], tf.int64)
        position = epoch * keep + tf.range(keep, dtype=tf.int64)
        seeds = tf.stack([tf.fill([keep], tf.constant(aug_key, tf.int64)),
                          position], axis=1)
        return tf.data.Dataset.from_tensor_slices((indices, seeds))

    epochs = tf.data.Dataset.counter(int(start_epoch))
    if num_epochs is not None:
        epochs = epochs.take(int(num_epochs))
    ds = epochs.flat_map(epoch_elements)
    return _finish(ds, split, preprocessing, batch_size, True, drop_remainder)


def eval_batches(split, preprocessing, batch_size=100):
    """Evaluation batches in split order (resize + centre crop), once.

    Args:
        split: any `ImageSplit`.
        preprocessing: a `Preprocessing` (its `evaluate` transform is used).
        batch_size: int; the last batch may be smaller.

    Returns:
        A finite `tf.data.Dataset` of `(images, labels)` covering the split
        exactly once, image `i` of the split at position `i`.
    """
    _check(split, preprocessing, batch_size)
    ds = tf.data.Dataset.range(split.num_examples).map(
        lambda index: (index, tf.zeros([2], tf.int64)))
    return _finish(ds, split, preprocessing, batch_size, False, False)


def steps_per_epoch(split, batch_size):
    """`N // batch_size` (at least 1), the nominal steps of one epoch."""
    return max(1, split.num_examples // int(batch_size))

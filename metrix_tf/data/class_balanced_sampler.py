"""Class-balanced batches (P classes x m images per class) for tf.data."""

import numpy as np
import tensorflow as tf


def seed_keys(seed, count):
    """`count` independent int64 stream keys derived from one int seed."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"`seed` must be an int. Received: seed={seed!r}")
    state = np.random.SeedSequence(int(seed)).generate_state(count, np.uint32)
    return [int(s) >> 1 for s in state]  # < 2**31: fits any seed dtype


class ClassBalancedSampler:
    """Indices of class-balanced batches: P classes, m images of each.

    Step `t` of the sequence is a pure function of `(seed, t)`, so the
    sequence is deterministic, can start at any step (a resumed run
    continues exactly where it stopped), never ends, and never waits for
    data.

    Classes: the classes are visited in rounds; each round is a seeded
    permutation of all `C` classes cut into `C // P` batches of `P`
    distinct classes (the `C % P` classes left at the end of a round wait
    for the next round, which permutes again). Images: a class with at
    least `m` images gives `m` distinct images, drawn uniformly without
    replacement; a class with fewer than `m` images gives `m` images drawn
    uniformly *with* replacement (so some repeat) rather than stalling or
    ending the epoch, as the reference sampler did.

    Args:
        labels: int array of shape `(N,)`, values `0..C-1`, every class
            present.
        classes_per_batch: P, an int in `1..C`.
        images_per_class: m, a positive int.
        seed: int.

    Call arguments (`batch_indices(step)`):
        step: int or int64 scalar tensor, the batch number (>= 0).
        Returns an int64 tensor of shape `(P * m,)`: m consecutive entries
        per class, the classes in their drawn order.

    Example:

    >>> sampler = ClassBalancedSampler([0, 0, 1, 1, 2], 2, 2, seed=0)
    >>> sampler.batch_size
    4
    >>> sampler.batch_indices(0).shape
    TensorShape([4])

    Reference:
        Hermans et al., "In defense of the triplet loss for person
        re-identification", 2017 (PK batches).
    """

    def __init__(self, labels, classes_per_batch, images_per_class, seed=0):
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(
                labels.dtype, np.integer):
            raise ValueError("`labels` must be a non-empty 1-D int array. "
                             f"Received: shape={labels.shape}, "
                             f"dtype={labels.dtype}")
        if labels.min() < 0:
            raise ValueError("`labels` must be >= 0. "
                             f"Received: min label {labels.min()}")
        counts = np.bincount(labels)
        num_classes = counts.size
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            raise ValueError(f"Class(es) {empty[:5].tolist()} have no image: "
                             "labels must be contiguous 0..C-1.")
        for arg, value in (("classes_per_batch", classes_per_batch),
                           ("images_per_class", images_per_class)):
            if isinstance(value, bool) or not isinstance(
                    value, (int, np.integer)) or value < 1:
                raise ValueError(f"`{arg}` must be a positive int. "
                                 f"Received: {arg}={value!r}")
        if classes_per_batch > num_classes:
            raise ValueError(
                f"`classes_per_batch` must be <= the number of classes "
                f"({num_classes}). Received: "
                f"classes_per_batch={classes_per_batch}")
        self._keys = seed_keys(seed, 3)  # validates the seed
        self.labels = labels.astype(np.int64)
        self.classes_per_batch = int(classes_per_batch)
        self.images_per_class = int(images_per_class)
        self.seed = int(seed)
        self.num_classes = int(num_classes)
        self.counts = counts.astype(np.int64)
        self.order = np.argsort(self.labels, kind="stable")
        self.offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.batches_per_round = num_classes // self.classes_per_batch

    @property
    def batch_size(self):
        return self.classes_per_batch * self.images_per_class

    @property
    def steps_per_epoch(self):
        """`N // batch_size` (at least 1): one nominal pass over the data."""
        return max(1, self.labels.size // self.batch_size)

    def batch_indices(self, step):
        step = tf.cast(step, tf.int64)
        num_p, num_m = self.classes_per_batch, self.images_per_class
        rounds = tf.constant(self.batches_per_round, tf.int64)
        round_seed = tf.stack([tf.constant(self._keys[0], tf.int64),
                               step // rounds])
        permutation = tf.argsort(tf.random.stateless_uniform(
            [self.num_classes], seed=round_seed))
        first = tf.cast(step % rounds, tf.int32) * num_p
        classes = permutation[first:first + num_p]
        counts = tf.gather(tf.constant(self.counts), classes)
        width = max(int(self.counts.max()), num_m)
        keys = tf.random.stateless_uniform(
            [num_p, width],
            seed=tf.stack([tf.constant(self._keys[1], tf.int64), step]))
        valid = tf.range(width, dtype=tf.int64)[None, :] < counts[:, None]
        keys = tf.where(valid, keys, 2.0)  # invalid slots sort last
        distinct = tf.cast(tf.argsort(keys, axis=1)[:, :num_m], tf.int64)
        uniform = tf.random.stateless_uniform(
            [num_p, num_m],
            seed=tf.stack([tf.constant(self._keys[2], tf.int64), step]))
        repeated = tf.minimum(
            tf.cast(uniform * tf.cast(counts[:, None], tf.float32), tf.int64),
            counts[:, None] - 1)
        positions = tf.where(counts[:, None] >= num_m, distinct, repeated)
        starts = tf.gather(tf.constant(self.offsets, tf.int64), classes)
        indices = tf.gather(tf.constant(self.order, tf.int64),
                            starts[:, None] + positions)
        return tf.reshape(indices, [num_p * num_m])

    def dataset(self, start_step=0, num_steps=None):
        """A tf.data.Dataset of `(step, indices)` from `start_step` on.

        Args:
            start_step: first step (e.g. `epoch * steps_per_epoch` when
                resuming).
            num_steps: optional number of steps; default: infinite.
        """
        ds = tf.data.Dataset.counter(int(start_step))
        if num_steps is not None:
            ds = ds.take(int(num_steps))
        return ds.map(lambda step: (step, self.batch_indices(step)))

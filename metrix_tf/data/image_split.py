"""One split of a labelled image data set: images (files or an array) + labels."""

import numpy as np


def _as_labels(labels, num_examples, name):
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != num_examples:
        raise ValueError(
            f"`labels` of split {name!r} must have shape ({num_examples},) "
            f"(one per image). Received: labels.shape={labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"`labels` of split {name!r} must be integers. "
            f"Received: labels.dtype={labels.dtype}")
    return labels.astype(np.int32)


class ImageSplit:
    """One split of a labelled image data set (train, test, query, ...).

    The images are either file paths (the real data sets: decoded by the
    tf.data pipelines) or an in-memory uint8 array (the built-in glyph set).
    Labels are always the contiguous integers `0..num_classes - 1` of *this*
    split: loaders remap the data set's own class ids, sorted, to them, and
    `class_names[label]` gives back the original class (for example
    `"101.Mallard"` for label 0 of the CUB test split). Two splits that are
    compared against each other (In-Shop query and gallery) share one
    mapping.

    Args:
        images: either a sequence of `N` file paths (str), or a uint8 array
            of shape `(N, height, width, channels)`.
        labels: int array of shape `(N,)` with values in
            `0..len(class_names) - 1`; every class has at least one image.
        class_names: sequence of `C` strings, the original class of each
            label.
        name: a short name used in messages, e.g. `"cub200/train"`.
        allow_empty_classes: if True, a class may have no image (for a
            split that shares its class mapping with another one, e.g. an
            In-Shop query split without images of a gallery-only item).

    Example:

    >>> split = ImageSplit(["a.jpg", "b.jpg"], [0, 1], ["cat", "dog"])
    >>> split.num_classes, split.num_examples, split.is_files
    (2, 2, True)
    """

    def __init__(self, images, labels, class_names, name="split",
                 allow_empty_classes=False):
        self.name = str(name)
        self.allow_empty_classes = bool(allow_empty_classes)
        if isinstance(images, np.ndarray) and images.dtype == np.uint8:
            if images.ndim != 4:
                raise ValueError(
                    f"In-memory `images` of split {self.name!r} must have "
                    "shape (N, height, width, channels). "
                    f"Received: images.shape={images.shape}")
            self.images = images
        else:
            images = [str(p) for p in images]
            self.images = np.array(images, dtype=object)
        self.labels = _as_labels(labels, len(self.images), self.name)
        self.class_names = tuple(str(c) for c in class_names)
        num_classes = len(self.class_names)
        if self.labels.size:
            low, high = int(self.labels.min()), int(self.labels.max())
            if low < 0 or high >= num_classes:
                raise ValueError(
                    f"`labels` of split {self.name!r} must lie in "
                    f"0..{num_classes - 1} (len(class_names)={num_classes}). "
                    f"Received: labels in {low}..{high}")
        counts = np.bincount(self.labels, minlength=num_classes)
        empty = np.flatnonzero(counts == 0)
        if empty.size and not self.allow_empty_classes:
            raise ValueError(
                f"Split {self.name!r} has {empty.size} empty class(es) (no "
                f"image): {[self.class_names[i] for i in empty[:5]]}"
                f"{' ...' if empty.size > 5 else ''}")

    @property
    def is_files(self):
        """True when `images` are file paths, False for an in-memory array."""
        return self.images.dtype == object

    @property
    def num_examples(self):
        return int(self.labels.shape[0])

    @property
    def num_classes(self):
        return len(self.class_names)

    def class_counts(self):
        """Number of images of each label, an int array of shape `(C,)`."""
        return np.bincount(self.labels, minlength=self.num_classes)

    def select_classes(self, labels, name=None):
        """The sub-split of the given labels, relabelled `0..len(labels)-1`.

        Args:
            labels: sequence of distinct labels of this split; label
                `labels[i]` becomes label `i` of the result.
            name: name of the result (default: this name + "/subset").

        Returns:
            A new `ImageSplit` holding the images of those classes, in
            their original order.
        """
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if labels.size == 0:
            raise ValueError("`labels` must name at least one class. "
                             "Received: labels=[]")
        if np.unique(labels).size != labels.size:
            raise ValueError(f"`labels` must be distinct. Received: {labels}")
        bad = labels[(labels < 0) | (labels >= self.num_classes)]
        if bad.size:
            raise ValueError(
                f"`labels` must lie in 0..{self.num_classes - 1}. "
                f"Received: {bad.tolist()[:5]}")
        new_of_old = np.full(self.num_classes, -1, dtype=np.int64)
        new_of_old[labels] = np.arange(labels.size)
        keep = new_of_old[self.labels] >= 0
        return ImageSplit(
            self.images[keep], new_of_old[self.labels[keep]],
            [self.class_names[i] for i in labels],
            name=name or self.name + "/subset",
            allow_empty_classes=self.allow_empty_classes)

    def __repr__(self):
        kind = "files" if self.is_files else f"array{self.images.shape[1:]}"
        return (f"ImageSplit(name={self.name!r}, num_examples="
                f"{self.num_examples}, num_classes={self.num_classes}, "
                f"images={kind})")


def remap_labels(class_keys, name, all_keys=None):
    """Maps data set class keys to contiguous labels `0..C-1`, sorted.

    Args:
        class_keys: sequence of `N` hashable, sortable class keys (ints or
            strings), one per image.
        name: split name for messages.
        all_keys: optional sequence of keys that defines the mapping (for
            splits that share one, e.g. In-Shop query + gallery);
            default: the distinct `class_keys`.

    Returns:
        `(labels, keys)`: int32 labels of shape `(N,)` and the sorted list
        of keys, `keys[label]` being the original key.
    """
    keys = sorted(set(all_keys if all_keys is not None else class_keys))
    index = {k: i for i, k in enumerate(keys)}
    try:
        labels = np.array([index[k] for k in class_keys], dtype=np.int32)
    except KeyError as e:
        raise ValueError(f"Split {name!r}: class {e.args[0]!r} is not in the "
                         "shared class list.") from None
    return labels, keys


def split_validation(split, fraction=0.1, seed=0, num_classes=None):
    """Carves a validation split out of the training classes, by class.

    Validation classes are disjoint from the remaining training classes
    (zero-shot, like the test split), chosen by a seeded permutation, so
    callbacks and model selection never look at the test split.

    Args:
        split: the training `ImageSplit`.
        fraction: float in (0, 1), fraction of the classes to hold out
            (rounded, at least 1). Ignored when `num_classes` is given.
        seed: int seed of the class permutation.
        num_classes: optional int, exact number of validation classes.

    Returns:
        `(train, val)`: two `ImageSplit`s, each relabelled `0..C'-1` (their
        `class_names` keep the original classes).

    Example:

    >>> split = ImageSplit(["a", "b", "c", "d"], [0, 1, 2, 3], "wxyz")
    >>> train, val = split_validation(split, num_classes=1, seed=0)
    >>> train.num_classes, val.num_classes
    (3, 1)
    """
    if not isinstance(split, ImageSplit):
        raise TypeError(f"`split` must be an ImageSplit. Received: {split!r}")
    total = split.num_classes
    if num_classes is None:
        if not 0.0 < float(fraction) < 1.0:
            raise ValueError(
                f"`fraction` must be in (0, 1). Received: fraction={fraction}")
        num_classes = max(1, int(round(float(fraction) * total)))
    if int(num_classes) != num_classes or not 1 <= num_classes < total:
        raise ValueError(
            f"The validation split needs 1..{total - 1} of the {total} "
            f"classes of {split.name!r}. Received: num_classes={num_classes}")
    order = np.random.default_rng(seed).permutation(total)
    val_labels = np.sort(order[:int(num_classes)])
    train_labels = np.sort(order[int(num_classes):])
    return (split.select_classes(train_labels, name=split.name + "/train"),
            split.select_classes(val_labels, name=split.name + "/val"))

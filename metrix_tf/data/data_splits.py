"""The splits of one data set and how its test side is evaluated."""

from metrix_tf.data import image_files
from metrix_tf.data.image_split import ImageSplit
from metrix_tf.data.image_split import remap_labels
from metrix_tf.data.image_split import split_validation


class DataSplits:
    """The splits of a data set, as returned by every loader.

    Zero-shot protocol: training classes and test classes are disjoint.
    Two evaluation layouts exist:

    - leave-one-out (CUB, Cars, SOP, the built-in set): `test` is set; each
      test image queries all other test images.
    - query/gallery (In-Shop): `query` and `gallery` are set (their labels
      share one mapping) and `test` is None; each query searches the
      gallery.

    `val` is None unless the loader was asked to carve one from the
    training classes (see `split_validation`); model selection uses `val`,
    the test side is only evaluated.

    Args:
        name: data set name, e.g. `"cub200"`.
        train: training `ImageSplit`.
        test: test `ImageSplit` (leave-one-out) or None.
        query: query `ImageSplit` (query/gallery) or None.
        gallery: gallery `ImageSplit` (query/gallery) or None.
        val: validation `ImageSplit` or None.
        recall_ks: the Recall@K values the paper reports for this data set.
        info: dict of extra facts (root directory, cache file, hash...).

    Example:

    >>> splits = load_dataset("cub200", "/data/CUB_200_2011")  # doctest: +SKIP
    >>> splits.train.num_classes, splits.test.num_classes  # doctest: +SKIP
    (100, 100)
    """

    def __init__(self, name, train, test=None, query=None, gallery=None,
                 val=None, recall_ks=(1, 2, 4, 8), info=None):
        self.name = name
        for arg, value in (("train", train), ("test", test), ("query", query),
                           ("gallery", gallery), ("val", val)):
            if value is not None and not isinstance(value, ImageSplit):
                raise TypeError(f"`{arg}` must be an ImageSplit or None. "
                                f"Received: {arg}={value!r}")
        if train is None:
            raise ValueError("`train` is required. Received: train=None")
        if (test is None) == (query is None and gallery is None):
            raise ValueError(
                "Give either `test` (leave-one-out) or `query` + `gallery`. "
                f"Received: test={test!r}, query={query!r}, "
                f"gallery={gallery!r}")
        if test is None and (query is None or gallery is None):
            raise ValueError("`query` and `gallery` go together. Received: "
                             f"query={query!r}, gallery={gallery!r}")
        if query is not None and query.class_names != gallery.class_names:
            raise ValueError("`query` and `gallery` must share one class "
                             "mapping (same class_names).")
        self.train = train
        self.test = test
        self.query = query
        self.gallery = gallery
        self.val = val
        self.recall_ks = tuple(int(k) for k in recall_ks)
        self.info = dict(info or {})

    @property
    def protocol(self):
        """`"leave_one_out"` or `"query_gallery"`."""
        return "leave_one_out" if self.test is not None else "query_gallery"

    def with_validation(self, fraction=0.1, seed=0, num_classes=None):
        """A copy whose `train` is split into `train` + `val` by class.

        See `split_validation` for the arguments.
        """
        train, val = split_validation(self.train, fraction=fraction,
                                      seed=seed, num_classes=num_classes)
        return DataSplits(self.name, train, test=self.test, query=self.query,
                          gallery=self.gallery, val=val,
                          recall_ks=self.recall_ks, info=self.info)

    def __repr__(self):
        parts = [f"train={self.train!r}"]
        for key in ("val", "test", "query", "gallery"):
            value = getattr(self, key)
            if value is not None:
                parts.append(f"{key}={value!r}")
        return f"DataSplits({self.name!r}, " + ", ".join(parts) + ")"


def zero_shot_halves(name, what, paths_by_class, num_classes, names, root,
                     verify=False, validation_fraction=None, seed=0):
    """The CUB / Cars196 protocol: classes 1..C/2 train, C/2+1..C test.

    Args:
        name: data set name ("cub200", "cars196").
        what: how error messages name the data set.
        paths_by_class: list of `(class_id, image_path)`, class ids 1..C.
        num_classes: C.
        names: dict class id -> class name (may be partial).
        root: the data set directory (recorded in `info`).
        verify: decode every image (see `verify_images`).
        validation_fraction, seed: see `split_validation`.

    Returns:
        `DataSplits` with `train`, `test` (and `val`), recall_ks (1, 2, 4, 8).
    """
    half = num_classes // 2
    paths = {"train": [], "test": []}
    keys = {"train": [], "test": []}
    for class_id, path in paths_by_class:
        part = "train" if class_id <= half else "test"
        paths[part].append(path)
        keys[part].append(class_id)
    expected = {"train": range(1, half + 1), "test": range(half + 1, num_classes + 1)}
    splits = {}
    for part in ("train", "test"):
        image_files.check_classes_present(
            keys[part], expected[part], f"{what} ({part})", names=names)
        image_files.check_images_exist(paths[part], f"{what} ({part})")
        labels, class_ids = remap_labels(keys[part], f"{name}/{part}")
        splits[part] = ImageSplit(
            paths[part], labels, [names.get(c, str(c)) for c in class_ids],
            name=f"{name}/{part}")
        if verify:
            image_files.verify_images(splits[part])
    result = DataSplits(name, splits["train"], test=splits["test"],
                        recall_ks=(1, 2, 4, 8), info={"root": root})
    if validation_fraction:
        result = result.with_validation(validation_fraction, seed=seed)
    return result

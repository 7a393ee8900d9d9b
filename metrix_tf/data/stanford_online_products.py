"""Stanford Online Products from its official extracted layout."""

import os

from metrix_tf.data import image_files
from metrix_tf.data.data_splits import DataSplits
from metrix_tf.data.image_split import ImageSplit
from metrix_tf.data.image_split import remap_labels

_WHAT = "Stanford Online Products"
_HEADER = ["image_id", "class_id", "super_class_id", "path"]


def _find_root(root):
    """Accepts `Stanford_Online_Products` or the directory above it."""
    image_files.require_dir(root, _WHAT)
    nested = os.path.join(root, "Stanford_Online_Products")
    if (not os.path.isfile(os.path.join(root, "Ebay_train.txt"))
            and os.path.isfile(os.path.join(nested, "Ebay_train.txt"))):
        return nested
    return root


def load_sop(root, verify=False, validation_fraction=None, seed=0):
    """Loads Stanford Online Products with its official split.

    Layout (`Stanford_Online_Products.zip`, extracted):

        Stanford_Online_Products/
            Ebay_train.txt   header "image_id class_id super_class_id path",
                             then "1 1 1 bicycle_final/111085122871_0.JPG"
            Ebay_test.txt    same columns
            bicycle_final/ cabinet_final/ ... (12 category directories)

    Train: the 59,551 images of the 11,318 classes of Ebay_train.txt; test:
    the 60,502 images of the 11,316 classes of Ebay_test.txt. Labels are
    remapped per split to `0..C-1` in class-id order; `class_names` holds
    the class ids (as strings). The class ids of each file must be
    contiguous: a gap is reported as an empty class, and a class id in both
    files is an error.

    Args:
        root: the `Stanford_Online_Products` directory (or its parent).
        verify: if True, also decode every image (see `verify_images`).
        validation_fraction: optional float: carve this fraction of the
            training classes into `val` (see `split_validation`).
        seed: seed of the validation class choice.

    Returns:
        `DataSplits` with `train`, `test` (and `val`), recall_ks
        (1, 10, 100, 1000).

    Raises:
        FileNotFoundError: naming a missing directory, list or image file.
        ValueError: naming a malformed line, an empty class, a class in both
            splits or (with `verify`) a corrupt image file.
    """
    root = _find_root(root)
    splits = {}
    seen = {}
    for part, file_name in (("train", "Ebay_train.txt"),
                            ("test", "Ebay_test.txt")):
        list_path = os.path.join(root, file_name)
        rows = image_files.read_table(list_path, 4, _WHAT, header=_HEADER)
        keys = [image_files.parse_int(r[1], list_path, _WHAT) for r in rows]
        paths = [os.path.join(root, r[3]) for r in rows]
        what = f"{_WHAT} ({file_name})"
        image_files.check_classes_present(
            keys, range(min(keys), max(keys) + 1), what)
        seen[part] = set(keys)
        image_files.check_images_exist(paths, what)
        labels, class_ids = remap_labels(keys, f"sop/{part}")
        splits[part] = ImageSplit(paths, labels, [str(c) for c in class_ids],
                                  name=f"sop/{part}")
    both = sorted(seen["train"] & seen["test"])
    if both:
        raise ValueError(f"{_WHAT}: class id(s) {both[:5]} appear in both "
                         "Ebay_train.txt and Ebay_test.txt")
    if verify:
        for split in splits.values():
            image_files.verify_images(split)
    result = DataSplits("sop", splits["train"], test=splits["test"],
                        recall_ks=(1, 10, 100, 1000), info={"root": root})
    if validation_fraction:
        result = result.with_validation(validation_fraction, seed=seed)
    return result

"""CUB-200-2011 from its official extracted layout."""

import os

from metrix_tf.data import image_files
from metrix_tf.data.data_splits import zero_shot_halves

_WHAT = "CUB-200-2011"


def _find_root(root):
    """Accepts the `CUB_200_2011` directory or the directory above it."""
    image_files.require_dir(root, _WHAT)
    nested = os.path.join(root, "CUB_200_2011")
    if (not os.path.isfile(os.path.join(root, "images.txt"))
            and os.path.isfile(os.path.join(nested, "images.txt"))):
        return nested
    return root


def load_cub200(root, verify=False, validation_fraction=None, seed=0):
    """Loads CUB-200-2011 with the zero-shot split (classes 1-100 / 101-200).

    Layout (the official `CUB_200_2011.tgz`, extracted):

        CUB_200_2011/
            images.txt               "<image_id> <class dir>/<file>.jpg"
            image_class_labels.txt   "<image_id> <class_id 1..200>"
            classes.txt              "<class_id> <class name>"  (optional)
            images/<class dir>/<file>.jpg

    `train_test_split.txt` (the classification split) is not used: metric
    learning trains on classes 1-100 (5,864 images) and tests on the unseen
    classes 101-200 (5,924 images). Labels are remapped per split to
    `0..99` in class-id order; `class_names` keeps "001.Black_footed_..."
    (or the class id when classes.txt is absent).

    Args:
        root: the `CUB_200_2011` directory (or its parent).
        verify: if True, also decode every image (see `verify_images`).
        validation_fraction: optional float: carve this fraction of the
            training classes into `val` (see `split_validation`).
        seed: seed of the validation class choice.

    Returns:
        `DataSplits` with `train`, `test` (and `val`), recall_ks (1, 2, 4, 8).

    Raises:
        FileNotFoundError: naming a missing directory, annotation file or
            image file.
        ValueError: naming a malformed line, an unknown image id, a class
            without images, or (with `verify`) a corrupt image file.
    """
    root = _find_root(root)
    image_dir = image_files.require_dir(os.path.join(root, "images"), _WHAT)
    images_txt = os.path.join(root, "images.txt")
    labels_txt = os.path.join(root, "image_class_labels.txt")
    rows = image_files.read_table(images_txt, 2, _WHAT)
    label_rows = image_files.read_table(labels_txt, 2, _WHAT)
    class_of = {}
    for image_id, class_id in label_rows:
        class_of[image_id] = image_files.parse_int(class_id, labels_txt, _WHAT)
    names = {}
    classes_txt = os.path.join(root, "classes.txt")
    if os.path.isfile(classes_txt):
        for class_id, name in image_files.read_table(classes_txt, 2, _WHAT):
            names[image_files.parse_int(class_id, classes_txt, _WHAT)] = name
    paths_by_class = []
    for image_id, relative in rows:
        if image_id not in class_of:
            raise ValueError(f"{_WHAT}: image id {image_id} ({relative}) of "
                             f"{images_txt} has no class in {labels_txt}")
        class_id = class_of[image_id]
        if not 1 <= class_id <= 200:
            raise ValueError(f"{_WHAT}: {labels_txt}: class id {class_id} of "
                             f"image {image_id} is outside 1..200")
        paths_by_class.append((class_id, os.path.join(image_dir, relative)))
    return zero_shot_halves("cub200", _WHAT, paths_by_class, 200, names, root,
                            verify, validation_fraction, seed)

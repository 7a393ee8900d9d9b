"""Cars196 (Stanford Cars) from `cars_annos.mat` + `car_ims/`."""

import os

import numpy as np

from metrix_tf.data import image_files
from metrix_tf.data.data_splits import zero_shot_halves
from metrix_tf.data.matfile import load_mat

_WHAT = "Cars196"


def _scalar(value, field, index, path):
    array = np.asarray(value).reshape(-1)
    if array.size != 1:
        raise ValueError(f"{_WHAT}: {path}: annotation {index} has no single "
                         f"{field!r} value (got {array.size})")
    return array[0]


def load_cars196(root, verify=False, validation_fraction=None, seed=0):
    """Loads Cars196 with the zero-shot split (classes 1-98 / 99-196).

    Layout (the all-in-one release used by metric learning work:
    `car_ims.tgz` + `cars_annos.mat`, extracted side by side):

        <root>/
            cars_annos.mat     struct array `annotations` with fields
                               relative_im_path ('car_ims/000001.jpg'),
                               bbox_x1, bbox_y1, bbox_x2, bbox_y2,
                               class (1..196), test (0/1); cell array
                               `class_names` (196 names)
            car_ims/000001.jpg ... 016185.jpg

    The `test` flag (the classification split) is ignored: metric learning
    trains on classes 1-98 (8,054 images) and tests on classes 99-196
    (8,131 images). Labels are remapped per split to `0..97` in class-id
    order; `class_names` holds the make/model names. The `.mat` file is
    read by this package's own level-5 reader (`load_mat`): scipy is not
    needed. Bounding boxes are not used (the paper uses full images).

    Args:
        root: the directory holding `cars_annos.mat` and `car_ims/`.
        verify: if True, also decode every image (see `verify_images`).
        validation_fraction: optional float: carve this fraction of the
            training classes into `val` (see `split_validation`).
        seed: seed of the validation class choice.

    Returns:
        `DataSplits` with `train`, `test` (and `val`), recall_ks (1, 2, 4, 8).

    Raises:
        FileNotFoundError: naming a missing directory, `.mat` or image file.
        ValueError: naming a malformed annotation, a class without images
            or (with `verify`) a corrupt image file.
    """
    image_files.require_dir(root, _WHAT)
    mat_path = image_files.require_file(
        os.path.join(root, "cars_annos.mat"), _WHAT)
    image_files.require_dir(os.path.join(root, "car_ims"), _WHAT)
    mat = load_mat(mat_path)
    if "annotations" not in mat:
        raise ValueError(f"{_WHAT}: {mat_path} has no 'annotations' variable "
                         f"(variables: {sorted(mat)})")
    annotations = np.asarray(mat["annotations"]).reshape(-1)
    names = {}
    if "class_names" in mat:
        for i, name in enumerate(np.asarray(mat["class_names"]).reshape(-1)):
            names[i + 1] = str(name)
    paths_by_class = []
    for index, record in enumerate(annotations):
        if not isinstance(record, dict) or not {
                "relative_im_path", "class"} <= set(record):
            raise ValueError(f"{_WHAT}: {mat_path}: annotation {index} lacks "
                             "the fields 'relative_im_path' and 'class'")
        relative = record["relative_im_path"]
        if not isinstance(relative, str):
            relative = str(_scalar(relative, "relative_im_path", index,
                                   mat_path))
        class_id = int(_scalar(record["class"], "class", index, mat_path))
        if not 1 <= class_id <= 196:
            raise ValueError(f"{_WHAT}: {mat_path}: class {class_id} of "
                             f"annotation {index} ({relative}) is outside "
                             "1..196")
        paths_by_class.append((class_id, os.path.join(root, relative)))
    return zero_shot_halves("cars196", _WHAT, paths_by_class, 196, names, root,
                            verify, validation_fraction, seed)

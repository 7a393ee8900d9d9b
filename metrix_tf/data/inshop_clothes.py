"""In-Shop Clothes Retrieval (DeepFashion) from its official layout."""

import os

from metrix_tf.data import image_files
from metrix_tf.data.data_splits import DataSplits
from metrix_tf.data.image_split import ImageSplit
from metrix_tf.data.image_split import remap_labels

_WHAT = "In-Shop Clothes"
_HEADER = ["image_name", "item_id", "evaluation_status"]
_STATUSES = ("train", "query", "gallery")


def _find_partition(root):
    for candidate in (os.path.join(root, "list_eval_partition.txt"),
                      os.path.join(root, "Eval", "list_eval_partition.txt")):
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(
        f"{_WHAT}: file not found: "
        f"{os.path.join(root, 'list_eval_partition.txt')!r} "
        "(nor under Eval/)")


def _image_base(root, first_relative):
    """The directory the partition's `img/...` paths are relative to."""
    for base in (root, os.path.join(root, "Img")):
        if os.path.isdir(os.path.join(base, first_relative.split("/")[0])):
            return base
    raise FileNotFoundError(
        f"{_WHAT}: image directory not found: "
        f"{os.path.join(root, first_relative.split('/')[0])!r} (nor under "
        "Img/)")


def load_inshop(root, verify=False, validation_fraction=None, seed=0):
    """Loads In-Shop Clothes Retrieval with its train/query/gallery split.

    Layout (the DeepFashion "In-shop Clothes Retrieval Benchmark",
    extracted; `Eval/` and `Img/` subdirectories are also accepted):

        <root>/
            list_eval_partition.txt   line 1: number of images; line 2:
                                      header "image_name item_id
                                      evaluation_status"; then rows
                                      "img/WOMEN/Dresses/id_00000002/
                                      02_1_front.jpg id_00000002 train"
            img/WOMEN/... img/MEN/...

    Train: 25,882 images of 3,997 items; test: 14,218 query images searched
    against 12,612 gallery images, of 3,985 items. Train labels are `0..C-1`
    over the training items; query and gallery share one mapping (the
    sorted union of their items) so labels are comparable across them.
    `class_names` holds the item ids. Every query item must have gallery
    images (else it could never be retrieved: an error names it).

    Args:
        root: the directory holding `list_eval_partition.txt` and `img/`.
        verify: if True, also decode every image (see `verify_images`).
        validation_fraction: optional float: carve this fraction of the
            training items into `val` (see `split_validation`).
        seed: seed of the validation class choice.

    Returns:
        `DataSplits` with `train`, `query`, `gallery` (and `val`), `test`
        None, recall_ks (1, 10, 20, 30).

    Raises:
        FileNotFoundError: naming a missing directory, list or image file.
        ValueError: naming a malformed line, an unknown status, an item in
            both train and test, a query item absent from the gallery, or
            (with `verify`) a corrupt image file.
    """
    image_files.require_dir(root, _WHAT)
    list_path = _find_partition(root)
    with open(list_path, encoding="utf-8") as f:
        first = f.readline().strip()
    skip = 1 if first.isdigit() else 0
    rows = image_files.read_table(list_path, 3, _WHAT, skip_lines=skip,
                                  header=_HEADER)
    base = _image_base(root, rows[0][0])
    paths = {s: [] for s in _STATUSES}
    keys = {s: [] for s in _STATUSES}
    for number, (relative, item, status) in enumerate(rows):
        if status not in _STATUSES:
            raise ValueError(f"{_WHAT}: {list_path}: row {number + 1} has "
                             f"evaluation_status {status!r}; expected one of "
                             f"{_STATUSES}")
        paths[status].append(os.path.join(base, relative))
        keys[status].append(item)
    for status in _STATUSES:
        if not paths[status]:
            raise ValueError(f"{_WHAT}: {list_path} lists no {status!r} "
                             "image")
        image_files.check_images_exist(paths[status], f"{_WHAT} ({status})")
    test_items = set(keys["query"]) | set(keys["gallery"])
    both = sorted(set(keys["train"]) & test_items)
    if both:
        raise ValueError(f"{_WHAT}: item(s) {both[:5]} appear in both train "
                         "and query/gallery")
    image_files.check_classes_present(
        keys["gallery"], set(keys["query"]),
        f"{_WHAT} (gallery, for these query items)")
    labels, items = remap_labels(keys["train"], "inshop/train")
    train = ImageSplit(paths["train"], labels, items, name="inshop/train")
    test = {}
    for status in ("query", "gallery"):
        labels, items = remap_labels(keys[status], f"inshop/{status}",
                                     all_keys=test_items)
        # Shared mapping: a gallery-only item is an empty class of the
        # query split (allowed); the gallery holds every item (checked
        # above for the query items, and by construction for the others).
        test[status] = ImageSplit(paths[status], labels, items,
                                  name=f"inshop/{status}",
                                  allow_empty_classes=status == "query")
    query, gallery = test["query"], test["gallery"]
    if verify:
        for split in (train, query, gallery):
            image_files.verify_images(split)
    result = DataSplits("inshop", train, query=query, gallery=gallery,
                        recall_ks=(1, 10, 20, 30),
                        info={"root": root, "image_base": base})
    if validation_fraction:
        result = result.with_validation(validation_fraction, seed=seed)
    return result

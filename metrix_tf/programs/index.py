"""`metrix-index`: build a retrieval index of images with a SavedModel, and
query it.

    metrix-index build --saved_model=DIR --images=FOLDER --output=INDEX [--kind=hnsw]
    metrix-index build --saved_model=DIR --dataset=cub200 --data_dir=D --split=test --output=INDEX
    metrix-index query --index=INDEX --saved_model=DIR --image=PATH [-k 5]

Images of `--images` are the JPEG / PNG / GIF / BMP files under FOLDER; when
all of them sit in sub-folders, the first sub-folder is each image's class
(its label). The index keeps each image's path and class name.
"""

import json
import os
import sys

from absl import app
from absl import flags
from absl import logging

FLAGS = flags.FLAGS
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
SPLITS = ("train", "val", "test", "query", "gallery")


def _define_flags():
    flags.DEFINE_string("saved_model", "", "Directory of the SavedModel (metrix-export's).")
    flags.DEFINE_string("images", "", "build: folder of images to index.")
    flags.DEFINE_string("dataset", "", "build: data set name instead of --images.")
    flags.DEFINE_string("data_dir", "", "build: directory of the extracted data set.")
    flags.DEFINE_enum("split", "test", SPLITS, "build: the data set's split to index.")
    flags.DEFINE_boolean("tiny", False, "build: the tiny built-in set (--dataset=builtin).")
    flags.DEFINE_string("output", "", "build: folder of the index to write.")
    flags.DEFINE_enum("kind", "exact", ["exact", "hnsw", "ivf_pq"], "build: the index kind.")
    flags.DEFINE_integer("batch_size", 64, "Images per model call.")
    flags.DEFINE_string("index", "", "query: folder of the index.")
    flags.DEFINE_string("image", "", "query: the query image.")
    flags.DEFINE_integer("k", 5, "query: number of neighbours.")
    flags.DEFINE_boolean("allow_other_model", False,
                         "query: use an index built with another SavedModel of the same size.")


def image_folder(folder):
    """`(paths, labels or None, class_names)` of the images under `folder`."""
    if not os.path.isdir(folder):
        raise ValueError(f"--images={folder!r} is not a folder")
    relative = sorted(
        os.path.relpath(os.path.join(root, name), folder)
        for root, _, names in os.walk(folder) for name in names
        if name.lower().endswith(IMAGE_EXTENSIONS))
    if not relative:
        raise ValueError(f"--images={folder!r} holds no image ({', '.join(IMAGE_EXTENSIONS)})")
    classes = [r.split(os.sep)[0] if os.sep in r else None for r in relative]
    if None in classes:
        return relative, None, []
    names = sorted(set(classes))
    label_of = {name: i for i, name in enumerate(names)}
    return relative, [label_of[c] for c in classes], names


class Progress:
    """A bar redrawn on a terminal; a line per 10 % into a file."""

    def __init__(self, what, stream=sys.stderr):
        self.what, self.stream = what, stream
        self.tty = stream.isatty()
        self.shown = -1

    def __call__(self, done, total):
        percent = 100 * done // total
        if self.tty:
            bar = "#" * (percent // 4)
            self.stream.write(f"\r{self.what} {done}/{total} [{bar:<25}] {percent}%")
            if done == total:
                self.stream.write("\n")
        elif percent // 10 > self.shown:
            self.shown = percent // 10
            self.stream.write(f"{self.what} {done}/{total} ({percent}%)\n")
        self.stream.flush()


def build(saved_model, output, kind="exact", images="", dataset="", data_dir="", split="test",
          tiny=False, batch_size=64, progress=None):
    """Embeds a folder or a data set split into a new index; returns its path."""
    from metrix_tf.retrieval.index import Index
    from metrix_tf.retrieval.searcher import Searcher

    if images:  # a bad folder fails before the model loads
        paths, labels, class_names = image_folder(images)
        gallery = [os.path.join(images, p) for p in paths]
        metadata = {"images_root": os.path.abspath(images), "paths": paths}
    else:
        from metrix_tf import data as data_lib

        extra = {"tiny": tiny} if dataset.startswith("builtin") else {}
        splits = data_lib.load_dataset(dataset, data_dir or None, **extra)
        chosen = getattr(splits, split)
        if chosen is None:
            available = [s for s in SPLITS if getattr(splits, s) is not None]
            raise ValueError(f"--dataset={dataset!r} has no {split!r} split; it has {available}")
        gallery, labels, class_names = chosen.images, chosen.labels, list(chosen.class_names)
        metadata = {"dataset": dataset, "split": split}
        if chosen.is_files:
            gallery = [str(p) for p in gallery]
            metadata["paths"] = gallery
    metadata["class_names"] = class_names
    searcher = Searcher(saved_model, batch_size=batch_size)
    searcher.search_index = Index(searcher.dimension, kind=kind, metadata=metadata,
                                  model_fingerprint=searcher.fingerprint)
    index = searcher.index(gallery, labels=labels, progress=progress)
    return index.save(output)


def query(index_path, saved_model, image, k=5, allow_other_model=False):
    """The neighbours of `image`: a list of dicts (rank, id, score, label, path)."""
    from metrix_tf.retrieval.searcher import Searcher

    searcher = Searcher(saved_model, index_path, check_fingerprint=not allow_other_model)
    return searcher.neighbours(image, k)


def main(argv):
    from metrix_tf import programs

    # An image that does not decode makes libjpeg print its own line ("Input
    # file read error") before ours: C-level noise is held and shown only
    # when the command does not end in an expected, one-line error.
    expected = programs.expected_errors() + (app.UsageError,)
    with programs.held_stderr(show=lambda error: not isinstance(error, expected)) as stderr:
        return command(argv, stderr)


def command(argv, stderr):
    logging.set_verbosity(logging.WARNING)
    if len(argv) != 2 or argv[1] not in ("build", "query"):
        raise app.UsageError(f"Give one command, build or query. Received: {argv[1:]}")
    if not FLAGS.saved_model:
        raise app.UsageError("--saved_model is required")
    if argv[1] == "build":
        if bool(FLAGS.images) == bool(FLAGS.dataset):
            raise app.UsageError("build needs one of --images and --dataset")
        if not FLAGS.output:
            raise app.UsageError("build needs --output")
        path = build(FLAGS.saved_model, FLAGS.output, FLAGS.kind, FLAGS.images, FLAGS.dataset,
                     FLAGS.data_dir, FLAGS.split, FLAGS.tiny, FLAGS.batch_size,
                     progress=Progress("embedding", stderr))
        print(path)
        return 0
    if not FLAGS.index or not FLAGS.image:
        raise app.UsageError("query needs --index and --image")
    for row in query(FLAGS.index, FLAGS.saved_model, FLAGS.image, FLAGS.k,
                     FLAGS.allow_other_model):
        print(json.dumps(row))
    return 0


def run():
    """Console-script entry point of metrix-index."""
    from metrix_tf import programs

    _define_flags()
    programs.run(
        "metrix-index", main,
        "metrix-index: build a nearest-neighbour index of images with a SavedModel "
        "(build), or find an image's neighbours in it (query).",
        "metrix-index build --saved_model=metrix_run/saved_model --images=photos "
        "--output=photos_index",
        ["saved_model", "images", "dataset", "data_dir", "split", "tiny", "output", "kind",
         "batch_size", "index", "image", "k", "allow_other_model"],
    )


if __name__ == "__main__":
    run()

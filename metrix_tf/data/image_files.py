"""File checks shared by the loaders: annotation tables, existence, decoding."""

import hashlib
import os

import numpy as np

_SHOWN = 5  # how many bad files an error message lists


def require_dir(path, what):
    """Raises FileNotFoundError naming `path` unless it is a directory."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{what}: directory not found: {path!r}")
    return path


def require_file(path, what):
    """Raises FileNotFoundError naming `path` unless it is a file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what}: file not found: {path!r}")
    return path


def read_table(path, num_columns, what, skip_lines=0, header=None):
    """Reads a whitespace-separated text table.

    Args:
        path: the file.
        num_columns: exact number of columns of each row; the last column
            takes the rest of the line (paths may hold spaces).
        what: data set name for messages.
        skip_lines: number of leading lines to drop (counts, headers).
        header: optional list of column names: when the first remaining
            line starts with them it is dropped too.

    Returns:
        A list of rows, each a list of `num_columns` strings.
    """
    require_file(path, what)
    rows = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for number, line in enumerate(lines[skip_lines:], start=skip_lines + 1):
        if not line.strip():
            continue
        fields = line.split(None, num_columns - 1)
        if header is not None and not rows and fields[:len(header)] == header:
            continue
        if len(fields) != num_columns:
            raise ValueError(
                f"{what}: {path}:{number}: expected {num_columns} columns, "
                f"got {len(fields)}: {line!r}")
        rows.append(fields)
    if not rows:
        raise ValueError(f"{what}: {path} lists no image.")
    return rows


def parse_int(text, path, what):
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{what}: {path}: expected an integer, got "
                         f"{text!r}") from None


def check_images_exist(paths, what):
    """Raises FileNotFoundError naming the missing image files, if any."""
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        shown = ", ".join(repr(p) for p in missing[:_SHOWN])
        more = f" (and {len(missing) - _SHOWN} more)" if len(
            missing) > _SHOWN else ""
        raise FileNotFoundError(
            f"{what}: {len(missing)} image file(s) listed in the annotations "
            f"are missing: {shown}{more}")


def check_classes_present(present, expected, what, names=None):
    """Raises ValueError naming the expected classes that have no image.

    `names` optionally maps a class key to a readable name for the message.
    """
    empty = sorted(set(expected) - set(present))
    if empty:
        names = names or {}
        shown = ", ".join(
            f"{c!r} ({names[c]})" if c in names else repr(c)
            for c in empty[:_SHOWN])
        raise ValueError(f"{what}: {len(empty)} class(es) have no image: "
                         f"{shown}{' ...' if len(empty) > _SHOWN else ''}")


def sha256_file(path):
    """The SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified_stamp(paths, directory):
    """The file that records that `paths`, with their current sizes and
    modification times, all decoded."""
    digest = hashlib.sha256()
    for path in paths:
        info = os.stat(path)
        digest.update(f"{path}\0{info.st_size}\0{info.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return os.path.join(directory, "verified", f"{digest.hexdigest()[:32]}.ok")


def verify_images(split, num_parallel_calls=None, remember=True):
    """Decodes every image file of a split and names those that fail.

    This runs the same TensorFlow decoder as the pipelines (JPEG, PNG, GIF,
    BMP via `tf.io.decode_image`), in parallel, so a corrupt or truncated
    file is found before training rather than as an anonymous decode error
    in the middle of an epoch. An in-memory split passes trivially.

    A split that decoded is remembered (a stamp in
    `metrix_tf.data.default_data_dir()/verified/`, keyed by the file list
    with each file's size and modification time), so verifying it again
    costs one `stat` per file.

    Args:
        split: an `ImageSplit`.
        num_parallel_calls: parallel decodes (default: tf.data AUTOTUNE).
        remember: use and write the stamp (default True).

    Raises:
        ValueError: naming the files that could not be decoded (or decode
            to an empty image).
    """
    if not split.is_files:
        return
    paths = [str(p) for p in split.images]
    stamp = None
    if remember:
        from metrix_tf.data.builtin_glyphs import default_data_dir

        stamp = _verified_stamp(paths, default_data_dir())
        if os.path.exists(stamp):
            return
    _decode_all(split, paths, num_parallel_calls)
    if stamp is not None:
        try:
            os.makedirs(os.path.dirname(stamp), exist_ok=True)
            with open(stamp, "w") as f:
                f.write(f"{len(paths)} images of split {split.name!r} decoded\n")
        except OSError:
            pass  # a read-only cache: verify again next time


def _decode_all(split, paths, num_parallel_calls):
    import tensorflow as tf

    def decode_ok(index, path):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3,
                                   expand_animations=False)
        shape = tf.shape(image)
        tf.debugging.assert_positive(shape[0] * shape[1])
        return index

    ds = tf.data.Dataset.from_tensor_slices(
        (tf.range(len(paths), dtype=tf.int64), tf.constant(paths, tf.string)))
    ds = ds.map(decode_ok,
                num_parallel_calls=num_parallel_calls or tf.data.AUTOTUNE)
    ds = ds.ignore_errors()
    good = np.zeros(len(paths), dtype=bool)
    for index in ds.batch(4096).as_numpy_iterator():
        good[index] = True
    bad = [paths[i] for i in np.flatnonzero(~good)]
    if bad:
        shown = ", ".join(repr(p) for p in bad[:_SHOWN])
        more = f" (and {len(bad) - _SHOWN} more)" if len(bad) > _SHOWN else ""
        raise ValueError(f"Split {split.name!r}: {len(bad)} image file(s) "
                         f"are corrupt (cannot be decoded): {shown}{more}")

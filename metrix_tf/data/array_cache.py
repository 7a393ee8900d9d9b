"""The on-disk cache of the generated data sets (glyphs, icons).

A data set built in memory (a dict of numpy arrays) is stored as
`<stem>.npz` (the arrays, no pickle) + `<stem>.json` (the build
specification and the arrays' content SHA-256), both written atomically.
A load checks that the JSON records the requested specification and that
the arrays hash to the recorded value, so a stale or corrupt cache is
named instead of silently used.
"""

import hashlib
import io
import json
import os
import tempfile

import numpy as np


def sha256_file(path):
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_hash(arrays, names):
    """SHA-256 over the named arrays (name, dtype, shape and bytes)."""
    digest = hashlib.sha256()
    for name in names:
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def spec_key(spec):
    """Hex SHA-256 of a JSON-serialisable build specification."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()
                          ).hexdigest()


def atomic_write(path, write):
    """Calls `write(f)` on a temporary file, then renames it to `path`."""
    directory = os.path.dirname(path)
    handle, temporary = tempfile.mkstemp(dir=directory, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as f:
            write(f)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def write_cache(stem, arrays, names, meta):
    """Writes `<stem>.npz` and `<stem>.json`; returns the written meta.

    `meta` must hold the build specification under "spec"; the content
    SHA-256 of `arrays[names]` is added as "content_sha256". The JSON is
    written last, so a crash leaves no JSON that points at missing arrays.
    """
    meta = dict(meta, content_sha256=content_hash(arrays, names))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{name: arrays[name] for name in names})
    atomic_write(stem + ".npz", lambda f: f.write(buffer.getvalue()))
    atomic_write(stem + ".json", lambda f: f.write(
        json.dumps(meta, indent=1, ensure_ascii=False).encode("utf-8")))
    return meta


def read_cache(stem, spec, names, what):
    """Returns `(arrays, meta)` from `<stem>.npz/.json`.

    Raises:
        ValueError: naming the file, when the JSON is unreadable, records
            another specification, or the arrays are unreadable or do not
            hash to the recorded value. `what` names the data set.
    """
    npz_path, json_path = stem + ".npz", stem + ".json"
    try:
        with open(json_path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{what} cache {json_path!r} is "
                         f"unreadable ({e})") from None
    if meta.get("spec") != spec:
        raise ValueError(f"{what} cache {json_path!r} records "
                         "another build specification than the requested "
                         "one")
    try:
        with np.load(npz_path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in names}
    except Exception as e:  # zip / npy errors come in many types
        raise ValueError(f"{what} cache {npz_path!r} is "
                         f"unreadable ({type(e).__name__}: {e})") from None
    actual = content_hash(arrays, names)
    if actual != meta.get("content_sha256"):
        raise ValueError(
            f"{what} cache {npz_path!r} is corrupt: content "
            f"SHA-256 {actual} != recorded {meta.get('content_sha256')}")
    return arrays, meta

"""SavedModel export of the embedding network for serving.

The export holds the embedding network only (never a loss, so never the
custom op): it loads with plain `tf.saved_model.load` in a process that
imports neither metrix_tf nor its op library.

Serving contract (`serving_default`):
- input `images`: float32 `(batch, S, S, C)` of pixel values in [0, 255],
  already resized (shorter side to the data set's resize size) and
  centre-cropped to `S` (the data set's `Preprocessing.evaluate`, without its
  normalisation; a uint8 image cast to float32 qualifies when it already
  has the size);
- output `embeddings`: float32 `(batch, embedding_dim)`, L2-normalised.
The backbone's input convention (`Preprocessing.normalize`: a grayscale
channel repeated for an RGB backbone, BGR order where the backbone wants it,
`(x / 255 - mean) / std`) happens inside the SavedModel, so an export takes
the same raw pixels whatever its backbone; `metrix_export.json` next to it
records S, C, the normalisation and the run config.
"""

import json
import os
import shutil

import tensorflow as tf

SIGNATURE = "serving_default"
METADATA_FILE = "metrix_export.json"


def export_saved_model(model, preprocessing, path, metadata=None):
    """Export `model`'s inference path as a SavedModel, atomically.

    The SavedModel is written to a temporary directory beside `path` and
    renamed into place, so a crash never leaves a half-written export (a
    previous export at `path` is replaced only once the new one is complete).

    Args:
        model: a built Keras model mapping normalised images to embeddings
            (e.g. `metrix_tf.models.EmbeddingModel`; called with
            `training=False`, so it never mixes).
        preprocessing: the `metrix_tf.data.Preprocessing` of the data set
            (image size, channels, the backbone's normalisation).
        path: the export directory.
        metadata: optional JSON-serialisable dict stored in
            `metrix_export.json`.

    Returns:
        `path`.
    """
    size, channels = preprocessing.image_size, preprocessing.channels

    if not model.built:  # variables made while tracing `serve` would be untracked
        model(preprocessing.normalize(tf.zeros([1, size, size, channels])), training=False)
    module = tf.Module()
    # Track the variables only: the SavedModel needs what `serve` captures,
    # not the Keras object graph (which holds the loss and its op).
    module.weights = list(model.weights)

    @tf.function(
        input_signature=[tf.TensorSpec([None, size, size, channels], tf.float32, name="images")]
    )
    def serve(images):
        normalised = preprocessing.normalize(images)
        embeddings = model(normalised, training=False)
        return {"embeddings": tf.cast(embeddings, tf.float32)}

    module.serve = serve
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    tf.saved_model.save(module, tmp, signatures={SIGNATURE: serve})
    info = {
        "signature": SIGNATURE,
        "input": {
            "name": "images",
            "dtype": "float32",
            "shape": [None, size, size, channels],
            "range": [0, 255],
            "resize_size": preprocessing.resize_size,
        },
        "output": {"name": "embeddings", "l2_normalised": True},
        "mean": list(preprocessing.mean),
        "std": list(preprocessing.std),
        "model_channels": preprocessing.model_channels,
        "bgr": preprocessing.bgr,
    }
    info.update(metadata or {})
    with open(os.path.join(tmp, METADATA_FILE), "w") as f:
        json.dump(info, f, indent=2, sort_keys=True)
    replace_directory(tmp, path)
    return path


def replace_directory(tmp, path):
    """Move the complete directory `tmp` to `path`, replacing what is there.

    The previous directory is renamed aside and removed only once `tmp` is in
    place, so an interruption before the last rename leaves it intact.
    """
    old = None
    if os.path.exists(path):
        old = f"{path}.old-{os.getpid()}"
        if os.path.exists(old):
            shutil.rmtree(old)
        os.rename(path, old)
    os.rename(tmp, path)
    if old is not None:
        shutil.rmtree(old)


def load_serving_function(path):
    """The `serving_default` function of an export (plain TensorFlow)."""
    if not os.path.isdir(path) or not os.path.exists(os.path.join(path, "saved_model.pb")):
        raise ValueError(f"No SavedModel at {path!r} (saved_model.pb missing)")
    try:
        loaded = tf.saved_model.load(path)
    except Exception as error:  # noqa: BLE001  (protobuf, OpError, ...: a damaged export)
        first = (getattr(error, "message", None) or str(error) or type(error).__name__).strip()
        raise ValueError(
            f"The SavedModel at {path!r} cannot be loaded (damaged?): {first.splitlines()[0]}"
        ) from None
    if SIGNATURE not in loaded.signatures:
        raise ValueError(
            f"The SavedModel at {path!r} has no {SIGNATURE!r} signature; "
            f"it has {sorted(loaded.signatures)}"
        )
    return loaded.signatures[SIGNATURE]

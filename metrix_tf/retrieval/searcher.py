"""Embed images with a trained model and look them up in an `Index`."""

import json
import os

import numpy as np
import tensorflow as tf

from metrix_tf.data.preprocessing import Preprocessing
from metrix_tf.data.preprocessing import decode_image
from metrix_tf.export.saved_model import METADATA_FILE
from metrix_tf.export.saved_model import load_serving_function
from metrix_tf.retrieval.index import Index


def saved_model_fingerprint(path):
    """The SavedModel's fingerprint (`fingerprint.pb`) as one string, or None."""
    try:
        return tf.saved_model.experimental.read_fingerprint(path).singleprint()
    except (ValueError, OSError, tf.errors.OpError):  # an export older than fingerprints
        return None


def _as_items(images):
    """A list of images: file paths, encoded bytes or `(H, W[, C])` arrays."""
    if isinstance(images, (str, bytes, os.PathLike)):
        return [images]
    if hasattr(images, "numpy") and not isinstance(images, np.ndarray):
        images = images.numpy()
    if isinstance(images, np.ndarray):
        if images.ndim in (2, 3) and images.dtype != object:
            return [images]
        if images.ndim != 4 and images.dtype != object:
            raise ValueError("An image array must have shape (N, H, W, C), (H, W, C) or (H, W). "
                             f"Received: images.shape={images.shape}")
    return list(images)


class Searcher:
    """Embeds images with a model and searches them in an `Index`.

    TensorFlow Similarity's `index` / `lookup` convenience for a metrix_tf
    model. Given a SavedModel folder (`metrix-export`'s), it reads the image
    size, resize size and channels from `metrix_export.json`, loads the
    serving function with plain TensorFlow (the training code is never
    imported) and records the export's fingerprint in the index; a saved
    index made with another SavedModel is refused. Given a Keras model (which
    maps normalised images to embeddings), `preprocessing` says how images
    become its input.

    Images are given as file paths, encoded bytes (JPEG, PNG, GIF, BMP) or
    uint8-range arrays of shape `(H, W, C)` / `(H, W)`, one at a time or in a
    sequence or `(N, H, W, C)` array; each is decoded, resized (shorter side)
    and centre-cropped like `Preprocessing.evaluate`, then embedded in
    batches of `batch_size`.

    Args:
        model: the path of a SavedModel export, or a Keras model / callable
            mapping normalised images `(batch, S, S, C)` to embeddings
            `(batch, D)`.
        index: an `Index` of the model's dimension, the path of a saved one,
            or None for a new exact index (available as `search_index`).
        preprocessing: a `metrix_tf.data.Preprocessing`, for a Keras model
            only (a SavedModel's is read from its metadata).
        batch_size: images embedded per model call.
        check_fingerprint: refuse an index whose recorded SavedModel
            fingerprint differs from the model's (default True).

    Example:

    >>> searcher = Searcher("metrix_run/saved_model")  # doctest: +SKIP
    >>> searcher.index(["a.jpg", "b.jpg"], labels=[0, 1])  # doctest: +SKIP
    >>> ids, labels, scores = searcher.lookup("query.jpg", k=1)  # doctest: +SKIP
    """

    def __init__(self, model, index=None, preprocessing=None, batch_size=64,
                 check_fingerprint=True):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive int. Received: batch_size={batch_size!r}")
        self.model = model
        self.batch_size = batch_size
        self.check_fingerprint = bool(check_fingerprint)
        self.fingerprint = None
        if isinstance(model, (str, os.PathLike)):
            path = os.fspath(model)
            serve = load_serving_function(path)
            self.preprocessing = self._export_preprocessing(path)
            self.fingerprint = saved_model_fingerprint(path)
            self.dimension = serve.structured_outputs["embeddings"].shape[-1]
            self._embed_pixels = lambda pixels: serve(images=pixels)["embeddings"]
        else:
            if not isinstance(preprocessing, Preprocessing):
                raise ValueError("A Keras model needs `preprocessing` (a metrix_tf.data."
                                 f"Preprocessing). Received: preprocessing={preprocessing!r}")
            self.preprocessing = preprocessing
            shape = getattr(model, "output_shape", None)
            self.dimension = shape[-1] if isinstance(shape, tuple) else None
            self._embed_pixels = lambda pixels: model(preprocessing.normalize(pixels),
                                                      training=False)
        size, channels = self.preprocessing.image_size, self.preprocessing.channels
        pre = self.preprocessing

        @tf.function(input_signature=[tf.TensorSpec([], tf.string)] * 2)
        def from_bytes(contents, name):
            return pre.evaluate_pixels(decode_image(contents, name, channels))

        @tf.function(input_signature=[tf.TensorSpec([None, None, channels], tf.float32)])
        def from_array(image):
            return pre.evaluate_pixels(image)

        self._from_bytes, self._from_array = from_bytes, from_array
        self._shape = (size, size, channels)
        if index is not None and not isinstance(index, Index):
            index = Index.load(index)
        self.search_index = index
        if index is not None:
            self._check_index(index)

    @staticmethod
    def _export_preprocessing(path):
        try:
            with open(os.path.join(path, METADATA_FILE)) as f:
                info = json.load(f)
            _, size, _, channels = info["input"]["shape"]
            return Preprocessing(image_size=size, resize_size=info["input"]["resize_size"],
                                 channels=channels, mean=info["mean"], std=info["std"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"The SavedModel at {path!r} has no readable {METADATA_FILE} "
                             f"(not a metrix-export export?): {error}") from None

    def _check_index(self, index):
        if self.dimension is not None and index.dimension != self.dimension:
            raise ValueError(
                f"The model makes {self.dimension}-dimensional embeddings but the index holds "
                f"{index.dimension}-dimensional ones: it was built with another model")
        if (self.check_fingerprint and self.fingerprint and index.model_fingerprint
                and index.model_fingerprint != self.fingerprint):
            raise ValueError(
                f"The index was built with the SavedModel of fingerprint "
                f"{index.model_fingerprint!r}, not this one ({self.fingerprint!r}); pass "
                "check_fingerprint=False to use it anyway")

    def _pixels(self, item, position):
        """One image as float32 pixels `(S, S, C)`; a bad one is named."""
        if isinstance(item, (str, os.PathLike)):
            name = os.fspath(item)
            try:
                with open(name, "rb") as f:
                    contents = f.read()
            except OSError as error:
                raise ValueError(f"Image {name!r} cannot be read: {error.strerror}") from None
        elif isinstance(item, bytes):
            name, contents = f"#{position} (bytes)", item
        else:
            array = np.asarray(item.numpy() if hasattr(item, "numpy") else item)
            if array.ndim == 2:
                array = array[..., None]
            if array.ndim != 3 or array.shape[-1] != self._shape[2] or 0 in array.shape:
                raise ValueError(f"Image #{position} must have shape (H, W, {self._shape[2]}). "
                                 f"Received: shape={array.shape}")
            if not np.isfinite(array).all():
                raise ValueError(f"Image #{position} has NaN or inf pixel values")
            return self._from_array(tf.constant(array, tf.float32))
        try:
            return self._from_bytes(tf.constant(contents), tf.constant(name))
        except tf.errors.OpError:
            raise ValueError(f"Image {name!r} cannot be decoded (empty, corrupt, or not a "
                             "JPEG/PNG/GIF/BMP)") from None

    def _embedded_batches(self, images, batch_size):
        items = _as_items(images)
        batch_size = batch_size or self.batch_size
        for start in range(0, len(items), batch_size):
            pixels = tf.stack([self._pixels(item, start + i)
                               for i, item in enumerate(items[start:start + batch_size])])
            yield start, len(items), np.asarray(self._embed_pixels(pixels), np.float32)

    def embed(self, images, batch_size=None):
        """Embeddings of `images`: a float32 array of shape `(N, D)`."""
        batches = [e for _, _, e in self._embedded_batches(images, batch_size)]
        if not batches:
            raise ValueError("`images` is empty.")
        return np.concatenate(batches)

    def index(self, images, labels=None, ids=None, batch_size=None, progress=None):
        """Embeds `images` batch by batch into the index (streaming).

        Args:
            images: the gallery images (see the class docstring).
            labels: optional int array of shape `(N,)`.
            ids: optional int array of shape `(N,)` (default: the next free).
            batch_size: images per model call (default: the Searcher's).
            progress: optional callable `(done, total)` called after each batch.

        Returns:
            The `Index`.
        """
        images = _as_items(images)
        if not images:
            raise ValueError("`images` is empty.")
        labels = None if labels is None else np.asarray(labels)
        ids = None if ids is None else np.asarray(ids)
        for name, values in (("labels", labels), ("ids", ids)):
            if values is not None and len(values) != len(images):
                raise ValueError(f"`{name}` has {len(values)} entries for {len(images)} images.")
        for start, total, embeddings in self._embedded_batches(images, batch_size):
            if self.search_index is None:
                self.search_index = Index(embeddings.shape[1], model_fingerprint=self.fingerprint)
            if start == 0:
                self._check_index(self.search_index)
                if not len(self.search_index) and self.search_index.model_fingerprint is None:
                    self.search_index.model_fingerprint = self.fingerprint
            end = start + len(embeddings)
            self.search_index.add(embeddings, None if ids is None else ids[start:end],
                                  None if labels is None else labels[start:end])
            if progress is not None:
                progress(end, total)
        return self.search_index

    def lookup(self, images, k=5, batch_size=None):
        """The `k` nearest indexed images of each of `images`.

        Returns:
            `(ids, labels, scores)` as `Index.search`: shape `(N, k)` each
            (labels None for an index without labels).
        """
        if self.search_index is None:
            raise ValueError("The index is empty: call `index` first.")
        embeddings = self.embed(images, batch_size)
        self._check_index(self.search_index)
        return self.search_index.search(embeddings, k)

    def neighbours(self, image, k=5):
        """The `k` neighbours of one image as JSON-ready dicts.

        Each dict has the `rank` (from 1), `id`, `score` and, when the index
        knows them, the `label` (its class name when the index metadata has
        `class_names`) and the image `path` (metadata `paths`, by id).
        Missing neighbours (fewer than `k` indexed) are left out.
        """
        ids, labels, scores = self.lookup(image, k)
        paths = self.search_index.metadata.get("paths")
        names = self.search_index.metadata.get("class_names") or []
        rows = []
        for rank, (i, score) in enumerate(zip(ids[0].tolist(), scores[0].tolist()), start=1):
            if i < 0:
                break
            row = {"rank": rank, "id": i, "score": score}
            if labels is not None:
                label = int(labels[0, rank - 1])
                row["label"] = names[label] if 0 <= label < len(names) else label
            if paths is not None and i < len(paths):
                row["path"] = paths[i]
            rows.append(row)
        return rows

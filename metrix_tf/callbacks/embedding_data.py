"""Embeds a held-out set with the model being trained (callback helper).

A set is given as a tuple `(x, y)` of arrays (or `(x, y, sample_weight)`;
the weights are ignored), a bare array `x` where labels are not needed, or a
batched `tf.data.Dataset` whose elements are `(x, y, ...)` or `x`. Arrays go
through `model.predict`; a dataset is iterated once with
`model(x, training=False)` so the labels stay aligned with the embeddings
even when the dataset shuffles.
"""

import numpy as np
import tensorflow as tf


def _to_numpy(value):
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        return value.numpy()
    return np.asarray(value)


def split_data(data, name, needs_labels):
    """Validates a held-out set; returns `(x, y_or_None, dataset_or_None)`.

    Args:
        data: `(x, y)` tuple, bare array `x` (only when labels are not
            needed) or a `tf.data.Dataset`.
        name: argument name quoted in errors.
        needs_labels: whether labels are required.
    """
    if isinstance(data, tf.data.Dataset):
        return None, None, data
    if isinstance(data, (tuple, list)):
        if len(data) not in (2, 3):
            raise ValueError(
                f"`{name}` must be a tuple (x, y), a bare array x or a "
                f"tf.data.Dataset. Received: a {type(data).__name__} of "
                f"length {len(data)}"
            )
        x, y = data[0], data[1]
        num = len(x) if not isinstance(x, dict) else len(next(iter(
            x.values())))
        y = _to_numpy(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1 or y.shape[0] != num:
            raise ValueError(
                f"`{name}`: the labels y must have shape ({num},) to match "
                f"the {num} inputs x. Received: y.shape={y.shape}"
            )
        return x, y, None
    if needs_labels:
        raise ValueError(
            f"`{name}` must be a tuple (x, y) or a tf.data.Dataset of "
            f"(x, y): labels are needed. Received: {type(data).__name__}"
        )
    return data, None, None


def select_output(output, output_key):
    """Picks the embedding out of a model output (tensor, dict or list)."""
    if isinstance(output, dict):
        if output_key is None or output_key not in output:
            raise ValueError(
                "The model returns a dict; set `output_key` to the entry "
                f"holding the embeddings, one of {sorted(output)}. "
                f"Received: output_key={output_key!r}"
            )
        return output[output_key]
    if isinstance(output, (list, tuple)):
        if not isinstance(output_key, int) or not (
            -len(output) <= output_key < len(output)
        ):
            raise ValueError(
                f"The model returns {len(output)} outputs; set `output_key` "
                "to the index of the embedding output. "
                f"Received: output_key={output_key!r}"
            )
        return output[output_key]
    return output


def embed(model, x, y, dataset, batch_size, output_key):
    """Embeds a held-out set; returns `(embeddings [N, D], labels or None)`."""
    if dataset is None:
        out = model.predict(x, batch_size=batch_size, verbose=0)
        return _to_numpy(select_output(out, output_key)), y
    chunks, labels = [], []
    for element in dataset:
        if isinstance(element, (tuple, list)):
            xb = element[0]
            if len(element) > 1:
                labels.append(_to_numpy(element[1]).reshape(-1))
        else:
            xb = element
        out = select_output(model(xb, training=False), output_key)
        chunks.append(_to_numpy(out))
    if not chunks:
        raise ValueError("The held-out dataset is empty.")
    embeddings = np.concatenate(chunks)
    return embeddings, (np.concatenate(labels) if labels else None)


def check_every_n_epochs(every_n_epochs):
    if isinstance(every_n_epochs, bool) or not isinstance(
        every_n_epochs, (int, np.integer)
    ) or every_n_epochs < 1:
        raise ValueError(
            "`every_n_epochs` must be a positive integer. "
            f"Received: every_n_epochs={every_n_epochs!r}"
        )
    return int(every_n_epochs)


def check_prefix(prefix):
    if not isinstance(prefix, str):
        raise ValueError(
            f"`prefix` must be a string. Received: prefix={prefix!r}")
    return prefix


def check_batch_size(batch_size):
    if isinstance(batch_size, bool) or not isinstance(
        batch_size, (int, np.integer)
    ) or batch_size < 1:
        raise ValueError(
            "`batch_size` must be a positive integer. "
            f"Received: batch_size={batch_size!r}"
        )
    return int(batch_size)

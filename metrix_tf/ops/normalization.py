"""L2 normalisation that holds at any scale: the one rule of the losses,
the mixing, the embedding head and the evaluation.

Each row is first divided by its largest absolute entry, then by its L2
norm. The result is the row's direction, whatever its scale: a plain
`x / ||x||` underflows for tiny rows (`||x||^2` below float32's range, or
below `tf.math.l2_normalize`'s epsilon of 1e-12, so `x * 1e-7` came out
shorter than unit length) and overflows for huge ones (`x * 1e20` squared
is infinite in float32, so the row became zero).

An all-zero row normalises to the zero vector: cosine similarity 0 to every
row (so a loss scores it as neither close to nor far from anything), and no
gradient flows through it. Rows with inf or NaN entries give NaN.
"""

import numpy as np
import tensorflow as tf


def l2_normalize(x, axis=-1):
    """Scale-robust L2 normalisation of a tensor along `axis` (see the module).

    Args:
        x: float tensor, e.g. embeddings of shape `(batch, dim)`.
        axis: the axis normalised (default: the last).

    Returns:
        A tensor of `x`'s shape and dtype whose non-zero slices along `axis`
        have unit L2 norm; all-zero slices stay zero (with zero gradient).

    Example:

    >>> x = tf.constant([[3e-30, 4e-30], [0.0, 0.0]])
    >>> l2_normalize(x).numpy()
    array([[0.6, 0.8], [0. , 0. ]], dtype=float32)
    """
    x = tf.convert_to_tensor(x)
    # The scale changes no direction, so its gradient is zero exactly.
    scale = tf.stop_gradient(tf.reduce_max(tf.abs(x), axis=axis, keepdims=True))
    nonzero = scale > 0
    scaled = x / tf.where(nonzero, scale, tf.ones_like(scale))
    return tf.math.l2_normalize(scaled, axis=axis) * tf.cast(nonzero, x.dtype)


def l2_normalize_numpy(rows):
    """The same rule in numpy, in float64, for rows of shape `(N, D)`.

    Returns a float64 array of the same shape.
    """
    rows = np.asarray(rows, dtype=np.float64)
    scale = np.max(np.abs(rows), axis=1, keepdims=True)
    scale[scale == 0] = 1.0
    scaled = rows / scale
    norms = np.sqrt(np.einsum("ij,ij->i", scaled, scaled))
    norms[norms == 0] = 1.0
    return scaled / norms[:, None]

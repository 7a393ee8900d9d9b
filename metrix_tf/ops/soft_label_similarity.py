"""The soft-label similarity core that every loss in the library stands on.

METRIX.md section 2: anchors (embeddings, labels) are scored against
candidates (embeddings, label_a, label_b, lam). The result is a similarity
matrix and a soft-label matrix

    y[i, j] = lam[j] * [label_a[j] == anchor_label[i]]
              + (1 - lam[j]) * [label_b[j] == anchor_label[i]].

A clean batch is the special case lam = 1, label_a = label_b, with the
self-pairs excluded. An excluded pair (the self-pair, or a pair a Metrix
scoring rule does not score) carries the soft label `NOT_A_PAIR` (-1): it is
neither a positive nor a negative. `pair_weights` turns soft labels into the
positive weight y and the negative weight 1 - y of the generic loss, both 0
for excluded pairs.

`soft_label_similarity` runs the compiled `SoftLabelSimilarity` op (one
GEMM whose tiles are followed by the soft-label fill, C++ on CPU, CUDA on
GPU) when `metrix_tf.ops.backend() == "compiled"`, else the pure-TF
reference; both give the same values. XLA cannot compile the custom op: a
Keras loss or layer that calls it must set `supports_jit = False`, and a
`tf.function(jit_compile=True)` must not call it.
"""

import numpy as np
import tensorflow as tf

from metrix_tf.ops import _loader
from metrix_tf.ops._inputs import cast_results
from metrix_tf.ops._inputs import prepare_pair_inputs

NOT_A_PAIR = -1.0


def soft_label_similarity_reference(
    anchors,
    anchor_labels,
    candidates,
    candidate_labels_a,
    candidate_labels_b,
    lam,
    exclude_self=False,
):
    """Pure-TensorFlow soft-label similarity (the path without the op).

    Args:
        anchors: float tensor of shape `(M, D)`.
        anchor_labels: int tensor of shape `(M,)`.
        candidates: float tensor of shape `(N, D)`, same dtype as `anchors`.
        candidate_labels_a: int tensor of shape `(N,)`: first source label.
        candidate_labels_b: int tensor of shape `(N,)`: second source label.
        lam: float tensor of shape `(N,)`: weight of the first source.
        exclude_self: if True, the pairs (i, i) get the soft label
            `NOT_A_PAIR` (use when the candidates are the anchors).

    Returns:
        `(similarity, soft_labels)`, both of shape `(M, N)` and the dtype of
        `anchors`. `similarity = anchors @ candidates^T` (cosine similarity
        when the rows are L2-normalised); gradients flow to `anchors` and
        `candidates` only. The soft label is computed as
        `[b == l] + lam * ([a == l] - [b == l])`, which equals the formula
        above and is exactly 0 or 1 when both sources agree.
    """
    similarity = tf.matmul(anchors, candidates, transpose_b=True)
    dtype = similarity.dtype
    anchor_labels = tf.expand_dims(anchor_labels, 1)
    same_a = tf.cast(tf.equal(anchor_labels, candidate_labels_a[None, :]), dtype)
    same_b = tf.cast(tf.equal(anchor_labels, candidate_labels_b[None, :]), dtype)
    lam = tf.cast(lam, dtype)[None, :]
    soft_labels = same_b + lam * (same_a - same_b)
    if exclude_self:
        m = tf.shape(similarity)[0]
        n = tf.shape(similarity)[1]
        diagonal = tf.equal(
            tf.range(m)[:, None], tf.range(n)[None, :]
        )
        soft_labels = tf.where(
            diagonal, tf.constant(NOT_A_PAIR, dtype), soft_labels
        )
    return similarity, tf.stop_gradient(soft_labels)


def soft_label_similarity(
    anchors,
    anchor_labels,
    candidates,
    candidate_labels_a,
    candidate_labels_b,
    lam,
    exclude_self=False,
):
    """Soft-label similarity: the compiled op when loaded, else pure TF.

    Same arguments and results as `soft_label_similarity_reference`. Labels
    may be int32 or int64 (mixed dtypes are widened to int64); float16 and
    bfloat16 embeddings are computed in float32 and cast back. The op is not
    XLA-compilable: callers set `supports_jit = False`.

    Raises:
        TypeError: for non-float embeddings, mismatched embedding dtypes or
            non-integer labels.
        ValueError: for shapes that are known to be wrong at trace time
            (InvalidArgumentError at run time otherwise).

    Example:

    >>> similarity, soft_labels = soft_label_similarity(
    ...     embeddings, labels, embeddings, labels, labels,
    ...     tf.ones_like(labels, tf.float32), exclude_self=True)
    """
    inputs, _, result_dtype = prepare_pair_inputs(
        anchors,
        anchor_labels,
        candidates,
        candidate_labels_a,
        candidate_labels_b,
        lam,
    )
    library = _loader.library()
    if library is None:
        results = soft_label_similarity_reference(*inputs, exclude_self=exclude_self)
    else:
        results = library.soft_label_similarity(*inputs, exclude_self=bool(exclude_self))
        results = (results[0], tf.stop_gradient(results[1]))
    return cast_results(results, result_dtype)


def _soft_label_similarity_grad(op, grad_similarity, unused_grad_soft_labels):
    """grad_anchors = dS @ candidates, grad_candidates = dS^T @ anchors."""
    anchors = op.inputs[0]
    candidates = op.inputs[2]
    grad_anchors = tf.matmul(grad_similarity, candidates)
    grad_candidates = tf.matmul(grad_similarity, anchors, transpose_a=True)
    return [grad_anchors, None, grad_candidates, None, None, None]


try:
    tf.RegisterGradient("SoftLabelSimilarity")(_soft_label_similarity_grad)
except KeyError:  # Already registered (module reloaded).
    pass


def pair_weights(soft_labels):
    """Positive and negative weights of the generic loss.

    Args:
        soft_labels: float tensor of soft labels in [0, 1], or `NOT_A_PAIR`.

    Returns:
        `(positive, negative)`: `y` and `1 - y`, both 0 where the entry is
        `NOT_A_PAIR`.
    """
    scored = soft_labels >= 0.0
    zeros = tf.zeros_like(soft_labels)
    return (
        tf.where(scored, soft_labels, zeros),
        tf.where(scored, 1.0 - soft_labels, zeros),
    )


# 2 - 2 s at or below this many machine epsilons is the rounding error of the
# similarity of two coincident unit vectors (measured up to 20 in float32 for
# D = 512): their distance is exactly 0. The compiled kernels use the same
# bound (CoincidentBound in cc/soft_label_similarity_math.h).
COINCIDENT_EPSILONS = 64


def distance_from_similarity(similarity):
    """Euclidean distance `sqrt(2 - 2 s)` of unit vectors with cosine `s`.

    Coincident points (2 - 2 s within `COINCIDENT_EPSILONS` machine epsilons
    of 0) are at distance exactly 0, as the reference computes it from the
    vectors: float32 rounds the similarity of a vector with itself to about
    1 - 6e-8, which would otherwise give a distance of about 3e-4, a
    non-zero term for "average non-zero" reductions. The gradient is 0
    there (no infinity).

    Args:
        similarity: float tensor of cosine similarities.

    Returns:
        A float tensor of the same shape and dtype.
    """
    squared = 2.0 - 2.0 * similarity
    bound = COINCIDENT_EPSILONS * np.finfo(similarity.dtype.as_numpy_dtype).eps
    apart = squared > bound
    return tf.where(apart, tf.sqrt(tf.where(apart, squared, 1.0)), 0.0)

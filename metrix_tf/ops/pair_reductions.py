"""Fused, low-memory per-anchor reductions of the soft-label similarity.

Every loss of METRIX.md section 2 needs, per anchor row i, sums over the
columns j whose soft label y_ij is not `NOT_A_PAIR`, with the pair weights
w+ = y and w- = 1 - y. With the compiled library loaded these functions run
ops that hold one strip of 64 anchor rows per worker and build it tile by
tile with a GEMM, so the `(M, N)` similarity and soft-label matrices never
exist; the backward ops recompute the tiles. Without the library (or inside
`metrix_tf.ops.use_pure_tf()`) they fall back to the `*_reference`
functions, which compute the same reductions from the materialised matrices
and serve as test oracles.

Two kinds:

- "exp" (multi-similarity, proxy anchor), `soft_label_exp_reductions`:

      lse_pos[i] = log(1 + sum_j w+ exp(-scale_pos (s_ij - shift_pos)))
      lse_neg[i] = log(1 + sum_j w- exp( scale_neg (s_ij - shift_neg)))

  MS: scale_pos = alpha, scale_neg = beta, shift_pos = shift_neg = base;
  PA: scale_pos = scale_neg = alpha, shift_pos = margin, shift_neg = -margin.
  With `epsilon` set, the multi-similarity miner of PML 1.3.0 runs first
  (under stop-gradient, strict inequalities): over hard labels only, a
  positive (y == 1) is kept iff s - epsilon < max_neg[i], a negative
  (y == 0) iff s + epsilon > min_pos[i]; fractional labels are always kept.

- "contrastive", `soft_label_contrastive_reductions`: with
  d = sqrt(2 - 2 s), exactly 0 (gradient 0) for coincident points
  (`distance_from_similarity`),

      pos_sum[i] = sum_j w+ relu(d_ij - pos_margin)
      neg_sum[i] = sum_j w- relu(neg_margin - d_ij)

  and `pos_count` / `neg_count` the number of strictly positive terms (the
  "average non-zero" denominators of PML 1.3.0).

Gradients flow to `anchors` and `candidates` only; counts, `min_pos` and
`max_neg` carry none. The compiled ops are not XLA-compilable: callers set
`supports_jit = False`.
"""

import collections

import numpy as np
import tensorflow as tf

from metrix_tf.ops import _loader
from metrix_tf.ops._inputs import cast_results
from metrix_tf.ops._inputs import prepare_pair_inputs
from metrix_tf.ops.soft_label_similarity import distance_from_similarity
from metrix_tf.ops.soft_label_similarity import pair_weights
from metrix_tf.ops.soft_label_similarity import soft_label_similarity_reference

ExpReductions = collections.namedtuple(
    "ExpReductions",
    ["lse_pos", "lse_neg", "min_pos", "max_neg", "pos_count", "neg_count"],
)
ExpReductions.__doc__ = """Per-anchor results of the "exp" kind, each `(M,)`.

    lse_pos / lse_neg: the two log(1 + sum ...) terms.
    min_pos: smallest similarity of a hard positive (y == 1), +inf if none.
    max_neg: largest similarity of a hard negative (y == 0), -inf if none.
    pos_count / neg_count: number of entries with a non-zero weight in each
        sum (after mining), as floats.
"""

ContrastiveReductions = collections.namedtuple(
    "ContrastiveReductions", ["pos_sum", "pos_count", "neg_sum", "neg_count"]
)
ContrastiveReductions.__doc__ = """Per-anchor results of the contrastive kind, each `(M,)`.

    pos_sum / neg_sum: sums of the positive / negative hinge terms.
    pos_count / neg_count: number of strictly positive terms, as floats.
"""


def _scalar(value, dtype, name):
    # dtype_hint keeps a Python float in full precision for float64 (a plain
    # convert_to_tensor would round it through float32 first).
    value = tf.convert_to_tensor(value, dtype_hint=dtype)
    if value.shape.rank not in (None, 0):
        raise ValueError(f"{name} must be a scalar; received shape={value.shape}")
    return tf.cast(value, dtype)


# ------------------------------------------------------------ "exp" kind --


def weighted_log_sum_exp(weights, exponents, add_one=False):
    """log(sum_j w_j exp(e_j)) over the last axis, stable, for w >= 0.

    Entries with w = 0 are skipped. With `add_one`, the sum starts at 1
    (log(1 + sum ...), the "exp" kind's terms). Without it, a row with no
    entry gives 0 (log 1) instead of -inf, with a zero gradient: callers
    mask such rows.

    Args:
        weights: float tensor, non-negative.
        exponents: float tensor of the same shape.

    Returns:
        A float tensor with the last axis reduced.
    """
    dtype = exponents.dtype
    used = weights > 0.0
    masked = tf.where(used, exponents, tf.constant(-np.inf, dtype))
    # The result does not depend on the shift: keep it out of the gradient.
    top = tf.reduce_max(masked, axis=-1)
    if add_one:
        top = tf.maximum(top, 0.0)
    else:
        top = tf.where(tf.math.is_finite(top), top, 0.0)
    shift = tf.stop_gradient(top)
    total = tf.reduce_sum(
        tf.where(used, weights * tf.exp(masked - shift[..., None]), 0.0),
        axis=-1,
    )
    if add_one:
        total += tf.exp(-shift)
    else:
        total = tf.where(total > 0.0, total, 1.0)
    return shift + tf.math.log(total)


def exp_reductions_from_similarity(
    similarity,
    soft_labels,
    scale_pos,
    shift_pos,
    scale_neg,
    shift_neg,
    epsilon=None,
):
    """The "exp" reductions from materialised `(M, N)` matrices.

    Args:
        similarity: float tensor of shape `(M, N)`.
        soft_labels: float tensor of shape `(M, N)` (`NOT_A_PAIR` entries
            are skipped).
        scale_pos: float scalar.
        shift_pos: float scalar.
        scale_neg: float scalar.
        shift_neg: float scalar.
        epsilon: the miner margin, or None for no mining.

    Returns:
        An `ExpReductions` of `(M,)` tensors.
    """
    dtype = similarity.dtype
    s = similarity
    y = tf.stop_gradient(tf.cast(soft_labels, dtype))
    scale_pos = _scalar(scale_pos, dtype, "scale_pos")
    shift_pos = _scalar(shift_pos, dtype, "shift_pos")
    scale_neg = _scalar(scale_neg, dtype, "scale_neg")
    shift_neg = _scalar(shift_neg, dtype, "shift_neg")
    w_pos, w_neg = pair_weights(y)
    hard_pos = tf.equal(y, 1.0)
    hard_neg = tf.equal(y, 0.0)
    inf = tf.constant(np.inf, dtype)
    s_const = tf.stop_gradient(s)
    min_pos = tf.reduce_min(tf.where(hard_pos, s_const, inf), axis=1)
    max_neg = tf.reduce_max(tf.where(hard_neg, s_const, -inf), axis=1)
    if epsilon is not None:
        epsilon = _scalar(epsilon, dtype, "epsilon")
        keep_pos = tf.logical_or(
            tf.logical_not(hard_pos), s_const - epsilon < max_neg[:, None]
        )
        keep_neg = tf.logical_or(
            tf.logical_not(hard_neg), s_const + epsilon > min_pos[:, None]
        )
        w_pos = tf.where(keep_pos, w_pos, 0.0)
        w_neg = tf.where(keep_neg, w_neg, 0.0)
    lse_pos = weighted_log_sum_exp(w_pos, -scale_pos * (s - shift_pos), add_one=True)
    lse_neg = weighted_log_sum_exp(w_neg, scale_neg * (s - shift_neg), add_one=True)
    return ExpReductions(
        lse_pos=lse_pos,
        lse_neg=lse_neg,
        min_pos=min_pos,
        max_neg=max_neg,
        pos_count=tf.reduce_sum(tf.cast(w_pos > 0.0, dtype), axis=1),
        neg_count=tf.reduce_sum(tf.cast(w_neg > 0.0, dtype), axis=1),
    )


def _through_matrices(result_type, reduce, pair_inputs, exclude_self):
    """A reference reduction: materialise the matrices, reduce their rows."""
    inputs, _, result_dtype = prepare_pair_inputs(*pair_inputs)
    similarity, soft_labels = soft_label_similarity_reference(
        *inputs, exclude_self=exclude_self
    )
    return result_type(*cast_results(reduce(similarity, soft_labels), result_dtype))


def soft_label_exp_reductions_reference(
    anchors,
    anchor_labels,
    candidates,
    candidate_labels_a,
    candidate_labels_b,
    lam,
    scale_pos,
    shift_pos,
    scale_neg,
    shift_neg,
    epsilon=None,
    exclude_self=False,
):
    """Pure-TF "exp" reductions through the materialised matrices.

    Same arguments and results as `soft_label_exp_reductions`.
    """
    return _through_matrices(
        ExpReductions,
        lambda s, y: exp_reductions_from_similarity(
            s, y, scale_pos, shift_pos, scale_neg, shift_neg, epsilon
        ),
        (anchors, anchor_labels, candidates, candidate_labels_a, candidate_labels_b, lam),
        exclude_self,
    )


def soft_label_exp_reductions(
    anchors,
    anchor_labels,
    candidates,
    candidate_labels_a,
    candidate_labels_b,
    lam,
    scale_pos,
    shift_pos,
    scale_neg,
    shift_neg,
    epsilon=None,
    exclude_self=False,
):
    """Per-anchor log-sum-exp terms of MS / proxy anchor, without M x N memory.

    Args:
        anchors: float tensor of shape `(M, D)`.
        anchor_labels: int tensor of shape `(M,)`.
        candidates: float tensor of shape `(N, D)`, same dtype as `anchors`.
        candidate_labels_a: int tensor of shape `(N,)`.
        candidate_labels_b: int tensor of shape `(N,)`.
        lam: float tensor of shape `(N,)`.
        scale_pos: float scalar (see the module docstring).
        shift_pos: float scalar.
        scale_neg: float scalar.
        shift_neg: float scalar.
        epsilon: multi-similarity miner margin; None (default) disables the
            miner.
        exclude_self: if True, the pairs (i, i) are not scored.

    Returns:
        An `ExpReductions` namedtuple of `(M,)` tensors in the dtype of
        `anchors`: `lse_pos`, `lse_neg`, `min_pos`, `max_neg`, `pos_count`,
        `neg_count`. Gradients flow from `lse_pos` and `lse_neg` to
        `anchors` and `candidates`.

    Example:

    >>> # Multi-similarity loss of a clean batch, with the miner:
    >>> r = soft_label_exp_reductions(
    ...     x, labels, x, labels, labels, tf.ones([batch]), 17.97, 0.77,
    ...     75.66, 0.77, epsilon=0.39, exclude_self=True)
    >>> loss = tf.reduce_mean(r.lse_pos / 17.97 + r.lse_neg / 75.66)
    """
    library = _loader.library()
    if library is None:
        return soft_label_exp_reductions_reference(
            anchors, anchor_labels, candidates, candidate_labels_a,
            candidate_labels_b, lam, scale_pos, shift_pos, scale_neg,
            shift_neg, epsilon=epsilon, exclude_self=exclude_self,
        )
    inputs, dtype, result_dtype = prepare_pair_inputs(
        anchors, anchor_labels, candidates, candidate_labels_a, candidate_labels_b, lam
    )
    scalars = [
        _scalar(v, dtype, name)
        for v, name in (
            (scale_pos, "scale_pos"),
            (shift_pos, "shift_pos"),
            (scale_neg, "scale_neg"),
            (shift_neg, "shift_neg"),
            (0.0 if epsilon is None else epsilon, "epsilon"),
        )
    ]
    results = library.soft_label_exp_reductions(
        *inputs, *scalars, exclude_self=bool(exclude_self), mine=epsilon is not None
    )
    results = list(results)
    for k in range(2, 6):  # min_pos, max_neg and the counts carry no gradient.
        results[k] = tf.stop_gradient(results[k])
    return ExpReductions(*cast_results(results, result_dtype))


def _exp_reductions_grad(op, grad_lse_pos, grad_lse_neg, *unused):
    library = _loader._library
    zeros = tf.zeros_like(op.outputs[0])
    grad_anchors, grad_candidates = library.soft_label_exp_reductions_grad(
        *op.inputs[:11],
        *op.outputs[:4],
        zeros if grad_lse_pos is None else grad_lse_pos,
        zeros if grad_lse_neg is None else grad_lse_neg,
        exclude_self=op.get_attr("exclude_self"),
        mine=op.get_attr("mine"),
    )
    return [grad_anchors, None, grad_candidates] + [None] * 8


# ----------------------------------------------------- contrastive kind --


def contrastive_reductions_from_similarity(
    similarity, soft_labels, pos_margin=0.0, neg_margin=0.5
):
    """The contrastive reductions from materialised `(M, N)` matrices.

    Args:
        similarity: float tensor of shape `(M, N)`.
        soft_labels: float tensor of shape `(M, N)`.
        pos_margin: float scalar: positives are penalised beyond it.
        neg_margin: float scalar: negatives are penalised within it.

    Returns:
        A `ContrastiveReductions` of `(M,)` tensors.
    """
    dtype = similarity.dtype
    y = tf.stop_gradient(tf.cast(soft_labels, dtype))
    pos_margin = _scalar(pos_margin, dtype, "pos_margin")
    neg_margin = _scalar(neg_margin, dtype, "neg_margin")
    distance = distance_from_similarity(similarity)
    w_pos, w_neg = pair_weights(y)
    pos_terms = w_pos * tf.nn.relu(distance - pos_margin)
    neg_terms = w_neg * tf.nn.relu(neg_margin - distance)
    return ContrastiveReductions(
        pos_sum=tf.reduce_sum(pos_terms, axis=1),
        pos_count=tf.reduce_sum(tf.cast(pos_terms > 0.0, dtype), axis=1),
        neg_sum=tf.reduce_sum(neg_terms, axis=1),
        neg_count=tf.reduce_sum(tf.cast(neg_terms > 0.0, dtype), axis=1),
    )


def soft_label_contrastive_reductions_reference(
    anchors,
    anchor_labels,
    candidates,
    candidate_labels_a,
    candidate_labels_b,
    lam,
    pos_margin=0.0,
    neg_margin=0.5,
    exclude_self=False,
):
    """Pure-TF contrastive reductions through the materialised matrices.

    Same arguments and results as `soft_label_contrastive_reductions`.
    """
    return _through_matrices(
        ContrastiveReductions,
        lambda s, y: contrastive_reductions_from_similarity(s, y, pos_margin, neg_margin),
        (anchors, anchor_labels, candidates, candidate_labels_a, candidate_labels_b, lam),
        exclude_self,
    )


def soft_label_contrastive_reductions(
    anchors,
    anchor_labels,
    candidates,
    candidate_labels_a,
    candidate_labels_b,
    lam,
    pos_margin=0.0,
    neg_margin=0.5,
    exclude_self=False,
):
    """Per-anchor contrastive sums and counts, without M x N memory.

    Args:
        anchors: float tensor of shape `(M, D)`, rows L2-normalised.
        anchor_labels: int tensor of shape `(M,)`.
        candidates: float tensor of shape `(N, D)`, rows L2-normalised.
        candidate_labels_a: int tensor of shape `(N,)`.
        candidate_labels_b: int tensor of shape `(N,)`.
        lam: float tensor of shape `(N,)`.
        pos_margin: float scalar (PML default 0).
        neg_margin: float scalar (PML default 0.5 here, METRIX.md 4).
        exclude_self: if True, the pairs (i, i) are not scored.

    Returns:
        A `ContrastiveReductions` namedtuple of `(M,)` tensors in the dtype
        of `anchors`. Gradients flow from `pos_sum` and `neg_sum`.

    Example:

    >>> r = soft_label_contrastive_reductions(
    ...     x, labels, x, labels, labels, tf.ones([batch]), exclude_self=True)
    >>> loss = (tf.reduce_sum(r.pos_sum) / tf.maximum(tf.reduce_sum(r.pos_count), 1.)
    ...         + tf.reduce_sum(r.neg_sum) / tf.maximum(tf.reduce_sum(r.neg_count), 1.))
    """
    library = _loader.library()
    if library is None:
        return soft_label_contrastive_reductions_reference(
            anchors, anchor_labels, candidates, candidate_labels_a,
            candidate_labels_b, lam, pos_margin=pos_margin,
            neg_margin=neg_margin, exclude_self=exclude_self,
        )
    inputs, dtype, result_dtype = prepare_pair_inputs(
        anchors, anchor_labels, candidates, candidate_labels_a, candidate_labels_b, lam
    )
    results = library.soft_label_contrastive_reductions(
        *inputs,
        _scalar(pos_margin, dtype, "pos_margin"),
        _scalar(neg_margin, dtype, "neg_margin"),
        exclude_self=bool(exclude_self),
    )
    results = list(results)
    for k in (1, 3):
        results[k] = tf.stop_gradient(results[k])
    return ContrastiveReductions(*cast_results(results, result_dtype))


def _contrastive_reductions_grad(op, grad_pos_sum, unused_pos_count, grad_neg_sum, *unused):
    library = _loader._library
    zeros = tf.zeros_like(op.outputs[0])
    grad_anchors, grad_candidates = library.soft_label_contrastive_reductions_grad(
        *op.inputs[:8],
        zeros if grad_pos_sum is None else grad_pos_sum,
        zeros if grad_neg_sum is None else grad_neg_sum,
        exclude_self=op.get_attr("exclude_self"),
    )
    return [grad_anchors, None, grad_candidates] + [None] * 5


for _name, _function in (
    ("SoftLabelExpReductions", _exp_reductions_grad),
    ("SoftLabelContrastiveReductions", _contrastive_reductions_grad),
):
    try:
        tf.RegisterGradient(_name)(_function)
    except KeyError:  # Already registered (module reloaded).
        pass

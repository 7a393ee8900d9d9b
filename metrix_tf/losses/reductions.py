"""The reductions the losses share: how weighted pair entries become a scalar.

All of them take soft pair weights (see `metrix_tf.ops.pair_weights`):
an entry with weight 0 takes no part, a fractional weight is a soft label.
"""

import tensorflow as tf


def average_non_zero(values):
    """Sum of the strictly positive entries divided by their count (0 if none).

    pytorch-metric-learning's AvgNonZeroReducer, taken over all entries.
    """
    count = tf.reduce_sum(tf.cast(values > 0, values.dtype))
    return tf.math.divide_no_nan(tf.reduce_sum(values), count)


def log1p_sum_exp(logits, weights, axis=-1):
    """`log(1 + sum(weights * exp(logits)))` along `axis`, computed stably.

    Entries with weight 0 are left out exactly (a row with none gives 0), so
    large logits of unscored entries never overflow. Gradients flow to
    `logits` only.
    """
    scored = weights > 0
    neg_inf = tf.constant(float("-inf"), logits.dtype)
    log_weights = tf.math.log(tf.where(scored, weights, tf.ones_like(weights)))
    z = tf.where(scored, logits + log_weights, neg_inf)
    # The "1" is exp(0): shift by max(0, max z) so no term exceeds 1.
    shift = tf.stop_gradient(
        tf.maximum(tf.reduce_max(z, axis=axis, keepdims=True), 0.0)
    )
    total = tf.exp(-shift) + tf.reduce_sum(tf.exp(z - shift), axis=axis, keepdims=True)
    return tf.squeeze(shift + tf.math.log(total), axis=axis)


def distance_from_similarity(similarity):
    """Euclidean distance of unit vectors from their cosine similarity.

    `d = sqrt(max(2 - 2 s, 0))`, with a zero (not NaN) gradient where the
    vectors coincide.
    """
    squared = tf.maximum(2.0 - 2.0 * similarity, 0.0)
    nonzero = squared > 0
    safe = tf.where(nonzero, squared, tf.ones_like(squared))
    return tf.where(nonzero, tf.sqrt(safe), tf.zeros_like(squared))


def mean_over_scored_rows(row_values, soft_labels):
    """Mean of `row_values` over the rows with at least one scored entry."""
    scored = tf.reduce_any(soft_labels >= 0, axis=1)
    count = tf.reduce_sum(tf.cast(scored, row_values.dtype))
    total = tf.reduce_sum(tf.where(scored, row_values, tf.zeros_like(row_values)))
    return tf.math.divide_no_nan(total, count)

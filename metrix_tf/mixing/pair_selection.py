"""Which pairs Metrix mixes: vectorised selection that runs in-graph."""

import collections

import keras
import tensorflow as tf

from metrix_tf.mixing.metrix import strategy_id
from metrix_tf.ops.cross_replica import same_on_every_replica

MixPairs = collections.namedtuple(
    "MixPairs",
    ["source_a", "source_b", "strategy", "entry_anchor", "entry_mix"],
)
MixPairs.__doc__ = """Index form of a set of mixes of one batch.

Fields (all int32):
    source_a: `(V,)` batch index of each mix's first source (weight lam).
    source_b: `(V,)` batch index of each mix's second source (weight 1-lam).
    strategy: `(V,)` the id (`metrix_tf.mixing.metrix.strategy_id`) of the
        strategy that made the mix.
    entry_anchor, entry_mix: `(P,)` the per-anchor scoring entries: mix
        `entry_mix[k]` is scored for the batch anchor `entry_anchor[k]`.
"""


def _pair_masks(labels):
    """`(positive, negative, has_positive)` of a batch: the `(B, B)` masks of
    same-class pairs (self excluded) and other-class pairs, and `(B,)`."""
    labels = tf.reshape(labels, [-1])
    b = tf.size(labels)
    same = tf.equal(labels[:, None], labels[None, :])
    not_self = tf.not_equal(tf.range(b)[:, None], tf.range(b)[None, :])
    positive = tf.logical_and(same, not_self)
    return positive, tf.logical_not(same), tf.reduce_any(positive, axis=1)


def _strategy_ids(num_positive_negative, num_anchor_negative):
    """The strategy ids of positive-negative mixes followed by anchor-negative ones."""
    return tf.concat(
        [
            tf.fill([num_positive_negative], strategy_id("positive_negative")),
            tf.fill([num_anchor_negative], strategy_id("anchor_negative")),
        ],
        0,
    )


def select_mix_pairs(
    labels, positive_negative=True, anchor_negative=True
):
    """Select the Metrix pairs of a batch (METRIX.md section 3).

    - positive-negative: every distinct ordered pair (p, n) where p has a
      positive in the batch and n another class; the mix is scored for
      every anchor a != p of p's class.
    - anchor-negative: for every anchor a with no positive in the batch,
      the pairs (a, n) for every negative n; each scored for a.

    Args:
        labels: int tensor of shape `(B,)`.
        positive_negative: bool (or scalar bool tensor): select the
            positive-negative pairs.
        anchor_negative: bool (or scalar bool tensor): select the
            anchor-negative pairs.

    Returns:
        A `MixPairs`. Positive-negative mixes come first, each strategy's
        mixes in row-major (first source, second source) order.
    """
    positive, negative, has_positive = _pair_masks(labels)

    pn = tf.logical_and(has_positive[:, None], negative)
    pn = tf.logical_and(pn, tf.cast(positive_negative, tf.bool))
    pn_pairs = tf.cast(tf.where(pn), tf.int32)
    pn_entries = tf.cast(
        tf.where(tf.gather(positive, pn_pairs[:, 0], axis=1)), tf.int32
    )

    an = tf.logical_and(tf.logical_not(has_positive)[:, None], negative)
    an = tf.logical_and(an, tf.cast(anchor_negative, tf.bool))
    an_pairs = tf.cast(tf.where(an), tf.int32)
    num_pn = tf.shape(pn_pairs)[0]
    num_an = tf.shape(an_pairs)[0]
    an_mix_index = tf.range(num_an) + num_pn

    return MixPairs(
        source_a=tf.concat([pn_pairs[:, 0], an_pairs[:, 0]], 0),
        source_b=tf.concat([pn_pairs[:, 1], an_pairs[:, 1]], 0),
        strategy=_strategy_ids(num_pn, num_an),
        entry_anchor=tf.concat([pn_entries[:, 0], an_pairs[:, 0]], 0),
        entry_mix=tf.concat([pn_entries[:, 1], an_mix_index], 0),
    )


def select_hardest_negative_pairs(
    labels, similarity, positive_negative=True, anchor_negative=True
):
    """Input-level pair selection: one mix per (anchor, positive) entry.

    Each anchor a's hardest negative n*(a) is the other-class example of
    highest clean similarity to a (ties: the lowest index). Positive-negative:
    for every (a, p), a != p of one class, the mix (p, n*(a)) scored for a.
    Anchor-negative: for every anchor without a positive, the mix
    (a, n*(a)) scored for a. Anchors without any negative get no mix.

    Args:
        labels: int tensor of shape `(B,)`.
        similarity: float tensor `(B, B)` of clean similarities (no gradient
            flows through the selection).
        positive_negative: bool or scalar bool tensor.
        anchor_negative: bool or scalar bool tensor.

    Returns:
        A `MixPairs` with one entry per mix (`entry_mix` = 0..V-1).
    """
    positive, negative, has_positive = _pair_masks(labels)
    has_negative = tf.reduce_any(negative, axis=1)
    similarity = tf.stop_gradient(similarity)
    lowest = tf.constant(float("-inf"), similarity.dtype)
    hardest = tf.argmax(
        tf.where(negative, similarity, lowest), axis=1, output_type=tf.int32
    )

    pn = tf.logical_and(positive, has_negative[:, None])
    pn = tf.logical_and(pn, tf.cast(positive_negative, tf.bool))
    anchor_positive = tf.cast(tf.where(pn), tf.int32)
    an = tf.logical_and(tf.logical_not(has_positive), has_negative)
    an = tf.logical_and(an, tf.cast(anchor_negative, tf.bool))
    an_anchor = tf.cast(tf.reshape(tf.where(an), [-1]), tf.int32)

    anchors = tf.concat([anchor_positive[:, 0], an_anchor], 0)
    num_pn = tf.shape(anchor_positive)[0]
    num_an = tf.shape(an_anchor)[0]
    return MixPairs(
        source_a=tf.concat([anchor_positive[:, 1], an_anchor], 0),
        source_b=tf.gather(hardest, anchors),
        strategy=_strategy_ids(num_pn, num_an),
        entry_anchor=anchors,
        entry_mix=tf.range(num_pn + num_an),
    )


def cap_mixes(pairs, max_mixes, seed_generator=None):
    """Keep at most `max_mixes` mixes, a uniform random subset (in order).

    Entries of dropped mixes are dropped; the kept mixes keep their relative
    order and the entries are re-indexed.

    Args:
        pairs: a `MixPairs`.
        max_mixes: int or scalar int tensor >= 0.
        seed_generator: a `keras.random.SeedGenerator` for the subset draw.

    Returns:
        A `MixPairs` with at most `max_mixes` mixes.
    """
    num_mixes = tf.shape(pairs.source_a)[0]
    keep_count = tf.minimum(num_mixes, tf.cast(max_mixes, tf.int32))
    scores = same_on_every_replica(keras.random.uniform([num_mixes], seed=seed_generator))
    _, keep = tf.math.top_k(scores, k=keep_count)
    keep = tf.sort(keep)
    new_index = tf.tensor_scatter_nd_update(
        tf.fill([num_mixes], -1), keep[:, None], tf.range(keep_count)
    )
    entry_mix = tf.gather(new_index, pairs.entry_mix)
    kept_entry = entry_mix >= 0
    return MixPairs(
        source_a=tf.gather(pairs.source_a, keep),
        source_b=tf.gather(pairs.source_b, keep),
        strategy=tf.gather(pairs.strategy, keep),
        entry_anchor=tf.boolean_mask(pairs.entry_anchor, kept_entry),
        entry_mix=tf.boolean_mask(entry_mix, kept_entry),
    )

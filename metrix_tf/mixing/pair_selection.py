"""Which pairs Metrix mixes: vectorised selection that runs in-graph."""

import collections

import tensorflow as tf

MixPairs = collections.namedtuple(
    "MixPairs",
    ["source_a", "source_b", "strategy", "entry_anchor", "entry_mix"],
)
MixPairs.__doc__ = """Index form of a set of mixes of one batch.

Fields (all int32):
    source_a: `(V,)` batch index of each mix's first source (weight lam).
    source_b: `(V,)` batch index of each mix's second source (weight 1-lam).
    strategy: `(V,)` index into `MIX_STRATEGIES` of the strategy that made
        the mix (0: positive_negative, 1: anchor_negative).
    entry_anchor, entry_mix: `(P,)` the per-anchor scoring entries: mix
        `entry_mix[k]` is scored for the batch anchor `entry_anchor[k]`.
"""


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
    labels = tf.reshape(labels, [-1])
    b = tf.size(labels)
    same = tf.equal(labels[:, None], labels[None, :])
    not_self = tf.not_equal(tf.range(b)[:, None], tf.range(b)[None, :])
    positive = tf.logical_and(same, not_self)
    negative = tf.logical_not(same)
    has_positive = tf.reduce_any(positive, axis=1)

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
        strategy=tf.concat(
            [tf.zeros([num_pn], tf.int32), tf.ones([num_an], tf.int32)], 0
        ),
        entry_anchor=tf.concat([pn_entries[:, 0], an_pairs[:, 0]], 0),
        entry_mix=tf.concat([pn_entries[:, 1], an_mix_index], 0),
    )

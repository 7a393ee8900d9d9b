"""The mixed batch: what the mixing step hands to the losses.

A model trained with Metrix at the input or feature level returns, in
training, a `MixedBatch` instead of the plain embedding tensor; the losses
accept either (and make one themselves at the embedding level). Its float
fields are cast to the loss dtype, its index fields stay int32:
`MetricLoss.__call__` hands it to the loss whole, without Keras' cast of
every output to the loss dtype.

A dict with the keys below (the earlier interface) is accepted too; its
index entries may then be floats holding whole numbers.
"""

import collections

import tensorflow as tf

from metrix_tf.mixing.metrix import strategy_id
from metrix_tf.mixing.pair_selection import select_mix_pairs
from metrix_tf.ops.normalization import l2_normalize


class MixedBatch(
    collections.namedtuple(
        "MixedBatch",
        [
            "embeddings",
            "mixed_embeddings",
            "labels_a",
            "labels_b",
            "lam",
            "strategy",
            "entry_anchor",
            "entry_mix",
        ],
    )
):
    """The clean embeddings of a batch and its mixes.

    Fields:
        embeddings: float `(B, D)`, the clean embeddings of the batch.
        mixed_embeddings: float `(V, D)`, the embeddings of the V mixes
            (normalised again inside the loss).
        labels_a, labels_b: int32 `(V,)`, the classes of each mix's first
            and second source.
        lam: float `(V,)`, the weight of the first source.
        strategy: int32 `(V,)`, the id of the strategy that made each mix
            (`metrix_tf.mixing.metrix.strategy_id`; test it with
            `of_strategy(name)`).
        entry_anchor, entry_mix: int32 `(P,)`: for per-anchor scoring, mix
            `entry_mix[k]` counts for batch anchor `entry_anchor[k]`.
    """

    __slots__ = ()
    FLOAT_FIELDS = ("embeddings", "mixed_embeddings", "lam")

    def of_strategy(self, name):
        """Bool `(V,)`: which mixes the named strategy made."""
        return tf.equal(self.strategy, strategy_id(name))

    def with_float_dtype(self, dtype):
        """The same batch with its float fields cast to `dtype`."""
        return self._replace(
            **{f: tf.cast(getattr(self, f), dtype) for f in self.FLOAT_FIELDS}
        )


# The keys of the dict form (the field names of the earlier interface).
EMBEDDINGS = "embeddings"
MIXED_EMBEDDINGS = "mixed_embeddings"
MIX_LABELS_A = "mix_labels_a"
MIX_LABELS_B = "mix_labels_b"
MIX_LAMBDA = "mix_lambda"
MIX_STRATEGY = "mix_strategy"
ENTRY_ANCHOR = "entry_anchor"
ENTRY_MIX = "entry_mix"
KEYS = (
    EMBEDDINGS,
    MIXED_EMBEDDINGS,
    MIX_LABELS_A,
    MIX_LABELS_B,
    MIX_LAMBDA,
    MIX_STRATEGY,
    ENTRY_ANCHOR,
    ENTRY_MIX,
)


def embed_mixes(embed, mixes, clean):
    """`embed(mixes)`, or no rows (like `clean`) when a step has no mixes.

    No mixes happen, e.g., with the anchor-negative strategy on a batch where
    every anchor has a positive. The pass is skipped then: oneDNN's
    convolutions reject an empty batch, and BatchNormalization's moving
    statistics would take NaN.
    """
    return tf.cond(tf.shape(mixes)[0] > 0, lambda: embed(mixes), lambda: tf.zeros_like(clean[:0]))


def make_mixed_batch(labels, embeddings, mixed_embeddings, pairs, lam):
    """Assemble the `MixedBatch` from a `MixPairs` and the mixes."""
    num_mixes = tf.shape(pairs.source_a)[0]
    return MixedBatch(
        embeddings=embeddings,
        mixed_embeddings=mixed_embeddings,
        labels_a=tf.gather(labels, pairs.source_a),
        labels_b=tf.gather(labels, pairs.source_b),
        lam=tf.fill([num_mixes], tf.cast(lam, mixed_embeddings.dtype)),
        strategy=pairs.strategy,
        entry_anchor=pairs.entry_anchor,
        entry_mix=pairs.entry_mix,
    )


def mix_embeddings(labels, embeddings, metrix):
    """Metrix at the embedding level: mix the L2-normalised embeddings.

    Args:
        labels: int tensor of shape `(B,)`.
        embeddings: float tensor of shape `(B, D)` (normalised here).
        metrix: a `metrix_tf.Metrix`; its strategy chooses the pairs and
            `lam` is drawn (or fixed) once for the whole batch.

    Returns:
        A `MixedBatch` whose mixes are `lam * e_a + (1 - lam) * e_b` of the
        normalised embeddings (the losses normalise them again).
    """
    normalised = l2_normalize(embeddings)
    lam = metrix.sample_lambda(normalised.dtype)
    pairs = select_mix_pairs(labels, *metrix.active_strategies())
    mixed = lam * tf.gather(normalised, pairs.source_a) + (1.0 - lam) * tf.gather(
        normalised, pairs.source_b
    )
    return make_mixed_batch(labels, embeddings, mixed, pairs, lam)


def _index(value):
    value = tf.convert_to_tensor(value)
    if value.dtype.is_floating:
        value = tf.round(value)
    return tf.cast(value, tf.int32)


def standardize_mixed_batch(batch):
    """A `MixedBatch` from a `MixedBatch` or its dict form (index fields int32)."""
    if isinstance(batch, MixedBatch):
        fields = batch._asdict()
    else:
        missing = [k for k in KEYS if k not in batch]
        if missing:
            raise ValueError(
                "A mixed batch must be a `MixedBatch` or a dict with the keys "
                f"{KEYS}; missing {missing}. Received keys: {sorted(batch)}"
            )
        fields = dict(zip(MixedBatch._fields, (batch[k] for k in KEYS)))
    for name in MixedBatch._fields:
        if name not in MixedBatch.FLOAT_FIELDS:
            fields[name] = _index(fields[name])
    return MixedBatch(**fields)

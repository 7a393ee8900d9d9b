"""The mixed-batch interface between the mixing step and the losses.

A model trained with Metrix at the input or feature level returns, in
training, a dict instead of the plain embedding tensor; the losses accept
either. The dict keys (constants below):

- `embeddings`: float `(B, D)`, the clean embeddings of the batch.
- `mixed_embeddings`: float `(V, D)`, the embeddings of the V mixes
  (normalised again inside the loss).
- `mix_labels_a`, `mix_labels_b`: int `(V,)`, the classes of each mix's
  first and second source.
- `mix_lambda`: float `(V,)`, the weight of the first source.
- `mix_strategy`: int `(V,)`, index into `MIX_STRATEGIES`
  (0: positive_negative, 1: anchor_negative).
- `entry_anchor`, `entry_mix`: int `(P,)`: for per-anchor scoring, mix
  `entry_mix[k]` counts for batch anchor `entry_anchor[k]`.

Keras casts every entry of `y_pred` to the loss dtype; the losses cast the
index entries back to int32 (exact below 2**24).
"""

import tensorflow as tf

from metrix_tf.mixing.pair_selection import select_mix_pairs

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
_INDEX_KEYS = (MIX_LABELS_A, MIX_LABELS_B, MIX_STRATEGY, ENTRY_ANCHOR, ENTRY_MIX)


def make_mixed_batch(labels, embeddings, mixed_embeddings, pairs, lam):
    """Assemble the mixed-batch dict from a `MixPairs` and the mixes."""
    num_mixes = tf.shape(pairs.source_a)[0]
    return {
        EMBEDDINGS: embeddings,
        MIXED_EMBEDDINGS: mixed_embeddings,
        MIX_LABELS_A: tf.gather(labels, pairs.source_a),
        MIX_LABELS_B: tf.gather(labels, pairs.source_b),
        MIX_LAMBDA: tf.fill([num_mixes], tf.cast(lam, mixed_embeddings.dtype)),
        MIX_STRATEGY: pairs.strategy,
        ENTRY_ANCHOR: pairs.entry_anchor,
        ENTRY_MIX: pairs.entry_mix,
    }


def mix_embeddings(labels, embeddings, metrix):
    """Metrix at the embedding level: mix the L2-normalised embeddings.

    Args:
        labels: int tensor of shape `(B,)`.
        embeddings: float tensor of shape `(B, D)` (normalised here).
        metrix: a `metrix_tf.Metrix`; its strategy chooses the pairs and
            `lam` is drawn (or fixed) once for the whole batch.

    Returns:
        A mixed-batch dict (see the module docstring) whose mixes are
        `lam * e_a + (1 - lam) * e_b` of the normalised embeddings (the
        losses normalise them again).
    """
    normalised = tf.math.l2_normalize(embeddings, axis=-1)
    lam = metrix.sample_lambda(normalised.dtype)
    pairs = select_mix_pairs(labels, *metrix.active_strategies())
    mixed = lam * tf.gather(normalised, pairs.source_a) + (1.0 - lam) * tf.gather(
        normalised, pairs.source_b
    )
    return make_mixed_batch(labels, embeddings, mixed, pairs, lam)


def standardize_mixed_batch(batch):
    """Check a mixed-batch dict and cast its index entries to int32."""
    missing = [k for k in KEYS if k not in batch]
    if missing:
        raise ValueError(
            "A mixed batch must be a dict with the keys "
            f"{KEYS}; missing {missing}. Received keys: {sorted(batch)}"
        )
    batch = dict(batch)
    for key in _INDEX_KEYS:
        value = tf.convert_to_tensor(batch[key])
        if value.dtype.is_floating:
            value = tf.cast(tf.round(value), tf.int32)
        batch[key] = tf.cast(value, tf.int32)
    return batch

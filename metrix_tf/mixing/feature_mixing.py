"""Metrix at the feature level: mix the backbone's feature maps."""

import keras

from metrix_tf.mixing.mixed_batch import embed_mixes
from metrix_tf.mixing.mixed_batch import make_mixed_batch
from metrix_tf.mixing.mixing_layer import MixingLayer
from metrix_tf.mixing.pair_selection import select_mix_pairs
from metrix_tf.ops.cross_replica import gather
from metrix_tf.ops.cross_replica import my_share


@keras.saving.register_keras_serializable(package="metrix_tf")
class FeatureMixing(MixingLayer):
    """Mixes feature maps of pairs of a batch (Metrix, feature level).

    The pairs are those of the embedding level (every positive-negative pair
    (p, n) scored for each anchor of p's class, and anchor-negative pairs for
    anchors without a positive), capped at `max_mixes` by a uniform random
    subset. The mixes then go through the pooling + embedding head only, so a
    step costs one backbone pass (the reference code makes three).

    Args:
        metrix: a `metrix_tf.Metrix` with `level="feature"`.
        max_mixes: int > 0 or None (the batch size): the most mixes per step.
        **kwargs: forwarded to `keras.layers.Layer`.

    Call arguments:
        inputs: float tensor `(B, H, W, C)` (or any `(B, ...)`) of features.
        labels: int tensor `(B,)`.
        training: bool; outside training there are no mixes.

    Returns:
        `(mixed, pairs, lam)`: mixed features `(V, H, W, C)`, a
        `metrix_tf.mixing.pair_selection.MixPairs` and the scalar `lam`.

    Example:

    ```python
    mixing = FeatureMixing(metrix_tf.Metrix(level="feature"))
    mixed, pairs, lam = mixing(feature_maps, labels, training=True)
    ```

    Reference:
        - [Venkataramanan et al., 2022](https://arxiv.org/abs/2106.04990)
    """

    level = "feature"

    def select(self, labels, embeddings, strategies):
        return select_mix_pairs(labels, *strategies)

    def mixed_batch(self, backbone, head, inputs, labels, training, clean=None):
        # One backbone pass; the mixed maps go through the head only.
        clean_backbone, clean_head = clean or (backbone, head)
        all_labels = gather(labels)
        features = clean_backbone(inputs, training=training)
        clean = clean_head(features)
        mixed, pairs, lam = self(gather(features), all_labels, training=training)
        mixed_embeddings = gather(embed_mixes(head, my_share(mixed), clean))
        return make_mixed_batch(all_labels, clean, mixed_embeddings, pairs, lam)

"""Metrix at the input level: mix preprocessed images."""

import keras
import tensorflow as tf

from metrix_tf.mixing.mixed_batch import embed_mixes
from metrix_tf.mixing.mixed_batch import make_mixed_batch
from metrix_tf.mixing.mixing_layer import MixingLayer
from metrix_tf.mixing.pair_selection import select_hardest_negative_pairs
from metrix_tf.ops.cross_replica import gather
from metrix_tf.ops.cross_replica import my_share
from metrix_tf.ops.normalization import l2_normalize


@keras.saving.register_keras_serializable(package="metrix_tf")
class InputMixing(MixingLayer):
    """Mixes images with their anchor's hardest negative (Metrix, input level).

    For each (anchor a, positive p) the image of p is mixed with a's hardest
    negative (the other-class example of highest clean similarity to a,
    computed correctly, unlike the reference code); an anchor with no positive
    is mixed with its hardest negative. At most `max_mixes` mixed images (a
    uniform random subset) go through the network.

    Args:
        metrix: a `metrix_tf.Metrix` with `level="input"`.
        max_mixes: int > 0 or None (the batch size): the most mixed images
            per step.
        **kwargs: forwarded to `keras.layers.Layer`.

    Call arguments:
        inputs: float tensor `(B, H, W, C)` of preprocessed images.
        labels: int tensor `(B,)`.
        embeddings: float tensor `(B, D)` of the clean embeddings, used (without
            gradient) to find the hardest negatives.
        training: bool; outside training there are no mixes.

    Returns:
        `(mixed, pairs, lam)`: mixed images `(V, H, W, C)`, a `MixPairs` and
        the scalar `lam`.

    Example:

    ```python
    mixing = InputMixing(metrix_tf.Metrix(level="input"))
    mixed, pairs, lam = mixing(images, labels, embeddings=clean, training=True)
    ```

    Reference:
        - [Venkataramanan et al., 2022](https://arxiv.org/abs/2106.04990)
    """

    level = "input"

    def select(self, labels, embeddings, strategies):
        if embeddings is None:
            raise ValueError(
                "InputMixing needs the clean `embeddings` of the batch to find "
                "each anchor's hardest negative. Received: embeddings=None"
            )
        normalised = l2_normalize(tf.cast(embeddings, tf.float32))
        similarity = tf.matmul(normalised, normalised, transpose_b=True)
        return select_hardest_negative_pairs(labels, similarity, *strategies)

    def mixed_batch(self, backbone, head, inputs, labels, training, clean=None):
        # A clean pass finds the hardest negatives; the mixed images (at
        # most `max_mixes`) go through the whole network.
        clean_backbone, clean_head = clean or (backbone, head)
        all_labels = gather(labels)
        clean = clean_head(clean_backbone(inputs, training=training))
        mixed, pairs, lam = self(
            gather(inputs), all_labels, embeddings=gather(clean), training=training
        )
        mixed_embeddings = embed_mixes(
            lambda mine: head(backbone(mine, training=training)), my_share(mixed), clean
        )
        return make_mixed_batch(all_labels, clean, gather(mixed_embeddings), pairs, lam)

"""Base class of the in-graph Metrix mixing layers."""

import keras
import tensorflow as tf

from metrix_tf.mixing.metrix import check_metrix
from metrix_tf.mixing.pair_selection import cap_mixes


class MixingLayer(keras.layers.Layer):
    """Mixes pairs of tensors of a batch during training (base class).

    Subclasses choose the pairs (`select`); this class draws `lam`, caps the
    number of mixes and forms `lam * x[source_a] + (1 - lam) * x[source_b]`.

    Args:
        metrix: a `metrix_tf.Metrix` whose `level` is the subclass's level.
        max_mixes: int > 0 or None: at most this many mixes per step (a
            uniform random subset); None: as many as the batch size.
        **kwargs: forwarded to `keras.layers.Layer`.
    """

    level = None

    def __init__(self, metrix, max_mixes=None, **kwargs):
        super().__init__(**kwargs)
        metrix = check_metrix(metrix)
        if metrix is None:
            raise TypeError(
                f"Argument `metrix` must be a `metrix_tf.Metrix`. Received: metrix={metrix!r}"
            )
        if metrix.level != self.level:
            raise ValueError(
                f"{type(self).__name__} mixes at the {self.level!r} level but "
                f"the Metrix says level={metrix.level!r}."
            )
        if max_mixes is not None and (
            isinstance(max_mixes, bool) or not isinstance(max_mixes, int) or max_mixes <= 0
        ):
            raise ValueError(
                "Argument `max_mixes` must be None or an int > 0. "
                f"Received: max_mixes={max_mixes!r}"
            )
        self.metrix = metrix
        self.max_mixes = max_mixes
        self.seed_generator = keras.random.SeedGenerator(metrix.seed)

    def select(self, labels, embeddings, strategies):
        """The `MixPairs` of this step (implemented by subclasses)."""
        raise NotImplementedError

    def mixed_batch(self, backbone, head, inputs, labels, training, clean=None):
        """The `MixedBatch` of a training step of `head(backbone(inputs))`.

        Pairs are drawn from the global batch under tf.distribute: the
        mixing runs on the gathered batch, each replica embeds its share of
        the mixes, and the mixed embeddings are gathered back (the loss
        gathers the clean ones). On one device these are all identities.
        Implemented by subclasses, each for its level.

        Args:
            backbone: callable, images to features.
            head: the `EmbeddingHead`, features to embeddings.
            inputs: this replica's images `(B, ...)`.
            labels: int32 `(B,)`.
            training: bool.
            clean: optional `(backbone, head)` for the clean batch (the same
                layers compiled by XLA, see `MetricModel.xla_compiled`: the
                clean batch's shape is fixed, the mixes' is not).
        """
        raise NotImplementedError

    def call(self, inputs, labels, embeddings=None, training=None):
        """Mix `inputs` for the pairs selected from `labels`.

        Returns:
            `(mixed, pairs, lam)`: the mixed tensors `(V, ...)`, the
            `MixPairs` (indices into the batch) and the scalar `lam`. Outside
            training there are no mixes (V = 0).
        """
        labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
        if not training:
            strategies = (False, False)
        else:
            strategies = self.metrix.active_strategies(self.seed_generator)
        pairs = self.select(labels, embeddings, strategies)
        max_mixes = self.max_mixes or tf.shape(labels)[0]
        pairs = cap_mixes(pairs, max_mixes, self.seed_generator)
        lam = self.metrix.sample_lambda(inputs.dtype, self.seed_generator)
        mixed = lam * tf.gather(inputs, pairs.source_a) + (1.0 - lam) * tf.gather(
            inputs, pairs.source_b
        )
        return mixed, pairs, lam

    def compute_output_spec(self, inputs, labels, embeddings=None, training=None):
        raise NotImplementedError(
            f"{type(self).__name__} has data-dependent output sizes: call it "
            "inside a subclassed model (see metrix_tf.models.EmbeddingModel), "
            "not on symbolic Keras inputs."
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "metrix": keras.saving.serialize_keras_object(self.metrix),
                "max_mixes": self.max_mixes,
            }
        )
        return config

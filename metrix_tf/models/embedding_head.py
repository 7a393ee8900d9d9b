"""The embedding head of the paper: GAP + GMP, Dense, L2 normalisation."""

import keras
import tensorflow as tf
from metrix_tf.ops.normalization import l2_normalize


@keras.saving.register_keras_serializable(package="metrix_tf")
class EmbeddingHead(keras.layers.Layer):
    """Pools feature maps and projects them to an L2-normalised embedding.

    Global average pooling plus global max pooling (summed), then a Dense
    projection to `embedding_dim`, then L2 normalisation, as the Metrix paper
    uses on top of ResNet-50. Feature vectors (rank 2) skip the pooling.

    Args:
        embedding_dim: int > 0, the size of the embedding.
        **kwargs: forwarded to `keras.layers.Layer`.

    Call arguments:
        inputs: float tensor `(batch_size, height, width, channels)` or
            `(batch_size, channels)`.

    Returns:
        A float tensor `(batch_size, embedding_dim)` of unit rows.

    Example:

    ```python
    head = EmbeddingHead(512)
    embeddings = head(resnet_features)  # (B, 7, 7, 2048) -> (B, 512)
    ```

    Reference:
        - [Venkataramanan et al., 2022](https://arxiv.org/abs/2106.04990)
    """

    def __init__(self, embedding_dim=512, **kwargs):
        super().__init__(**kwargs)
        if isinstance(embedding_dim, bool) or not isinstance(embedding_dim, int) or embedding_dim <= 0:
            raise ValueError(
                "Argument `embedding_dim` must be an int > 0. "
                f"Received: embedding_dim={embedding_dim!r}"
            )
        self.embedding_dim = embedding_dim
        self.projection = keras.layers.Dense(embedding_dim, name="projection")

    def build(self, input_shape):
        if len(input_shape) not in (2, 4):
            raise ValueError(
                "EmbeddingHead expects features of shape (batch, channels) or "
                f"(batch, height, width, channels). Received: input_shape={input_shape}"
            )
        self.projection.build((input_shape[0], input_shape[-1]))

    def call(self, inputs):
        if len(inputs.shape) == 4:
            inputs = tf.reduce_mean(inputs, axis=[1, 2]) + tf.reduce_max(inputs, axis=[1, 2])
        embeddings = self.projection(inputs)
        # Normalise in float32 even under a mixed-precision policy.
        return l2_normalize(tf.cast(embeddings, tf.float32))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.embedding_dim)

    def get_config(self):
        config = super().get_config()
        config["embedding_dim"] = self.embedding_dim
        return config

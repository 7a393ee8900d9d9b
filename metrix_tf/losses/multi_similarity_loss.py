"""Multi-similarity loss with its miner, and with Metrix soft labels."""

import keras
import tensorflow as tf

from metrix_tf.losses.metric_loss import MetricLoss
from metrix_tf.losses.metric_loss import check_float
from metrix_tf.losses.metric_loss import pairwise_loss
from metrix_tf.losses.reductions import log1p_sum_exp
from metrix_tf.losses.reductions import mean_over_scored_rows
from metrix_tf.ops.soft_label_similarity import pair_weights


def multi_similarity_miner(similarity, soft_labels, epsilon):
    """The multi-similarity miner's kept positives and negatives.

    pytorch-metric-learning 1.3.0 semantics, without gradient and with strict
    inequalities: positive p of anchor a is kept iff
    `s(a, p) - epsilon < max negative similarity of a`, negative n iff
    `s(a, n) + epsilon > min positive similarity of a`. An anchor with no
    positive keeps no negative and vice versa. Only hard labels are mined.

    Returns:
        `(keep_positive, keep_negative)`, bool tensors shaped like `similarity`.
    """
    similarity = tf.stop_gradient(similarity)
    is_positive = tf.equal(soft_labels, 1.0)
    is_negative = tf.equal(soft_labels, 0.0)
    inf = tf.constant(float("inf"), similarity.dtype)
    min_positive = tf.reduce_min(
        tf.where(is_positive, similarity, inf), axis=1, keepdims=True
    )
    max_negative = tf.reduce_max(
        tf.where(is_negative, similarity, -inf), axis=1, keepdims=True
    )
    keep_positive = tf.logical_and(is_positive, similarity - epsilon < max_negative)
    keep_negative = tf.logical_and(is_negative, similarity + epsilon > min_positive)
    return keep_positive, keep_negative


def multi_similarity_reduction(
    similarity, soft_labels, alpha=17.97, beta=75.66, base=0.77, epsilon=None
):
    """The multi-similarity loss of a soft-labelled similarity matrix.

    Per anchor row: `(1/alpha) ln(1 + sum y exp(-alpha (s - base)))
    + (1/beta) ln(1 + sum (1 - y) exp(beta (s - base)))`, averaged over the
    rows with at least one scored entry (all rows of a clean batch).

    Args:
        similarity: float tensor `(M, N)` of cosine similarities.
        soft_labels: float tensor `(M, N)` (`NOT_A_PAIR` for unscored entries).
        alpha: positive scale. beta: negative scale. base: similarity offset.
        epsilon: None (no mining, as for mixes), or the miner's margin.

    Returns:
        A scalar tensor.
    """
    positive, negative = pair_weights(soft_labels)
    if epsilon is not None:
        keep_positive, keep_negative = multi_similarity_miner(
            similarity, soft_labels, epsilon
        )
        positive = tf.where(keep_positive, positive, tf.zeros_like(positive))
        negative = tf.where(keep_negative, negative, tf.zeros_like(negative))
    pos = log1p_sum_exp(-alpha * (similarity - base), positive, axis=1) / alpha
    neg = log1p_sum_exp(beta * (similarity - base), negative, axis=1) / beta
    return mean_over_scored_rows(pos + neg, soft_labels)


def multi_similarity(
    labels,
    embeddings,
    alpha=17.97,
    beta=75.66,
    base=0.77,
    epsilon=0.39,
    metrix=None,
):
    """Multi-similarity loss of a batch, with optional Metrix.

    Clean part: the multi-similarity miner (margin `epsilon`) then the MS
    loss, mean over all anchors (pytorch-metric-learning 1.3.0). Mixed part
    (generic form, no miner): both the positive and the negative term are
    active for a mix, weighted by its soft label `y` and `1 - y`.

    Args:
        labels: int (or whole-number float) tensor of shape `(B,)` or `(B, 1)`.
        embeddings: float tensor of shape `(B, D)`, or a mixed-batch dict.
        alpha: float > 0, positive scale (paper: 17.97).
        beta: float > 0, negative scale (paper: 75.66).
        base: float, the similarity offset (paper: 0.77).
        epsilon: float >= 0, the miner's margin (paper: 0.39).
        metrix: a `metrix_tf.Metrix`, or None.

    Returns:
        A scalar tensor.
    """
    alpha = check_float("alpha", alpha, minimum=0.0, strict=True)
    beta = check_float("beta", beta, minimum=0.0, strict=True)
    base = check_float("base", base)
    epsilon = check_float("epsilon", epsilon, minimum=0.0)

    def clean(similarity, soft_labels):
        return multi_similarity_reduction(
            similarity, soft_labels, alpha, beta, base, epsilon
        )

    def mixed(similarity, soft_labels):
        return multi_similarity_reduction(similarity, soft_labels, alpha, beta, base)

    return pairwise_loss(labels, embeddings, metrix, clean, mixed)


@keras.saving.register_keras_serializable(package="metrix_tf")
class MultiSimilarityLoss(MetricLoss):
    """Multi-similarity loss (with its miner) and Metrix.

    Args:
        alpha: float > 0, positive scale. Defaults to 17.97 (the paper's).
        beta: float > 0, negative scale. Defaults to 75.66.
        base: float, similarity offset. Defaults to 0.77.
        epsilon: float >= 0, margin of the multi-similarity miner. Defaults
            to 0.39.
        metrix: a `metrix_tf.Metrix`, or None for the clean loss.
        name: optional name of the loss instance.
        reduction, dtype: as for any Keras loss.

    Call arguments:
        y_true: class ids, shape `(batch_size,)` or `(batch_size, 1)`.
        y_pred: embeddings of shape `(batch_size, dim)` (normalised inside),
            or a mixed-batch dict from a mixing layer.

    Example:

    ```python
    loss = metrix_tf.losses.MultiSimilarityLoss(
        metrix=metrix_tf.Metrix(level="embedding"))
    model.compile(optimizer="adam", loss=loss)
    ```

    Reference:
        - [Wang et al., 2019](https://arxiv.org/abs/1904.06627)
        - [Venkataramanan et al., 2022](https://arxiv.org/abs/2106.04990)
    """

    def __init__(
        self,
        alpha=17.97,
        beta=75.66,
        base=0.77,
        epsilon=0.39,
        metrix=None,
        name="multi_similarity_loss",
        reduction="sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(metrix=metrix, name=name, reduction=reduction, dtype=dtype)
        self.alpha = check_float("alpha", alpha, minimum=0.0, strict=True)
        self.beta = check_float("beta", beta, minimum=0.0, strict=True)
        self.base = check_float("base", base)
        self.epsilon = check_float("epsilon", epsilon, minimum=0.0)

    def call(self, y_true, y_pred):
        return multi_similarity(
            y_true,
            y_pred,
            self.alpha,
            self.beta,
            self.base,
            self.epsilon,
            metrix=self.metrix,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "alpha": self.alpha,
                "beta": self.beta,
                "base": self.base,
                "epsilon": self.epsilon,
            }
        )
        return config

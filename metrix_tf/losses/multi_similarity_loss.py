"""Multi-similarity loss with its miner, and with Metrix soft labels."""

import keras
import tensorflow as tf

from metrix_tf.losses.metric_loss import MetricLoss
from metrix_tf.losses.metric_loss import PairScoring
from metrix_tf.losses.metric_loss import check_float
from metrix_tf.losses.metric_loss import pairwise_loss
from metrix_tf.ops.pair_reductions import exp_reductions_from_similarity
from metrix_tf.ops.pair_reductions import soft_label_exp_reductions


class MultiSimilarityScoring(PairScoring):
    """Multi-similarity statistics (with the miner on clean pairs).

    Per anchor row: `(1/alpha) ln(1 + sum y exp(-alpha (s - base)))
    + (1/beta) ln(1 + sum (1 - y) exp(beta (s - base)))`. Clean pairs are
    mined first (pytorch-metric-learning 1.3.0: without gradient, strict
    inequalities, a positive kept iff `s - epsilon < max negative s` of its
    anchor, a negative iff `s + epsilon > min positive s`) and averaged over
    all anchors; mixes are not mined and are averaged over the anchors with
    at least one scored mix.
    """

    def __init__(self, alpha, beta, base, epsilon):
        self.alpha = check_float("alpha", alpha, minimum=0.0, strict=True)
        self.beta = check_float("beta", beta, minimum=0.0, strict=True)
        self.base = check_float("base", base)
        self.epsilon = check_float("epsilon", epsilon, minimum=0.0)

    def _arguments(self, mined):
        return (self.alpha, self.base, self.beta, self.base, self.epsilon if mined else None)

    def from_similarity(self, similarity, soft_labels, mined):
        return exp_reductions_from_similarity(similarity, soft_labels, *self._arguments(mined))

    def fused(self, anchors, anchor_labels, candidates, labels_a, labels_b, lam, mined, exclude_self):
        return soft_label_exp_reductions(
            anchors, anchor_labels, candidates, labels_a, labels_b, lam,
            *self._arguments(mined), exclude_self=exclude_self,
        )

    def ratios(self, stats, mined):
        rows = stats.lse_pos / self.alpha + stats.lse_neg / self.beta
        dtype = rows.dtype
        if mined:  # the mean runs over every anchor of the batch
            return [(tf.reduce_sum(rows), tf.cast(tf.size(rows), dtype))]
        scored = stats.pos_count + stats.neg_count > 0
        return [
            (
                tf.reduce_sum(tf.where(scored, rows, tf.zeros_like(rows))),
                tf.reduce_sum(tf.cast(scored, dtype)),
            )
        ]


def multi_similarity(
    labels,
    embeddings,
    alpha=17.97,
    beta=75.66,
    base=0.77,
    epsilon=0.39,
    metrix=None,
    fused=None,
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
        fused: True / False / None (by size): the fused reductions.

    Returns:
        A scalar tensor.
    """

    scoring = MultiSimilarityScoring(alpha, beta, base, epsilon)
    return pairwise_loss(labels, embeddings, metrix, scoring, fused)


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
        fused: None (by size), True or False: score with the fused, low-memory
            reductions of the compiled op.
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
        fused=None,
        name="multi_similarity_loss",
        reduction="sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(
            metrix=metrix, fused=fused, name=name, reduction=reduction, dtype=dtype
        )
        checked = MultiSimilarityScoring(alpha, beta, base, epsilon)
        self.alpha, self.beta = checked.alpha, checked.beta
        self.base, self.epsilon = checked.base, checked.epsilon

    def call(self, y_true, y_pred):
        return multi_similarity(
            y_true,
            y_pred,
            self.alpha,
            self.beta,
            self.base,
            self.epsilon,
            metrix=self.metrix,
            fused=self.fused,
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

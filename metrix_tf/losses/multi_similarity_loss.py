"""Multi-similarity loss with its miner, and with Metrix soft labels."""

import tensorflow as tf

from metrix_tf.losses.loss_declaration import HyperParameter
from metrix_tf.losses.loss_declaration import LossDeclaration
from metrix_tf.losses.loss_declaration import define_loss
from metrix_tf.ops.pair_reductions import exp_reductions_from_similarity
from metrix_tf.ops.pair_reductions import soft_label_exp_reductions

__all__ = ["multi_similarity", "MultiSimilarityLoss"]


class MultiSimilarity(LossDeclaration):
    """Multi-similarity loss (with its miner) and Metrix.

    Per anchor: `(1/alpha) ln(1 + sum y exp(-alpha (s - base))) + (1/beta)
    ln(1 + sum (1 - y) exp(beta (s - base)))`. Clean part: the
    multi-similarity miner first (pytorch-metric-learning 1.3.0: without
    gradient, strict inequalities, a positive kept iff `s - epsilon < max
    negative s` of its anchor, a negative iff `s + epsilon > min positive
    s`), then the mean over all anchors. Mixed part (generic form, no miner):
    both terms are active for a mix, weighted by its soft label `y` and
    `1 - y`, averaged over the anchors with at least one scored mix.
    """

    name = "multi_similarity"
    class_name = "MultiSimilarityLoss"
    hyper_parameters = (
        HyperParameter("alpha", 17.97, "float > 0, positive scale (the paper's).", minimum=0.0, strict=True),
        HyperParameter("beta", 75.66, "float > 0, negative scale.", minimum=0.0, strict=True),
        HyperParameter("base", 0.77, "float, the similarity offset."),
        HyperParameter("epsilon", 0.39, "float >= 0, margin of the multi-similarity miner.", minimum=0.0),
    )
    references = (
        ("Wang et al., 2019", "https://arxiv.org/abs/1904.06627"),
    )

    def _arguments(self, clean):
        return (self.alpha, self.base, self.beta, self.base, self.epsilon if clean else None)

    def row_statistics(self, similarity, soft_labels, clean):
        return exp_reductions_from_similarity(similarity, soft_labels, *self._arguments(clean))

    def fused(self, anchors, anchor_labels, candidates, labels_a, labels_b, lam, clean, exclude_self):
        return soft_label_exp_reductions(
            anchors, anchor_labels, candidates, labels_a, labels_b, lam,
            *self._arguments(clean), exclude_self=exclude_self,
        )

    def ratios(self, statistics, clean):
        rows = statistics.lse_pos / self.alpha + statistics.lse_neg / self.beta
        dtype = rows.dtype
        if clean:  # the mean runs over every anchor of the batch
            return [(tf.reduce_sum(rows), tf.cast(tf.size(rows), dtype))]
        scored = statistics.pos_count + statistics.neg_count > 0
        return [
            (
                tf.reduce_sum(tf.where(scored, rows, tf.zeros_like(rows))),
                tf.reduce_sum(tf.cast(scored, dtype)),
            )
        ]


multi_similarity, MultiSimilarityLoss = define_loss(MultiSimilarity)

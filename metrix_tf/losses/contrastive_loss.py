"""Contrastive loss (distance form) with Metrix soft labels."""

import tensorflow as tf

from metrix_tf.losses.loss_declaration import HyperParameter
from metrix_tf.losses.loss_declaration import LossDeclaration
from metrix_tf.losses.loss_declaration import define_loss
from metrix_tf.ops.pair_reductions import contrastive_reductions_from_similarity
from metrix_tf.ops.pair_reductions import soft_label_contrastive_reductions

__all__ = ["contrastive", "ContrastiveLoss"]


class Contrastive(LossDeclaration):
    """Contrastive loss with Metrix (mixup for deep metric learning).

    Pulls positives to within `pos_margin` and pushes negatives beyond
    `neg_margin` (Euclidean distance `d = sqrt(2 - 2 s)` of L2-normalised
    embeddings): the loss is `average_non_zero(y relu(d - pos_margin)) +
    average_non_zero((1 - y) relu(neg_margin - d))` over the scored entries,
    where "average non-zero" is the sum of the strictly positive terms over
    their count, 0 if none. Clean part: all ordered pairs a != b, as
    pytorch-metric-learning 1.3.0; with `metrix`, the mixed part `weight *
    (mixed_pos + mixed_neg)` with the mix's soft label `y` relative to the
    anchor (METRIX.md sections 2-4).
    """

    name = "contrastive"
    class_name = "ContrastiveLoss"
    hyper_parameters = (
        HyperParameter("pos_margin", 0.0, "float >= 0: positives are penalised beyond it.", minimum=0.0),
        HyperParameter("neg_margin", 0.5, "float >= 0: negatives are penalised within it.", minimum=0.0),
    )
    references = (
        ("Hadsell et al., 2006", "http://yann.lecun.com/exdb/publis/pdf/hadsell-chopra-lecun-06.pdf"),
    )

    def row_statistics(self, similarity, soft_labels, clean):
        return contrastive_reductions_from_similarity(
            similarity, soft_labels, self.pos_margin, self.neg_margin
        )

    def fused(self, anchors, anchor_labels, candidates, labels_a, labels_b, lam, clean, exclude_self):
        return soft_label_contrastive_reductions(
            anchors, anchor_labels, candidates, labels_a, labels_b, lam,
            self.pos_margin, self.neg_margin, exclude_self=exclude_self,
        )

    def ratios(self, statistics, clean):
        return [
            (tf.reduce_sum(statistics.pos_sum), tf.reduce_sum(statistics.pos_count)),
            (tf.reduce_sum(statistics.neg_sum), tf.reduce_sum(statistics.neg_count)),
        ]


contrastive, ContrastiveLoss = define_loss(Contrastive)

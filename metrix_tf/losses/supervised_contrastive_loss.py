"""Supervised contrastive loss, with Metrix soft labels."""

import tensorflow as tf

from metrix_tf.losses.loss_declaration import HyperParameter
from metrix_tf.losses.loss_declaration import LossDeclaration
from metrix_tf.losses.loss_declaration import average_non_zero
from metrix_tf.losses.loss_declaration import define_loss
from metrix_tf.ops import pair_weights
from metrix_tf.ops import weighted_log_sum_exp
from metrix_tf.ops.cross_replica import sum_over_replicas

__all__ = ["supervised_contrastive", "SupervisedContrastiveLoss"]


class SupervisedContrastive(LossDeclaration):
    """Supervised contrastive loss with Metrix (mixup for deep metric learning).

    For an anchor a with scored candidates j (cosine similarity `s_j`, soft
    label `y_j`), `l(a) = -sum_j y_j log p_j / sum_j y_j` where `p_j =
    exp(s_j / t) / sum_k exp(s_k / t)` over all its candidates: the mean
    log-probability of its positives (pytorch-metric-learning 1.3.0's
    `SupConLoss`; with soft labels the positive weights of a candidate are
    its `y`, the natural mixup form). The loss is the average of the
    non-zero `l(a)`; anchors without a positive add nothing, and a clean
    batch without any positive or any negative pair gives 0, as PML's.
    """

    name = "supervised_contrastive"
    class_name = "SupervisedContrastiveLoss"
    hyper_parameters = (
        HyperParameter("temperature", 0.1, "float > 0, the softmax temperature t.", minimum=0.0, strict=True),
    )
    references = (
        ("Khosla et al., 2020", "https://arxiv.org/abs/2004.11362"),
    )

    def row_statistics(self, similarity, soft_labels, clean):
        logits = similarity / tf.constant(self.temperature, similarity.dtype)
        positive, negative = pair_weights(soft_labels)
        scored = tf.cast(soft_labels >= 0.0, logits.dtype)
        positives = tf.reduce_sum(positive, axis=1)
        mean_positive_logit = tf.math.divide_no_nan(
            tf.reduce_sum(positive * logits, axis=1), positives
        )
        losses = tf.where(
            positives > 0.0,
            weighted_log_sum_exp(scored, logits) - mean_positive_logit,
            0.0,
        )
        pairs = tf.stack(
            [tf.reduce_sum(tf.cast(positive > 0.0, logits.dtype)),
             tf.reduce_sum(tf.cast(negative > 0.0, logits.dtype))]
        )
        return losses, pairs

    def ratios(self, statistics, clean):
        losses, pairs = statistics
        total, count = average_non_zero(losses)
        if clean:  # PML: 0 for a batch without positive or negative pairs
            both = tf.reduce_all(sum_over_replicas(pairs) > 0.0)
            total = tf.where(both, total, tf.zeros_like(total))
            count = tf.where(both, count, tf.zeros_like(count))
        return [(total, count)]


supervised_contrastive, SupervisedContrastiveLoss = define_loss(SupervisedContrastive)

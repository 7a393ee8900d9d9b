"""Circle loss, with Metrix soft labels."""

import tensorflow as tf

from metrix_tf.losses.loss_declaration import HyperParameter
from metrix_tf.losses.loss_declaration import LossDeclaration
from metrix_tf.losses.loss_declaration import average_non_zero
from metrix_tf.losses.loss_declaration import define_loss
from metrix_tf.ops import pair_weights
from metrix_tf.ops import weighted_log_sum_exp

__all__ = ["circle", "CircleLoss"]


class Circle(LossDeclaration):
    """Circle loss (pair-wise labels) with Metrix.

    For an anchor with candidates of cosine similarity `s` and soft label
    `y`: `l(a) = softplus(log sum y exp(-gamma a+ (s - (1 - margin))) + log
    sum (1 - y) exp(gamma a- (s - margin)))`, with the self-paced weights
    `a+ = relu(1 + margin - s)` and `a- = relu(s + margin)` taken as
    constants (no gradient), as in pytorch-metric-learning 1.3.0's
    `CircleLoss`; anchors without a positive or a negative give 0, and the
    loss is the average of the non-zero `l(a)`. Its value equals Keras'
    `keras.losses.Circle` (which also lets the gradient through the weights).
    """

    name = "circle"
    class_name = "CircleLoss"
    hyper_parameters = (
        HyperParameter("margin", 0.4, "float >= 0, the relaxation m of the decision boundary.", minimum=0.0),
        HyperParameter("gamma", 80.0, "float > 0, the scale of the similarities.", minimum=0.0, strict=True),
    )
    references = (
        ("Sun et al., 2020", "https://arxiv.org/abs/2002.10857"),
    )

    def row_statistics(self, similarity, soft_labels, clean):
        dtype = similarity.dtype
        margin = tf.constant(self.margin, dtype)
        gamma = tf.constant(self.gamma, dtype)
        positive, negative = pair_weights(soft_labels)
        fixed = tf.stop_gradient(similarity)
        positive_logits = -gamma * tf.nn.relu(1.0 + margin - fixed) * (similarity - (1.0 - margin))
        negative_logits = gamma * tf.nn.relu(fixed + margin) * (similarity - margin)
        has_both = tf.logical_and(
            tf.reduce_any(positive > 0.0, axis=1), tf.reduce_any(negative > 0.0, axis=1)
        )
        logit = weighted_log_sum_exp(positive, positive_logits) + weighted_log_sum_exp(
            negative, negative_logits
        )
        return tf.where(has_both, tf.nn.softplus(logit), 0.0)

    def ratios(self, statistics, clean):
        return [average_non_zero(statistics)]


circle, CircleLoss = define_loss(Circle)

"""Contrastive loss (distance form) with Metrix soft labels."""

import keras
import tensorflow as tf

from metrix_tf.losses.metric_loss import MetricLoss
from metrix_tf.losses.metric_loss import check_float
from metrix_tf.losses.metric_loss import pairwise_loss
from metrix_tf.losses.reductions import average_non_zero
from metrix_tf.losses.reductions import distance_from_similarity
from metrix_tf.ops.soft_label_similarity import pair_weights


def contrastive_reduction(similarity, soft_labels, pos_margin=0.0, neg_margin=0.5):
    """The contrastive loss of a soft-labelled similarity matrix.

    With `d = sqrt(2 - 2 s)`: `average_non_zero(y * relu(d - pos_margin))
    + average_non_zero((1 - y) * relu(neg_margin - d))` over all scored
    entries (METRIX.md sections 2-4).

    Args:
        similarity: float tensor `(M, N)` of cosine similarities.
        soft_labels: float tensor `(M, N)` of soft labels (`NOT_A_PAIR` for
            unscored entries).
        pos_margin: float, distance below which positives cost nothing.
        neg_margin: float, distance above which negatives cost nothing.

    Returns:
        A scalar tensor.
    """
    positive, negative = pair_weights(soft_labels)
    distance = distance_from_similarity(similarity)
    pos = average_non_zero(positive * tf.nn.relu(distance - pos_margin))
    neg = average_non_zero(negative * tf.nn.relu(neg_margin - distance))
    return pos + neg


def contrastive(labels, embeddings, pos_margin=0.0, neg_margin=0.5, metrix=None):
    """Contrastive loss of a batch, with optional Metrix.

    Clean part (pytorch-metric-learning 1.3.0 semantics): over all ordered
    pairs a != b of L2-normalised embeddings, positives give
    `relu(d - pos_margin)`, negatives `relu(neg_margin - d)`, each averaged
    over its non-zero entries, then summed. With Metrix the mixed part
    `weight * (mixed_pos + mixed_neg)` is added, `y` being the mix's soft
    label relative to the anchor.

    Args:
        labels: int (or whole-number float) tensor of shape `(B,)` or `(B, 1)`.
        embeddings: float tensor of shape `(B, D)`, or a mixed-batch dict from
            a mixing layer (see `metrix_tf.mixing.mixed_batch`).
        pos_margin: float >= 0.
        neg_margin: float >= 0.
        metrix: a `metrix_tf.Metrix`, or None.

    Returns:
        A scalar tensor.
    """
    pos_margin = check_float("pos_margin", pos_margin, minimum=0.0)
    neg_margin = check_float("neg_margin", neg_margin, minimum=0.0)

    def reduce(similarity, soft_labels):
        return contrastive_reduction(similarity, soft_labels, pos_margin, neg_margin)

    return pairwise_loss(labels, embeddings, metrix, reduce, reduce)


@keras.saving.register_keras_serializable(package="metrix_tf")
class ContrastiveLoss(MetricLoss):
    """Contrastive loss with Metrix (mixup for deep metric learning).

    Pulls positives to within `pos_margin` and pushes negatives beyond
    `neg_margin` (Euclidean distance of L2-normalised embeddings); each part
    is averaged over its non-zero pairs, as pytorch-metric-learning 1.3.0
    does. With `metrix`, mixed examples add `weight * (mixed_pos +
    mixed_neg)` with soft labels.

    Args:
        pos_margin: float >= 0. Defaults to 0.
        neg_margin: float >= 0. Defaults to 0.5.
        metrix: a `metrix_tf.Metrix`, or None for the clean loss.
        name: optional name of the loss instance.
        reduction, dtype: as for any Keras loss.

    Call arguments:
        y_true: class ids, shape `(batch_size,)` or `(batch_size, 1)`.
        y_pred: embeddings of shape `(batch_size, dim)` (normalised inside),
            or a mixed-batch dict from a mixing layer.

    Example:

    ```python
    loss = metrix_tf.losses.ContrastiveLoss(
        metrix=metrix_tf.Metrix(level="embedding"))
    model.compile(optimizer="adam", loss=loss)
    ```

    Reference:
        - [Hadsell et al., 2006](http://yann.lecun.com/exdb/publis/pdf/hadsell-chopra-lecun-06.pdf)
        - [Venkataramanan et al., 2022](https://arxiv.org/abs/2106.04990)
    """

    def __init__(
        self,
        pos_margin=0.0,
        neg_margin=0.5,
        metrix=None,
        name="contrastive_loss",
        reduction="sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(metrix=metrix, name=name, reduction=reduction, dtype=dtype)
        self.pos_margin = check_float("pos_margin", pos_margin, minimum=0.0)
        self.neg_margin = check_float("neg_margin", neg_margin, minimum=0.0)

    def call(self, y_true, y_pred):
        return contrastive(
            y_true, y_pred, self.pos_margin, self.neg_margin, metrix=self.metrix
        )

    def get_config(self):
        config = super().get_config()
        config.update({"pos_margin": self.pos_margin, "neg_margin": self.neg_margin})
        return config

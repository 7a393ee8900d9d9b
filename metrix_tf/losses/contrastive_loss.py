"""Contrastive loss (distance form) with Metrix soft labels."""

import keras
import tensorflow as tf

from metrix_tf.losses.metric_loss import MetricLoss
from metrix_tf.losses.metric_loss import PairScoring
from metrix_tf.losses.metric_loss import check_float
from metrix_tf.losses.metric_loss import pairwise_loss
from metrix_tf.ops.pair_reductions import contrastive_reductions_from_similarity
from metrix_tf.ops.pair_reductions import soft_label_contrastive_reductions


class ContrastiveScoring(PairScoring):
    """Contrastive loss statistics: hinge sums and their non-zero counts.

    With `d = sqrt(2 - 2 s)`, the loss is `average_non_zero(y * relu(d -
    pos_margin)) + average_non_zero((1 - y) * relu(neg_margin - d))` over
    all scored entries (METRIX.md sections 2-4); "average non-zero" is the
    sum of the strictly positive terms over their count, 0 if none.
    """

    def __init__(self, pos_margin, neg_margin):
        self.pos_margin = check_float("pos_margin", pos_margin, minimum=0.0)
        self.neg_margin = check_float("neg_margin", neg_margin, minimum=0.0)

    def from_similarity(self, similarity, soft_labels, mined):
        return contrastive_reductions_from_similarity(
            similarity, soft_labels, self.pos_margin, self.neg_margin
        )

    def fused(self, anchors, anchor_labels, candidates, labels_a, labels_b, lam, mined, exclude_self):
        return soft_label_contrastive_reductions(
            anchors, anchor_labels, candidates, labels_a, labels_b, lam,
            self.pos_margin, self.neg_margin, exclude_self=exclude_self,
        )

    def ratios(self, stats, mined):
        return [
            (tf.reduce_sum(stats.pos_sum), tf.reduce_sum(stats.pos_count)),
            (tf.reduce_sum(stats.neg_sum), tf.reduce_sum(stats.neg_count)),
        ]


def contrastive(
    labels, embeddings, pos_margin=0.0, neg_margin=0.5, metrix=None, fused=None
):
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
        fused: True to use the fused reductions (no `(B, B)` matrices), False
            not to, None to decide by size (see `FUSED_MIN_ENTRIES`).

    Returns:
        A scalar tensor.
    """

    return pairwise_loss(
        labels, embeddings, metrix, ContrastiveScoring(pos_margin, neg_margin), fused
    )


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
        fused=None,
        name="contrastive_loss",
        reduction="sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(
            metrix=metrix, fused=fused, name=name, reduction=reduction, dtype=dtype
        )
        checked = ContrastiveScoring(pos_margin, neg_margin)
        self.pos_margin = checked.pos_margin
        self.neg_margin = checked.neg_margin

    def call(self, y_true, y_pred):
        return contrastive(
            y_true, y_pred, self.pos_margin, self.neg_margin, metrix=self.metrix,
            fused=self.fused,
        )

    def get_config(self):
        config = super().get_config()
        config.update({"pos_margin": self.pos_margin, "neg_margin": self.neg_margin})
        return config

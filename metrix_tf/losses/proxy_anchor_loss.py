"""Proxy anchor loss with trainable proxies, and with Metrix soft labels."""

import math

import keras
import tensorflow as tf

from metrix_tf.losses.metric_loss import MetricLoss
from metrix_tf.losses.metric_loss import PairScoring
from metrix_tf.losses.metric_loss import check_float
from metrix_tf.losses.metric_loss import combine_ratios
from metrix_tf.losses.metric_loss import mixed_ratios
from metrix_tf.losses.metric_loss import score_block
from metrix_tf.losses.metric_loss import standardize_embeddings
from metrix_tf.losses.metric_loss import standardize_labels
from metrix_tf.losses.metric_loss import unpack_predictions
from metrix_tf.mixing import mixed_batch as mb
from metrix_tf.mixing.mixed_batch import mix_embeddings
from metrix_tf.ops.cross_replica import gather
from metrix_tf.ops.pair_reductions import exp_reductions_from_similarity
from metrix_tf.ops.pair_reductions import soft_label_exp_reductions


class ProxyAnchorScoring(PairScoring):
    """Proxy anchor statistics: rows are the C proxies, columns candidates.

    `(1/|C+|) sum_{c in C+} ln(1 + sum y exp(-alpha (s - margin)))
    + (1/C) sum_c ln(1 + sum (1 - y) exp(alpha (s + margin)))`, where C+
    are the proxies with some entry y > 0.
    """

    def __init__(self, margin, alpha):
        self.margin = check_float("margin", margin, minimum=0.0)
        self.alpha = check_float("alpha", alpha, minimum=0.0, strict=True)

    def _scales(self):
        return self.alpha, self.margin, self.alpha, -self.margin

    def from_similarity(self, similarity, soft_labels, mined):
        return exp_reductions_from_similarity(similarity, soft_labels, *self._scales())

    def fused(self, anchors, anchor_labels, candidates, labels_a, labels_b, lam, mined, exclude_self):
        return soft_label_exp_reductions(
            anchors, anchor_labels, candidates, labels_a, labels_b, lam,
            *self._scales(), exclude_self=exclude_self,
        )

    def ratios(self, stats, mined):
        with_positives = stats.pos_count > 0
        dtype = stats.lse_pos.dtype
        return [
            (
                tf.reduce_sum(tf.where(with_positives, stats.lse_pos, tf.zeros_like(stats.lse_pos))),
                tf.reduce_sum(tf.cast(with_positives, dtype)),
            ),
            (tf.reduce_sum(stats.lse_neg), tf.cast(tf.size(stats.lse_neg), dtype)),
        ]


def proxy_anchor(
    labels, embeddings, proxies, margin=0.1, alpha=32.0, metrix=None, fused=None
):
    """Proxy anchor loss of a batch, with optional Metrix.

    Each class proxy is an anchor; every example is a positive of its class's
    proxy and a negative of all others (pytorch-metric-learning 1.3.0: the
    positive part is averaged over the proxies with positives in the batch,
    the negative part over all C proxies). With Metrix every mix is scored
    against the proxies with its soft label (per-anchor scoring: only against
    the proxy of its first label).

    Args:
        labels: int (or whole-number float) tensor of shape `(B,)` or `(B, 1)`
            with values in `[0, C)`.
        embeddings: float tensor of shape `(B, D)`, or a mixed-batch dict.
        proxies: float tensor (or variable) of shape `(C, D)`, normalised
            inside.
        margin: float >= 0. Defaults to 0.1.
        alpha: float > 0, the scale. Defaults to 32.
        metrix: a `metrix_tf.Metrix`, or None.
        fused: True / False / None (by size): the fused reductions.

    Returns:
        A scalar tensor.
    """
    scoring = ProxyAnchorScoring(margin, alpha)
    labels = standardize_labels(labels)
    embeddings, mixed, mix_in_loss = unpack_predictions(labels, embeddings, metrix)
    proxies = tf.cast(standardize_embeddings(proxies, "proxies"), embeddings.dtype)
    if (
        proxies.shape[1] is not None
        and embeddings.shape[1] is not None
        and proxies.shape[1] != embeddings.shape[1]
    ):
        raise ValueError(
            "`proxies` and `embeddings` must have the same dimension. Received: "
            f"proxies.shape={proxies.shape}, embeddings.shape={embeddings.shape}"
        )
    num_classes = tf.shape(proxies)[0]
    tf.debugging.assert_non_negative(
        labels, message="proxy anchor `labels` must be in [0, num_classes)"
    )
    tf.debugging.assert_less(
        labels, num_classes, message="proxy anchor `labels` must be in [0, num_classes)"
    )
    proxies = tf.math.l2_normalize(proxies, axis=-1)
    # Every replica scores all proxies against the global batch; the
    # denominators, summed over replicas, give each its share.
    everyone = gather(tf.math.l2_normalize(embeddings, axis=-1))
    all_labels = gather(labels)
    class_ids = tf.range(num_classes)
    ones = tf.ones([tf.shape(all_labels)[0]], everyone.dtype)
    stats = score_block(
        scoring, proxies, class_ids, everyone, all_labels, all_labels, ones, fused=fused
    )
    ratios = scoring.ratios(stats, mined=False)
    if mix_in_loss:
        mixed = mix_embeddings(all_labels, everyone, metrix)
    if mixed is not None:

        def per_anchor_mask():
            return tf.equal(class_ids[:, None], mixed[mb.MIX_LABELS_A][None, :])

        ratios += mixed_ratios(
            scoring, proxies, class_ids, mixed, metrix, per_anchor_mask, fused
        )
    return combine_ratios(ratios)


@keras.saving.register_keras_serializable(package="metrix_tf")
class ProxyAnchorLoss(MetricLoss):
    """Proxy anchor loss with trainable proxies, and Metrix.

    The loss owns a `(num_classes, embedding_dim)` table of trainable proxies
    (`loss.proxies`). Keras does not look for variables inside a loss: compile
    a `metrix_tf.models.MetricModel` (a drop-in `keras.Model` that adopts the
    variables of its losses) so that `model.fit` trains the proxies and
    `model.save` / checkpoints keep them.

    Args:
        num_classes: int > 0, the number of training classes (labels must lie
            in `[0, num_classes)`).
        embedding_dim: int > 0, the embedding size.
        margin: float >= 0. Defaults to 0.1.
        alpha: float > 0, the scale. Defaults to 32.
        metrix: a `metrix_tf.Metrix`, or None for the clean loss.
        proxy_initializer: initializer of the proxies; defaults to a normal
            distribution with std `sqrt(2 / num_classes)` (Kaiming, fan-out,
            as the reference code).
        proxy_lr_multiplier: float > 0: train the proxies this many times
            faster than the network (the reference uses 100). The loss only
            sees normalised proxies, and an Adam-type optimizer moves every
            coordinate by about the learning rate whatever the gradient's
            scale, so storing the proxies scaled by `1 / proxy_lr_multiplier`
            turns the same step into a `proxy_lr_multiplier` times larger
            rotation: exactly a learning-rate multiplier for Adam (up to its
            epsilon), with no second optimizer.
        fused: None (by size), True or False: score with the fused, low-memory
            reductions of the compiled op.
        name: optional name of the loss instance.
        reduction, dtype: as for any Keras loss.

    Call arguments:
        y_true: class ids, shape `(batch_size,)` or `(batch_size, 1)`.
        y_pred: embeddings of shape `(batch_size, embedding_dim)` (normalised
            inside), or a mixed-batch dict from a mixing layer.

    Example:

    ```python
    loss = metrix_tf.losses.ProxyAnchorLoss(num_classes=100, embedding_dim=512)
    model = metrix_tf.models.MetricModel(inputs, embeddings)
    model.compile(optimizer="adam", loss=loss)
    model.fit(dataset)  # trains the network and the proxies
    ```

    Reference:
        - [Kim et al., 2020](https://arxiv.org/abs/2003.13911)
        - [Venkataramanan et al., 2022](https://arxiv.org/abs/2106.04990)
    """

    def __init__(
        self,
        num_classes,
        embedding_dim,
        margin=0.1,
        alpha=32.0,
        metrix=None,
        proxy_initializer=None,
        proxy_lr_multiplier=1.0,
        fused=None,
        name="proxy_anchor_loss",
        reduction="sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(
            metrix=metrix, fused=fused, name=name, reduction=reduction, dtype=dtype
        )
        for arg, value in (("num_classes", num_classes), ("embedding_dim", embedding_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(
                    f"Argument `{arg}` must be an int > 0. Received: {arg}={value!r}"
                )
        self.num_classes = num_classes
        self.embedding_dim = embedding_dim
        checked = ProxyAnchorScoring(margin, alpha)
        self.margin, self.alpha = checked.margin, checked.alpha
        if proxy_initializer is None:
            proxy_initializer = keras.initializers.RandomNormal(
                stddev=math.sqrt(2.0 / num_classes)
            )
        self.proxy_initializer = keras.initializers.get(proxy_initializer)
        self.proxy_lr_multiplier = check_float(
            "proxy_lr_multiplier", proxy_lr_multiplier, minimum=0.0, strict=True
        )
        self.proxies = keras.Variable(
            self.proxy_initializer((num_classes, embedding_dim))
            / self.proxy_lr_multiplier,
            name="proxies",
            dtype="float32",
        )

    @property
    def variables(self):
        """The loss's own variables (the proxies)."""
        return [self.proxies]

    def call(self, y_true, y_pred):
        return proxy_anchor(
            y_true,
            y_pred,
            self.proxies,
            self.margin,
            self.alpha,
            metrix=self.metrix,
            fused=self.fused,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "embedding_dim": self.embedding_dim,
                "margin": self.margin,
                "alpha": self.alpha,
                "proxy_initializer": keras.initializers.serialize(
                    self.proxy_initializer
                ),
                "proxy_lr_multiplier": self.proxy_lr_multiplier,
            }
        )
        return config

"""Proxy anchor loss with trainable proxies, and with Metrix soft labels."""

import tensorflow as tf

from metrix_tf.losses.loss_declaration import HyperParameter
from metrix_tf.losses.loss_declaration import LossDeclaration
from metrix_tf.losses.loss_declaration import define_loss
from metrix_tf.ops.pair_reductions import exp_reductions_from_similarity
from metrix_tf.ops.pair_reductions import soft_label_exp_reductions

__all__ = ["proxy_anchor", "ProxyAnchorLoss"]


class ProxyAnchor(LossDeclaration):
    """Proxy anchor loss with trainable proxies, and Metrix.

    Each class proxy is an anchor; every example is a positive of its class's
    proxy and a negative of all others: `(1/|C+|) sum_{c in C+} ln(1 + sum y
    exp(-alpha (s - margin))) + (1/C) sum_c ln(1 + sum (1 - y) exp(alpha (s
    + margin)))`, where C+ are the proxies with some entry y > 0 (clean:
    pytorch-metric-learning 1.3.0, the classes present in the batch) and C
    the proxy table size. With Metrix every mix is scored against the
    proxies with its soft label (per-anchor scoring: only against the proxy
    of its first label).
    """

    name = "proxy_anchor"
    class_name = "ProxyAnchorLoss"
    uses_proxies = True
    hyper_parameters = (
        HyperParameter("margin", 0.1, "float >= 0.", minimum=0.0),
        HyperParameter("alpha", 32.0, "float > 0, the scale.", minimum=0.0, strict=True),
    )
    references = (
        ("Kim et al., 2020", "https://arxiv.org/abs/2003.13911"),
    )

    def _scales(self):
        return self.alpha, self.margin, self.alpha, -self.margin

    def row_statistics(self, similarity, soft_labels, clean):
        return exp_reductions_from_similarity(similarity, soft_labels, *self._scales())

    def fused(self, anchors, anchor_labels, candidates, labels_a, labels_b, lam, clean, exclude_self):
        return soft_label_exp_reductions(
            anchors, anchor_labels, candidates, labels_a, labels_b, lam,
            *self._scales(), exclude_self=exclude_self,
        )

    def ratios(self, statistics, clean):
        with_positives = statistics.pos_count > 0
        lse_pos, lse_neg = statistics.lse_pos, statistics.lse_neg
        dtype = lse_pos.dtype
        return [
            (
                tf.reduce_sum(tf.where(with_positives, lse_pos, tf.zeros_like(lse_pos))),
                tf.reduce_sum(tf.cast(with_positives, dtype)),
            ),
            (tf.reduce_sum(lse_neg), tf.cast(tf.size(lse_neg), dtype)),
        ]


proxy_anchor, ProxyAnchorLoss = define_loss(ProxyAnchor)

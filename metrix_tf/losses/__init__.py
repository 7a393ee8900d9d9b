"""Mixup-aware metric losses: a pure function plus a Keras `Loss` class each."""

from metrix_tf.losses.contrastive_loss import ContrastiveLoss
from metrix_tf.losses.contrastive_loss import contrastive
from metrix_tf.losses.metric_loss import MetricLoss
from metrix_tf.losses.multi_similarity_loss import MultiSimilarityLoss
from metrix_tf.losses.multi_similarity_loss import multi_similarity
from metrix_tf.losses.proxy_anchor_loss import ProxyAnchorLoss
from metrix_tf.losses.proxy_anchor_loss import proxy_anchor

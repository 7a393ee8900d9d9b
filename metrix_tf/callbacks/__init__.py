"""Keras callbacks: retrieval metrics and utilization in `logs`, and the
head-only warm-up of the paper's recipe."""

from metrix_tf.callbacks.head_warm_up import HeadWarmUp
from metrix_tf.callbacks.recall_at_k import RecallAtK
from metrix_tf.callbacks.utilization import Utilization

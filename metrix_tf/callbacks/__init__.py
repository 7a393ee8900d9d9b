"""Keras callbacks: retrieval metrics and utilization in `logs`, the
head-only warm-up of the paper's recipe, and a one-line-per-epoch log."""

from metrix_tf.callbacks.epoch_log import EpochLog
from metrix_tf.callbacks.head_warm_up import HeadWarmUp
from metrix_tf.callbacks.recall_at_k import RecallAtK
from metrix_tf.callbacks.utilization import Utilization

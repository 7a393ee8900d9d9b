"""Keras callbacks that report retrieval metrics and utilization in `logs`."""

from metrix_tf.callbacks.recall_at_k import RecallAtK
from metrix_tf.callbacks.utilization import Utilization

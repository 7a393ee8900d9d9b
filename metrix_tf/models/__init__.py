"""Models for metric learning."""

from metrix_tf.models.metric_model import MetricModel

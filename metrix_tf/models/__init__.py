"""Models for metric learning: the training model class, the embedding
network of the paper (backbone + head) with in-graph Metrix, and backbones."""

from metrix_tf.models.backbone_input import BackboneInput
from metrix_tf.models.backbones import backbone_input
from metrix_tf.models.backbones import backbone_names
from metrix_tf.models.backbones import freeze_batchnorm
from metrix_tf.models.backbones import make_backbone
from metrix_tf.models.backbones import resnet50_backbone
from metrix_tf.models.backbones import small_cnn_backbone
from metrix_tf.models.backbones import split_backbone
from metrix_tf.models.embedding_head import EmbeddingHead
from metrix_tf.models.embedding_model import EmbeddingModel
from metrix_tf.models.fused_batch_normalization import FusedBatchNormalization
from metrix_tf.models.fused_batch_normalization import fuse_batchnorm
from metrix_tf.models.metric_model import MetricModel

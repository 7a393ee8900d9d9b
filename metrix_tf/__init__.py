"""metrix-tf: deep metric learning for Keras 3 / TensorFlow, built around Metrix."""

from metrix_tf import losses
from metrix_tf import mixing
from metrix_tf import models
from metrix_tf.mixing.metrix import Metrix
from metrix_tf.version import __version__

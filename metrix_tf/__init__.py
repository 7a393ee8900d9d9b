"""metrix-tf: deep metric learning for Keras 3 / TensorFlow, built around Metrix."""

from metrix_tf.version import __version__

"""Mixup-aware metric losses: a pure function plus a Keras `Loss` class each.

Every `*_loss.py` file of this package declares one loss (see
`metrix_tf.losses.loss_declaration`) and lists its function and class in
`__all__`. They are imported here, in file-name order, so that each loss is
in the registry (`metrix_tf.losses.registry`) and in this namespace: adding
a loss is adding its file.
"""

import importlib as _importlib
import pkgutil as _pkgutil

from metrix_tf.losses import registry
from metrix_tf.losses.loss_declaration import HyperParameter
from metrix_tf.losses.loss_declaration import LossDeclaration
from metrix_tf.losses.loss_declaration import define_loss
from metrix_tf.losses.metric_loss import MetricLoss
from metrix_tf.losses.metric_loss import ProxyMetricLoss


def _import_loss_files():
    for module in sorted(m.name for m in _pkgutil.iter_modules(__path__)):
        if module.endswith("_loss") and module != "metric_loss":
            loaded = _importlib.import_module(f"{__name__}.{module}")
            globals().update({name: getattr(loaded, name) for name in loaded.__all__})


_import_loss_files()

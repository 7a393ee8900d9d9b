"""Training: the run configuration, the trainer behind `metrix-train`, and
its checkpointed run state."""

from metrix_tf.training.run_state import RunState
from metrix_tf.training.train_config import TrainConfig
from metrix_tf.training.trainer import build_model
from metrix_tf.training.trainer import evaluate_model
from metrix_tf.training.trainer import train

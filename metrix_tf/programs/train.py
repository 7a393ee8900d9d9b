"""`metrix-train`: the absl training binary.

    metrix-train                                  # the offline default run
    metrix-train --config=configs/cub200/multi_similarity_feature.json \\
        --data_dir=/data/CUB_200_2011 --backbone_weights=imagenet

Every field of `TrainConfig` is a flag; `--config` (a JSON file) sets
defaults that explicit flags override.

Several machines: run the same command on each, with `TF_CONFIG` naming the
cluster and that machine's task (`--batch_size` is the global batch; only the
chief, worker 0, writes `--workdir`):

    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                "task": {"type": "worker", "index": 0}}' \
        metrix-train --distribution=multi_worker --workdir=/shared/run
"""

import dataclasses
import os

from absl import app
from absl import flags
from absl import logging

from metrix_tf.training.train_config import TrainConfig

_DEFINE = {bool: flags.DEFINE_boolean, int: flags.DEFINE_integer,
           float: flags.DEFINE_float, str: flags.DEFINE_string}

flags.DEFINE_string("config", "", "JSON file of settings (see configs/); flags override it.")
for _field in dataclasses.fields(TrainConfig):
    _DEFINE[_field.type if isinstance(_field.type, type) else eval(_field.type)](
        _field.name, _field.default, TrainConfig.HELP[_field.name]
    )

FLAGS = flags.FLAGS


def config_from_flags(flag_values=FLAGS):
    """The `TrainConfig` of the command line: defaults < the data set's
    recipe < --config < flags."""
    values = TrainConfig.read_json(flag_values.config) if flag_values.config else {}
    values.update(
        (name, flag_values[name].value)
        for name in TrainConfig.field_names()
        if flag_values[name].present
    )
    dataset = values.pop("dataset", TrainConfig.dataset)
    return TrainConfig.for_dataset(dataset, **values).validate()


DESCRIPTION = (
    "metrix-train: train an embedding network with a metric loss and Metrix, select its best "
    "epoch on validation classes, report Recall@K on unseen classes and export a SavedModel."
)
EXAMPLE = "metrix-train --loss=multi_similarity --metrix_level=feature --epochs=20 --workdir=run1"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        config = config_from_flags()
    except ValueError as error:
        raise app.UsageError(str(error))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.set_verbosity(logging.WARNING)
    from metrix_tf.training.trainer import train  # imports TensorFlow

    train(config)  # bad data, workdir or checkpoint: one line (metrix_tf.programs)
    return 0


def run():
    """Console-script entry point."""
    from metrix_tf import programs

    programs.run(
        "metrix-train", main, DESCRIPTION, EXAMPLE, ["config", *TrainConfig.field_names()]
    )


if __name__ == "__main__":
    run()

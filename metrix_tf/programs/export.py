"""`metrix-export` and `metrix-eval`: export a run's checkpoint as a
SavedModel, and evaluate a SavedModel on a data set.

    metrix-export --workdir=metrix_run [--output=DIR]
    metrix-eval --saved_model=metrix_run/saved_model --dataset=builtin
"""

import json
import os

from absl import app
from absl import flags
from absl import logging

FLAGS = flags.FLAGS


def _define_export_flags():
    flags.DEFINE_string("workdir", "metrix_run", "The training run's directory.")
    flags.DEFINE_string("output", "", "Export directory (default: WORKDIR/saved_model).")


def _define_eval_flags():
    flags.DEFINE_string("saved_model", "", "Directory of the SavedModel to evaluate.")
    flags.DEFINE_string("dataset", "builtin", "Data set name.")
    flags.DEFINE_string("data_dir", "", "Directory of the extracted data set.")
    flags.DEFINE_boolean("tiny", False, "The tiny built-in set.")
    flags.DEFINE_string("recall_ks", "", "Comma-separated K ('' : the data set's).")
    flags.DEFINE_integer("batch_size", 256, "Evaluation batch size.")


def export_workdir(workdir, output=""):
    """Rebuild a run's model from its config, restore its newest checkpoint
    and the weights of its selected epoch (`--select_by`), export them;
    returns the export path."""
    from metrix_tf.training.run_state import RunState
    from metrix_tf.training.train_config import TrainConfig
    from metrix_tf.training.trainer import CONFIG_FILE, EXPORT_DIR, build_model, load_data
    from metrix_tf.export.saved_model import export_saved_model

    config_path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(config_path):
        raise ValueError(f"--workdir={workdir!r} holds no training run ({CONFIG_FILE} missing)")
    config = TrainConfig.from_json(config_path)
    splits, preprocessing = load_data(config)
    model, _ = build_model(config, preprocessing, splits.train.num_classes)
    state = RunState(workdir, model, monitor=config.selection_key())
    epochs = state.restore()
    if epochs == 0:
        raise ValueError(f"--workdir={workdir!r} has no checkpoint to export")
    selected = state.restore_selected()
    return export_saved_model(
        model, preprocessing, output or os.path.join(workdir, EXPORT_DIR),
        metadata={"config": json.loads(config.to_json()), "epochs": epochs,
                  "selected_epoch": selected},
    )


def evaluate_saved_model(path, dataset, data_dir="", tiny=False, ks=None, batch_size=256):
    """Recall@K & co of a SavedModel on a data set's unseen classes."""
    import numpy as np

    from metrix_tf import data as data_lib
    from metrix_tf import evaluation
    from metrix_tf.export.saved_model import load_serving_function

    serve = load_serving_function(path)
    # The export's input side (a run with --image_size has its own).
    size = serve.structured_input_signature[1]["images"].shape[1]
    extra = {"tiny": tiny} if dataset == "builtin" else {"verify": True}
    preprocessing = data_lib.Preprocessing.for_dataset(dataset)
    if size is not None and size != preprocessing.image_size:
        preprocessing = preprocessing.with_image_size(size)
        if dataset == "icons":
            extra["image_size"] = size  # rendered at that size, as trained
    splits = data_lib.load_dataset(dataset, data_dir or None, **extra)
    ks = ks or list(splits.recall_ks)

    def embed(split):
        out = []
        for images, _ in data_lib.eval_batches(split, preprocessing, batch_size):
            out.append(serve(images=preprocessing.pixels(images))["embeddings"].numpy())
        return np.concatenate(out)

    if splits.protocol == "query_gallery":
        return evaluation.evaluate_retrieval(
            embed(splits.query), splits.query.labels, ks=ks,
            gallery_embeddings=embed(splits.gallery), gallery_labels=splits.gallery.labels,
        )
    return evaluation.evaluate_retrieval(embed(splits.test), splits.test.labels, ks=ks)


def export_main(argv):
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    print(export_workdir(FLAGS.workdir, FLAGS.output))
    return 0


def eval_main(argv):
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not FLAGS.saved_model:
        raise app.UsageError("--saved_model is required")
    try:
        ks = [int(k) for k in FLAGS.recall_ks.split(",")] if FLAGS.recall_ks else None
    except ValueError:
        raise app.UsageError(f"--recall_ks must be comma-separated ints. Received: {FLAGS.recall_ks!r}")
    results = evaluate_saved_model(
        FLAGS.saved_model, FLAGS.dataset, FLAGS.data_dir, FLAGS.tiny, ks, FLAGS.batch_size
    )
    print(json.dumps(results, indent=2))
    return 0


def run_export():
    """Console-script entry point of metrix-export."""
    from metrix_tf import programs

    _define_export_flags()
    programs.run(
        "metrix-export", export_main,
        "metrix-export: export a training run's selected weights (the embedding network "
        "only) as a SavedModel for serving.",
        "metrix-export --workdir=metrix_run --output=/srv/models/metrix/1",
        ["workdir", "output"],
    )


def run_eval():
    """Console-script entry point of metrix-eval."""
    from metrix_tf import programs

    _define_eval_flags()
    programs.run(
        "metrix-eval", eval_main,
        "metrix-eval: evaluate a SavedModel (Recall@K, MAP@R) on a data set's unseen classes.",
        "metrix-eval --saved_model=metrix_run/saved_model --dataset=builtin",
        ["saved_model", "dataset", "data_dir", "tiny", "recall_ks", "batch_size"],
    )

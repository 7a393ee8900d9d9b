"""The training run behind `metrix-train`: data, model, fit, evaluation,
checkpoints, plots and export, driven by a `TrainConfig`."""

import json
import os
import sys
import time

import keras
import numpy as np

from metrix_tf import data as data_lib
from metrix_tf import evaluation
from metrix_tf import losses
from metrix_tf.callbacks import EpochLog
from metrix_tf.callbacks import HeadWarmUp
from metrix_tf.callbacks import RecallAtK
from metrix_tf.export import export_saved_model
from metrix_tf.mixing.metrix import Metrix
from metrix_tf.models import EmbeddingModel
from metrix_tf.models import backbone_input
from metrix_tf.models import make_backbone
from metrix_tf.optimizers import FusedAdam
from metrix_tf.training import distribution
from metrix_tf.training import pictures
from metrix_tf.training import run_state
from metrix_tf.training.run_state import RecordEpochs
from metrix_tf.training.run_state import RunState
from metrix_tf.training.run_state import write_atomically
from metrix_tf.training.train_config import TrainConfig

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
PLOT_FILE = "recall_at_k.png"
EXPORT_DIR = "saved_model"


def load_data(config):
    """`(splits, preprocessing)` of the configured data set; the
    preprocessing normalises as the backbone's weights expect."""
    extra = {"tiny": config.tiny} if config.dataset == "builtin" else {}
    if config.dataset == "icons" and config.image_size:
        extra["image_size"] = config.image_size  # rendered at that size
    splits = data_lib.load_dataset(
        config.dataset,
        config.data_dir or None,
        validation_fraction=config.validation_fraction or None,
        seed=config.seed,
        **extra,
    )
    preprocessing = data_lib.Preprocessing.for_dataset(config.dataset)
    if config.image_size:
        preprocessing = preprocessing.with_image_size(config.image_size)
    return splits, preprocessing.for_backbone(backbone_input(config.backbone))


def make_metrix(config):
    if config.metrix_level == "none":
        return None
    return Metrix(
        level=config.metrix_level,
        alpha=config.metrix_alpha,
        weight=config.metrix_weight,
        strategy=config.metrix_strategy,
        scoring=config.metrix_scoring,
        seed=config.seed,
        mixed_labels=config.metrix_mixed_labels,
    )


def build_model(config, preprocessing, num_classes):
    """`(model, loss)`: the compiled `EmbeddingModel` of a config."""
    # The model's layers take the precision's policy when they are created
    # (compile() adds loss scaling for mixed_float16); the global policy is
    # restored afterwards.
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(config.precision)
    try:
        return _build_model(config, preprocessing, num_classes)
    finally:
        keras.config.set_dtype_policy(previous_policy)


def _build_model(config, preprocessing, num_classes):
    metrix = make_metrix(config)
    shape = (preprocessing.image_size, preprocessing.image_size, preprocessing.model_channels)
    backbone = make_backbone(config.backbone, shape, config.weights(), width=config.backbone_width)
    try:
        model = EmbeddingModel(
            backbone,
            embedding_dim=config.embedding_dim,
            metrix=metrix,
            max_mixes=config.max_mixes or None,
            freeze_batchnorm=config.freeze_batchnorm,
            feature_stage=config.metrix_stage or None,
        )
    except ValueError as error:
        if not config.metrix_stage:
            raise
        # The stage is not a layer of the backbone where the flag can cut.
        raise ValueError(f"--metrix_stage={config.metrix_stage!r}: {error}") from error
    loss = losses.registry.get(config.loss).make(
        metrix=metrix,
        num_classes=num_classes,
        embedding_dim=config.embedding_dim,
        proxy_lr_multiplier=config.proxy_lr_multiplier,
    )
    optimizer = FusedAdam(
        config.learning_rate, weight_decay=config.weight_decay or None
    )
    model.compile(optimizer=optimizer, loss=loss)
    model(np.zeros((2,) + shape, "float32"))  # build
    model.optimizer.build(model.trainable_variables)
    return model, loss


def eval_batches(split, preprocessing, strategy, batch_size=256):
    """A split's evaluation batches, sharded by data under `strategy`."""
    return distribution.distribute_by_data(
        data_lib.eval_batches(split, preprocessing, batch_size), strategy)


def embed(model, split, preprocessing, batch_size=256):
    """Embeddings `(N, D)` of a split (evaluation transform, no mixing)."""
    batches = eval_batches(split, preprocessing, model.distribute_strategy, batch_size)
    return model.predict(batches.map(lambda x, y: x), verbose=0)


def evaluate_model(model, splits, preprocessing, ks, train_embeddings=None, seed=0,
                   embeddings_out=None):
    """Recall@K & co on the unseen classes, and utilization (+ mixed).

    `embeddings_out`, a dict, receives the embeddings evaluated ("test", or
    "query" and "gallery")."""
    if splits.protocol == "query_gallery":
        queries = embed(model, splits.query, preprocessing)
        gallery = embed(model, splits.gallery, preprocessing)
        results = evaluation.evaluate_retrieval(
            queries, splits.query.labels, ks=ks,
            gallery_embeddings=gallery, gallery_labels=splits.gallery.labels,
        )
        test = np.concatenate([queries, gallery])
    else:
        test = embed(model, splits.test, preprocessing)
        results = evaluation.evaluate_retrieval(test, splits.test.labels, ks=ks)
    if train_embeddings is None:
        train_embeddings = embed(model, splits.train, preprocessing)
    # The training classes' own leave-one-out Recall@K (evaluation
    # transform): with the unseen classes' figures, how far a run overfits.
    seen = evaluation.evaluate_retrieval(train_embeddings, splits.train.labels, ks=ks)
    results.update({f"train_{k}": seen[k] for k in (f"recall@{k}" for k in ks)})
    results["train_map@r"] = seen["map@r"]
    results["utilization"] = evaluation.utilization(test, train_embeddings)
    mixes = evaluation.embedding_mixes(train_embeddings, splits.train.labels, seed=seed)
    results["utilization_with_mixes"] = evaluation.utilization(
        test, train_embeddings, mixed_embeddings=mixes
    )
    if embeddings_out is not None:
        if splits.protocol == "query_gallery":
            embeddings_out.update(query=queries, gallery=gallery)
        else:
            embeddings_out.update(test=test)
    return results


def seen_classes_callback(config, train, preprocessing, ks, strategy):
    """`RecallAtK` on `config.seen_classes` training classes (a seeded sample,
    evaluation transform), logged as `seen_*` with the validation figures."""
    count = min(config.seen_classes, train.num_classes)
    if count == train.num_classes:
        seen = train
    else:
        _, seen = data_lib.split_validation(train, num_classes=count, seed=config.seed + 1)
    return RecallAtK(
        eval_batches(seen, preprocessing, strategy),
        ks=[k for k in ks if k < seen.num_examples], metrics=("recall", "map@r"),
        every_n_epochs=config.eval_every, prefix="seen_",
    )


def test_classes_callback(config, splits, preprocessing, ks, strategy):
    """`RecallAtK` on the test classes, logged as `test_*`: only to measure
    the reference protocol (best epoch on the test classes) apart; the
    selection reads `val_*` only."""
    if splits.protocol == "query_gallery":
        data, gallery = (eval_batches(splits.query, preprocessing, strategy),
                         eval_batches(splits.gallery, preprocessing, strategy))
        size = splits.gallery.num_examples + 1
    else:
        data, gallery = eval_batches(splits.test, preprocessing, strategy), None
        size = splits.test.num_examples
    return RecallAtK(data, gallery=gallery, ks=[k for k in ks if k < size],
                     metrics=("recall", "map@r"), every_n_epochs=config.eval_every,
                     prefix="test_")


def learning_rate_schedule(config):
    decay = config.decay_epochs()

    def schedule(epoch, lr=None):
        return config.learning_rate * config.lr_decay_factor ** sum(epoch >= e for e in decay)

    return schedule


def describe_selection(config, history, selected):
    """results.json's "selection": which epoch was kept and why.

    `selected` counts epochs from 1 (history.json's `"epoch"` + 1). When
    several epochs tie on the `--select_by` figure (e.g. validation Recall@1
    saturated at 1.0), the tie goes to the best validation MAP@R, then to the
    later epoch (`run_state.select_epoch`): `tied_epochs` lists them (from 1)
    and `tie_break` the rules that decided (`"map@r"`, `"later_epoch"`; `[]`
    without a tie). `saturated`: the figure tied at its maximum, 1.0.
    """
    key = config.selection_key()
    entry = next((h for h in history if h["epoch"] == selected - 1), {})
    value = entry.get(key) if key else None
    choice = run_state.select_epoch(history, key) if key else {"epoch": None}
    if choice["epoch"] != selected - 1:  # --select_by=last, or no validated epoch
        choice = {"tied_epochs": [], "tie_break": []}
    tied = [epoch + 1 for epoch in choice["tied_epochs"]] if choice["tie_break"] else []
    saturated = bool(tied and value >= 1.0)
    if key is None:
        text = f"Selected the last epoch ({selected}) (--select_by=last)."
    else:
        text = (
            f"Selected epoch {selected} of {len(history)}: best validation "
            f"{config.select_by} {value if value is None else round(value, 4)}"
            " (the test figures below are of this epoch's weights)."
        )
        if tied:
            rules = {"map@r": "the best validation MAP@R", "later_epoch": "the later epoch"}
            shown = ", ".join(map(str, tied))
            text += (
                f" Epochs {shown} tied at validation {config.select_by} {round(value, 4)}"
                f"{' (saturated)' if saturated else ''}: the tie went to "
                + ", then to ".join(rules[rule] for rule in choice["tie_break"]) + "."
            )
    return {
        "select_by": config.select_by,
        "epoch": selected,
        "validation": value,
        "saturated": saturated,
        "tied_epochs": tied,
        "tie_break": list(choice["tie_break"]),
        "text": text,
    }


def plot_history(history, path, ks, selected=None):
    """PNG of the validation Recall@K over epochs, the selected epoch marked
    (atomic write)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for k in ks:
        points = [(h["epoch"] + 1, h[f"val_recall@{k}"]) for h in history if f"val_recall@{k}" in h]
        if points:
            axis.plot(*zip(*points), marker="o", label=f"Recall@{k}")
    if selected:
        axis.axvline(selected, color="gray", linestyle="--", label=f"selected (epoch {selected})")
    axis.set_xlabel("epoch")
    axis.set_ylabel("validation Recall@K")
    axis.set_title("Recall@K on held-out training classes")
    axis.grid(alpha=0.3)
    axis.legend()
    tmp = f"{path}.tmp-{os.getpid()}.png"
    figure.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(figure)
    os.replace(tmp, path)


def draw_pictures(workdir, splits, embeddings, seed):
    """The retrieval gallery PNG and the projector files of the selected
    model's test embeddings (see `metrix_tf.training.pictures`)."""
    logdir = os.path.join(workdir, "logs")
    if splits.protocol == "query_gallery":
        queries, gallery = (splits.query, embeddings["query"]), (splits.gallery, embeddings["gallery"])
    else:
        queries, gallery = (splits.test, embeddings["test"]), (None, None)
    pictures.retrieval_gallery(
        os.path.join(workdir, pictures.GALLERY_FILE), *queries, seed=seed,
        gallery_split=gallery[0], gallery_embeddings=gallery[1],
    )
    pictures.write_projector(logdir, *queries, seed=seed)


def format_results(before, after, ks):
    rows = [f"recall@{k}" for k in ks] + ["map@r", "utilization", "utilization_with_mixes"]
    lines = [f"{'metric (unseen classes)':<26}{'untrained':>10}{'trained':>10}"]
    for row in rows:
        lines.append(f"{row:<26}{before[row]:>10.4f}{after[row]:>10.4f}")
    return "\n".join(lines)


# Settings that do not define the run: where it lives (a moved workdir or
# data set, another machine's mount), how long it goes, and what the
# checkpoints do not depend on (the tf.distribute strategy).
WHERE_AND_HOW_LONG = {"workdir", "data_dir", "epochs", "resume", "export", "distribution"}


# What a run recorded before these settings existed did: a config.json
# without "select_by" is a run that kept its last epoch.
BEFORE_THEY_EXISTED = {"select_by": "last"}


def _previous_settings(config, log):
    """The settings a workdir's run was started with: config.json, else the
    copy in its newest checkpoint (config.json damaged or missing); None
    for a fresh workdir."""
    path = os.path.join(config.workdir, CONFIG_FILE)
    text = None
    if os.path.exists(path):
        try:
            with open(path) as f:
                text = f.read()
            previous = json.loads(text)
            if not isinstance(previous, dict):
                raise ValueError("not a JSON object")
            return previous
        except (ValueError, OSError) as error:
            damage = f"{path!r} is damaged ({error})"
    else:
        damage = f"{path!r} is missing"
    stored = run_state.stored_config(config.workdir)
    if stored is None:
        if run_state.checkpoint_numbers(os.path.join(config.workdir, run_state.CHECKPOINT_DIR)):
            raise ValueError(
                f"{damage}, and the workdir's checkpoints do not record the run's "
                "settings (they predate it, or the newest is damaged): restore "
                f"{CONFIG_FILE}, or start over with --noresume"
            )
        return None
    log(f"{damage}: comparing with the settings in the newest checkpoint, and rewriting it")
    return json.loads(stored)


def _check_workdir(config, resume, log=print):
    os.makedirs(config.workdir, exist_ok=True)
    previous = _previous_settings(config, log) if resume else None
    if previous is not None:
        defaults = json.loads(TrainConfig.for_dataset(previous.get("dataset", config.dataset)).to_json())
        defaults.update(BEFORE_THEY_EXISTED)
        current = json.loads(config.to_json())
        changed = sorted(
            k for k in current
            if k not in WHERE_AND_HOW_LONG and previous.get(k, defaults[k]) != current[k]
        )
        if changed:
            raise ValueError(
                f"--workdir={config.workdir!r} holds a run with other settings "
                f"({', '.join(f'{k}: {previous.get(k, defaults[k])!r} -> {current[k]!r}' for k in changed)}); "
                "use another --workdir, or --noresume to start over there"
            )
    write_atomically(os.path.join(config.workdir, CONFIG_FILE), config.to_json())


def _read_untrained(path):
    """results_untrained.json, or None when missing or damaged."""
    try:
        with open(path) as f:
            before = json.load(f)
        return before if isinstance(before, dict) else None
    except (OSError, ValueError):
        return None


def train(config, verbose="auto", log=print):
    """Run a whole training job; returns the results dict.

    Resumes from the workdir's last checkpoint when `config.resume`. Under
    `config.distribution="multi_worker"` only the chief writes to the
    workdir (see `metrix_tf.training.distribution`).
    """
    config.validate()
    # First: MultiWorkerMirroredStrategy sets up the collectives at start-up.
    strategy = distribution.make_strategy(config.distribution)
    keras.utils.set_random_seed(config.seed)
    if distribution.is_chief(strategy):
        _check_workdir(config, config.resume, log)
    workdir = distribution.write_dir(config.workdir, strategy, config.resume)
    try:
        return _train(config, strategy, workdir, verbose, log)
    finally:
        distribution.remove_write_dir(workdir, config.workdir)


def _train(config, strategy, workdir, verbose, log):
    if workdir != config.workdir:  # a non-chief worker: the chief reports
        log = lambda *args, **kwargs: None  # noqa: E731
    started = time.time()
    splits, preprocessing = load_data(config)
    # Decode every image file once (remembered): a corrupt one is named here,
    # not met as an anonymous decode error in the middle of an epoch.
    for split in (splits.train, splits.val, splits.test, splits.query, splits.gallery):
        if split is not None:
            data_lib.verify_images(split)
    ks = config.ks() or list(splits.recall_ks)
    with strategy.scope():
        model, loss = build_model(config, preprocessing, splits.train.num_classes)
    distribution.fix_multi_worker_fit(model)
    state = RunState(
        workdir, model, monitor=config.selection_key(), config_json=config.to_json(), log=log
    )
    if config.resume:
        initial_epoch = state.restore()
    else:
        state.clear()
        initial_epoch = 0
    distribution.check_same_epoch(strategy, initial_epoch)
    if initial_epoch:
        log(f"Resuming {config.workdir!r} after epoch {initial_epoch} of {config.epochs}.")

    before_path = os.path.join(workdir, "results_untrained.json")
    before = _read_untrained(before_path) if initial_epoch else None
    if before is None:
        if initial_epoch:
            log(f"(the untrained figures were not recorded or {before_path!r} is damaged; "
                "evaluating the checkpoint)")
        before = evaluate_model(model, splits, preprocessing, ks, seed=config.seed)
        write_atomically(before_path, json.dumps(before, indent=2))

    batch_size = config.batch_size
    steps = config.steps_per_epoch or data_lib.steps_per_epoch(splits.train, batch_size)
    if config.images_per_class:
        train_batches = data_lib.balanced_batches(
            splits.train, preprocessing,
            classes_per_batch=batch_size // config.images_per_class,
            images_per_class=config.images_per_class,
            seed=config.seed, start_step=initial_epoch * steps,
        )
    else:
        # Shuffled batches restart at a data-epoch boundary: skip into it so
        # that fit-epoch `initial_epoch` starts at batch initial_epoch * steps.
        nominal = data_lib.steps_per_epoch(splits.train, batch_size)
        first = initial_epoch * steps
        train_batches = data_lib.shuffled_batches(
            splits.train, preprocessing, batch_size, seed=config.seed,
            start_epoch=first // nominal,
        ).skip(first % nominal)
    train_batches = distribution.distribute_by_data(train_batches, strategy)
    callbacks = []
    if splits.val is not None:
        val_ks = [k for k in ks if k < splits.val.num_examples]
        if config.select_by.startswith("recall@") and int(config.select_by[7:]) not in val_ks:
            raise ValueError(
                f"--select_by={config.select_by}: the validation classes are evaluated "
                f"at Recall@K for K in {val_ks} (--recall_ks, at most the validation "
                f"images - 1 = {splits.val.num_examples - 1})"
            )
        callbacks.append(
            RecallAtK(
                eval_batches(splits.val, preprocessing, strategy),
                ks=val_ks, metrics=("recall", "map@r"), every_n_epochs=config.eval_every,
            )
        )
    if config.seen_classes:
        callbacks.append(seen_classes_callback(config, splits.train, preprocessing, ks, strategy))
    if config.score_test_every_epoch:
        callbacks.append(test_classes_callback(config, splits, preprocessing, ks, strategy))
    callbacks += [
        keras.callbacks.LearningRateScheduler(learning_rate_schedule(config)),
        HeadWarmUp(config.warmup_epochs),
        keras.callbacks.TensorBoard(os.path.join(workdir, "logs"), write_graph=False),
        RecordEpochs(state),
    ]
    if verbose == "auto":  # a bar on a terminal, one line per epoch in a file or pipe
        verbose = 1 if sys.stdout.isatty() else 0
        if not verbose and workdir == config.workdir:
            callbacks.append(EpochLog())
    if initial_epoch < config.epochs:
        model.fit(
            train_batches,
            epochs=config.epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps,
            callbacks=callbacks,
            verbose=verbose,
            shuffle=False,  # the pipelines shuffle, seeded and resumable
        )
    selected = state.restore_selected()
    selection = describe_selection(config, state.history, selected)
    plot_history(state.history, os.path.join(workdir, PLOT_FILE), ks, selected)
    shown = {}
    after = evaluate_model(model, splits, preprocessing, ks, seed=config.seed, embeddings_out=shown)
    draw_pictures(workdir, splits, shown, config.seed)
    results = {
        "untrained": before,
        "trained": after,
        "epochs": config.epochs,
        "selected_epoch": selected,
        "selection": selection,
        "seconds_this_session": time.time() - started,
    }
    write_atomically(os.path.join(workdir, RESULTS_FILE), json.dumps(results, indent=2))
    log(selection["text"])
    log(format_results(before, after, ks))
    if config.export:
        path = export_saved_model(
            model, preprocessing, os.path.join(workdir, EXPORT_DIR),
            metadata={"config": json.loads(config.to_json()), "selected_epoch": selected},
        )
        log(f"SavedModel (embedding network only, serving_default): {path}")
    return results

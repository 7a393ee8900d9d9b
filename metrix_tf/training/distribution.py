"""tf.distribute strategies of `TrainConfig.distribution`, and who writes.

- `"default"`: TensorFlow's default strategy (one device, no replication).
- `"mirrored"`: `tf.distribute.MirroredStrategy` over this machine's GPUs
  (its CPU when it has none).
- `"multi_worker"`: `tf.distribute.MultiWorkerMirroredStrategy` over the
  machines that the `TF_CONFIG` environment variable lists; every machine
  runs the same command with its own `TF_CONFIG["task"]`.

In every case `--batch_size` is the global batch: Keras splits each batch
between the replicas, and the losses gather it back (all-gather), so the
training signal is that of one device holding the whole batch.

In multi-worker training every worker runs the whole program (the
collectives need all of them), but only the chief writes to `--workdir`;
the others write to a temporary directory inside it that is removed at the
end: the usual TensorFlow pattern.
"""

import json
import os
import shutil

import tensorflow as tf

from metrix_tf.models import keras_internals
from metrix_tf.training.train_config import DISTRIBUTIONS

TASK_TYPES = ("chief", "worker")
# What a non-chief worker copies from the chief's workdir to resume in step
# with it (a worker that resumed at another epoch would hang the collectives).
RESUME_FILES = ("checkpoints", "history.json", "results_untrained.json")


def parse_tf_config(text):
    """Check a `TF_CONFIG` for multi-worker training.

    Args:
        text: the JSON string of the `TF_CONFIG` environment variable (or
            None when it is unset).

    Returns:
        `(cluster, task_type, task_index)`: `cluster` maps `"chief"` and/or
        `"worker"` to lists of `"host:port"` strings.

    Raises:
        ValueError: naming `TF_CONFIG` and what is wrong with it.
    """
    if text is None or not text.strip():
        raise ValueError(
            "--distribution=multi_worker needs the TF_CONFIG environment "
            "variable (the cluster and this machine's task), e.g. "
            'TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}}\'. Received: TF_CONFIG unset'
        )
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"TF_CONFIG is not valid JSON ({error}). Received: TF_CONFIG={text!r}"
        ) from None
    if not isinstance(value, dict):
        raise ValueError(f"TF_CONFIG must be a JSON object. Received: TF_CONFIG={text!r}")
    cluster, task = value.get("cluster"), value.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise ValueError(
            "TF_CONFIG needs a 'cluster' object mapping 'chief' / 'worker' to "
            f"lists of 'host:port'. Received: TF_CONFIG={text!r}"
        )
    for name, addresses in cluster.items():
        if name not in TASK_TYPES:
            raise ValueError(
                f"TF_CONFIG cluster job {name!r} is not supported by "
                f"MultiWorkerMirroredStrategy (use {TASK_TYPES}). "
                f"Received: TF_CONFIG={text!r}"
            )
        if (
            not isinstance(addresses, list)
            or not addresses
            or not all(isinstance(a, str) and a.rpartition(":")[2].isdigit() for a in addresses)
        ):
            raise ValueError(
                f"TF_CONFIG cluster[{name!r}] must be a non-empty list of "
                f"'host:port' strings. Received: {addresses!r}"
            )
    if len(cluster.get("chief", [])) > 1:
        raise ValueError(
            f"TF_CONFIG may name at most one chief. Received: {cluster['chief']!r}"
        )
    if not isinstance(task, dict):
        raise ValueError(
            "TF_CONFIG needs a 'task' object, e.g. {\"type\": \"worker\", "
            f'"index": 0}}. Received: TF_CONFIG={text!r}'
        )
    task_type, index = task.get("type"), task.get("index", 0)
    if task_type not in cluster:
        raise ValueError(
            f"TF_CONFIG task type must be one of the cluster's jobs "
            f"{sorted(cluster)}. Received: task={task!r}"
        )
    if (
        isinstance(index, bool)
        or not isinstance(index, int)
        or not 0 <= index < len(cluster[task_type])
    ):
        raise ValueError(
            f"TF_CONFIG task index must be an int in [0, "
            f"{len(cluster[task_type])}) for job {task_type!r}. Received: task={task!r}"
        )
    return cluster, task_type, index


def make_strategy(name):
    """The `tf.distribute.Strategy` of a `TrainConfig.distribution`.

    Create it before anything else touches TensorFlow's devices:
    `MultiWorkerMirroredStrategy` configures the collectives at start-up.

    Args:
        name: `"default"`, `"mirrored"` or `"multi_worker"` (the latter reads
            and checks the `TF_CONFIG` environment variable).

    Returns:
        A `tf.distribute.Strategy`: build the model, the loss and the
        optimizer inside its `scope()`.

    Example:

    ```python
    strategy = make_strategy("mirrored")
    with strategy.scope():
        model, loss = build_model(config, preprocessing, num_classes)
    ```
    """
    if name not in DISTRIBUTIONS:
        raise ValueError(
            f"Argument `name` must be one of {DISTRIBUTIONS}. Received: name={name!r}"
        )
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    parse_tf_config(os.environ.get("TF_CONFIG"))
    return tf.distribute.MultiWorkerMirroredStrategy()


def task_of(strategy):
    """`(task_type, task_id)` of this process (`(None, None)` when local)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return None, None
    return resolver.task_type, resolver.task_id


def is_chief(strategy):
    """Whether this process writes the run's files (True unless multi-worker).

    The chief is the `"chief"` task, or worker 0 when the cluster has none.
    """
    task_type, task_id = task_of(strategy)
    if task_type is None or task_type == "chief":
        return True
    cluster = strategy.cluster_resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def write_dir(workdir, strategy, resume=False):
    """The directory this process writes its run files to.

    The chief (and any single-process run) writes to `workdir`; another
    worker gets a fresh `workdir/workertemp_<type>_<id>` (remove it with
    `remove_write_dir` at the end). With `resume`, that directory starts
    with a copy of the chief's checkpoints and history, so that every worker
    resumes at the same epoch: multi-worker resume needs `workdir` on a file
    system that all the machines share (or a copy of the chief's workdir).
    """
    if is_chief(strategy):
        return workdir
    task_type, task_id = task_of(strategy)
    path = os.path.join(workdir, f"workertemp_{task_type}_{task_id}")
    if os.path.exists(path):
        shutil.rmtree(path)
    os.makedirs(path)
    if resume:
        for name in RESUME_FILES:
            source = os.path.join(workdir, name)
            if os.path.isdir(source):
                shutil.copytree(source, os.path.join(path, name))
            elif os.path.isfile(source):
                shutil.copy2(source, os.path.join(path, name))
    return path


def remove_write_dir(path, workdir):
    """Remove a non-chief's temporary write dir (nothing when it is `workdir`)."""
    if os.path.abspath(path) != os.path.abspath(workdir):
        shutil.rmtree(path, ignore_errors=True)


def distribute_by_data(dataset, strategy):
    """Make `dataset` split each global batch between the workers.

    Multi-worker auto-sharding would otherwise try to give each worker its
    own files (other batches than one device would see); sharding by data
    gives every worker its slice of every global batch, as on one machine.
    Returns `dataset` unchanged outside multi-worker training.
    """
    if task_of(strategy)[0] is None:
        return dataset
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    return dataset.with_options(options)


def check_same_epoch(strategy, epoch):
    """Raise when the workers would resume at different epochs (they would
    hang in their collectives otherwise). No-op outside multi-worker."""
    if task_of(strategy)[0] is None:
        return
    # Every replica sends (1, e, e^2): the epochs agree iff n * sum(e^2) == sum(e)^2.
    value = tf.constant([1, epoch, epoch * epoch], tf.int64)

    @tf.function
    def summed():
        per_replica = strategy.run(lambda: tf.identity(value))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    count, total, squares = (int(v) for v in summed().numpy())
    if count * squares != total * total:
        raise ValueError(
            f"The workers resume at different epochs (this one after epoch "
            f"{epoch}, their mean {total / count:g}): multi-worker resume needs "
            "--workdir on a file system that all the machines share"
        )


def fix_multi_worker_fit(model):
    """Let `model.fit` / `evaluate` start under MultiWorkerMirroredStrategy.

    Two Keras 3 bugs (3.15 at least; keras-team/keras#20585) stop `fit`
    under MultiWorkerMirroredStrategy:
    - a model compiled in a strategy scope is built from the first batch,
      reduced with `strategy.reduce("MEAN", (x, y))`, which this strategy
      rejects for a nested value. Only the batch's shapes and dtypes
      matter there: hand Keras this worker's first replica's batch instead.
    - the step's logs are reduced with `strategy.reduce("MEAN", v, axis=0)`,
      which fails on scalars: the steps return them as `(1,)` tensors,
      which that reduction averages over the replicas into the scalar
      Keras expects.
    No-op outside multi-worker training.

    Args:
        model: a Keras model created and compiled in the strategy's scope.

    Returns:
        `model`.
    """
    strategy = model.distribute_strategy
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return model

    def local(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def first_replica_build(keras_build):
        def maybe_symbolic_build(iterator=None, data_batch=None):
            if iterator is not None:
                for _, _, batches in iterator:
                    data_batch = tf.nest.map_structure(local, next(batches))
                    break
            return keras_build(data_batch=data_batch)

        return maybe_symbolic_build

    def vectors(logs):
        return tf.nest.map_structure(
            lambda v: tf.reshape(v, [1]) if tf.is_tensor(v) and v.shape.rank == 0 else v,
            logs,
        )

    keras_train_step, keras_test_step = model.train_step, model.test_step
    keras_internals.wrap_symbolic_build(model, first_replica_build)
    model.train_step = lambda data: vectors(keras_train_step(data))
    model.test_step = lambda data: vectors(keras_test_step(data))
    return model

"""`RunState`: the checkpoint and history of a training run's workdir.

Each epoch end writes the history (atomically) and then a checkpoint of the
model, its optimizer and the number of finished epochs. A run killed at any
point (SIGKILL included) restarts from the last complete checkpoint: history
entries past it are dropped and recomputed, so no epoch is lost or repeated.
"""

import json
import os

import keras
import tensorflow as tf

HISTORY_FILE = "history.json"
CHECKPOINT_DIR = "checkpoints"


def write_atomically(path, text):
    """Write `text` to `path` through a temporary file and a rename."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RunState:
    """Checkpoints (model, optimizer, finished epochs) and history of a run.

    Args:
        workdir: the run's directory.
        model: a compiled, built Keras model (its optimizer built too).
        max_to_keep: number of checkpoints kept.
    """

    def __init__(self, workdir, model, max_to_keep=2):
        self.workdir = workdir
        self.epochs_done = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.checkpoint = tf.train.Checkpoint(
            model=model, optimizer=model.optimizer, epochs_done=self.epochs_done
        )
        self.manager = tf.train.CheckpointManager(
            self.checkpoint,
            os.path.join(workdir, CHECKPOINT_DIR),
            max_to_keep=max_to_keep,
        )
        self.history = []

    @property
    def history_path(self):
        return os.path.join(self.workdir, HISTORY_FILE)

    def restore(self):
        """Restore the latest checkpoint; returns the number of finished epochs."""
        path = self.manager.latest_checkpoint
        if path is None:
            self.history = []
            return 0
        try:
            self.checkpoint.restore(path).assert_existing_objects_matched()
        except (tf.errors.OpError, AssertionError, ValueError) as error:
            raise ValueError(
                f"The checkpoint {path!r} does not match this run's model "
                f"(was the workdir used with other settings?): {error}"
            ) from error
        done = int(self.epochs_done.numpy())
        self.history = [h for h in self._read_history() if h["epoch"] < done]
        return done

    def _read_history(self):
        if not os.path.exists(self.history_path):
            return []
        try:
            with open(self.history_path) as f:
                return json.load(f)
        except (json.JSONDecodeError, OSError) as error:
            raise ValueError(
                f"Corrupt run history {self.history_path!r}: {error}"
            ) from error

    def record_epoch(self, epoch, logs):
        """History first, then the checkpoint (see the module docstring)."""
        entry = {"epoch": int(epoch)}
        entry.update({k: float(v) for k, v in (logs or {}).items()})
        self.history.append(entry)
        write_atomically(self.history_path, json.dumps(self.history, indent=1))
        self.epochs_done.assign(epoch + 1)
        self.manager.save(checkpoint_number=epoch + 1)

    def clear(self):
        """Forget a previous run in this workdir (--noresume)."""
        for name in self.manager.checkpoints:
            for suffix in (".index", ".data-00000-of-00001"):
                if os.path.exists(name + suffix):
                    os.remove(name + suffix)
        state = os.path.join(self.workdir, CHECKPOINT_DIR, "checkpoint")
        if os.path.exists(state):
            os.remove(state)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint,
            os.path.join(self.workdir, CHECKPOINT_DIR),
            max_to_keep=self.manager._max_to_keep,
        )
        if os.path.exists(self.history_path):
            os.remove(self.history_path)
        self.history = []


class RecordEpochs(keras.callbacks.Callback):
    """Hands each finished epoch's logs to a `RunState` (put it last)."""

    def __init__(self, state):
        super().__init__()
        self.state = state

    def on_epoch_end(self, epoch, logs=None):
        self.state.record_epoch(epoch, logs)

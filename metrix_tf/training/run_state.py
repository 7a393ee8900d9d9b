"""`RunState`: the checkpoints, history and selected weights of a run's workdir.

Layout of `workdir/checkpoints/`:
- `ckpt-N.index` + `ckpt-N.data-*`: the state after N finished epochs: the
  model, its optimizer, N, the run's history, its settings (`config.json`'s
  text) and the selected epoch so far (with its validation figure). The
  newest `max_to_keep` are kept.
- `best-N.*`: the model weights after epoch N when N was the best
  validation epoch so far (`monitor`); the newest ones that a kept
  checkpoint may refer to are kept.
- `checkpoint`: TensorFlow's index of the ckpt files, for other tools. It is
  only an index: a restore lists the `ckpt-N.index` files on disk.

Each epoch end writes `history.json` (atomically), the best weights when the
epoch improved on the selection figure, then the checkpoint. Each
checkpoint is written under a temporary name and renamed into place, its
`.index` last, so `ckpt-N.index` exists only once the whole checkpoint
does. A run killed at any point (SIGKILL included) restarts from the newest
checkpoint: history entries past it are dropped and recomputed, so no epoch
is lost or repeated.

A damaged workdir never restarts a run silently (`restore`):
- `checkpoints/checkpoint` unreadable, empty, missing or naming other files:
  ignored (rewritten); the run resumes from the newest checkpoint on disk.
- the newest checkpoint unreadable (its `.index` or a data shard damaged,
  truncated or missing): ValueError naming it and how to recover. Nothing
  is written.
- `history.json` damaged or missing: rewritten from the checkpoint's copy.
- the selected weights (`best-N`) damaged or missing: ValueError naming
  them.
"""

import json
import math
import os
import re

import keras
import tensorflow as tf

HISTORY_FILE = "history.json"
CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "checkpoint"
_HISTORY_KEY = "run/history/.ATTRIBUTES/VARIABLE_VALUE"
_CONFIG_KEY = "run/config/.ATTRIBUTES/VARIABLE_VALUE"


def write_atomically(path, text):
    """Write `text` to `path` through a temporary file and a rename."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def checkpoint_numbers(directory, kind="ckpt"):
    """Sorted N of the `{kind}-N.index` files in `directory`."""
    if not os.path.isdir(directory):
        return []
    pattern = re.compile(rf"^{kind}-(\d+)\.index$")
    return sorted(
        int(m.group(1)) for m in map(pattern.match, os.listdir(directory)) if m
    )


def stored_config(workdir):
    """The settings (JSON text) recorded in the workdir's newest checkpoint,
    or None (no checkpoint, an unreadable one, or one that predates it)."""
    directory = os.path.join(workdir, CHECKPOINT_DIR)
    numbers = checkpoint_numbers(directory)
    if not numbers:
        return None
    try:
        reader = tf.train.load_checkpoint(os.path.join(directory, f"ckpt-{numbers[-1]}"))
        return reader.get_tensor(_CONFIG_KEY).decode("utf-8") or None
    except (tf.errors.OpError, ValueError):
        return None


TIE_BREAK_KEY = "val_map@r"


def _finite_or_none(value):
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def selection_rank(entry, monitor):
    """How a history entry ranks for model selection, or None (unranked).

    The larger tuple wins: the `monitor` figure; on a tie, validation MAP@R
    (`"val_map@r"`, when logged and not the monitor itself); then the later
    epoch. An entry without a finite `monitor` figure is not ranked.
    """
    value = _finite_or_none(entry.get(monitor))
    if value is None:
        return None
    tie = _finite_or_none(entry.get(TIE_BREAK_KEY)) if monitor != TIE_BREAK_KEY else None
    return (value, -math.inf if tie is None else tie, entry["epoch"])


def select_epoch(history, monitor):
    """The selected epoch of a history and how a tie on `monitor` was broken.

    Args:
        history: list of dicts, each with `"epoch"` (from 0) and the logs.
        monitor: the `logs` key whose largest value selects (e.g.
            `"val_recall@1"`).

    Returns:
        A dict: `epoch` (from 0, None when no entry has the monitor),
        `tied_epochs` (from 0: the entries whose monitor equals the selected
        one's, the selected one included) and `tie_break`: `[]` without a
        tie, else the rules that decided it, in order: `"map@r"` (validation
        MAP@R) and/or `"later_epoch"`.
    """
    ranked = [(rank, h) for h in history if (rank := selection_rank(h, monitor)) is not None]
    if not ranked:
        return {"epoch": None, "tied_epochs": [], "tie_break": []}
    best = max(rank for rank, _ in ranked)
    tied = [rank for rank, _ in ranked if rank[0] == best[0]]
    tie_break = []
    if len(tied) > 1:
        same_tie = [rank for rank in tied if rank[1] == best[1]]
        if len(same_tie) < len(tied):
            tie_break.append("map@r")
        if len(same_tie) > 1:
            tie_break.append("later_epoch")
    return {"epoch": best[2], "tied_epochs": sorted(rank[2] for rank in tied),
            "tie_break": tie_break}


def _first_line(error):
    text = getattr(error, "message", None) or str(error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


class RunState:
    """Checkpoints, history and model selection of a training run.

    Args:
        workdir: the run's directory.
        model: a compiled, built Keras model (its optimizer built too).
        max_to_keep: number of checkpoints kept.
        monitor: the `logs` key whose largest value selects the epoch (e.g.
            `"val_recall@1"`; ties go to the larger validation MAP@R, then
            to the later epoch: `selection_rank`), or None to select the
            last epoch.
        config_json: the run's settings, recorded in every checkpoint.
        log: callable for warnings (default: `absl.logging.warning`).
    """

    def __init__(self, workdir, model, max_to_keep=2, monitor=None, config_json="", log=None):
        self.workdir = workdir
        self.directory = os.path.join(workdir, CHECKPOINT_DIR)
        self.model = model
        self.max_to_keep = max_to_keep
        self.monitor = monitor
        if log is None:
            from absl import logging

            log = logging.warning
        self.log = log
        self.epochs_done = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.best_epoch = tf.Variable(-1, dtype=tf.int64, trainable=False)
        self.best_value = tf.Variable(-math.inf, dtype=tf.float64, trainable=False)
        self._history_text = tf.Variable("[]", dtype=tf.string, trainable=False)
        self._config_text = tf.Variable(config_json, dtype=tf.string, trainable=False)
        self._run = tf.train.Checkpoint(
            best_epoch=self.best_epoch, best_value=self.best_value,
            history=self._history_text, config=self._config_text,
        )
        self.checkpoint = tf.train.Checkpoint(
            model=model, optimizer=model.optimizer, epochs_done=self.epochs_done, run=self._run
        )
        self._legacy = tf.train.Checkpoint(
            model=model, optimizer=model.optimizer, epochs_done=self.epochs_done
        )
        self._weights = tf.train.Checkpoint(weights=list(model.weights))
        self.history = []

    @property
    def history_path(self):
        return os.path.join(self.workdir, HISTORY_FILE)

    def _prefix(self, number, kind="ckpt"):
        return os.path.join(self.directory, f"{kind}-{number}")

    # Restoring.

    def restore(self):
        """Restore the newest checkpoint; returns the number of finished epochs.

        Raises:
            ValueError: naming a damaged checkpoint (and how to recover), or a
                checkpoint of another model.
        """
        numbers = checkpoint_numbers(self.directory)
        self._check_state_file(numbers)
        if not numbers:
            self.history = []
            return 0
        prefix = self._prefix(numbers[-1])
        before = f"ckpt-{numbers[-2]}" if len(numbers) > 1 else None
        names = self._verify(prefix, before)
        full = _HISTORY_KEY in names
        try:
            (self.checkpoint if full else self._legacy).read(prefix).assert_existing_objects_matched()
        except (tf.errors.OpError, AssertionError, ValueError) as error:
            raise ValueError(
                f"The checkpoint {prefix!r} does not match this run's model "
                f"(was the workdir used with other settings?): {_first_line(error)}"
            ) from error
        done = int(self.epochs_done.numpy())
        if full:
            self.history = json.loads(self._history_text.numpy().decode("utf-8"))
            self._sync_history_file(prefix)
            if self.monitor and int(self.best_epoch.numpy()) >= 0:
                self._verify(self._prefix(int(self.best_epoch.numpy()) + 1, "best"), None)
        else:  # written before the run state was checkpointed
            self.history = [h for h in self._read_history() if h["epoch"] < done]
            if self.monitor:
                self.log(
                    f"{prefix!r} predates model selection: the epoch is selected "
                    "among the epochs trained from now on"
                )
        return done

    def _verify(self, prefix, before):
        """Read every tensor of a checkpoint (their checksums are checked);
        returns its variable names, or raises ValueError naming it."""
        try:
            reader = tf.train.load_checkpoint(prefix)
            names = reader.get_variable_to_shape_map()
            for name in names:
                reader.get_tensor(name)
        except Exception as error:  # noqa: BLE001  (OpError, IndexError, ...: all damage)
            files = f"{prefix}.index and {prefix}.data-*"
            if os.path.basename(prefix).startswith("best-"):
                how = ("start over with --noresume, or put an intact copy of "
                       f"{files} back")
            elif before:
                how = (f"to resume from the checkpoint before it ({before}), move "
                       f"{files} out of {self.directory!r}; or start over with "
                       "--noresume")
            else:
                how = "start over with --noresume (it is the only checkpoint)"
            raise ValueError(
                f"The checkpoint {prefix!r} is damaged and cannot be read "
                f"({_first_line(error)}). Nothing was overwritten: {how}"
            ) from None
        return names

    def _check_state_file(self, numbers):
        path = os.path.join(self.directory, STATE_FILE)
        if not os.path.exists(path):
            if numbers:
                self.log(f"{path!r} is missing: resuming from ckpt-{numbers[-1]}, found on disk")
                self._write_state_file(numbers)
            return
        try:
            state = tf.train.get_checkpoint_state(self.directory)
            named = os.path.basename(state.model_checkpoint_path) if state else None
        except Exception:  # noqa: BLE001  (a protobuf parse error of any kind)
            named = None
        if not numbers:
            return
        if named != f"ckpt-{numbers[-1]}":
            self.log(
                f"{path!r} is unreadable or names {named!r}: it is only an index; "
                f"resuming from ckpt-{numbers[-1]}, the newest checkpoint on disk"
            )
            self._write_state_file(numbers)

    def _write_state_file(self, numbers):
        kept = [f"ckpt-{n}" for n in numbers]
        lines = [f'model_checkpoint_path: "{kept[-1]}"']
        lines += [f'all_model_checkpoint_paths: "{name}"' for name in kept]
        write_atomically(os.path.join(self.directory, STATE_FILE), "\n".join(lines) + "\n")

    def _read_history(self):
        if not os.path.exists(self.history_path):
            return []
        try:
            with open(self.history_path) as f:
                history = json.load(f)
            if not isinstance(history, list) or not all(
                isinstance(h, dict) and isinstance(h.get("epoch"), int) for h in history
            ):
                raise ValueError("not a list of epoch entries")
            return history
        except (ValueError, OSError) as error:
            raise ValueError(
                f"Corrupt run history {self.history_path!r}: {error}"
            ) from error

    def _sync_history_file(self, prefix):
        try:
            on_disk = self._read_history()
        except ValueError:
            on_disk = None
        if on_disk is None or on_disk[: len(self.history)] != self.history:
            what = "damaged" if on_disk is None else "out of step with the checkpoint"
            if on_disk == [] and not os.path.exists(self.history_path):
                what = "missing"
            self.log(f"{self.history_path!r} was {what}: rewritten from {prefix!r}")
        if on_disk != self.history:
            write_atomically(self.history_path, json.dumps(self.history, indent=1))

    # Recording.

    def record_epoch(self, epoch, logs):
        """History, the best weights if improved, then the checkpoint."""
        entry = {"epoch": int(epoch)}
        entry.update({k: float(v) for k, v in (logs or {}).items()})
        self.history.append(entry)
        write_atomically(self.history_path, json.dumps(self.history, indent=1))
        os.makedirs(self.directory, exist_ok=True)
        rank = selection_rank(entry, self.monitor) if self.monitor else None
        if rank is not None and (self._best_rank() is None or rank > self._best_rank()):
            self._write(self._weights, f"best-{epoch + 1}")
            self.best_epoch.assign(epoch)
            self.best_value.assign(rank[0])
        self.epochs_done.assign(epoch + 1)
        self._history_text.assign(json.dumps(self.history))
        self._write(self.checkpoint, f"ckpt-{epoch + 1}")
        self._prune()

    def _best_rank(self):
        best = int(self.best_epoch.numpy())
        entry = next((h for h in self.history if h["epoch"] == best), None)
        if entry is None:
            # Not in the history (a run that predates it): its figure alone.
            return None if best < 0 else (float(self.best_value.numpy()), -math.inf, best)
        return selection_rank(entry, self.monitor)

    def _write(self, checkpoint, name):
        """`checkpoint` to `directory/name.*`, the `.index` renamed in last."""
        tmp_name = f".tmp-{name}"
        self._remove(tmp_name)
        checkpoint.write(os.path.join(self.directory, tmp_name))
        files = sorted(f for f in os.listdir(self.directory) if f.startswith(tmp_name + "."))
        for index_last in (False, True):
            for f in files:
                if f.endswith(".index") == index_last:
                    os.replace(
                        os.path.join(self.directory, f),
                        os.path.join(self.directory, name + f[len(tmp_name):]),
                    )

    def _remove(self, name):
        for f in os.listdir(self.directory):
            if f.startswith(name + ".") or f == name:
                path = os.path.join(self.directory, f)
                if os.path.isfile(path):
                    os.remove(path)

    def _prune(self):
        numbers = checkpoint_numbers(self.directory)
        for n in numbers[: -self.max_to_keep]:
            self._remove(f"ckpt-{n}")
        self._write_state_file(numbers[-self.max_to_keep:])
        # Kept checkpoints refer to the newest best files up to the current one.
        best = int(self.best_epoch.numpy()) + 1
        candidates = [n for n in checkpoint_numbers(self.directory, "best") if n <= best]
        keep = set(candidates[-self.max_to_keep:])
        for n in checkpoint_numbers(self.directory, "best"):
            if n not in keep:
                self._remove(f"best-{n}")

    # Selection.

    def selected_epoch(self):
        """The selected epoch, counted from 1 (history's `epoch` + 1)."""
        if self.monitor and int(self.best_epoch.numpy()) >= 0:
            return int(self.best_epoch.numpy()) + 1
        return int(self.epochs_done.numpy())

    def selected_value(self):
        """The monitored figure of the selected epoch (None without one)."""
        if self.monitor and int(self.best_epoch.numpy()) >= 0:
            return float(self.best_value.numpy())
        return None

    def restore_selected(self):
        """Load the selected epoch's weights into the model (nothing to do
        when it is the last epoch); returns `selected_epoch()`."""
        epoch = self.selected_epoch()
        if epoch != int(self.epochs_done.numpy()):
            prefix = self._prefix(epoch, "best")
            self._verify(prefix, None)
            try:
                self._weights.read(prefix).assert_existing_objects_matched()
            except (tf.errors.OpError, AssertionError, ValueError) as error:
                raise ValueError(
                    f"The selected weights {prefix!r} do not match this run's "
                    f"model: {_first_line(error)}"
                ) from error
        return epoch

    def clear(self):
        """Forget a previous run in this workdir (--noresume)."""
        if os.path.isdir(self.directory):
            for f in os.listdir(self.directory):
                if re.match(r"^(\.tmp-)?(ckpt|best)-\d+\.", f) or f == STATE_FILE:
                    os.remove(os.path.join(self.directory, f))
        if os.path.exists(self.history_path):
            os.remove(self.history_path)
        self.history = []
        self.epochs_done.assign(0)
        self.best_epoch.assign(-1)
        self.best_value.assign(-math.inf)


class RecordEpochs(keras.callbacks.Callback):
    """Hands each finished epoch's logs to a `RunState` (put it last)."""

    def __init__(self, state):
        super().__init__()
        self.state = state

    def on_epoch_end(self, epoch, logs=None):
        self.state.record_epoch(epoch, logs)

"""RunState: every way a workdir can be damaged has one outcome, and model
selection (the best validation epoch) survives a resume."""

import json
import math
import os

import keras
import numpy as np
import pytest

from metrix_tf.training.run_state import RunState
from metrix_tf.training.run_state import select_epoch

MONITOR = "val_recall@1"


def tiny_model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


def set_weights_to(model, value):
    for w in model.weights:
        w.assign(np.full(w.shape, value, "float32"))


def state_of(workdir, monitor=MONITOR, logged=None):
    sink = logged.append if logged is not None else (lambda *a: None)
    return RunState(str(workdir), tiny_model(), monitor=monitor, config_json='{"x": 1}', log=sink)


def train(workdir, values, start=0):
    """Epoch e leaves every weight at e + 1 and logs values[e]."""
    state = state_of(workdir)
    assert state.restore() == start
    for epoch in range(start, len(values)):
        set_weights_to(state.model, epoch + 1)
        state.record_epoch(epoch, {"loss": 1.0 / (epoch + 1), MONITOR: values[epoch]})
    return state


def files(workdir):
    directory = workdir / "checkpoints"
    return {p: (directory / p).read_bytes() for p in sorted(os.listdir(directory))}


def weight_value(model):
    return float(model.weights[0].numpy().flat[0])


def test_selects_the_best_epoch_and_keeps_it_across_a_resume(tmp_path):
    train(tmp_path, [0.5, 0.9, 0.7])
    # A new process: the best epoch so far is part of the run's state.
    state = train(tmp_path, [0.5, 0.9, 0.7, 0.6, 0.8], start=3)
    assert state.selected_epoch() == 2 and state.selected_value() == 0.9
    assert weight_value(state.model) == 5.0  # the last epoch's weights ...
    assert state.restore_selected() == 2
    assert weight_value(state.model) == 2.0  # ... and then the selected ones
    history = json.loads((tmp_path / "history.json").read_text())
    assert [h[MONITOR] for h in history] == [0.5, 0.9, 0.7, 0.6, 0.8]


def naive_selection(history, monitor):
    """The rule spelled out: the largest monitor figure; among those, the
    largest MAP@R (missing: below any); among those, the last epoch."""
    finite = [h for h in history if isinstance(h.get(monitor), float) and math.isfinite(h[monitor])]
    if not finite:
        return None, []
    top = max(h[monitor] for h in finite)
    tied = [h for h in finite if h[monitor] == top]

    def map_r(h):
        value = h.get("val_map@r") if monitor != "val_map@r" else None
        return value if value is not None and math.isfinite(value) else -math.inf

    best_map = max(map_r(h) for h in tied)
    finalists = [h for h in tied if map_r(h) == best_map]
    rules = []
    if len(tied) > 1 and len(finalists) < len(tied):
        rules.append("map@r")
    if len(finalists) > 1:
        rules.append("later_epoch")
    return finalists[-1]["epoch"], rules


@pytest.mark.parametrize("monitor", [MONITOR, "val_map@r"])
def test_select_epoch_matches_the_rule_on_synthetic_histories(monitor):
    rng = np.random.default_rng(0)
    seen_rules = set()
    for _ in range(300):
        history = []
        for epoch in range(int(rng.integers(1, 7))):
            entry = {"epoch": epoch, "loss": float(rng.uniform())}
            if rng.uniform() < 0.85:  # some epochs are not validated (--eval_every)
                entry[MONITOR] = float(rng.choice([0.5, 0.75, 1.0, math.nan]))
                if rng.uniform() < 0.8:
                    entry["val_map@r"] = float(rng.choice([0.25, 0.5, math.nan]))
            history.append(entry)
        epoch, rules = naive_selection(history, monitor)
        choice = select_epoch(history, monitor)
        assert choice["epoch"] == epoch, history
        assert choice["tie_break"] == rules, history
        seen_rules.add(tuple(rules))
    assert seen_rules >= ({(), ("later_epoch",)} if monitor == "val_map@r"
                          else {(), ("map@r",), ("later_epoch",), ("map@r", "later_epoch")})


def test_select_epoch_on_a_saturated_history():
    history = [{"epoch": 0, MONITOR: 0.8, "val_map@r": 0.4},
               {"epoch": 1, MONITOR: 1.0, "val_map@r": 0.6},
               {"epoch": 2, MONITOR: 1.0, "val_map@r": 0.7},
               {"epoch": 3, MONITOR: 1.0, "val_map@r": 0.65}]
    assert select_epoch(history, MONITOR) == {
        "epoch": 2, "tied_epochs": [1, 2, 3], "tie_break": ["map@r"]}
    history[3]["val_map@r"] = 0.7
    assert select_epoch(history, MONITOR) == {
        "epoch": 3, "tied_epochs": [1, 2, 3], "tie_break": ["map@r", "later_epoch"]}
    for h in history:
        del h["val_map@r"]
    assert select_epoch(history, MONITOR) == {
        "epoch": 3, "tied_epochs": [1, 2, 3], "tie_break": ["later_epoch"]}
    assert select_epoch(history[:2], MONITOR)["tie_break"] == []
    assert select_epoch([{"epoch": 0, "loss": 1.0}], MONITOR)["epoch"] is None


def test_a_tie_keeps_the_best_map_at_r_then_the_later_epoch_across_a_resume(tmp_path):
    logs = [(0.9, 0.5), (1.0, 0.6), (1.0, 0.8), (1.0, 0.7), (1.0, 0.8), (0.95, 0.9)]

    def run(start, stop):
        state = state_of(tmp_path)
        assert state.restore() == start
        for epoch in range(start, stop):
            set_weights_to(state.model, epoch + 1)
            recall, map_r = logs[epoch]
            state.record_epoch(epoch, {MONITOR: recall, "val_map@r": map_r})
        return state

    assert run(0, 4).selected_epoch() == 3  # MAP@R 0.8 beats 0.6 and the later 0.7
    state = run(4, 6)  # a new process: epoch 5 ties epoch 3 on both: the later one
    assert state.selected_epoch() == 5 and state.selected_value() == 1.0
    assert state.restore_selected() == 5 and weight_value(state.model) == 5.0


def test_the_selection_in_results_names_the_tie_break():
    from metrix_tf.training.train_config import TrainConfig
    from metrix_tf.training.trainer import describe_selection

    history = [{"epoch": 0, "val_recall@1": 1.0, "val_map@r": 0.5},
               {"epoch": 1, "val_recall@1": 1.0, "val_map@r": 0.7},
               {"epoch": 2, "val_recall@1": 1.0, "val_map@r": 0.6}]
    config = TrainConfig(select_by="recall@1")
    selection = describe_selection(config, history, 2)
    assert selection["epoch"] == 2 and selection["saturated"]
    assert selection["tied_epochs"] == [1, 2, 3] and selection["tie_break"] == ["map@r"]
    assert "Epochs 1, 2, 3 tied" in selection["text"] and "best validation MAP@R" in selection["text"]
    history[1]["val_recall@1"] = 0.9
    selection = describe_selection(config, history, 3)
    assert selection["tie_break"] == ["map@r"] and selection["tied_epochs"] == [1, 3]
    history[2]["val_recall@1"] = 0.8
    selection = describe_selection(config, history, 1)
    assert selection["tie_break"] == [] and selection["tied_epochs"] == [] and not selection["saturated"]
    assert "tied" not in selection["text"]
    last = describe_selection(TrainConfig(select_by="last"), history, 3)
    assert last["tie_break"] == [] and last["validation"] is None


def test_selection_of_the_last_epoch(tmp_path):
    state = state_of(tmp_path, monitor=None)
    state.restore()
    for epoch, value in enumerate([0.9, 0.1]):
        set_weights_to(state.model, epoch + 1)
        state.record_epoch(epoch, {MONITOR: value})
    assert state.restore_selected() == 2 and weight_value(state.model) == 2.0
    assert not [f for f in os.listdir(tmp_path / "checkpoints") if f.startswith("best-")]


def test_checkpoints_are_written_under_a_temporary_name_and_pruned(tmp_path):
    train(tmp_path, [0.1, 0.2, 0.3, 0.25])
    names = sorted(os.listdir(tmp_path / "checkpoints"))
    assert not [n for n in names if n.startswith(".tmp-")]
    assert {n.split(".")[0] for n in names} == {"ckpt-3", "ckpt-4", "best-2", "best-3", "checkpoint"}


@pytest.mark.parametrize("content", [b"garbage {{{", b"", None, b'model_checkpoint_path: "ckpt-1"\n'])
def test_a_damaged_state_file_is_only_an_index(tmp_path, content):
    train(tmp_path, [0.5, 0.9, 0.7])
    path = tmp_path / "checkpoints" / "checkpoint"
    if content is None:
        path.unlink()
    else:
        path.write_bytes(content)
    logged = []
    state = state_of(tmp_path, logged=logged)
    assert state.restore() == 3
    assert weight_value(state.model) == 3.0 and state.selected_epoch() == 2
    assert len(logged) == 1 and "ckpt-3" in logged[0]
    assert 'model_checkpoint_path: "ckpt-3"' in path.read_text()


@pytest.mark.parametrize(
    "damage",
    ["index_garbage", "index_empty", "data_truncated", "data_flipped", "data_missing"],
)
def test_a_damaged_newest_checkpoint_stops_with_the_file_and_the_way_out(tmp_path, damage):
    train(tmp_path, [0.5, 0.9, 0.7])
    directory = tmp_path / "checkpoints"
    index, data = directory / "ckpt-3.index", directory / "ckpt-3.data-00000-of-00001"
    if damage == "index_garbage":
        index.write_bytes(b"garbage {{{" * 10)
    elif damage == "index_empty":
        index.write_bytes(b"")
    elif damage == "data_truncated":
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    elif damage == "data_flipped":
        raw = bytearray(data.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        data.write_bytes(bytes(raw))
    else:
        data.unlink()
    before = files(tmp_path)
    with pytest.raises(ValueError) as info:
        state_of(tmp_path).restore()
    message = str(info.value)
    assert "ckpt-3" in message and "damaged" in message
    assert "ckpt-2" in message and "--noresume" in message
    assert files(tmp_path) == before  # nothing overwritten
    # The way out it names works: without ckpt-3 the run resumes after epoch 2.
    for name in list(before):
        if name.startswith("ckpt-3."):
            (directory / name).unlink()
    state = state_of(tmp_path)
    assert state.restore() == 2 and weight_value(state.model) == 2.0


def test_an_interrupted_write_resumes_from_the_previous_checkpoint(tmp_path):
    # The .index is renamed in last: without it the checkpoint was never complete.
    train(tmp_path, [0.5, 0.9, 0.7])
    (tmp_path / "checkpoints" / "ckpt-3.index").unlink()
    state = state_of(tmp_path)
    assert state.restore() == 2
    assert [h["epoch"] for h in state.history] == [0, 1]


@pytest.mark.parametrize("content", ["[{]", "", '{"epoch": 1}', None])
def test_a_damaged_history_is_rewritten_from_the_checkpoint(tmp_path, content):
    train(tmp_path, [0.5, 0.9, 0.7])
    path = tmp_path / "history.json"
    want = json.loads(path.read_text())
    if content is None:
        path.unlink()
    else:
        path.write_text(content)
    logged = []
    state = state_of(tmp_path, logged=logged)
    assert state.restore() == 3
    assert state.history == want and json.loads(path.read_text()) == want
    assert len(logged) == 1 and "history.json" in logged[0]


def test_history_past_the_checkpoint_is_dropped_silently(tmp_path):
    train(tmp_path, [0.5, 0.9, 0.7])
    path = tmp_path / "history.json"
    history = json.loads(path.read_text())
    path.write_text(json.dumps(history + [{"epoch": 3, "loss": 0.1}]))  # killed before ckpt-4
    logged = []
    state = state_of(tmp_path, logged=logged)
    assert state.restore() == 3 and not logged
    assert json.loads(path.read_text()) == history


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_damaged_selected_weights_stop_with_their_name(tmp_path, damage):
    train(tmp_path, [0.5, 0.9, 0.7])
    data = tmp_path / "checkpoints" / "best-2.data-00000-of-00001"
    if damage == "missing":
        data.unlink()
    else:
        data.write_bytes(data.read_bytes()[:10])
    with pytest.raises(ValueError, match="best-2.*damaged.*--noresume"):
        state_of(tmp_path).restore()


def test_clear_forgets_everything(tmp_path):
    train(tmp_path, [0.5, 0.9, 0.7])
    state = state_of(tmp_path)
    state.clear()
    assert os.listdir(tmp_path / "checkpoints") == []
    assert not (tmp_path / "history.json").exists()
    assert state_of(tmp_path).restore() == 0


def test_a_checkpoint_written_before_the_run_state_still_resumes(tmp_path):
    import tensorflow as tf

    model = tiny_model()
    set_weights_to(model, 7.0)
    done = tf.Variable(2, dtype=tf.int64)
    old = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=model, optimizer=model.optimizer, epochs_done=done),
        str(tmp_path / "checkpoints"), max_to_keep=2,
    )
    old.save(checkpoint_number=2)
    history = [{"epoch": 0, "loss": 1.0}, {"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.4}]
    (tmp_path / "history.json").write_text(json.dumps(history))
    state = state_of(tmp_path, monitor=None)
    assert state.restore() == 2
    assert weight_value(state.model) == 7.0 and state.history == history[:2]
    assert state.restore_selected() == 2

"""RecallAtK and Utilization callbacks inside a real `model.fit`."""

import functools
import os
import warnings

import faiss
import keras
import numpy as np
import pytest
import tensorflow as tf

from metrix_tf import evaluation
from metrix_tf.callbacks import RecallAtK
from metrix_tf.callbacks import Utilization

faiss.omp_set_num_threads(1)


def _data(n, seed):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((5, 6))
    labels = rng.integers(0, 5, n)
    x = (centres[labels] + 0.8 * rng.standard_normal((n, 6))).astype(
        np.float32)
    return x, labels


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    outputs = keras.layers.Dense(4)(keras.layers.Dense(8, "relu")(inputs))
    return keras.Model(inputs, outputs)


def _fit(model, callbacks, epochs, learning_rate=0.05):
    x, _ = _data(64, seed=1)
    target = np.random.default_rng(2).standard_normal((64, 4)).astype(
        np.float32)
    model.compile(keras.optimizers.SGD(learning_rate), "mse")
    return model.fit(x, target, batch_size=16, epochs=epochs, verbose=0,
                     callbacks=callbacks)


class _Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.logs = []

    def on_epoch_end(self, epoch, logs=None):
        self.logs.append(dict(logs))


def test_recall_at_k_logs_reach_history_with_values_of_the_epoch():
    xv, yv = _data(40, seed=3)
    model = _model()
    recorder = _Recorder()
    cb = RecallAtK((xv, yv), ks=(1, 4),
                   metrics=("recall", "map@r", "r_precision", "precision@1"),
                   every_n_epochs=2)
    history = _fit(model, [cb, recorder], epochs=4)
    # Evaluated after epochs 2 and 4 only.
    assert ["val_recall@1" in logs for logs in recorder.logs] == [
        False, True, False, True]
    assert len(history.history["val_recall@1"]) == 2
    assert len(history.history["loss"]) == 4
    # The last figures are those of the final weights.
    want = evaluation.evaluate_retrieval(
        model.predict(xv, verbose=0), yv, (1, 4))
    for key in ("recall@1", "recall@4", "map@r", "r_precision",
                "precision@1"):
        assert history.history[f"val_{key}"][-1] == pytest.approx(want[key])
    assert cb.last_results["num_queries"] == 40
    assert "val_num_queries" not in history.history


def test_recall_at_k_dataset_and_gallery_match_arrays():
    xq, yq = _data(30, seed=4)
    xg, yg = _data(25, seed=5)
    model = _model()
    ds = tf.data.Dataset.from_tensor_slices((xq, yq)).shuffle(
        30, seed=0).batch(7)
    gds = tf.data.Dataset.from_tensor_slices((xg, yg)).batch(4)
    cb_ds = RecallAtK(ds, ks=(1, 5), gallery=gds, prefix="gal_",
                      metrics=("recall", "map@r"))
    cb_arr = RecallAtK((xq, yq), ks=(1, 5), gallery=(xg, yg), prefix="arr_",
                       metrics=("recall", "map@r"))
    history = _fit(model, [cb_ds, cb_arr], epochs=1)
    want = evaluation.evaluate_retrieval(
        model.predict(xq, verbose=0), yq, (1, 5),
        model.predict(xg, verbose=0), yg)
    for key in ("recall@1", "recall@5", "map@r"):
        assert history.history[f"gal_{key}"][0] == pytest.approx(
            want[key], abs=1e-9)
        assert history.history[f"arr_{key}"][0] == pytest.approx(
            want[key], abs=1e-9)


def test_early_stopping_sees_the_key_only_when_placed_after():
    xv, yv = _data(40, seed=6)
    # Learning rate 0: the metric never improves, so EarlyStopping with
    # patience 1 stops after epoch 2, provided it can read the key.
    stop = keras.callbacks.EarlyStopping(
        monitor="val_recall@1", mode="max", patience=1)
    history = _fit(_model(), [RecallAtK((xv, yv)), stop], epochs=6,
                   learning_rate=0.0)
    assert len(history.epoch) == 2
    stop = keras.callbacks.EarlyStopping(
        monitor="val_recall@1", mode="max", patience=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = _fit(_model(), [stop, RecallAtK((xv, yv))], epochs=4,
                       learning_rate=0.0)
    assert len(history.epoch) == 4  # it never saw the key in time


def test_model_checkpoint_monitors_the_key(tmp_path):
    xv, yv = _data(40, seed=7)
    path = os.path.join(tmp_path, "best.weights.h5")
    checkpoint = keras.callbacks.ModelCheckpoint(
        path, monitor="val_map@r", mode="max", save_best_only=True,
        save_weights_only=True)
    _fit(_model(), [RecallAtK((xv, yv), metrics=("map@r",)), checkpoint],
         epochs=2)
    assert os.path.exists(path)
    assert checkpoint.best > 0


def test_evaluate_before_training_uses_initial_weights():
    xv, yv = _data(40, seed=8)
    model = _model(seed=3)
    want = evaluation.evaluate_retrieval(
        model.predict(xv, verbose=0), yv, (1, 2))
    cb = RecallAtK((xv, yv), ks=(1, 2), evaluate_before_training=True)
    _fit(model, [cb], epochs=1)
    assert cb.initial_results["recall@1"] == want["recall@1"]
    assert cb.initial_results["recall@2"] == want["recall@2"]


def test_utilization_logs_and_mixed():
    xv, _ = _data(30, seed=9)
    xt, yt = _data(50, seed=10)
    model = _model()
    mixed_fn = functools.partial(evaluation.embedding_mixes, seed=0)
    cb = Utilization(xv, (xt, yt), mixed_fn=mixed_fn)
    cb_ds = Utilization(tf.data.Dataset.from_tensor_slices(xv).batch(8),
                        tf.data.Dataset.from_tensor_slices((xt, yt)).batch(9),
                        prefix="ds_")
    history = _fit(model, [cb, cb_ds], epochs=2)
    ev, et = model.predict(xv, verbose=0), model.predict(xt, verbose=0)
    want = evaluation.utilization(ev, et)
    want_mixed = evaluation.utilization(ev, et, mixed_fn(et, yt))
    assert history.history["val_utilization"][-1] == pytest.approx(want)
    assert history.history["ds_utilization"][-1] == pytest.approx(want)
    assert history.history["val_utilization_mixed"][-1] == pytest.approx(
        want_mixed)
    assert want_mixed <= want and want > 0


def test_dict_output_model_needs_output_key():
    inputs = keras.Input((6,))
    emb = keras.layers.Dense(4)(inputs)
    model = keras.Model(inputs, {"embedding": emb, "other": emb * 2.0})
    xv, yv = _data(20, seed=11)
    cb = RecallAtK((xv, yv), ks=(1,))
    cb.set_model(model)
    with pytest.raises(ValueError, match=r"\['embedding', 'other'\]"):
        cb.evaluate()
    cb = RecallAtK((xv, yv), ks=(1,), output_key="embedding")
    cb.set_model(model)
    want = evaluation.recall_at_k(model.predict(xv, verbose=0)["embedding"],
                                  yv, (1,))
    assert cb.evaluate()["recall@1"] == want[1]


def test_callback_arguments_are_validated():
    xv, yv = _data(20, seed=12)
    with pytest.raises(ValueError, match=r"every_n_epochs=0"):
        RecallAtK((xv, yv), every_n_epochs=0)
    with pytest.raises(ValueError, match=r"K=20 .*N - 1 = 19"):
        RecallAtK((xv, yv), ks=(1, 20))
    with pytest.raises(ValueError, match=r"y.shape=\(19,\)"):
        RecallAtK((xv, yv[:19]))
    with pytest.raises(ValueError, match=r"labels are needed"):
        RecallAtK(xv)
    with pytest.raises(ValueError, match=r"prefix=3"):
        Utilization(xv, xv, prefix=3)
    with pytest.raises(ValueError, match=r"mixed_fn=1"):
        Utilization(xv, xv, mixed_fn=1)
    with pytest.raises(ValueError, match=r"batch_size=0"):
        Utilization(xv, xv, batch_size=0)


def test_csv_logger_after_the_callback_records_the_key(tmp_path):
    # File loggers (CSVLogger, TensorBoard) read the same shared logs.
    xv, yv = _data(40, seed=13)
    path = os.path.join(tmp_path, "log.csv")
    history = _fit(_model(), [RecallAtK((xv, yv), ks=(1, 3)),
                              keras.callbacks.CSVLogger(path)], epochs=2)
    with open(path) as f:
        rows = [line.strip().split(",") for line in f]
    column = rows[0].index("val_recall@3")
    assert [float(r[column]) for r in rows[1:]] == pytest.approx(
        history.history["val_recall@3"])

"""Keras callback: retrieval metrics of a held-out set during `model.fit`."""

import keras

from metrix_tf.callbacks import embedding_data
from metrix_tf.evaluation import retrieval_metrics


class RecallAtK(keras.callbacks.Callback):
    """Writes Recall@K (and optionally P@1, R-precision, MAP@R) into `logs`.

    Every `every_n_epochs` epochs the held-out set is embedded with the
    model being trained (`model.predict`, i.e. inference mode: the plain
    `(N, D)` embedding output, never the training-time dict of a Metrix
    model) and evaluated with `metrix_tf.evaluation.evaluate_retrieval`:
    leave-one-out within `data`, or `data` as queries against `gallery`.
    The figures are written into the epoch `logs` as
    `f"{prefix}recall@{K}"` (and `f"{prefix}precision@1"`,
    `f"{prefix}r_precision"`, `f"{prefix}map@r"` when requested), so they
    reach `History`, the progress bar, `TensorBoard` and the monitors of
    `ModelCheckpoint` / `EarlyStopping` (all with `mode="max"`).

    Order matters: Keras calls callbacks in list order with one shared
    `logs` dict, so put this callback BEFORE `ModelCheckpoint`,
    `EarlyStopping`, `TensorBoard` and `CSVLogger` in `callbacks=[...]`
    (History and the progress bar are appended by Keras after yours).
    On epochs that are not evaluated the keys are absent from `logs`;
    monitors then warn and skip that epoch, so with `every_n_epochs > 1`
    set `EarlyStopping(patience=...)` in epochs accordingly.

    Model selection must not look at the test classes: give this callback
    a validation split (e.g. held-out training classes), not the test set.

    Args:
        data: the held-out set: a tuple `(x, y)` of arrays (x: model input
            of N examples, y: int labels of shape `(N,)`), or a batched
            `tf.data.Dataset` yielding `(x, y)`.
        ks: positive ints, the K of Recall@K (default `(1, 2, 4, 8)`); each
            at most N - 1 (leave-one-out) or the gallery size.
        gallery: optional reference set in the same form as `data`; when
            given, `data` are the queries (In-Shop protocol).
        metrics: subset of `("recall", "precision@1", "r_precision",
            "map@r")` to log (default `("recall",)`).
        every_n_epochs: evaluate after every n-th epoch (epochs n, 2n, ...).
        evaluate_before_training: if True, also evaluate in
            `on_train_begin`; the figures go to `initial_results` (Keras
            has no logs for "epoch 0").
        prefix: prefix of the log keys (default `"val_"`).
        batch_size: batch size of `model.predict` for array inputs.
        output_key: which output holds the embeddings when the model
            returns a dict (a key) or a list (an index); None for a model
            with a single output.
        chunk_size: query rows per faiss call; None picks one.
        num_threads: faiss OpenMP threads; None leaves the global setting.
        verbose: 1 prints the figures after each evaluation.

    Attributes:
        last_results: the dict of the latest evaluation (including
            `num_queries` and `num_queries_without_positive`), or None.
        initial_results: the dict from `evaluate_before_training`, or None.

    Example:

    >>> callbacks = [
    ...     RecallAtK((x_val, y_val), ks=(1, 2, 4, 8)),
    ...     keras.callbacks.ModelCheckpoint(
    ...         "best.keras", monitor="val_recall@1", mode="max",
    ...         save_best_only=True),
    ... ]
    >>> model.fit(train_ds, epochs=60, callbacks=callbacks)

    Reference:
        Musgrave, Belongie, Lim, "A Metric Learning Reality Check",
        ECCV 2020 (R-precision, MAP@R).
    """

    def __init__(
        self,
        data,
        ks=(1, 2, 4, 8),
        gallery=None,
        metrics=("recall",),
        every_n_epochs=1,
        evaluate_before_training=False,
        prefix="val_",
        batch_size=256,
        output_key=None,
        chunk_size=None,
        num_threads=None,
        verbose=0,
    ):
        super().__init__()
        self.data = data
        self.metrics = retrieval_metrics._check_metrics(metrics)
        self.gallery = gallery
        self.every_n_epochs = embedding_data.check_every_n_epochs(
            every_n_epochs)
        self.evaluate_before_training = bool(evaluate_before_training)
        self.prefix = embedding_data.check_prefix(prefix)
        self.batch_size = embedding_data.check_batch_size(batch_size)
        self.output_key = output_key
        self.chunk_size = chunk_size
        self.num_threads = num_threads
        self.verbose = verbose
        self._x, self._y, self._dataset = embedding_data.split_data(
            data, "data", needs_labels=True)
        if gallery is not None:
            self._gx, self._gy, self._gdataset = embedding_data.split_data(
                gallery, "gallery", needs_labels=True)
        # Fail at construction, not after the first epoch, when sizes are
        # already known.
        if gallery is None and self._y is not None:
            available, loo, n_ref = len(self._y) - 1, True, len(self._y)
        elif gallery is not None and self._gy is not None:
            available, loo, n_ref = len(self._gy), False, len(self._gy)
        else:
            available, loo, n_ref = float("inf"), True, None
        self.ks = retrieval_metrics._check_ks(ks, available, loo, n_ref)
        self.last_results = None
        self.initial_results = None

    def evaluate(self):
        """Embeds the held-out set(s) now and returns the metrics dict."""
        emb, labels = embedding_data.embed(
            self.model, self._x, self._y, self._dataset, self.batch_size,
            self.output_key)
        if labels is None:
            raise ValueError(
                "`data` yielded no labels: a dataset must yield (x, y).")
        gallery_emb = gallery_labels = None
        if self.gallery is not None:
            gallery_emb, gallery_labels = embedding_data.embed(
                self.model, self._gx, self._gy, self._gdataset,
                self.batch_size, self.output_key)
            if gallery_labels is None:
                raise ValueError("`gallery` yielded no labels: a dataset "
                                 "must yield (x, y).")
        return retrieval_metrics.evaluate_retrieval(
            emb, labels, self.ks, gallery_emb, gallery_labels,
            metrics=self.metrics, chunk_size=self.chunk_size,
            num_threads=self.num_threads)

    def _log_values(self, results):
        return {
            f"{self.prefix}{key}": value
            for key, value in results.items()
            if not key.startswith("num_")
        }

    def _print(self, where, values):
        if self.verbose:
            text = ", ".join(f"{k}={v:.4f}" for k, v in values.items())
            print(f"RecallAtK ({where}): {text}")

    def on_train_begin(self, logs=None):
        if self.evaluate_before_training:
            self.initial_results = self.evaluate()
            self._print("before training",
                        self._log_values(self.initial_results))

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs:
            return
        self.last_results = self.evaluate()
        values = self._log_values(self.last_results)
        if logs is not None:
            logs.update(values)
        self._print(f"epoch {epoch + 1}", values)

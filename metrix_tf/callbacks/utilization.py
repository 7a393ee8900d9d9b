"""Keras callback: utilization (METRIX.md section 5) during `model.fit`."""

import keras

from metrix_tf.callbacks import embedding_data
from metrix_tf.evaluation.utilization import utilization


class Utilization(keras.callbacks.Callback):
    """Writes the utilization of a held-out set into `logs`.

    Every `every_n_epochs` epochs both `data` and `train_data` are embedded
    with the model being trained (inference mode, `model.predict`) and
    `f"{prefix}utilization"` = mean over held-out embeddings of the squared
    Euclidean distance to the nearest training embedding is written into
    the epoch `logs` (lower is better: `mode="min"` for monitors). With
    `mixed_fn`, `f"{prefix}utilization_mixed"` adds the mixed training
    embeddings `mixed_fn(train_embeddings, train_labels)` to the training
    set, e.g. `functools.partial(metrix_tf.evaluation.embedding_mixes,
    seed=0)` for embedding-level mixes.

    Put this callback BEFORE `ModelCheckpoint`, `EarlyStopping`,
    `TensorBoard` and `CSVLogger` in `callbacks=[...]`: Keras calls them in
    list order with one shared `logs` dict. On epochs that are not
    evaluated the keys are absent.

    Args:
        data: the held-out set: an array `x`, a tuple `(x, y)` (y unused)
            or a batched `tf.data.Dataset` yielding `x` or `(x, y)`.
        train_data: the training set (or a sample of it) in the same forms;
            labels are needed only with `mixed_fn`.
        mixed_fn: optional callable `(train_embeddings, train_labels) ->
            mixed embeddings of shape (P, D)`.
        every_n_epochs: evaluate after every n-th epoch.
        evaluate_before_training: if True, also evaluate in
            `on_train_begin`; the figures go to `initial_results`.
        prefix: prefix of the log keys (default `"val_"`).
        batch_size: batch size of `model.predict` for array inputs.
        output_key: the embedding output of a dict (key) or list (index)
            output model; None for a single output.
        normalize: L2-normalise all embeddings first (default True).
        chunk_size: held-out rows per faiss call; None picks one.
        num_threads: faiss OpenMP threads; None leaves the global setting.
        verbose: 1 prints the figures after each evaluation.

    Example:

    >>> model.fit(train_ds, epochs=60, callbacks=[
    ...     Utilization(x_val, train_data=(x_train_sample, y_train_sample),
    ...                 mixed_fn=functools.partial(embedding_mixes, seed=0))])

    Reference:
        Venkataramanan et al., "It Takes Two to Tango: Mixup for Deep
        Metric Learning", ICLR 2022 (utilization).
    """

    def __init__(
        self,
        data,
        train_data,
        mixed_fn=None,
        every_n_epochs=1,
        evaluate_before_training=False,
        prefix="val_",
        batch_size=256,
        output_key=None,
        normalize=True,
        chunk_size=None,
        num_threads=None,
        verbose=0,
    ):
        super().__init__()
        if mixed_fn is not None and not callable(mixed_fn):
            raise ValueError(
                "`mixed_fn` must be a callable (embeddings, labels) -> "
                f"mixed embeddings, or None. Received: mixed_fn={mixed_fn!r}"
            )
        self.data = data
        self.train_data = train_data
        self.mixed_fn = mixed_fn
        self.every_n_epochs = embedding_data.check_every_n_epochs(
            every_n_epochs)
        self.evaluate_before_training = bool(evaluate_before_training)
        self.prefix = embedding_data.check_prefix(prefix)
        self.batch_size = embedding_data.check_batch_size(batch_size)
        self.output_key = output_key
        self.normalize = normalize
        self.chunk_size = chunk_size
        self.num_threads = num_threads
        self.verbose = verbose
        self._x, _, self._dataset = embedding_data.split_data(
            data, "data", needs_labels=False)
        self._tx, self._ty, self._tdataset = embedding_data.split_data(
            train_data, "train_data", needs_labels=False)
        self.last_results = None
        self.initial_results = None

    def evaluate(self):
        """Embeds both sets now; returns `{"utilization": ..., ...}`."""
        test, _ = embedding_data.embed(
            self.model, self._x, None, self._dataset, self.batch_size,
            self.output_key)
        train, train_labels = embedding_data.embed(
            self.model, self._tx, self._ty, self._tdataset, self.batch_size,
            self.output_key)
        results = {"utilization": utilization(
            test, train, normalize=self.normalize,
            chunk_size=self.chunk_size, num_threads=self.num_threads)}
        if self.mixed_fn is not None:
            if train_labels is None:
                raise ValueError(
                    "`mixed_fn` needs training labels: give `train_data` "
                    "as (x, y) or a dataset of (x, y).")
            mixed = self.mixed_fn(train, train_labels)
            results["utilization_mixed"] = utilization(
                test, train, mixed, normalize=self.normalize,
                chunk_size=self.chunk_size, num_threads=self.num_threads)
        return results

    def _print(self, where, results):
        if self.verbose:
            text = ", ".join(
                f"{self.prefix}{k}={v:.4f}" for k, v in results.items())
            print(f"Utilization ({where}): {text}")

    def on_train_begin(self, logs=None):
        if self.evaluate_before_training:
            self.initial_results = self.evaluate()
            self._print("before training", self.initial_results)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs:
            return
        self.last_results = self.evaluate()
        if logs is not None:
            logs.update({f"{self.prefix}{k}": v
                         for k, v in self.last_results.items()})
        self._print(f"epoch {epoch + 1}", self.last_results)

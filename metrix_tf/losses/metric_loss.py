"""What every metric loss shares: input checks, the clean and mixed scoring
on top of the soft-label core, and the Keras `Loss` base class."""

import keras
import tensorflow as tf

from metrix_tf.mixing import mixed_batch as mb
from metrix_tf.mixing.metrix import MIX_STRATEGIES
from metrix_tf.mixing.metrix import Metrix
from metrix_tf.ops.soft_label_similarity import NOT_A_PAIR
from metrix_tf.ops.soft_label_similarity import soft_label_similarity


def standardize_labels(labels):
    """Integer class ids of shape `(B,)` from int or float `(B,)` / `(B, 1)`.

    Keras hands labels to a loss as floats: they are accepted when they hold
    whole numbers.
    """
    labels = tf.convert_to_tensor(labels)
    if labels.shape.rank == 2 and labels.shape[1] == 1:
        labels = tf.squeeze(labels, axis=1)
    if labels.shape.rank != 1:
        raise ValueError(
            "`labels` must be a vector of class ids of shape (batch_size,) or "
            f"(batch_size, 1). Received: labels.shape={labels.shape}"
        )
    if labels.dtype.is_floating:
        tf.debugging.assert_equal(
            labels,
            tf.round(labels),
            message="`labels` must hold whole-number class ids; received "
            "non-integer (or NaN) values",
        )
        return tf.cast(labels, tf.int32)
    if labels.dtype.is_integer:
        return tf.cast(labels, tf.int32)
    raise ValueError(
        f"`labels` must be integer class ids. Received: labels.dtype={labels.dtype}"
    )


def standardize_embeddings(embeddings, name="embeddings"):
    """A finite float tensor of shape `(N, D)`, at least float32."""
    embeddings = tf.convert_to_tensor(embeddings)
    if embeddings.shape.rank != 2:
        raise ValueError(
            f"`{name}` must have shape (batch_size, dim). "
            f"Received: {name}.shape={embeddings.shape}"
        )
    if not embeddings.dtype.is_floating:
        raise ValueError(
            f"`{name}` must be floating point. Received: {name}.dtype={embeddings.dtype}"
        )
    if embeddings.dtype in (tf.float16, tf.bfloat16):
        # Half types lack the range for the exp-based losses' logits.
        embeddings = tf.cast(embeddings, tf.float32)
    tf.debugging.assert_all_finite(
        embeddings, message=f"`{name}` contains NaN or Inf values"
    )
    return embeddings


def _assert_same_length(labels, embeddings, what):
    n_labels, n_rows = labels.shape[0], embeddings.shape[0]
    if n_labels is not None and n_rows is not None:
        if n_labels != n_rows:
            raise ValueError(
                f"`labels` and `{what}` must have the same length. Received: "
                f"labels.shape={labels.shape}, {what}.shape={embeddings.shape}"
            )
    else:
        tf.debugging.assert_equal(
            tf.shape(labels)[0],
            tf.shape(embeddings)[0],
            message=f"`labels` and `{what}` must have the same length",
        )


def unpack_predictions(labels, y_pred, metrix):
    """Clean embeddings and the mixed batch (or None) of a loss call.

    Args:
        labels: int tensor of shape `(B,)` (already standardised).
        y_pred: float tensor of shape `(B, D)`, or a mixed-batch dict (see
            `metrix_tf.mixing.mixed_batch`) from a mixing layer.
        metrix: a `Metrix` or None.

    Returns:
        `(embeddings, mixed)`: the checked `(B, D)` embeddings and the mixed
        batch to score, or None when nothing is mixed (no Metrix, or a
        feature/input-level Metrix at inference, when the model returns the
        plain tensor). At the embedding level the mixes are made here.
    """
    if isinstance(y_pred, dict):
        if metrix is None:
            raise ValueError(
                "The loss received a mixed batch (a dict of mixes) but was "
                "built with metrix=None: pass the same `metrix_tf.Metrix` to "
                "the loss as to the mixing layer."
            )
        mixed = mb.standardize_mixed_batch(y_pred)
        embeddings = standardize_embeddings(mixed[mb.EMBEDDINGS])
        _assert_same_length(labels, embeddings, "embeddings")
        mixed[mb.EMBEDDINGS] = embeddings
        mixed[mb.MIXED_EMBEDDINGS] = tf.cast(
            standardize_embeddings(mixed[mb.MIXED_EMBEDDINGS], "mixed_embeddings"),
            embeddings.dtype,
        )
        return embeddings, mixed
    embeddings = standardize_embeddings(y_pred)
    _assert_same_length(labels, embeddings, "embeddings")
    if metrix is not None and metrix.level == "embedding":
        return embeddings, mb.mix_embeddings(labels, embeddings, metrix)
    return embeddings, None


def score_mixes(anchors, anchor_labels, mixed, metrix, reduce_fn, per_anchor_mask):
    """The weighted mixed loss: `sum_k weight_k * reduce_fn(S, Y_k)`.

    Args:
        anchors: normalised float tensor `(M, D)` (batch embeddings, or the
            proxies for proxy anchor).
        anchor_labels: int tensor `(M,)`.
        mixed: a standardised mixed-batch dict.
        metrix: the `Metrix` configuration.
        reduce_fn: `(similarity, soft_labels) -> scalar`, the loss's reduction.
        per_anchor_mask: callable `(similarity shape) -> bool (M, V)` giving the
            entries scored under per-anchor scoring.

    Returns:
        A scalar tensor. Each strategy is reduced on its own mixes only.
    """
    candidates = tf.math.l2_normalize(mixed[mb.MIXED_EMBEDDINGS], axis=-1)
    similarity, soft_labels = soft_label_similarity(
        anchors,
        anchor_labels,
        candidates,
        mixed[mb.MIX_LABELS_A],
        mixed[mb.MIX_LABELS_B],
        tf.cast(mixed[mb.MIX_LAMBDA], anchors.dtype),
    )
    not_a_pair = tf.constant(NOT_A_PAIR, soft_labels.dtype)
    if metrix.scoring == "per_anchor":
        soft_labels = tf.where(per_anchor_mask(), soft_labels, not_a_pair)
    strategies = (
        [metrix.strategy] if metrix.strategy in MIX_STRATEGIES else MIX_STRATEGIES
    )
    total = tf.zeros([], anchors.dtype)
    for name in strategies:
        of_strategy = tf.equal(mixed[mb.MIX_STRATEGY], MIX_STRATEGIES.index(name))
        strategy_labels = tf.where(of_strategy[None, :], soft_labels, not_a_pair)
        total += metrix.weight_for(name) * reduce_fn(similarity, strategy_labels)
    return total


def pairwise_loss(labels, y_pred, metrix, clean_reduce, mixed_reduce):
    """A loss whose anchors are the batch examples (contrastive, MS).

    Clean part: every example against every other (self-pairs excluded).
    Mixed part: the clean anchors against the normalised mixes.
    """
    labels = standardize_labels(labels)
    embeddings, mixed = unpack_predictions(labels, y_pred, metrix)
    normalised = tf.math.l2_normalize(embeddings, axis=-1)
    batch_size = tf.shape(labels)[0]
    similarity, soft_labels = soft_label_similarity(
        normalised,
        labels,
        normalised,
        labels,
        labels,
        tf.ones([batch_size], normalised.dtype),
        exclude_self=True,
    )
    loss = clean_reduce(similarity, soft_labels)
    if mixed is None:
        return loss

    def per_anchor_mask():
        entries = tf.stack([mixed[mb.ENTRY_ANCHOR], mixed[mb.ENTRY_MIX]], axis=1)
        shape = tf.stack([batch_size, tf.shape(mixed[mb.MIX_LABELS_A])[0]])
        counts = tf.scatter_nd(entries, tf.ones_like(entries[:, 0]), shape)
        return counts > 0

    return loss + score_mixes(
        normalised, labels, mixed, metrix, mixed_reduce, per_anchor_mask
    )


def check_metrix(metrix):
    """A `Metrix`, or None; a serialised config dict is rebuilt."""
    if isinstance(metrix, dict):
        if "config" in metrix:
            metrix = keras.saving.deserialize_keras_object(metrix)
        else:
            metrix = Metrix.from_config(metrix)
    if metrix is not None and not isinstance(metrix, Metrix):
        raise TypeError(
            "Argument `metrix` must be a `metrix_tf.Metrix` or None. "
            f"Received: metrix={metrix!r}"
        )
    return metrix


def check_float(name, value, minimum=None, strict=False):
    """A float hyper-parameter, validated with the bad value quoted."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"Argument `{name}` must be a number. Received: {name}={value!r}"
        ) from None
    if value != value or (
        minimum is not None
        and (value <= minimum if strict else value < minimum)
    ):
        bound = f"> {minimum}" if strict else f">= {minimum}"
        raise ValueError(
            f"Argument `{name}` must be a number {bound}. Received: {name}={value!r}"
        )
    return value


class MetricLoss(keras.losses.Loss):
    """Base class of the metric losses: a Keras `Loss` plus a `Metrix`.

    Subclasses set `self.fn` (the pure loss function) and `self.fn_kwargs`
    and extend `get_config`. The loss returns one scalar for the batch:
    `sample_weight` has no meaning for pairwise losses and is rejected.

    Args:
        metrix: a `metrix_tf.Metrix`, or None for the clean loss.
        name: optional name of the loss instance.
        reduction: Keras reduction (the loss is already a scalar, so any of
            the averaging reductions returns it unchanged).
        dtype: the dtype of the loss computation (default float32).
    """

    # XLA cannot compile the custom op the losses may call.
    supports_jit = False

    def __init__(
        self, metrix=None, name=None, reduction="sum_over_batch_size", dtype=None
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.metrix = check_metrix(metrix)
        if self.metrix is not None:
            # Create the random state eagerly, outside any traced function.
            self.metrix.seed_generator

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError(
                f"{type(self).__name__} scores pairs within the batch and "
                "does not support `sample_weight`. Received: sample_weight="
                f"{sample_weight!r}"
            )
        return super().__call__(y_true, y_pred)

    def get_config(self):
        config = super().get_config()
        config["metrix"] = (
            None
            if self.metrix is None
            else keras.saving.serialize_keras_object(self.metrix)
        )
        return config

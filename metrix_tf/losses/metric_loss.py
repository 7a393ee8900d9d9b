"""What every metric loss shares: input checks, the clean and mixed scoring
on top of the soft-label core, and the Keras `Loss` base class."""

import keras
import tensorflow as tf

from metrix_tf.mixing import mixed_batch as mb
from metrix_tf.mixing.metrix import MIX_STRATEGIES
from metrix_tf.mixing.metrix import Metrix
from metrix_tf.ops.cross_replica import gather
from metrix_tf.ops.cross_replica import local_offset
from metrix_tf.ops.cross_replica import sum_over_replicas
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
        `(embeddings, mixed, mix_in_loss)`: the checked `(B, D)` embeddings;
        the mixed batch of a mixing layer, or None; and whether the loss must
        make the mixes itself (embedding level; from the gathered batch under
        tf.distribute). Nothing is mixed without a Metrix, or for a
        feature/input-level Metrix at inference, when the model returns the
        plain tensor.
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
        return embeddings, mixed, False
    embeddings = standardize_embeddings(y_pred)
    _assert_same_length(labels, embeddings, "embeddings")
    if metrix is not None and metrix.level == "embedding":
        # The caller mixes, over the global batch under tf.distribute.
        return embeddings, None, True
    return embeddings, None, False


# Above this many anchor x candidate entries, and with the compiled op
# loaded, `fused=None` picks the fused reductions (no M x N matrices).
FUSED_MIN_ENTRIES = 1 << 22


class PairScoring:
    """How one loss turns anchor x candidate blocks into its value.

    A loss is its per-row statistics (`from_similarity` on materialised
    matrices, or `fused` without them: the same numbers) and `ratios`, which
    reduce them to `(numerator, denominator)` pairs. The loss is the sum of
    `numerator / denominator` where the denominators are summed over the
    whole (global) batch: that makes the value exact when the rows are split
    between tf.distribute replicas, and equal to the single-device value.
    """

    def from_similarity(self, similarity, soft_labels, mined):
        raise NotImplementedError

    def fused(self, anchors, anchor_labels, candidates, labels_a, labels_b, lam, mined, exclude_self):
        raise NotImplementedError

    def ratios(self, stats, mined):
        raise NotImplementedError


def _use_fused(fused, num_rows, num_columns):
    if fused is not None:
        return bool(fused)
    from metrix_tf.ops import backend

    if backend() != "compiled":
        return False
    if num_rows is None or num_columns is None:
        return None  # unknown statically: decided in-graph
    return num_rows * num_columns >= FUSED_MIN_ENTRIES


def score_block(
    scoring,
    anchors,
    anchor_labels,
    candidates,
    labels_a,
    labels_b,
    lam,
    mined=False,
    self_offset=None,
    mask=None,
    fused=None,
):
    """Per-row statistics of anchors against candidates.

    Args:
        scoring: the loss's `PairScoring`.
        anchors, anchor_labels, candidates, labels_a, labels_b, lam: as for
            `soft_label_similarity` (rows normalised).
        mined: clean pairs, mined as the loss does (multi-similarity).
        self_offset: None, or the candidate index of anchor 0 when the
            candidates include the anchors (the self-pairs are skipped).
        mask: optional bool `(M, N)`: only these entries are scored.
        fused: True / False / None (automatic, see `FUSED_MIN_ENTRIES`).

    Returns:
        The loss's statistics, `(M,)` tensors.
    """
    static_offset = tf.get_static_value(self_offset) if self_offset is not None else None
    can_fuse = mask is None and (self_offset is None or static_offset == 0)
    choice = _use_fused(fused, anchors.shape[0], candidates.shape[0]) if can_fuse else False

    def fused_path():
        return scoring.fused(
            anchors, anchor_labels, candidates, labels_a, labels_b, lam, mined,
            exclude_self=self_offset is not None,
        )

    def materialised_path():
        similarity, soft_labels = soft_label_similarity(
            anchors, anchor_labels, candidates, labels_a, labels_b, lam
        )
        not_a_pair = tf.constant(NOT_A_PAIR, soft_labels.dtype)
        if self_offset is not None:
            rows = tf.range(tf.shape(similarity)[0]) + tf.cast(self_offset, tf.int32)
            columns = tf.range(tf.shape(similarity)[1])
            soft_labels = tf.where(
                tf.equal(rows[:, None], columns[None, :]), not_a_pair, soft_labels
            )
        if mask is not None:
            soft_labels = tf.where(mask, soft_labels, not_a_pair)
        return scoring.from_similarity(similarity, soft_labels, mined)

    if choice is None:
        entries = tf.cast(tf.shape(anchors)[0], tf.int64) * tf.cast(
            tf.shape(candidates)[0], tf.int64
        )
        return tf.cond(entries >= FUSED_MIN_ENTRIES, fused_path, materialised_path)
    return fused_path() if choice else materialised_path()


def combine_ratios(ratios):
    """`sum_k numerator_k / (denominator_k summed over replicas)`, 0 / 0 = 0."""
    total = 0.0
    for numerator, denominator in ratios:
        total += tf.math.divide_no_nan(numerator, sum_over_replicas(denominator))
    return total


def mixed_ratios(scoring, anchors, anchor_labels, mixed, metrix, per_anchor_mask, fused):
    """The weighted `(numerator, denominator)` pairs of the mixed loss.

    Each strategy is scored on its own mixes only and weighted by its weight.

    Args:
        scoring: the loss's `PairScoring`.
        anchors: normalised float tensor `(M, D)` (this replica's batch rows,
            or the proxies for proxy anchor).
        anchor_labels: int tensor `(M,)`.
        mixed: a standardised mixed-batch dict (global mixes).
        metrix: the `Metrix` configuration.
        per_anchor_mask: callable giving the bool `(M, V)` entries scored
            under per-anchor scoring.
        fused: True / False / None.
    """
    candidates = tf.math.l2_normalize(mixed[mb.MIXED_EMBEDDINGS], axis=-1)
    mask = per_anchor_mask() if metrix.scoring == "per_anchor" else None
    strategies = (
        [metrix.strategy] if metrix.strategy in MIX_STRATEGIES else MIX_STRATEGIES
    )
    ratios = []
    for name in strategies:
        of_strategy = tf.equal(mixed[mb.MIX_STRATEGY], MIX_STRATEGIES.index(name))

        def pick(tensor):
            return tf.boolean_mask(tensor, of_strategy)

        stats = score_block(
            scoring,
            anchors,
            anchor_labels,
            pick(candidates),
            pick(mixed[mb.MIX_LABELS_A]),
            pick(mixed[mb.MIX_LABELS_B]),
            tf.cast(pick(mixed[mb.MIX_LAMBDA]), anchors.dtype),
            mask=None if mask is None else tf.boolean_mask(mask, of_strategy, axis=1),
            fused=fused,
        )
        weight = metrix.weight_for(name)
        ratios += [(weight * n, d) for n, d in scoring.ratios(stats, mined=False)]
    return ratios


def pairwise_loss(labels, y_pred, metrix, scoring, fused=None):
    """A loss whose anchors are the batch examples (contrastive, MS).

    Clean part: every example against every other (self-pairs excluded).
    Mixed part: the clean anchors against the normalised mixes. Under
    tf.distribute each replica scores its own anchors against the global
    batch (gathered) and returns its share of the global loss.
    """
    labels = standardize_labels(labels)
    embeddings, mixed, mix_in_loss = unpack_predictions(labels, y_pred, metrix)
    local = tf.math.l2_normalize(embeddings, axis=-1)
    offset = local_offset(tf.shape(local)[0])
    everyone = gather(local)
    all_labels = gather(labels)
    if mix_in_loss:
        mixed = mb.mix_embeddings(all_labels, everyone, metrix)
    ones = tf.ones([tf.shape(all_labels)[0]], local.dtype)
    stats = score_block(
        scoring, local, labels, everyone, all_labels, all_labels, ones,
        mined=True, self_offset=offset, fused=fused,
    )
    ratios = scoring.ratios(stats, mined=True)
    if mixed is not None:

        def per_anchor_mask():
            entries = tf.stack([mixed[mb.ENTRY_ANCHOR], mixed[mb.ENTRY_MIX]], axis=1)
            shape = tf.stack([tf.shape(all_labels)[0], tf.shape(mixed[mb.MIX_LABELS_A])[0]])
            counts = tf.scatter_nd(entries, tf.ones_like(entries[:, 0]), shape)
            return tf.slice(counts, [offset, 0], [tf.shape(local)[0], -1]) > 0

        ratios += mixed_ratios(scoring, local, labels, mixed, metrix, per_anchor_mask, fused)
    return combine_ratios(ratios)


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
        fused: True to score with the fused reductions of the compiled op
            (no anchor x candidate matrices in memory), False not to, None to
            decide by size (`FUSED_MIN_ENTRIES`, when the op is loaded).
        name: optional name of the loss instance.
        reduction: Keras reduction (the loss is already a scalar, so any of
            the averaging reductions returns it unchanged).
        dtype: the dtype of the loss computation (default float32).
    """

    # XLA cannot compile the custom op the losses may call.
    supports_jit = False

    def __init__(
        self,
        metrix=None,
        fused=None,
        name=None,
        reduction="sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.metrix = check_metrix(metrix)
        if fused not in (None, True, False):
            raise ValueError(
                f"Argument `fused` must be None, True or False. Received: fused={fused!r}"
            )
        self.fused = fused
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
        config["fused"] = self.fused
        return config

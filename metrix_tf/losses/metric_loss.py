"""What every metric loss shares: input checks, the clean and mixed scoring
of a loss declaration on top of the soft-label core, and the Keras `Loss`
base classes."""

import math

import keras
import tensorflow as tf

from metrix_tf.mixing.metrix import check_metrix
from metrix_tf.mixing.mixed_batch import MixedBatch
from metrix_tf.mixing.mixed_batch import mix_embeddings
from metrix_tf.mixing.mixed_batch import standardize_mixed_batch
from metrix_tf.ops.cross_replica import gather
from metrix_tf.ops.cross_replica import local_offset
from metrix_tf.ops.cross_replica import sum_over_replicas
from metrix_tf.ops.normalization import l2_normalize
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
        y_pred: float tensor of shape `(B, D)`, or a `MixedBatch` (or its
            dict form, see `metrix_tf.mixing.mixed_batch`) from a mixing
            layer.
        metrix: a `Metrix` or None.

    Returns:
        `(embeddings, mixed, mix_in_loss)`: the checked `(B, D)` embeddings;
        the `MixedBatch` of a mixing layer, or None; and whether the loss
        must make the mixes itself (embedding level; from the gathered batch
        under tf.distribute). Nothing is mixed without a Metrix, or for a
        feature/input-level Metrix at inference, when the model returns the
        plain tensor.
    """
    if isinstance(y_pred, (dict, MixedBatch)):
        if metrix is None:
            raise ValueError(
                "The loss received a mixed batch but was built with "
                "metrix=None: pass the same `metrix_tf.Metrix` to the loss as "
                "to the mixing layer."
            )
        mixed = standardize_mixed_batch(y_pred)
        embeddings = standardize_embeddings(mixed.embeddings)
        _assert_same_length(labels, embeddings, "embeddings")
        mixed_embeddings = standardize_embeddings(mixed.mixed_embeddings, "mixed_embeddings")
        mixed = mixed._replace(
            embeddings=embeddings,
            mixed_embeddings=tf.cast(mixed_embeddings, embeddings.dtype),
        )
        return embeddings, mixed, False
    embeddings = standardize_embeddings(y_pred)
    _assert_same_length(labels, embeddings, "embeddings")
    # The caller mixes, over the global batch under tf.distribute.
    return embeddings, None, metrix is not None and metrix.mixes_in_loss


# Above this many anchor x candidate entries, and with the compiled op
# loaded, `fused=None` picks the fused reductions (no M x N matrices) of a
# loss that has them.
FUSED_MIN_ENTRIES = 1 << 22


def _use_fused(scoring, fused, num_rows, num_columns):
    if scoring.fused is None:
        return False
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
    clean=False,
    self_offset=None,
    mask=None,
    fused=None,
):
    """Per-row statistics of anchors against candidates.

    Args:
        scoring: the loss's declaration (a `LossDeclaration` instance).
        anchors, anchor_labels, candidates, labels_a, labels_b, lam: as for
            `soft_label_similarity` (rows normalised).
        clean: the block is the clean batch (a miner runs on it).
        self_offset: None, or the candidate index of anchor 0 when the
            candidates include the anchors (the self-pairs are skipped).
        mask: optional bool `(M, N)`: only these entries are scored.
        fused: True / False / None (automatic, see `FUSED_MIN_ENTRIES`);
            ignored by a loss without fused kernels.

    Returns:
        The loss's statistics, `(M,)` tensors.
    """
    static_offset = tf.get_static_value(self_offset) if self_offset is not None else None
    can_fuse = mask is None and (self_offset is None or static_offset == 0)
    choice = (
        _use_fused(scoring, fused, anchors.shape[0], candidates.shape[0])
        if can_fuse
        else False
    )

    def fused_path():
        return scoring.fused(
            anchors, anchor_labels, candidates, labels_a, labels_b, lam, clean,
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
        return scoring.row_statistics(similarity, soft_labels, clean)

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
        scoring: the loss's declaration.
        anchors: normalised float tensor `(M, D)` (this replica's batch rows,
            or the proxies).
        anchor_labels: int tensor `(M,)`.
        mixed: a standardised `MixedBatch` (global mixes).
        metrix: the `Metrix` configuration.
        per_anchor_mask: callable giving the bool `(M, V)` entries scored
            under per-anchor scoring.
        fused: True / False / None.
    """
    candidates = l2_normalize(mixed.mixed_embeddings)
    mask = per_anchor_mask() if metrix.scoring == "per_anchor" else None
    ratios = []
    for name, weight in metrix.scored_strategies():
        of_strategy = mixed.of_strategy(name)

        def pick(tensor):
            return tf.boolean_mask(tensor, of_strategy)

        stats = score_block(
            scoring,
            anchors,
            anchor_labels,
            pick(candidates),
            pick(mixed.labels_a),
            pick(mixed.labels_b),
            metrix.label_lambda(tf.cast(pick(mixed.lam), anchors.dtype)),
            mask=None if mask is None else tf.boolean_mask(mask, of_strategy, axis=1),
            fused=fused,
        )
        ratios += [(weight * n, d) for n, d in scoring.ratios(stats, clean=False)]
    return ratios


def _check_proxies(labels, embeddings, proxies):
    """Normalised `(C, D)` proxies; labels must lie in `[0, C)`."""
    proxies = tf.cast(standardize_embeddings(proxies, "proxies"), embeddings.dtype)
    if (
        proxies.shape[1] is not None
        and embeddings.shape[1] is not None
        and proxies.shape[1] != embeddings.shape[1]
    ):
        raise ValueError(
            "`proxies` and `embeddings` must have the same dimension. Received: "
            f"proxies.shape={proxies.shape}, embeddings.shape={embeddings.shape}"
        )
    num_classes = tf.shape(proxies)[0]
    message = "proxy `labels` must be in [0, num_classes)"
    tf.debugging.assert_non_negative(labels, message=message)
    tf.debugging.assert_less(labels, num_classes, message=message)
    return l2_normalize(proxies)


def metric_loss_value(scoring, labels, y_pred, metrix, fused=None, proxies=None):
    """The value of a declared loss on a batch: clean part + Metrix part.

    The anchors are the batch examples (the clean part scores every example
    against every other, self-pairs excluded), or, for a loss declared with
    `uses_proxies`, the rows of `proxies` (every example against every
    proxy). The mixed part scores the anchors against the normalised mixes.
    Under tf.distribute each replica scores its own anchors (all proxies)
    against the gathered batch and returns its share of the global loss.

    Args:
        scoring: the loss's declaration (a `LossDeclaration` instance).
        labels, y_pred: as for any metric loss (see `MetricLoss`).
        metrix: a `Metrix` or None.
        fused: True / False / None.
        proxies: float `(C, D)` for a proxy loss, else None.

    Returns:
        A scalar tensor.
    """
    labels = standardize_labels(labels)
    embeddings, mixed, mix_in_loss = unpack_predictions(labels, y_pred, metrix)
    local = l2_normalize(embeddings)
    everyone = gather(local)
    all_labels = gather(labels)
    if scoring.uses_proxies:
        anchors = _check_proxies(labels, embeddings, proxies)
        anchor_labels = tf.range(tf.shape(anchors)[0])
        offset = None
    else:
        anchors, anchor_labels = local, labels
        offset = local_offset(tf.shape(local)[0])
    ones = tf.ones([tf.shape(all_labels)[0]], local.dtype)
    stats = score_block(
        scoring, anchors, anchor_labels, everyone, all_labels, all_labels, ones,
        clean=True, self_offset=offset, fused=fused,
    )
    ratios = scoring.ratios(stats, clean=True)
    if mix_in_loss:
        mixed = mix_embeddings(all_labels, everyone, metrix)
    if mixed is not None:

        def per_anchor_mask():
            if scoring.uses_proxies:  # a mix counts for its first label's proxy
                return tf.equal(anchor_labels[:, None], mixed.labels_a[None, :])
            entries = tf.stack([mixed.entry_anchor, mixed.entry_mix], axis=1)
            shape = tf.stack([tf.shape(all_labels)[0], tf.shape(mixed.labels_a)[0]])
            counts = tf.scatter_nd(entries, tf.ones_like(entries[:, 0]), shape)
            return tf.slice(counts, [offset, 0], [tf.shape(local)[0], -1]) > 0

        ratios += mixed_ratios(
            scoring, anchors, anchor_labels, mixed, metrix, per_anchor_mask, fused
        )
    return combine_ratios(ratios)


def check_fused(fused, declaration=None):
    """None / True / False; True needs a loss with fused kernels."""
    if fused not in (None, True, False):
        raise ValueError(
            f"Argument `fused` must be None, True or False. Received: fused={fused!r}"
        )
    if fused and declaration is not None and declaration.fused is None:
        raise ValueError(
            f"The {declaration.name} loss has no fused kernels: pass fused=None "
            f"or False. Received: fused={fused!r}"
        )
    return fused


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

    The classes are made from loss declarations (see
    `metrix_tf.losses.loss_declaration`): a subclass sets `declaration` (the
    `LossDeclaration` class) and `function` (the loss function), and stores
    each hyper-parameter as an attribute of the same name. The loss returns
    one scalar for the batch: `sample_weight` has no meaning for pairwise
    losses and is rejected.

    Args:
        metrix: a `metrix_tf.Metrix`, or None for the clean loss.
        fused: True to score with the fused reductions of the compiled op
            (no anchor x candidate matrices in memory), False not to, None to
            decide by size (`FUSED_MIN_ENTRIES`, when the op is loaded). A
            loss without fused kernels accepts None and False only.
        name: optional name of the loss instance.
        reduction: Keras reduction (the loss is already a scalar, so any of
            the averaging reductions returns it unchanged).
        dtype: the dtype of the loss computation (default float32).
    """

    # XLA cannot compile the custom op the losses may call.
    supports_jit = False
    declaration = None
    function = None

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
        self.fused = check_fused(fused, self.declaration)
        if self.metrix is not None:
            # Create the random state eagerly, outside any traced function.
            self.metrix.seed_generator

    def hyper_parameters(self):
        """`{name: value}` of the declaration's hyper-parameters."""
        return {
            parameter.name: getattr(self, parameter.name)
            for parameter in self.declaration.hyper_parameters
        }

    def call(self, y_true, y_pred):
        return self.function(
            y_true, y_pred, **self.hyper_parameters(), metrix=self.metrix,
            fused=self.fused,
        )

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError(
                f"{type(self).__name__} scores pairs within the batch and "
                "does not support `sample_weight`. Received: sample_weight="
                f"{sample_weight!r}"
            )
        if isinstance(y_pred, MixedBatch):
            # Keras would cast every field to the loss dtype: the index
            # fields stay integers. The loss is a scalar: nothing to reduce.
            with keras.name_scope(self.name):
                y_true = keras.ops.convert_to_tensor(y_true, dtype=self.dtype)
                return self.call(y_true, y_pred.with_float_dtype(self.dtype))
        return super().__call__(y_true, y_pred)

    def get_config(self):
        config = super().get_config()
        config["metrix"] = (
            None
            if self.metrix is None
            else keras.saving.serialize_keras_object(self.metrix)
        )
        config["fused"] = self.fused
        config.update(self.hyper_parameters())
        return config


class ProxyMetricLoss(MetricLoss):
    """Base class of the losses whose anchors are trainable class proxies.

    The loss owns a `(num_classes, embedding_dim)` table of trainable proxies
    (`loss.proxies`). Keras does not look for variables inside a loss: compile
    a `metrix_tf.models.MetricModel` (a drop-in `keras.Model` that adopts the
    variables of its losses) so that `model.fit` trains the proxies and
    `model.save` / checkpoints keep them.

    Args:
        num_classes: int > 0, the number of training classes (labels must lie
            in `[0, num_classes)`).
        embedding_dim: int > 0, the embedding size.
        metrix: a `metrix_tf.Metrix`, or None for the clean loss.
        proxy_initializer: initializer of the proxies; defaults to a normal
            distribution with std `sqrt(2 / num_classes)` (Kaiming, fan-out,
            as the reference code).
        proxy_lr_multiplier: float > 0: train the proxies this many times
            faster than the network (the reference uses 100). The loss only
            sees normalised proxies, and an Adam-type optimizer moves every
            coordinate by about the learning rate whatever the gradient's
            scale, so storing the proxies scaled by `1 / proxy_lr_multiplier`
            turns the same step into a `proxy_lr_multiplier` times larger
            rotation: exactly a learning-rate multiplier for Adam (up to its
            epsilon), with no second optimizer.
        fused: as for `MetricLoss`.
        name: as for `MetricLoss`.
        reduction: as for `MetricLoss`.
        dtype: as for `MetricLoss`.
    """

    def __init__(
        self,
        num_classes,
        embedding_dim,
        metrix=None,
        proxy_initializer=None,
        proxy_lr_multiplier=1.0,
        fused=None,
        name=None,
        reduction="sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(
            metrix=metrix, fused=fused, name=name, reduction=reduction, dtype=dtype
        )
        for arg, value in (("num_classes", num_classes), ("embedding_dim", embedding_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(
                    f"Argument `{arg}` must be an int > 0. Received: {arg}={value!r}"
                )
        self.num_classes = num_classes
        self.embedding_dim = embedding_dim
        if proxy_initializer is None:
            proxy_initializer = keras.initializers.RandomNormal(
                stddev=math.sqrt(2.0 / num_classes)
            )
        self.proxy_initializer = keras.initializers.get(proxy_initializer)
        self.proxy_lr_multiplier = check_float(
            "proxy_lr_multiplier", proxy_lr_multiplier, minimum=0.0, strict=True
        )
        self.proxies = keras.Variable(
            self.proxy_initializer((num_classes, embedding_dim))
            / self.proxy_lr_multiplier,
            name="proxies",
            dtype="float32",
        )

    @property
    def variables(self):
        """The loss's own variables (the proxies)."""
        return [self.proxies]

    def call(self, y_true, y_pred):
        return self.function(
            y_true, y_pred, self.proxies, **self.hyper_parameters(),
            metrix=self.metrix, fused=self.fused,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "embedding_dim": self.embedding_dim,
                "proxy_initializer": keras.initializers.serialize(
                    self.proxy_initializer
                ),
                "proxy_lr_multiplier": self.proxy_lr_multiplier,
            }
        )
        return config

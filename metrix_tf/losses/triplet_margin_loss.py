"""Triplet margin loss, with Metrix soft labels."""

import tensorflow as tf

from metrix_tf.losses.loss_declaration import HyperParameter
from metrix_tf.losses.loss_declaration import LossDeclaration
from metrix_tf.losses.loss_declaration import define_loss
from metrix_tf.ops import distance_from_similarity
from metrix_tf.ops import pair_weights

__all__ = ["triplet_margin", "TripletMarginLoss"]

SELECTIONS = ("all", "semi_hard", "hard")


class TripletMargin(LossDeclaration):
    """Triplet margin loss with Metrix (mixup for deep metric learning).

    Over triplets (anchor a, positive p, negative n) of L2-normalised
    embeddings with Euclidean distance `d = sqrt(2 - 2 s)`, the terms are
    `relu(d(a, p) - d(a, n) + margin)`, averaged over the non-zero ones
    (pytorch-metric-learning 1.3.0's `TripletMarginLoss` with its defaults).
    `selection` mines the clean triplets first, as PML's miners do: `"all"`
    every valid triplet; `"semi_hard"` those with `0 < d(a, n) - d(a, p) <=
    margin` (`TripletMarginMiner`); `"hard"` one per anchor, its farthest
    positive and nearest negative (`BatchHardMiner`). With soft labels, every
    ordered pair of distinct candidates (j, k) of an anchor is a triplet of
    weight `y_j (1 - y_k)`: a mix is a positive by its soft label and a
    negative by the rest. Mixes are not mined.
    """

    name = "triplet_margin"
    class_name = "TripletMarginLoss"
    hyper_parameters = (
        HyperParameter("margin", 0.05, "float >= 0, the margin between the anchor-positive and the anchor-negative distance.", minimum=0.0),
        HyperParameter("selection", "all", f"one of {SELECTIONS}: which clean triplets are scored.", choices=SELECTIONS),
    )
    references = (
        ("Weinberger and Saul, 2009", "https://www.jmlr.org/papers/v10/weinberger09a.html"),
        ("Schroff et al., 2015", "https://arxiv.org/abs/1503.03832"),
    )

    def row_statistics(self, similarity, soft_labels, clean):
        distance = distance_from_similarity(similarity)
        positive, negative = pair_weights(soft_labels)
        margin = tf.constant(self.margin, distance.dtype)
        if clean and self.selection == "hard":
            return _hardest_triplet(distance, soft_labels, margin)
        return _weighted_triplets(
            distance, positive, negative, margin, semi_hard=clean and self.selection == "semi_hard"
        )

    def ratios(self, statistics, clean):
        total, count = statistics
        return [(tf.reduce_sum(total), tf.reduce_sum(count))]


def _weighted_triplets(distance, positive, negative, margin, semi_hard):
    """Per row: `sum_{j != k} w+_j w-_k relu(d_j - d_k + margin)` and the
    number of strictly positive terms, in O(N log N) per row.

    Sorting each row's distances turns the sum over negatives k with
    `lower_j < d_k < d_j + margin` into differences of prefix sums of
    `w-_k` and `w-_k d_k`; `lower_j` is `d_j` for semi-hard triplets
    (`d_k > d_j`), else no bound.
    """
    dtype = distance.dtype
    order = tf.argsort(tf.stop_gradient(distance), axis=1, stable=True)
    sorted_distance = tf.gather(distance, order, batch_dims=1)
    sorted_negative = tf.gather(negative, order, batch_dims=1)

    def prefix(values):  # (M, N + 1): sums of the first t sorted entries
        return tf.pad(tf.cumsum(values, axis=1), [[0, 0], [1, 0]])

    weight_sums = prefix(sorted_negative)
    weighted_distances = prefix(sorted_negative * sorted_distance)
    counts = prefix(tf.cast(sorted_negative > 0.0, dtype))
    constant = tf.stop_gradient(sorted_distance)
    upper = tf.searchsorted(constant, tf.stop_gradient(distance) + margin, side="left")
    if semi_hard:
        lower = tf.searchsorted(constant, tf.stop_gradient(distance), side="right")
    else:
        lower = tf.zeros_like(upper)
    upper = tf.maximum(upper, lower)

    def between(values):
        return tf.gather(values, upper, batch_dims=1) - tf.gather(values, lower, batch_dims=1)

    used = positive > 0.0
    terms = (distance + margin) * between(weight_sums) - between(weighted_distances)
    total = tf.reduce_sum(tf.where(used, positive * terms, 0.0), axis=1)
    count = tf.reduce_sum(tf.where(used, between(counts), 0.0), axis=1)
    if not semi_hard:
        # The prefix sums include k = j (a soft-labelled candidate is both
        # a positive and a negative): a triplet needs two candidates.
        self_terms = positive * negative
        total -= tf.reduce_sum(self_terms, axis=1) * margin
        count -= tf.reduce_sum(tf.cast(self_terms > 0.0, dtype), axis=1) * tf.cast(
            margin > 0.0, dtype
        )
    return total, count


def _hardest_triplet(distance, soft_labels, margin):
    """Per row: `relu(max d(a, p) - min d(a, n) + margin)` and its count (0 or
    1); rows without a positive or a negative have none."""
    dtype = distance.dtype
    hard_positive = tf.equal(soft_labels, 1.0)
    hard_negative = tf.equal(soft_labels, 0.0)
    has_both = tf.logical_and(
        tf.reduce_any(hard_positive, axis=1), tf.reduce_any(hard_negative, axis=1)
    )
    lowest = tf.constant(-1.0, dtype)  # distances are >= 0
    farthest = tf.reduce_max(tf.where(hard_positive, distance, lowest), axis=1)
    nearest = -tf.reduce_max(tf.where(hard_negative, -distance, -3.0), axis=1)
    loss = tf.where(has_both, tf.nn.relu(farthest - nearest + margin), 0.0)
    return loss, tf.cast(loss > 0.0, dtype)


triplet_margin, TripletMarginLoss = define_loss(TripletMargin)

"""Retrieval metrics: Recall@K, Precision@1, R-precision and MAP@R.

Definitions (Recall@K as in the deep metric learning literature, the others
from "A Metric Learning Reality Check", Musgrave et al., ECCV 2020). For a
query q with label y_q, its neighbours (see `nearest_neighbors` for the
order and tie rule) n_1, n_2, ... are drawn from the reference set: the
other embeddings of the same set (leave-one-out: CUB, Cars, SOP) or a
separate gallery (query-vs-gallery: In-Shop). rel(i) = [label(n_i) == y_q];
R = number of reference items with label y_q (the query itself excluded in
leave-one-out).

- Recall@K = fraction of queries with rel(i) = 1 for some i <= K.
- Precision@1 = fraction of queries with rel(1) = 1 (equal to Recall@1 by
  definition; reported under its Reality Check name).
- R-precision = mean over queries with R >= 1 of (sum_{i<=R} rel(i)) / R.
- MAP@R = mean over queries with R >= 1 of
  (1/R) sum_{i<=R} P(i) rel(i), with P(i) = (sum_{j<=i} rel(j)) / i.

Queries without a positive (R = 0: a class with a single image in
leave-one-out, or a query class absent from the gallery) count as misses in
Recall@K and Precision@1 (the denominator is all queries, as in the
papers' protocol) and are excluded from R-precision and MAP@R; their count
is reported as `num_queries_without_positive`. If no query has a positive,
R-precision and MAP@R are NaN.
"""

import numbers

import numpy as np

from metrix_tf.evaluation import nearest_neighbors as nn

METRICS = ("recall", "precision@1", "r_precision", "map@r")


def _check_ks(ks, available, leave_one_out, num_reference):
    if isinstance(ks, numbers.Integral) and not isinstance(ks, bool):
        ks = (ks,)
    try:
        ks_tuple = tuple(ks)
    except TypeError:
        raise ValueError(
            f"`ks` must be a sequence of positive integers. Received: ks={ks!r}"
        ) from None
    if not ks_tuple or any(
        isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1
        for k in ks_tuple
    ):
        raise ValueError(
            f"`ks` must be a non-empty sequence of positive integers. "
            f"Received: ks={ks!r}"
        )
    too_big = [int(k) for k in ks_tuple if k > available]
    if too_big:
        where = (
            f"N - 1 = {available} other embeddings in leave-one-out over "
            f"N = {num_reference}"
            if leave_one_out
            else f"a gallery of {available} embeddings"
        )
        raise ValueError(
            f"`ks` has K={too_big[0]} larger than the items each query can "
            f"retrieve ({where}). Received: ks={ks!r}"
        )
    return tuple(int(k) for k in ks_tuple)


def _check_metrics(metrics):
    if isinstance(metrics, str):
        metrics = (metrics,)
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise ValueError(
            f"`metrics` must be a non-empty subset of {METRICS}. "
            f"Received: metrics={metrics!r}"
        )
    return metrics


def _positives_per_query(query_labels, reference_labels, leave_one_out):
    """R for every query: same-label reference items (self excluded)."""
    classes, counts = np.unique(reference_labels, return_counts=True)
    pos = np.searchsorted(classes, query_labels)
    pos_clipped = np.minimum(pos, len(classes) - 1)
    found = (pos < len(classes)) & (classes[pos_clipped] == query_labels)
    r = np.where(found, counts[pos_clipped], 0).astype(np.int64)
    if leave_one_out:
        r -= 1
    return r


def evaluate_retrieval(
    embeddings,
    labels,
    ks=(1, 2, 4, 8),
    gallery_embeddings=None,
    gallery_labels=None,
    metrics=METRICS,
    chunk_size=None,
    num_threads=None,
):
    """All retrieval metrics in one exact, chunked faiss pass.

    Embeddings are L2-normalised inside (cosine similarity). Without a
    gallery the evaluation is leave-one-out within `embeddings` (CUB, Cars,
    SOP); with one, `embeddings` are the queries (In-Shop). See the module
    docstring for the definitions, the handling of queries without a
    positive, and `nearest_neighbors` for the tie rule.

    Args:
        embeddings: float array of shape `(N, D)` (numpy or tensor): the
            evaluation set, or the queries when a gallery is given.
        labels: array of shape `(N,)`: class of each row of `embeddings`.
        ks: positive ints, the K of Recall@K; each at most `N - 1`
            (leave-one-out) or the gallery size.
        gallery_embeddings: optional float array of shape `(M, D)`.
        gallery_labels: array of shape `(M,)`, required with a gallery.
        metrics: subset of `("recall", "precision@1", "r_precision",
            "map@r")`.
        chunk_size: query rows per faiss call (bounds memory to about
            `chunk_size x max(K, R) x 48` bytes besides the embeddings);
            None picks one.
        num_threads: faiss OpenMP threads for this call; None leaves the
            global setting.

    Returns:
        A dict of Python floats / ints: `"recall@K"` for each K (with
        "recall"), `"precision@1"`, `"r_precision"`, `"map@r"` (each when
        requested), `"num_queries"` and `"num_queries_without_positive"`.

    Example:

    >>> x = np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1]], "float32")
    >>> evaluate_retrieval(x, [0, 0, 1, 1], ks=(1,))["recall@1"]
    1.0
    """
    metrics = _check_metrics(metrics)
    leave_one_out = gallery_embeddings is None
    queries = nn.l2_normalize(embeddings, "embeddings")
    query_labels = nn.check_labels(
        labels, "labels", queries.shape[0], "embeddings"
    )
    if leave_one_out:
        if gallery_labels is not None:
            raise ValueError(
                "`gallery_labels` was given without `gallery_embeddings`."
            )
        gallery, reference_labels = queries, query_labels
    else:
        if gallery_labels is None:
            raise ValueError(
                "`gallery_labels` is required with `gallery_embeddings`."
            )
        gallery = nn.l2_normalize(gallery_embeddings, "gallery_embeddings")
        reference_labels = nn.check_labels(
            gallery_labels, "gallery_labels", gallery.shape[0],
            "gallery_embeddings",
        )
        if gallery.shape[1] != queries.shape[1]:
            raise ValueError(
                "`embeddings` and `gallery_embeddings` must have the same "
                f"embedding size. Received: embeddings.shape={queries.shape}"
                f", gallery_embeddings.shape={gallery.shape}"
            )
    available = gallery.shape[0] - (1 if leave_one_out else 0)
    if available < 1:
        raise ValueError(
            "Leave-one-out evaluation needs at least 2 embeddings. "
            f"Received: embeddings.shape={queries.shape}"
        )
    want_recall = "recall" in metrics
    ks = _check_ks(ks, available, leave_one_out, gallery.shape[0]) if (
        want_recall) else ()
    chunk_size = nn.check_chunk_size(chunk_size)

    num_queries = queries.shape[0]
    r = _positives_per_query(query_labels, reference_labels, leave_one_out)
    want_r = "r_precision" in metrics or "map@r" in metrics
    k_max = max(ks + (1,))
    if want_r:
        k_max = max(k_max, int(r.max()))

    hits = np.zeros(len(ks), dtype=np.int64)
    top1 = 0
    r_precision_sum = 0.0
    map_sum = 0.0
    with nn.faiss_threads(num_threads):
        for start, _, indices in nn.iter_knn(
            queries, gallery, k_max, leave_one_out, chunk_size
        ):
            n = indices.shape[0]
            rel = reference_labels[indices] == query_labels[
                start:start + n, None]
            top1 += int(rel[:, 0].sum())
            if ks:
                first = np.where(
                    rel.any(axis=1), rel.argmax(axis=1), k_max
                )
                hits += (first[:, None] < np.asarray(ks)[None, :]).sum(axis=0)
            if want_r:
                r_chunk = r[start:start + n]
                valid = r_chunk > 0
                within_r = np.arange(k_max)[None, :] < r_chunk[:, None]
                rel_r = rel & within_r
                cum = np.cumsum(rel_r, axis=1)
                r_safe = np.maximum(r_chunk, 1)
                r_precision_sum += float(
                    (cum[:, -1][valid] / r_safe[valid]).sum()
                )
                precision_i = cum / np.arange(1, k_max + 1)[None, :]
                ap = (precision_i * rel_r).sum(axis=1) / r_safe
                map_sum += float(ap[valid].sum())

    num_without = int((r <= 0).sum())
    num_with = num_queries - num_without
    results = {}
    for k, h in zip(ks, hits):
        results[f"recall@{k}"] = float(h) / num_queries
    if "precision@1" in metrics:
        results["precision@1"] = top1 / num_queries
    if "r_precision" in metrics:
        results["r_precision"] = (
            r_precision_sum / num_with if num_with else float("nan")
        )
    if "map@r" in metrics:
        results["map@r"] = map_sum / num_with if num_with else float("nan")
    results["num_queries"] = int(num_queries)
    results["num_queries_without_positive"] = num_without
    return results


def recall_at_k(
    embeddings,
    labels,
    ks=(1, 2, 4, 8),
    gallery_embeddings=None,
    gallery_labels=None,
    chunk_size=None,
    num_threads=None,
):
    """Recall@K by cosine similarity (exact, chunked faiss search).

    A query is a hit at K when any of its K nearest neighbours shares its
    label; a query with no positive in the reference set is a miss.
    Arguments as in `evaluate_retrieval`.

    Returns:
        A dict `{K: recall}` with Python int keys and float values in
        [0, 1].

    Example:

    >>> x = np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1]], "float32")
    >>> recall_at_k(x, [0, 1, 0, 1], ks=(1, 2))
    {1: 0.0, 2: 0.5}
    """
    results = evaluate_retrieval(
        embeddings, labels, ks, gallery_embeddings, gallery_labels,
        metrics=("recall",), chunk_size=chunk_size, num_threads=num_threads,
    )
    return {int(k[len("recall@"):]): v for k, v in results.items()
            if k.startswith("recall@")}


def precision_at_1(embeddings, labels, gallery_embeddings=None,
                   gallery_labels=None, chunk_size=None, num_threads=None):
    """Precision@1: fraction of queries whose nearest neighbour shares
    their label (= Recall@1). Arguments as in `evaluate_retrieval`."""
    return evaluate_retrieval(
        embeddings, labels, (1,), gallery_embeddings, gallery_labels,
        metrics=("precision@1",), chunk_size=chunk_size,
        num_threads=num_threads,
    )["precision@1"]


def r_precision(embeddings, labels, gallery_embeddings=None,
                gallery_labels=None, chunk_size=None, num_threads=None):
    """R-precision (Musgrave et al. 2020) over queries with R >= 1.

    Arguments as in `evaluate_retrieval`; NaN when no query has a positive.
    """
    return evaluate_retrieval(
        embeddings, labels, (1,), gallery_embeddings, gallery_labels,
        metrics=("r_precision",), chunk_size=chunk_size,
        num_threads=num_threads,
    )["r_precision"]


def map_at_r(embeddings, labels, gallery_embeddings=None,
             gallery_labels=None, chunk_size=None, num_threads=None):
    """MAP@R (Musgrave et al. 2020) over queries with R >= 1.

    Arguments as in `evaluate_retrieval`; NaN when no query has a positive.
    """
    return evaluate_retrieval(
        embeddings, labels, (1,), gallery_embeddings, gallery_labels,
        metrics=("map@r",), chunk_size=chunk_size, num_threads=num_threads,
    )["map@r"]

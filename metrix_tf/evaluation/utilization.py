"""Utilization (METRIX.md section 5) and embedding-level mixes to add to it.

    u(Q, X) = mean over test embeddings q of min over training embeddings x
              of ||q - x||^2

Lower means the test embeddings land closer to the regions of the
embedding space that training explored. The paper reports it with X the
clean training embeddings and with X extended by the mixed training
embeddings (`mixed_embeddings`, e.g. from `embedding_mixes`).
"""

import numpy as np

from metrix_tf.evaluation import nearest_neighbors as nn


def _prepare(x, name, normalize):
    if normalize:
        return nn.l2_normalize(x, name)
    return np.ascontiguousarray(nn.check_embeddings(x, name), np.float32)


def utilization(
    test_embeddings,
    train_embeddings,
    mixed_embeddings=None,
    normalize=True,
    chunk_size=None,
    num_threads=None,
):
    """Mean squared Euclidean distance from test to nearest training embedding.

    Exact search (faiss, L2 metric, k = 1) with test rows in chunks, so the
    memory is the embeddings plus `chunk_size` results. faiss computes
    `||q||^2 + ||x||^2 - 2 q.x` in float32, so a distance is exact up to
    about 1e-6; negative rounding is clipped to 0.

    Args:
        test_embeddings: float array of shape `(N, D)` (numpy or tensor).
        train_embeddings: float array of shape `(M, D)`.
        mixed_embeddings: optional float array of shape `(P, D)`: mixed
            training embeddings added to the training set X.
        normalize: if True (default) every set is L2-normalised first, as
            the model's embeddings are (then the value lies in [0, 4]).
        chunk_size: test rows per faiss call; None picks one.
        num_threads: faiss OpenMP threads for this call; None leaves the
            global setting.

    Returns:
        A Python float.

    Example:

    >>> utilization([[1.0, 0.0]], [[0.0, 1.0], [1.0, 1.0]])  # 2 - sqrt(2)
    0.5857...

    Reference:
        Venkataramanan et al., "It Takes Two to Tango: Mixup for Deep
        Metric Learning", ICLR 2022, section 5 (utilization).
    """
    test = _prepare(test_embeddings, "test_embeddings", normalize)
    references = [_prepare(train_embeddings, "train_embeddings", normalize)]
    if mixed_embeddings is not None:
        references.append(
            _prepare(mixed_embeddings, "mixed_embeddings", normalize))
    for name, ref in zip(("train_embeddings", "mixed_embeddings"),
                         references):
        if ref.shape[1] != test.shape[1]:
            raise ValueError(
                f"`{name}` must have the embedding size of "
                f"`test_embeddings`. Received: {name}.shape={ref.shape}, "
                f"test_embeddings.shape={test.shape}"
            )
    chunk_size = nn.check_chunk_size(chunk_size) or nn.default_chunk_size(
        1, 0)
    faiss = nn._import_faiss()
    total = 0.0
    with nn.faiss_threads(num_threads):
        for start in range(0, test.shape[0], chunk_size):
            chunk = test[start:start + chunk_size]
            best = np.full(chunk.shape[0], np.inf, dtype=np.float64)
            for ref in references:
                d, _ = faiss.knn(chunk, ref, 1, metric=faiss.METRIC_L2)
                best = np.minimum(best, d[:, 0])
            total += float(np.maximum(best, 0.0).sum())
    return total / test.shape[0]


def embedding_mixes(embeddings, labels, num_mixes=None, alpha=2.0, seed=None):
    """Embedding-level Metrix mixes of training embeddings (for utilization).

    Draws pairs (i, j) of embeddings with different labels and
    lambda ~ Beta(alpha, alpha), and returns the L2-normalised mixes
    `normalize(lambda * e_i + (1 - lambda) * e_j)` of the L2-normalised
    embeddings, as embedding-level Metrix builds them (METRIX.md section 3).

    Args:
        embeddings: float array of shape `(N, D)`.
        labels: array of shape `(N,)`, at least two distinct labels.
        num_mixes: number of mixes; None means N.
        alpha: positive float, the Beta parameter (default 2, as the paper).
        seed: int or None, for `numpy.random.default_rng`.

    Returns:
        A float32 array of shape `(num_mixes, D)`.
    """
    x = nn.l2_normalize(embeddings, "embeddings")
    y = nn.check_labels(labels, "labels", x.shape[0], "embeddings")
    if np.unique(y).size < 2:
        raise ValueError(
            "`labels` must hold at least two classes to mix different "
            "classes. Received: labels with the single value "
            f"{y[:1].tolist()[0]!r}"
        )
    if not (isinstance(alpha, (int, float, np.floating)) and alpha > 0):
        raise ValueError(
            f"`alpha` must be a positive number. Received: alpha={alpha!r}")
    num_mixes = x.shape[0] if num_mixes is None else num_mixes
    if isinstance(num_mixes, bool) or not isinstance(
        num_mixes, (int, np.integer)
    ) or num_mixes < 1:
        raise ValueError(
            "`num_mixes` must be a positive integer. "
            f"Received: num_mixes={num_mixes!r}"
        )
    rng = np.random.default_rng(seed)
    first = rng.integers(0, x.shape[0], num_mixes)
    second = rng.integers(0, x.shape[0], num_mixes)
    # Redraw partners until every pair spans two classes.
    same = y[first] == y[second]
    while same.any():
        second[same] = rng.integers(0, x.shape[0], int(same.sum()))
        same = y[first] == y[second]
    lam = rng.beta(alpha, alpha, num_mixes)[:, None]
    mixes = lam * x[first] + (1.0 - lam) * x[second]
    return nn.l2_normalize(mixes, "mixes")

"""Exact k-nearest-neighbour search by cosine similarity, in bounded memory.

Everything in `metrix_tf.evaluation` stands on `knn` (and its chunked
generator `iter_knn`): embeddings are L2-normalised, queries go to faiss
(`faiss.knn`, exact brute force with BLAS, inner-product metric) in chunks
of rows, so memory holds the gallery plus `chunk_size x k` results and never
a dense query x gallery matrix (60k x 60k float32 would be 14 GB).

Determinism rules (the tests' numpy oracles follow the same ones):

- Similarities are float32 inner products of the float32 L2-normalised
  embeddings. Neighbours are ordered by decreasing similarity; equal
  similarities (exact ties, e.g. duplicate embeddings) are ordered by
  increasing gallery index. This also decides which items enter the list
  when a tie straddles the K-th position: the lower indices win.
- Leave-one-out (no gallery): the query is excluded by its index, never by
  value, so an exact duplicate of the query (at another index) is a
  legitimate neighbour and the query itself never is.
- faiss returns neighbours sorted by score but orders ties arbitrarily and
  may cut a tie group at the K-th position; `iter_knn` searches one extra
  neighbour, re-sorts tied rows by index and, for a row whose tie group may
  continue past what was retrieved, searches that row again with a doubled
  K until the group is complete.
"""

import contextlib

import numpy as np

from metrix_tf.ops.normalization import l2_normalize_numpy

# Rows of float64 scratch used while normalising (bounded memory).
_NORMALIZE_ROWS = 8192
# Upper bound on the bytes of per-chunk search results (indices, scores and
# the boolean / cumulative matrices the metrics derive from them).
_CHUNK_BYTES = 256 * 2**20
_MAX_CHUNK = 4096


def _import_faiss():
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - faiss-cpu is a dependency
        raise ImportError(
            "metrix_tf.evaluation needs faiss: `pip install faiss-cpu`."
        ) from e
    return faiss


@contextlib.contextmanager
def faiss_threads(num_threads):
    """Context manager: run faiss with `num_threads` OpenMP threads.

    Args:
        num_threads: positive int, or None to leave faiss's setting alone.
            The previous setting is restored on exit.
    """
    if num_threads is None:
        yield
        return
    if isinstance(num_threads, bool) or not isinstance(
        num_threads, (int, np.integer)
    ) or num_threads < 1:
        raise ValueError(
            "`num_threads` must be a positive integer or None. "
            f"Received: num_threads={num_threads!r}"
        )
    faiss = _import_faiss()
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(int(num_threads))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def check_embeddings(embeddings, name):
    """Validates a 2-D finite numeric array and returns it as numpy.

    Args:
        embeddings: array-like (numpy, tensor) of shape `(N, D)`.
        name: the argument name quoted in error messages.

    Returns:
        A numpy array of shape `(N, D)`.
    """
    if hasattr(embeddings, "numpy") and not isinstance(embeddings, np.ndarray):
        embeddings = embeddings.numpy()
    x = np.asarray(embeddings)
    if x.ndim != 2:
        raise ValueError(
            f"`{name}` must be a 2-D array of shape (N, D). "
            f"Received: {name}.shape={x.shape}"
        )
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(
            f"`{name}` must have at least one row and one column. "
            f"Received: {name}.shape={x.shape}"
        )
    if not (np.issubdtype(x.dtype, np.floating)
            or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(
            f"`{name}` must hold real numbers. "
            f"Received: {name}.dtype={x.dtype}"
        )
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(
            f"`{name}` has {bad.size} row(s) with NaN or inf values "
            f"(first: row {bad[0]}: {x[bad[0]][:8]}...). Embeddings must be "
            "finite: a NaN usually means the model diverged."
        )
    return x


def check_labels(labels, name, num_rows, rows_name):
    """Validates a 1-D label array with one entry per embedding row.

    Args:
        labels: array-like of shape `(N,)` (ints, or anything numpy can
            compare with `==`).
        name: the argument name quoted in error messages.
        num_rows: the expected length N.
        rows_name: the name of the matching embedding argument.

    Returns:
        A numpy array of shape `(N,)`.
    """
    if hasattr(labels, "numpy") and not isinstance(labels, np.ndarray):
        labels = labels.numpy()
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(
            f"`{name}` must be a 1-D array of class labels. "
            f"Received: {name}.shape={y.shape}"
        )
    if y.shape[0] != num_rows:
        raise ValueError(
            f"`{name}` has {y.shape[0]} entries but `{rows_name}` has "
            f"{num_rows} rows: they must match one to one."
        )
    return y


def l2_normalize(embeddings, name="embeddings"):
    """L2-normalises rows into a new float32 array (computed in float64).

    The rule of the losses (`metrix_tf.ops.normalization`): each row is
    divided by its largest absolute entry first, so any finite non-zero row
    gives its direction at any scale; a zero row stays zero (its cosine
    similarity to everything is 0).

    Args:
        embeddings: array-like of shape `(N, D)`, finite.
        name: the argument name quoted in error messages.

    Returns:
        A C-contiguous float32 numpy array of shape `(N, D)` whose non-zero
        rows have unit norm.
    """
    x = check_embeddings(embeddings, name)
    out = np.empty(x.shape, dtype=np.float32)
    for start in range(0, x.shape[0], _NORMALIZE_ROWS):
        out[start:start + _NORMALIZE_ROWS] = l2_normalize_numpy(x[start:start + _NORMALIZE_ROWS])
    return out


def default_chunk_size(k, num_gallery):
    """Query rows per chunk so per-chunk results stay near 256 MiB."""
    del num_gallery  # faiss blocks the distance matrix itself.
    per_row = max(1, k) * 48
    return int(max(1, min(_MAX_CHUNK, _CHUNK_BYTES // per_row)))


def check_chunk_size(chunk_size):
    if chunk_size is None:
        return None
    if isinstance(chunk_size, bool) or not isinstance(
        chunk_size, (int, np.integer)
    ) or chunk_size < 1:
        raise ValueError(
            "`chunk_size` must be a positive integer or None. "
            f"Received: chunk_size={chunk_size!r}"
        )
    return int(chunk_size)


def _sort_ties(scores, indices):
    """Orders each row by (decreasing score, increasing index), in place."""
    tied = np.flatnonzero((scores[:, 1:] == scores[:, :-1]).any(axis=1))
    if tied.size:
        s = scores[tied]
        i = indices[tied]
        order = np.lexsort((i, -s), axis=-1)
        scores[tied] = np.take_along_axis(s, order, axis=1)
        indices[tied] = np.take_along_axis(i, order, axis=1)


def _search_complete(faiss, queries, gallery, k_need):
    """Top `k_need` rows by (score desc, index asc), tie groups complete.

    Returns float32 scores and int64 indices of shape `(n, k_need)`.
    """
    num_gallery = gallery.shape[0]
    k_search = min(k_need + 1, num_gallery)
    scores, indices = faiss.knn(
        queries, gallery, k_search, metric=faiss.METRIC_INNER_PRODUCT
    )
    _sort_ties(scores, indices)
    if k_search < num_gallery:
        # Items not retrieved score <= the last retrieved score; if that
        # equals the K-th score the tie group may continue past the list.
        open_rows = np.flatnonzero(
            scores[:, k_search - 1] == scores[:, k_need - 1]
        )
        for row in open_rows:
            k_row = k_search
            while True:
                k_row = min(2 * k_row, num_gallery)
                s, i = faiss.knn(
                    queries[row:row + 1], gallery, k_row,
                    metric=faiss.METRIC_INNER_PRODUCT,
                )
                _sort_ties(s, i)
                if k_row == num_gallery or s[0, -1] < s[0, k_need - 1]:
                    break
            scores[row, :k_need] = s[0, :k_need]
            indices[row, :k_need] = i[0, :k_need]
    return scores[:, :k_need], indices[:, :k_need]


def iter_knn(queries, gallery, k, exclude_self, chunk_size=None):
    """Yields the k nearest neighbours of query chunks (normalised inputs).

    Args:
        queries: C-contiguous float32 array of shape `(N, D)`, L2-normalised.
        gallery: C-contiguous float32 array of shape `(M, D)`, L2-normalised;
            in leave-one-out mode it is the same array as `queries`.
        k: neighbours per query, `1 <= k <= M` (`<= M - 1` when
            `exclude_self`).
        exclude_self: if True (leave-one-out), query i never retrieves
            gallery item i.
        chunk_size: query rows per faiss call; None picks one from `k`.

    Yields:
        `(start, scores, indices)`: float32 scores and int64 gallery indices
        of shape `(n, k)` for queries `start .. start + n - 1`, in the order
        documented in the module docstring.
    """
    faiss = _import_faiss()
    k_need = k + 1 if exclude_self else k
    if chunk_size is None:
        chunk_size = default_chunk_size(k_need + 1, gallery.shape[0])
    for start in range(0, queries.shape[0], chunk_size):
        chunk = queries[start:start + chunk_size]
        scores, indices = _search_complete(faiss, chunk, gallery, k_need)
        if exclude_self:
            n = chunk.shape[0]
            is_self = indices == np.arange(start, start + n)[:, None]
            # Drop the query's own index; when a lower-index duplicate tie
            # pushed it out of the list, drop the surplus last entry.
            drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), k)
            keep = np.ones(indices.shape, dtype=bool)
            keep[np.arange(n), drop] = False
            scores = scores[keep].reshape(n, k)
            indices = indices[keep].reshape(n, k)
        yield start, scores, indices


def knn(
    queries,
    gallery=None,
    k=1,
    normalize=True,
    chunk_size=None,
    num_threads=None,
):
    """Exact k nearest neighbours by cosine similarity (faiss, chunked).

    Args:
        queries: float array of shape `(N, D)`.
        gallery: float array of shape `(M, D)`, or None for leave-one-out
            search within `queries` (each query excluded by its index).
        k: number of neighbours, at most `M` (`N - 1` in leave-one-out).
        normalize: if True (default) rows are L2-normalised first, so the
            scores are cosine similarities; if False they are raw inner
            products.
        chunk_size: query rows per faiss call (bounds memory); None picks
            one from `k`.
        num_threads: faiss OpenMP threads for this call; None leaves the
            global setting.

    Returns:
        `(similarities, indices)`: a float32 array and an int64 array of
        shape `(N, k)`, each row sorted by decreasing similarity with ties
        broken by increasing gallery index.

    Example:

    >>> x = np.eye(3, dtype="float32")
    >>> knn(x, k=1)[1][:, 0]   # all ties at 0: lowest other index
    array([1, 0, 0])
    """
    leave_one_out = gallery is None
    if normalize:
        q = l2_normalize(queries, "queries")
        g = q if leave_one_out else l2_normalize(gallery, "gallery")
    else:
        q = np.ascontiguousarray(
            check_embeddings(queries, "queries"), dtype=np.float32)
        g = q if leave_one_out else np.ascontiguousarray(
            check_embeddings(gallery, "gallery"), dtype=np.float32)
    if q.shape[1] != g.shape[1]:
        raise ValueError(
            "`queries` and `gallery` must have the same embedding size. "
            f"Received: queries.shape={q.shape}, gallery.shape={g.shape}"
        )
    available = g.shape[0] - 1 if leave_one_out else g.shape[0]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not (
        1 <= k <= available
    ):
        raise ValueError(
            f"`k` must be an integer in [1, {available}] (the items each "
            "query can retrieve"
            + (" in leave-one-out" if leave_one_out else "")
            + f"). Received: k={k!r}"
        )
    chunk_size = check_chunk_size(chunk_size)
    scores = np.empty((q.shape[0], k), dtype=np.float32)
    indices = np.empty((q.shape[0], k), dtype=np.int64)
    with faiss_threads(num_threads):
        for start, s, i in iter_knn(q, g, int(k), leave_one_out, chunk_size):
            scores[start:start + len(s)] = s
            indices[start:start + len(s)] = i
    return scores, indices

"""A persistent nearest-neighbour index of embeddings, on faiss."""

import json
import os
import shutil
import uuid

import numpy as np

from metrix_tf.data.array_cache import sha256_file
from metrix_tf.evaluation import nearest_neighbors as nn
from metrix_tf.export.saved_model import replace_directory
from metrix_tf.ops.normalization import l2_normalize_numpy

FORMAT = "metrix_tf.retrieval.Index"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
INDEX_FILE = "index.faiss"
IDS_FILE = "ids.npy"
LABELS_FILE = "labels.npy"
METADATA_FILE = "metadata.json"
KINDS = ("exact", "hnsw", "ivf_pq")
# Rows validated, normalised and handed to faiss at a time: bounds the
# scratch memory of `add` (float64 normalisation) whatever the input size.
DEFAULT_BATCH_SIZE = 65536
_MISSING = -1  # the id and label of a missing neighbour (and of a removed row)


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _as_numpy(array):
    if hasattr(array, "numpy") and not isinstance(array, np.ndarray):
        array = array.numpy()
    return np.asarray(array)


def _default_pq_m(dimension):
    """The largest divisor of `dimension` not above `dimension // 4`."""
    target = max(1, dimension // 4)
    return max(m for m in range(1, target + 1) if dimension % m == 0)


class Index:
    """A nearest-neighbour index of embeddings by cosine similarity (faiss).

    Rows are L2-normalised as everywhere in metrix_tf, so scores are cosine
    similarities. Each row carries an int64 id (its own, or the next free
    one) and optionally an int64 label. Three kinds:

    - `"exact"`: brute force (`faiss.IndexFlatIP`). Its results are exactly
      `metrix_tf.evaluation.knn`'s: decreasing similarity, ties by increasing
      insertion order (complete tie groups, however many are tied at the
      K-th place).
    - `"hnsw"`: a navigable small-world graph (`IndexHNSWFlat`), approximate.
      `hnsw_m` neighbours per node (more: better recall, more memory and a
      slower build); `hnsw_ef_construction` candidates while inserting
      (more: a better graph, a slower build; the default 128, not faiss's
      40: on benchmarks/bench_index.py's 1M clustered rows, 40 reached
      recall@10 0.884 at efSearch 128 and 128 reaches 0.978 at 17.7x exact
      search's queries/s); `hnsw_ef_search` candidates
      per query (more: better recall, slower queries; may be changed any
      time). Removed rows stay in the graph and are filtered out of results
      (faiss cannot delete from HNSW): rebuild after removing many.
    - `"ivf_pq"`: an inverted file of product-quantised codes (`IndexIVFPQ`),
      approximate and compact (`pq_m` bytes a row at 8 bits). `ivf_nlist`
      clusters (default: training rows // 64, at most 1024); each query
      scans the `ivf_nprobe` nearest (more: better recall, slower queries;
      may be changed any time); `pq_m` sub-vectors of `pq_nbits` bits (more:
      better scores, more memory; default: the largest divisor of the
      dimension up to dimension / 4). It is trained on the first
      `train_size` rows added (held until then, in bounded memory), or on
      the sample given to `train`: shuffle a stream ordered by class.

    Defined results: `search` always returns `k` columns; when fewer than
    `k` rows can be found (a smaller index, or an approximate search that
    found fewer) the missing neighbours have id -1, label -1 and score
    -inf, after the found ones. Ids must be non-negative and unique
    (-1 marks a missing neighbour). Rows with NaN, inf or all zeros are
    rejected with the row named.

    Args:
        dimension: int, the embedding size D.
        kind: `"exact"`, `"hnsw"` or `"ivf_pq"`.
        hnsw_m: int, graph neighbours per node (hnsw).
        hnsw_ef_construction: int, build-time candidates (hnsw).
        hnsw_ef_search: int, query-time candidates (hnsw), `>= k` helps.
        ivf_nlist: int or None, inverted lists (ivf_pq).
        ivf_nprobe: int, lists scanned per query (ivf_pq).
        pq_m: int or None, code bytes per row at 8 bits; divides D (ivf_pq).
        pq_nbits: int, bits per sub-vector code (ivf_pq).
        train_size: int, rows the ivf_pq training waits for.
        batch_size: int, rows handled at a time by `add` and `search`.
        seed: int, the seed of ivf_pq's k-means.
        model_fingerprint: optional str, the fingerprint of the SavedModel
            that made the embeddings (`Searcher` sets it).
        metadata: optional JSON-serialisable dict saved with the index
            (`metrix-index` keeps the image paths there).

    Example:

    >>> index = Index(3)
    >>> index.add(np.eye(3, dtype="float32"), ids=[10, 11, 12], labels=[0, 1, 1])
    >>> ids, labels, scores = index.search([[1.0, 0.1, 0.0]], k=2)
    >>> ids.tolist(), labels.tolist()
    ([[10, 11]], [[0, 1]])

    Reference:
        Johnson et al., "Billion-scale similarity search with GPUs" (faiss),
        IEEE Trans. Big Data 2019; Malkov & Yashunin, "Efficient and robust
        approximate nearest neighbor search using hierarchical navigable
        small world graphs", TPAMI 2018; Jegou et al., "Product quantization
        for nearest neighbor search", TPAMI 2011.
    """

    def __init__(self, dimension, kind="exact", hnsw_m=32, hnsw_ef_construction=128,
                 hnsw_ef_search=128, ivf_nlist=None, ivf_nprobe=32, pq_m=None, pq_nbits=8,
                 train_size=65536, batch_size=DEFAULT_BATCH_SIZE, seed=0,
                 model_fingerprint=None, metadata=None):
        if not _is_int(dimension) or dimension < 1:
            raise ValueError(f"`dimension` must be a positive int. Received: dimension={dimension!r}")
        if kind not in KINDS:
            raise ValueError(f"`kind` must be one of {KINDS}. Received: kind={kind!r}")
        positive = {"hnsw_m": hnsw_m, "hnsw_ef_construction": hnsw_ef_construction,
                    "hnsw_ef_search": hnsw_ef_search, "ivf_nprobe": ivf_nprobe,
                    "pq_nbits": pq_nbits, "train_size": train_size, "batch_size": batch_size}
        for name in ("ivf_nlist", "pq_m"):
            if locals()[name] is not None:
                positive[name] = locals()[name]
        for name, value in positive.items():
            if not _is_int(value) or value < 1:
                raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")
        if pq_m is not None and dimension % pq_m:
            raise ValueError(f"`pq_m` must divide the dimension ({dimension}). Received: pq_m={pq_m}")
        if pq_nbits > 16:
            raise ValueError(f"`pq_nbits` must be at most 16. Received: pq_nbits={pq_nbits}")
        if metadata is not None:
            json.dumps(metadata)  # fails now, not at save time
        self.dimension = int(dimension)
        self.kind = kind
        self.hnsw_m = int(hnsw_m)
        self.hnsw_ef_construction = int(hnsw_ef_construction)
        self.hnsw_ef_search = int(hnsw_ef_search)
        self.ivf_nlist = None if ivf_nlist is None else int(ivf_nlist)
        self.ivf_nprobe = int(ivf_nprobe)
        self.pq_m = int(pq_m) if pq_m is not None else _default_pq_m(self.dimension)
        self.pq_nbits = int(pq_nbits)
        self.train_size = int(train_size)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.model_fingerprint = model_fingerprint
        self.metadata = dict(metadata or {})
        self._faiss_index = self._new_faiss_index() if kind != "ivf_pq" else None
        # Position p (the faiss row, or the ivf_pq id) holds id _ids[p],
        # _MISSING once removed; chunks are joined on first use.
        self._id_chunks = []
        self._label_chunks = []
        self._has_labels = None  # decided by the first `add`
        self._next_id = 0
        self._count = 0  # live rows
        self._size = 0  # positions used (removed rows included, but exact's)
        self._lookup = None  # (sorted ids, their positions), kept up to date
        self._pending = []  # ivf_pq rows waiting for training: (positions, vectors)
        self._pending_rows = 0
        self._selector = None  # hnsw: the live rows' faiss.IDSelector

    # ------------------------------------------------------------------ faiss

    @staticmethod
    def _faiss():
        return nn._import_faiss()

    def _new_faiss_index(self, nlist=None):
        faiss = self._faiss()
        if self.kind == "exact":
            return faiss.IndexFlatIP(self.dimension)
        if self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(self.dimension, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = self.hnsw_ef_construction
            return index
        index = faiss.index_factory(self.dimension, f"IVF{nlist},PQ{self.pq_m}x{self.pq_nbits}",
                                    faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = self.seed
        index.pq.cp.seed = self.seed
        # Polysemous codes serve Hamming-filtered search, which this index
        # never runs; training them takes most of the time (30 s on 512 rows).
        index.do_polysemous_training = False
        return index

    @property
    def is_trained(self):
        """False for an ivf_pq index still waiting for its training rows."""
        return self._faiss_index is not None

    def train(self, embeddings):
        """Trains an ivf_pq index on a sample (other kinds need none).

        Args:
            embeddings: float array of shape `(n, D)`, a sample of the rows
                to come; `n >= max(ivf_nlist, 2 ** pq_nbits)`.
        """
        if self.kind != "ivf_pq":
            return
        if self.is_trained:
            raise ValueError("This ivf_pq index is trained already (train it before the first add).")
        if self._pending_rows:
            raise ValueError("Call `train` before the first `add` (rows are waiting for training).")
        x = self._checked(embeddings, "embeddings")
        self._train_on(np.concatenate([self._normalized(x[s:s + self.batch_size], "embeddings", s)
                                       for s in range(0, x.shape[0], self.batch_size)]))

    def _train_on(self, sample):
        nlist = self.ivf_nlist or max(1, min(1024, sample.shape[0] // 64))
        needed = max(nlist, 2 ** self.pq_nbits)
        if sample.shape[0] < needed:
            raise ValueError(
                f"An ivf_pq index with ivf_nlist={nlist} and pq_nbits={self.pq_nbits} needs at "
                f"least {needed} rows to train; it has {sample.shape[0]}. Add more rows, lower "
                "them, or use kind='exact'."
            )
        index = self._new_faiss_index(nlist)
        index.train(sample)
        self._faiss_index = index

    def _flush_pending(self):
        """ivf_pq: trains on the rows held so far and adds them."""
        if self.is_trained or not self._pending_rows:
            return
        self._train_on(np.concatenate([v for _, v in self._pending])[:self.train_size])
        pending, self._pending, self._pending_rows = self._pending, [], 0
        for positions, vectors in pending:
            self._faiss_index.add_with_ids(vectors, positions)

    # ------------------------------------------------------------- validation

    def _checked(self, array, name):
        """A 2-D real array of this index's width (not copied)."""
        x = _as_numpy(array)
        if x.ndim == 1 and x.shape[0] == self.dimension and name == "queries":
            x = x[None]
        if x.ndim != 2:
            raise ValueError(f"`{name}` must be a 2-D array of shape (N, {self.dimension}). "
                             f"Received: {name}.shape={x.shape}")
        if x.shape[1] != self.dimension:
            raise ValueError(
                f"`{name}` has {x.shape[1]} columns but this index holds {self.dimension}-"
                f"dimensional embeddings. Received: {name}.shape={x.shape}")
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise ValueError(f"`{name}` must hold real numbers. Received: {name}.dtype={x.dtype}")
        return x

    @staticmethod
    def _check_rows(rows, name, offset):
        """Names the first NaN, inf or all-zero row (row `offset + i`)."""
        for bad, what in ((~np.isfinite(rows).all(axis=1), "has NaN or inf values"),
                          (~rows.any(axis=1), "is all zeros (a zero embedding has no direction)")):
            bad = np.flatnonzero(bad)
            if bad.size:
                raise ValueError(
                    f"`{name}` row {offset + bad[0]} {what}: {rows[bad[0]][:8]} ({bad.size} such "
                    f"row(s) in rows {offset}..{offset + len(rows) - 1})")

    def _normalized(self, rows, name, offset):
        """Checked rows as float32 unit rows (`metrix_tf.evaluation`'s rule)."""
        self._check_rows(rows, name, offset)
        return np.ascontiguousarray(l2_normalize_numpy(rows), dtype=np.float32)

    def _check_ids(self, ids, n):
        ids = _as_numpy(ids)
        if ids.ndim == 2 and ids.shape[1] == 1:
            ids = ids[:, 0]
        if ids.ndim != 1 or ids.shape[0] != n:
            raise ValueError(f"`ids` must have shape ({n},) (one per row). Received: ids.shape={ids.shape}")
        if n and not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"`ids` must be integers. Received: ids.dtype={ids.dtype}")
        ids = ids.astype(np.int64)
        if n and ids.min() < 0:
            raise ValueError(f"`ids` must be non-negative (-1 marks a missing neighbour). "
                             f"Received: {ids[ids < 0][:5].tolist()}")
        unique, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"`ids` must be unique; repeated: {unique[counts > 1][:5].tolist()}")
        present = self._positions(ids) >= 0
        if present.any():
            raise ValueError(f"`ids` already in the index: {ids[present][:5].tolist()} "
                             f"({int(present.sum())} in all); remove them first")
        return ids

    def _check_labels(self, labels, n):
        if labels is None:
            if self._has_labels:
                raise ValueError("This index stores labels: pass `labels` to every `add`.")
            return None
        if self._has_labels is False:
            raise ValueError("This index was built without labels: `labels` must be None.")
        labels = _as_numpy(labels)
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1 or labels.shape[0] != n:
            raise ValueError(f"`labels` must have shape ({n},) (one per row). "
                             f"Received: labels.shape={labels.shape}")
        if n and not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"`labels` must be integers. Received: labels.dtype={labels.dtype}")
        return labels.astype(np.int64)

    # ------------------------------------------------------------ id tables

    def _ids(self):
        if len(self._id_chunks) != 1:
            self._id_chunks = [np.concatenate(self._id_chunks) if self._id_chunks
                               else np.zeros(0, np.int64)]
        return self._id_chunks[0]

    def _labels(self):
        if not self._has_labels:
            return None
        if len(self._label_chunks) != 1:
            self._label_chunks = [np.concatenate(self._label_chunks)]
        return self._label_chunks[0]

    def _table(self):
        if self._lookup is None:
            ids = self._ids()
            positions = np.flatnonzero(ids != _MISSING)
            order = np.argsort(ids[positions], kind="stable")
            self._lookup = (ids[positions][order], positions[order])
        return self._lookup

    def _positions(self, ids):
        """Position of each id, -1 where it is not in the index."""
        sorted_ids, positions = self._table()
        if not len(sorted_ids):
            return np.full(np.shape(ids), -1, np.int64)
        at = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
        return np.where(sorted_ids[at] == ids, positions[at], -1)

    # ---------------------------------------------------------------- public

    def __len__(self):
        return self._count

    def add(self, embeddings, ids=None, labels=None):
        """Adds rows, `batch_size` at a time (a memory map streams).

        All rows are checked before any is added. Call it once per batch of
        a large gallery: the index then holds each row once, and `add`
        itself only `batch_size` rows of scratch.

        Args:
            embeddings: float array of shape `(N, D)` (numpy, a memory map,
                a tensor); no NaN, inf or all-zero row.
            ids: optional int array of shape `(N,)`, non-negative and new;
                default: the next free ids (one more than the largest so far).
            labels: optional int array of shape `(N,)`; give them to every
                `add` of an index or to none.
        """
        x = self._checked(embeddings, "embeddings")
        n = x.shape[0]
        labels = self._check_labels(labels, n)
        if ids is None:
            ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        else:
            ids = self._check_ids(ids, n)
        for start in range(0, n, self.batch_size):  # check every row first
            self._check_rows(x[start:start + self.batch_size], "embeddings", start)
        if n == 0:
            return
        first = self._size
        for start in range(0, n, self.batch_size):
            vectors = self._normalized(x[start:start + self.batch_size], "embeddings", start)
            positions = np.arange(first + start, first + start + len(vectors), dtype=np.int64)
            if self.kind == "ivf_pq":
                if self.is_trained:
                    self._faiss_index.add_with_ids(vectors, positions)
                else:
                    self._pending.append((positions, vectors))
                    self._pending_rows += len(vectors)
                    if self._pending_rows >= self.train_size:
                        self._flush_pending()
            else:
                self._faiss_index.add(vectors)
        self._id_chunks.append(ids)
        if labels is not None:
            self._label_chunks.append(labels)
        self._has_labels = labels is not None
        if self._lookup is not None:  # merge two sorted runs: linear (timsort)
            sorted_ids, positions = self._lookup
            order = np.argsort(ids, kind="stable")
            merged = np.concatenate([sorted_ids, ids[order]])
            merge = np.argsort(merged, kind="stable")
            self._lookup = (merged[merge],
                            np.concatenate([positions, first + order])[merge])
        self._next_id = max(self._next_id, int(ids.max()) + 1)
        self._count += n
        self._size += n
        self._selector = None

    def remove(self, ids):
        """Removes the rows of `ids` (each must be in the index).

        Args:
            ids: int array-like of shape `(n,)`.

        Returns:
            The number of rows removed.
        """
        ids = np.unique(_as_numpy(ids).astype(np.int64).reshape(-1))
        positions = self._positions(ids)
        if (positions < 0).any():
            missing = ids[positions < 0]
            raise ValueError(f"`ids` not in the index: {missing[:5].tolist()} "
                             f"({missing.size} in all); nothing was removed")
        if not ids.size:
            return 0
        faiss = self._faiss()
        all_ids = self._ids()
        if self.kind == "exact":
            # faiss compacts a flat index in order; the tables follow it.
            self._faiss_index.remove_ids(faiss.IDSelectorBatch(positions))
            keep = np.ones(all_ids.shape[0], bool)
            keep[positions] = False
            self._id_chunks = [all_ids[keep]]
            self._size = int(keep.sum())
            if self._has_labels:
                self._label_chunks = [self._labels()[keep]]
        else:
            if self.kind == "ivf_pq":
                if self.is_trained:
                    self._faiss_index.remove_ids(faiss.IDSelectorBatch(positions))
                pending, self._pending = self._pending, []
                for held, vectors in pending:
                    keep = ~np.isin(held, positions)
                    self._pending.append((held[keep], vectors[keep]))
                self._pending_rows = sum(len(p) for p, _ in self._pending)
            all_ids[positions] = _MISSING
        self._lookup = None
        self._selector = None
        self._count -= ids.size
        return int(ids.size)

    def _search_parameters(self):
        faiss = self._faiss()
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW()
            params.efSearch = self.hnsw_ef_search
            if self._count < self._faiss_index.ntotal:  # removed rows stay in the graph
                if self._selector is None:
                    live = np.packbits(self._ids() != _MISSING, bitorder="little")
                    self._selector = (faiss.IDSelectorBitmap(len(self._ids()), faiss.swig_ptr(live)),
                                      live)
                params.sel = self._selector[0]
            return params
        params = faiss.SearchParametersIVF()
        params.nprobe = self.ivf_nprobe
        return params

    def search(self, queries, k=10):
        """The `k` nearest rows of each query.

        Args:
            queries: float array of shape `(Q, D)` (or one row `(D,)`); no
                NaN, inf or all-zero row.
            k: positive int. Larger than the index: see "Defined results".

        Returns:
            `(ids, labels, scores)`: int64 `(Q, k)`, int64 `(Q, k)` (None
            when the index has no labels) and float32 `(Q, k)` cosine
            similarities, each row by decreasing similarity; missing
            neighbours: id -1, label -1, score -inf.
        """
        if not _is_int(k) or k < 1:
            raise ValueError(f"`k` must be a positive int. Received: k={k!r}")
        q = self._checked(queries, "queries")
        self._flush_pending()
        num_queries = q.shape[0]
        positions = np.full((num_queries, k), -1, np.int64)
        scores = np.full((num_queries, k), -np.inf, np.float32)
        found = min(k, self._count)
        chunk = min(self.batch_size, nn.default_chunk_size(found + 1, self._count))
        for start in range(0, num_queries, chunk):
            rows = self._normalized(q[start:start + chunk], "queries", start)
            if not found:
                continue
            if self.kind == "exact":
                s, p = nn.search_with_ties(self._faiss_index.search, self._count, rows, found)
            else:
                s, p = self._faiss_index.search(rows, found, params=self._search_parameters())
                nn.sort_ties(s, p)
            positions[start:start + len(rows), :found] = p
            scores[start:start + len(rows), :found] = s
        missing = positions < 0
        scores[missing] = -np.inf
        if not self._count:
            return positions, (positions.copy() if self._has_labels else None), scores
        at = np.maximum(positions, 0)
        ids = np.where(missing, _MISSING, self._ids()[at])
        labels = np.where(missing, _MISSING, self._labels()[at]) if self._has_labels else None
        return ids, labels, scores

    # ----------------------------------------------------------- persistence

    def get_config(self):
        """The constructor arguments (without metadata), JSON-serialisable."""
        return {"dimension": self.dimension, "kind": self.kind, "hnsw_m": self.hnsw_m,
                "hnsw_ef_construction": self.hnsw_ef_construction,
                "hnsw_ef_search": self.hnsw_ef_search, "ivf_nlist": self.ivf_nlist,
                "ivf_nprobe": self.ivf_nprobe, "pq_m": self.pq_m, "pq_nbits": self.pq_nbits,
                "train_size": self.train_size, "batch_size": self.batch_size, "seed": self.seed,
                "model_fingerprint": self.model_fingerprint}

    def save(self, path):
        """Writes the index to the folder `path`, atomically.

        The files go to a temporary folder beside `path`, which replaces
        `path` only when complete: an interrupted save leaves the previous
        index intact. `manifest.json` records the format version, the
        dimension, kind, count, parameters, the model fingerprint and the
        size and SHA-256 of every other file. An untrained ivf_pq index is
        trained first.

        Returns:
            `path`.
        """
        self._flush_pending()
        if self._faiss_index is None:
            raise ValueError("An empty ivf_pq index cannot be saved: add rows (or `train`) first.")
        path = os.path.abspath(os.fspath(path))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.makedirs(tmp)
        try:
            self._write_files(tmp)
            replace_directory(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path

    def _write_files(self, folder):
        faiss = self._faiss()
        faiss.write_index(self._faiss_index, os.path.join(folder, INDEX_FILE))
        np.save(os.path.join(folder, IDS_FILE), self._ids(), allow_pickle=False)
        names = [INDEX_FILE, IDS_FILE]
        if self._has_labels:
            np.save(os.path.join(folder, LABELS_FILE), self._labels(), allow_pickle=False)
            names.append(LABELS_FILE)
        with open(os.path.join(folder, METADATA_FILE), "w") as f:
            json.dump(self.metadata, f)
        names.append(METADATA_FILE)
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "dimension": self.dimension,
            "kind": self.kind, "count": self._count, "next_id": self._next_id,
            "has_labels": bool(self._has_labels), "parameters": self.get_config(),
            "model_fingerprint": self.model_fingerprint,
            "files": {name: {"bytes": os.path.getsize(os.path.join(folder, name)),
                             "sha256": sha256_file(os.path.join(folder, name))} for name in names},
        }
        with open(os.path.join(folder, MANIFEST_FILE), "w") as f:
            json.dump(manifest, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())

    @classmethod
    def load(cls, path):
        """Reads an index written by `save`, checking every file.

        Raises:
            ValueError: naming the folder or file that is missing, damaged or
                truncated (size or checksum differs from the manifest), or a
                manifest of another format version.
        """
        path = os.fspath(path)
        manifest_path = os.path.join(path, MANIFEST_FILE)
        if not os.path.isdir(path):
            raise ValueError(f"No index at {path!r} (not a folder)")
        if not os.path.isfile(manifest_path):
            raise ValueError(f"No index at {path!r} ({MANIFEST_FILE} missing)")
        try:
            with open(manifest_path) as f:
                manifest = json.load(f)
            version = manifest["format_version"]
            files = manifest["files"]
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"Index file {manifest_path!r} is damaged (not a manifest)") from None
        if manifest.get("format") != FORMAT or version != FORMAT_VERSION:
            raise ValueError(
                f"The index at {path!r} has format {manifest.get('format')!r} version {version!r}; "
                f"this metrix_tf reads {FORMAT!r} version {FORMAT_VERSION}: rebuild it")
        for name, info in files.items():
            file = os.path.join(path, name)
            if not os.path.isfile(file):
                raise ValueError(f"Index file {file!r} is missing")
            size = os.path.getsize(file)
            if size != info["bytes"]:
                raise ValueError(f"Index file {file!r} is truncated or damaged: {size} bytes, "
                                 f"the manifest says {info['bytes']}")
            if sha256_file(file) != info["sha256"]:
                raise ValueError(f"Index file {file!r} is damaged (its SHA-256 differs from the "
                                 "manifest's)")
        config = dict(manifest["parameters"])
        with open(os.path.join(path, METADATA_FILE)) as f:
            config["metadata"] = json.load(f)
        index = cls(**config)
        faiss = cls._faiss()
        try:
            index._faiss_index = faiss.read_index(os.path.join(path, INDEX_FILE))
        except RuntimeError as error:
            raise ValueError(f"Index file {os.path.join(path, INDEX_FILE)!r} cannot be read "
                             f"(damaged?): {str(error).splitlines()[0]}") from None
        index._id_chunks = [np.load(os.path.join(path, IDS_FILE), allow_pickle=False)]
        if manifest["has_labels"]:
            index._label_chunks = [np.load(os.path.join(path, LABELS_FILE), allow_pickle=False)]
        index._has_labels = bool(manifest["has_labels"]) if manifest["count"] or len(
            index._id_chunks[0]) else None
        index._next_id = int(manifest["next_id"])
        index._count = int((index._id_chunks[0] != _MISSING).sum())
        index._size = len(index._id_chunks[0])
        if index._faiss_index.d != index.dimension or index._count != manifest["count"]:
            raise ValueError(f"The index at {path!r} is inconsistent: its files hold "
                             f"{index._count} rows of dimension {index._faiss_index.d}, "
                             f"the manifest says {manifest['count']} of {index.dimension}")
        return index

    def __repr__(self):
        return f"Index(dimension={self.dimension}, kind={self.kind!r}, count={self._count})"

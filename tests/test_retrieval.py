"""metrix_tf.retrieval: the Index against the evaluation's brute force,
persistence (checked, atomic), bad inputs, removal, streaming adds, and the
Searcher on a tiny SavedModel."""

import json
import os
import subprocess
import sys
import tracemalloc

import faiss
import numpy as np
import pytest

from metrix_tf.evaluation import knn
from metrix_tf.retrieval import Index
from metrix_tf.retrieval import index as index_module

faiss.omp_set_num_threads(1)
APPROXIMATE = {"hnsw": {}, "ivf_pq": {"ivf_nlist": 8, "ivf_nprobe": 8, "pq_m": 8, "train_size": 512}}
KINDS = {"exact": {}, **APPROXIMATE}


def tied_gallery(rng, n=300, d=6):
    """Small-integer rows: many exact duplicates, so ties straddle every K."""
    gallery = rng.integers(-2, 3, size=(n, d)).astype(np.float32)
    gallery[~gallery.any(axis=1)] = 1.0  # no zero row
    return gallery


def clustered(rng, n, d, clusters=20, spread=0.15):
    centres = rng.normal(size=(clusters, d))
    x = centres[rng.integers(0, clusters, n)] + spread * rng.normal(size=(n, d))
    return x.astype(np.float32)


def tiny_export(path, channels=3, dim=4, size=8, resize=10):
    """A SavedModel export of a tiny dense network (seconds to make)."""
    import keras

    from metrix_tf.data import Preprocessing
    from metrix_tf.export import export_saved_model

    inputs = keras.Input((size, size, channels))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(dim, kernel_initializer=keras.initializers.RandomNormal(seed=1))(x)
    model = keras.Model(inputs, keras.layers.UnitNormalization()(x))
    preprocessing = Preprocessing(image_size=size, resize_size=resize, channels=channels,
                                  mean=(0.5,) * channels, std=(0.25,) * channels)
    return export_saved_model(model, preprocessing, str(path)), model, preprocessing


def png_files(folder, count, seed=0, shape=(12, 14, 3)):
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (count, *shape)).astype(np.uint8)
    paths = []
    for i, image in enumerate(pixels):
        paths.append(os.path.join(folder, f"{i:03d}.png"))
        Image.fromarray(image).save(paths[-1])
    return paths, pixels


# ------------------------------------------------------------------ exact


@pytest.mark.parametrize("k", [1, 3, 7, 40])
def test_exact_search_is_the_evaluations_brute_force_ties_included(k):
    rng = np.random.default_rng(k)
    gallery = tied_gallery(rng)
    queries = np.concatenate([gallery[:25], tied_gallery(rng, 25)])
    index = Index(6, batch_size=64)
    for start in range(0, len(gallery), 70):  # streamed in uneven batches
        index.add(gallery[start:start + 70])
    ids, labels, scores = index.search(queries, k)
    expected_scores, expected_ids = knn(queries, gallery, k=k)
    assert labels is None
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_array_equal(scores, expected_scores)
    # The data do tie at the K-th place (else the test would test nothing).
    assert (expected_scores[:, -1] == knn(queries, gallery, k=k + 1)[0][:, -1]).any()


def test_exact_search_after_removal_is_the_brute_force_of_the_rest():
    rng = np.random.default_rng(1)
    gallery = tied_gallery(rng, 200)
    index = Index(6)
    index.add(gallery, ids=np.arange(200) * 10 + 5, labels=np.arange(200) % 9)
    removed = rng.choice(200, 60, replace=False)
    assert index.remove(removed * 10 + 5) == 60
    assert len(index) == 140
    rest = np.setdiff1d(np.arange(200), removed)
    queries = tied_gallery(rng, 30)
    ids, labels, scores = index.search(queries, 5)
    expected_scores, expected = knn(queries, gallery[rest], k=5)
    np.testing.assert_array_equal(ids, rest[expected] * 10 + 5)
    np.testing.assert_array_equal(labels, rest[expected] % 9)
    np.testing.assert_array_equal(scores, expected_scores)


# ------------------------------------------------------------ approximate


@pytest.mark.parametrize("kind", sorted(APPROXIMATE))
def test_approximate_kinds_find_most_true_neighbours_and_their_labels(kind):
    rng = np.random.default_rng(2)
    gallery = clustered(rng, 2000, 16)
    labels = rng.integers(0, 50, 2000)
    queries = clustered(rng, 100, 16)
    index = Index(16, kind=kind, batch_size=300, **APPROXIMATE[kind])
    for start in range(0, 2000, 300):
        index.add(gallery[start:start + 300], labels=labels[start:start + 300])
    ids, found_labels, scores = index.search(queries, 5)
    _, truth = knn(queries, gallery, k=5)
    recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(ids, truth)])
    assert recall >= (0.9 if kind == "hnsw" else 0.6), recall
    np.testing.assert_array_equal(found_labels, labels[ids])
    assert (np.diff(scores, axis=1) <= 0).all()


@pytest.mark.parametrize("kind", sorted(APPROXIMATE))
def test_removed_rows_never_come_back(kind):
    rng = np.random.default_rng(3)
    gallery = clustered(rng, 1000, 16)
    index = Index(16, kind=kind, **APPROXIMATE[kind])
    index.add(gallery)
    index.remove(np.arange(0, 1000, 2))
    ids, _, _ = index.search(gallery[:50], 10)
    assert len(index) == 500 and (ids % 2 == 1).all()
    with pytest.raises(ValueError, match=r"not in the index: \[0\]"):
        index.remove([0])


# --------------------------------------------------------- defined results


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_k_larger_than_the_index_pads_with_minus_one_and_minus_inf(kind):
    params = dict(KINDS[kind], ivf_nlist=1, pq_m=2, pq_nbits=2) if kind == "ivf_pq" else {}
    index = Index(4, kind=kind, **params)
    empty_ids, empty_labels, empty_scores = index.search(np.ones((2, 4)), 3)
    assert (empty_ids == -1).all() and empty_labels is None and np.isneginf(empty_scores).all()
    index.add(np.eye(4), ids=[7, 8, 9, 10], labels=[1, 2, 3, 4])
    ids, labels, scores = index.search(np.eye(4)[:1], 6)
    assert ids.shape == labels.shape == scores.shape == (1, 6)
    assert sorted(ids[0, :4]) == [7, 8, 9, 10] and (ids[0, 4:] == -1).all()
    assert (labels[0, 4:] == -1).all() and np.isneginf(scores[0, 4:]).all()
    assert np.isfinite(scores[0, :4]).all()


def test_bad_inputs_are_named_and_add_nothing():
    index = Index(3, batch_size=4)
    index.add(np.eye(3), ids=[0, 1, 2], labels=[0, 1, 2])
    rows = np.ones((10, 3), np.float32)
    cases = [
        (dict(embeddings=np.where(np.arange(10)[:, None] == 6, np.nan, rows)),
         r"`embeddings` row 6 has NaN or inf"),
        (dict(embeddings=np.where(np.arange(10)[:, None] == 9, 0.0, rows)),
         r"`embeddings` row 9 is all zeros"),
        (dict(embeddings=np.ones((10, 4))), r"has 4 columns but this index holds 3-dimensional"),
        (dict(embeddings=rows, ids=[3, 4, 5, 6, 7, 8, 9, 10, 11, 3]), r"unique; repeated: \[3\]"),
        (dict(embeddings=rows, ids=np.arange(1, 11)), r"already in the index: \[1, 2\]"),
        (dict(embeddings=rows, ids=np.arange(-1, 9)), "non-negative"),
        (dict(embeddings=rows, ids=np.arange(3, 12)), r"`ids` must have shape \(10,\)"),
        (dict(embeddings=rows), "stores labels"),
        (dict(embeddings=rows, labels=np.ones(10) * 0.5), "must be integers"),
    ]
    for kwargs, message in cases:
        if message != "stores labels":
            kwargs.setdefault("labels", np.zeros(10, int))
        with pytest.raises(ValueError, match=message):
            index.add(**kwargs)
        assert len(index) == 3
    for queries, k, message in [
        (np.ones((2, 5)), 1, "has 5 columns"),
        ([[1.0, np.inf, 0.0]], 1, "`queries` row 0 has NaN or inf"),
        ([[1.0, 1, 1], [0, 0, 0]], 1, "`queries` row 1 is all zeros"),
        (np.ones((1, 3)), 0, "`k` must be a positive int"),
    ]:
        with pytest.raises(ValueError, match=message):
            index.search(queries, k)
    assert index.search([1.0, 0.0, 0.0], 1)[0].tolist() == [[0]]  # one row (D,) is one query


def test_ivf_pq_with_too_few_rows_to_train_says_so():
    index = Index(8, kind="ivf_pq", pq_m=2)
    index.add(np.random.default_rng(0).normal(size=(100, 8)))
    with pytest.raises(ValueError, match=r"needs at least 256 rows to train; it has 100"):
        index.search(np.ones((1, 8)), 1)


# ------------------------------------------------------------ persistence


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_save_and_load_give_the_same_index(tmp_path, kind):
    rng = np.random.default_rng(4)
    gallery = clustered(rng, 1200, 16)
    index = Index(16, kind=kind, model_fingerprint="fp", metadata={"paths": ["a"]}, **KINDS[kind])
    index.add(gallery, ids=np.arange(1200) + 100, labels=np.arange(1200) % 7)
    index.remove([100, 101])
    before = index.search(gallery[:20], 4)
    loaded = Index.load(index.save(tmp_path / "index"))
    for a, b in zip(before, loaded.search(gallery[:20], 4)):
        np.testing.assert_array_equal(a, b)
    assert len(loaded) == 1198 and loaded.get_config() == index.get_config()
    assert loaded.metadata == {"paths": ["a"]} and loaded.model_fingerprint == "fp"
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text())
    assert manifest["format_version"] == 1 and manifest["kind"] == kind
    assert manifest["dimension"] == 16 and manifest["count"] == 1198
    assert set(manifest["files"]) == {"index.faiss", "ids.npy", "labels.npy", "metadata.json"}
    loaded.add(gallery[:1], ids=[100], labels=[0])  # a removed id is free again
    assert len(loaded) == 1199


def test_a_damaged_truncated_or_foreign_index_is_named(tmp_path):
    index = Index(4)
    index.add(np.eye(4))
    path = index.save(tmp_path / "index")
    ids_file = os.path.join(path, "ids.npy")
    good = open(ids_file, "rb").read()
    with open(ids_file, "wb") as f:
        f.write(good[:-8])
    with pytest.raises(ValueError, match=r"ids\.npy' is truncated or damaged"):
        Index.load(path)
    with open(ids_file, "wb") as f:
        f.write(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(ValueError, match=r"ids\.npy' is damaged"):
        Index.load(path)
    os.remove(ids_file)
    with pytest.raises(ValueError, match=r"ids\.npy' is missing"):
        Index.load(path)
    path = index.save(tmp_path / "index")
    manifest_file = os.path.join(path, "manifest.json")
    manifest = json.load(open(manifest_file))
    manifest["format_version"] = 2
    json.dump(manifest, open(manifest_file, "w"))
    with pytest.raises(ValueError, match="version 2; this metrix_tf reads .* version 1"):
        Index.load(path)
    open(manifest_file, "w").write("{not json")
    with pytest.raises(ValueError, match=r"manifest\.json' is damaged"):
        Index.load(path)
    with pytest.raises(ValueError, match="No index at"):
        Index.load(tmp_path / "nothing")


def test_an_interrupted_save_leaves_the_previous_index(tmp_path, monkeypatch):
    index = Index(4)
    index.add(np.eye(4), labels=[0, 1, 2, 3])
    path = index.save(tmp_path / "index")
    index.add(np.ones((1, 4)), labels=[4])
    calls = []

    def failing_save(*args, **kwargs):  # index.faiss and ids.npy written, then a crash
        calls.append(args[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return np.lib.format.write_array(open(args[0], "wb"), args[1])

    monkeypatch.setattr(index_module.np, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        index.save(path)
    monkeypatch.undo()
    assert len(Index.load(path)) == 4
    assert os.listdir(tmp_path) == ["index"]  # no temporary folder left


# -------------------------------------------------------------- streaming


def test_a_large_add_streams_in_batches(tmp_path):
    rng = np.random.default_rng(5)
    n, d = 100000, 32
    memmap = np.lib.format.open_memmap(str(tmp_path / "g.npy"), "w+", np.float32, (n, d))
    memmap[:] = rng.normal(size=(n, d))
    memmap.flush()
    gallery = np.load(tmp_path / "g.npy", mmap_mode="r")
    index = Index(d, batch_size=1000)
    tracemalloc.start()
    index.add(gallery)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # Scratch of about one batch (+ the int64 ids), never a copy of the gallery.
    assert peak < 0.25 * gallery.nbytes, peak
    assert len(index) == n
    queries = np.asarray(gallery[:50])
    ids, _, scores = index.search(queries, 3)
    expected_scores, expected = knn(queries, np.asarray(gallery), k=3)
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_array_equal(scores, expected_scores)


# ---------------------------------------------------------------- Searcher


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return tiny_export(tmp_path_factory.mktemp("export") / "saved_model")


def test_searcher_embeds_like_the_serving_function_and_finds_each_image(export, tmp_path):
    import tensorflow as tf

    from metrix_tf.retrieval import Searcher

    path, model, preprocessing = export
    paths, pixels = png_files(str(tmp_path / "gallery"), 12)
    searcher = Searcher(path, batch_size=5)
    index = searcher.index(paths, labels=np.arange(12) % 4, ids=np.arange(12) + 50)
    assert len(index) == 12 and index.model_fingerprint == searcher.fingerprint
    assert searcher.fingerprint  # recorded from fingerprint.pb
    ids, labels, scores = searcher.lookup(paths[:4], k=2)
    assert ids[:, 0].tolist() == [50, 51, 52, 53] and labels[:, 0].tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    # A 10 x 10 image keeps its size (resize_size 10) and loses a 1-pixel
    # border (the centre 8 x 8 crop) before the serving function sees it.
    ten = pixels[:3, :10, :10]
    serve = tf.saved_model.load(path).signatures["serving_default"]
    oracle = serve(images=tf.constant(ten[:, 1:9, 1:9], tf.float32))["embeddings"].numpy()
    np.testing.assert_allclose(searcher.embed(ten), oracle, atol=1e-5)
    # A Keras model with its preprocessing gives the same neighbours.
    keras_searcher = Searcher(model, index, preprocessing=preprocessing)
    np.testing.assert_array_equal(keras_searcher.lookup(pixels[:4], k=2)[0], ids)


def test_searcher_refuses_another_models_index_and_names_bad_images(export):
    from metrix_tf.retrieval import Searcher

    path = export[0]
    with pytest.raises(ValueError, match="4-dimensional embeddings but the index holds 5"):
        Searcher(path, Index(5))
    with pytest.raises(ValueError, match="fingerprint 'other'"):
        Searcher(path, Index(4, model_fingerprint="other"))
    searcher = Searcher(path, Index(4, model_fingerprint="other"), check_fingerprint=False)
    searcher.search_index.add(np.eye(4))
    with pytest.raises(ValueError, match=r"Image '#0 \(bytes\)' cannot be decoded"):
        searcher.lookup(b"this is not an image")
    with pytest.raises(ValueError, match=r"Image '/nope.png' cannot be read"):
        searcher.lookup("/nope.png")
    with pytest.raises(ValueError, match=r"Image #1 must have shape \(H, W, 3\)"):
        searcher.lookup([np.zeros((8, 8, 3)), np.zeros((8, 8, 1))])


def test_a_saved_model_searcher_never_imports_the_training_code(export, tmp_path):
    paths, _ = png_files(str(tmp_path / "gallery"), 3)
    script = (
        "import sys\n"
        "from metrix_tf.retrieval import Searcher\n"
        f"searcher = Searcher({export[0]!r})\n"
        f"searcher.index({paths!r})\n"
        f"print(searcher.lookup({paths[1]!r}, k=1)[0].tolist())\n"
        "print(sorted(m for m in sys.modules if m.startswith('metrix_tf.training')))\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(index_module.__file__)))
    env = dict(os.environ, PYTHONPATH=os.path.dirname(root), TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-2:] == ["[[1]]", "[]"], result.stdout

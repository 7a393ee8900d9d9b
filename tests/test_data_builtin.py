"""The built-in glyph data set: content, split, cache, hash check."""

import json
import os

import numpy as np
import pytest

from metrix_tf import data
from metrix_tf.data import builtin_glyphs


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("glyph_cache"))


@pytest.fixture(scope="module")
def tiny(cache_dir):
    return data.load_builtin(cache_dir, tiny=True)


def test_tiny_set_shapes_and_disjoint_50_50_split(tiny):
    fonts = len(data.matplotlib_fonts())
    assert fonts == 16
    assert tiny.protocol == "leave_one_out" and tiny.recall_ks == (1, 2, 4, 8)
    for split in (tiny.train, tiny.test):
        assert split.num_classes == 10
        assert split.images.shape == (10 * fonts, 32, 32, 1)
        assert split.images.dtype == np.uint8
        np.testing.assert_array_equal(split.class_counts(), [fonts] * 10)
    assert not set(tiny.train.class_names) & set(tiny.test.class_names)
    # Labels follow code point order; names carry the character.
    codes = [int(n.split()[1][2:], 16) for n in tiny.test.class_names]
    assert codes == sorted(codes)
    assert all(n[0] == chr(c) for n, c in zip(tiny.test.class_names, codes))


def test_glyphs_are_inked_distinct_and_jittered(tiny):
    images = np.concatenate([tiny.train.images, tiny.test.images])[..., 0]
    assert (images.reshape(len(images), -1).max(1) > 128).all()  # no blank
    # Every image differs from every other (jitter + fonts); no two classes
    # have the same mean image.
    flat = images.reshape(len(images), -1)
    assert len({row.tobytes() for row in flat}) == len(flat)
    for split in (tiny.train, tiny.test):
        means = np.stack([split.images[split.labels == c].mean(0)
                          for c in range(split.num_classes)])
        for i in range(len(means)):
            for j in range(i):
                assert np.abs(means[i] - means[j]).mean() > 1.0


def test_raw_pixel_recall_at_1_is_above_chance_but_not_saturated(tiny):
    # Leave-one-out Recall@1 by cosine on raw pixels, by an explicit loop.
    x = tiny.test.images.reshape(tiny.test.num_examples, -1).astype(float)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    hits = 0
    for q in range(len(x)):
        scores = x @ x[q]
        scores[q] = -np.inf
        hits += tiny.test.labels[int(np.argmax(scores))] == tiny.test.labels[q]
    recall = hits / len(x)
    assert 0.3 < recall < 0.99  # chance is 0.1


def test_cache_hit_returns_identical_content(cache_dir, tiny):
    assert os.path.isfile(tiny.info["npz"]) and os.path.isfile(
        tiny.info["json"])
    again = data.load_builtin(cache_dir, tiny=True)
    assert again.info["cache_hit"] is True
    assert again.info["content_sha256"] == tiny.info["content_sha256"]
    np.testing.assert_array_equal(again.test.images, tiny.test.images)
    with open(tiny.info["json"], encoding="utf-8") as f:
        meta = json.load(f)
    assert [f["name"] for f in meta["spec"]["fonts"]] == tiny.info["fonts"]
    assert all(len(f["sha256"]) == 64 for f in meta["spec"]["fonts"])
    assert len(meta["characters"]) == 20


def test_build_is_deterministic(tmp_path, tiny):
    other = data.load_builtin(str(tmp_path), tiny=True)
    assert other.info["cache_hit"] is False
    assert other.info["content_sha256"] == tiny.info["content_sha256"]
    np.testing.assert_array_equal(other.train.images, tiny.train.images)
    np.testing.assert_array_equal(other.train.labels, tiny.train.labels)


def test_corrupted_cache_is_detected(tmp_path):
    first = data.load_builtin(str(tmp_path), tiny=True)
    npz = first.info["npz"]
    # A valid archive with one pixel changed: caught by the content hash.
    with np.load(npz) as stored:
        arrays = {k: stored[k] for k in stored.files}
    arrays["images"][3, 10, 10, 0] ^= 0xFF
    with open(npz, "wb") as f:
        np.savez_compressed(f, **arrays)
    with pytest.raises(ValueError, match="glyphs-.*npz.*corrupt"):
        data.load_builtin(str(tmp_path), tiny=True)
    # Damaged bytes: unreadable archive, also named.
    raw = bytearray(open(npz, "rb").read())
    raw[len(raw) // 2:len(raw) // 2 + 64] = b"\0" * 64
    with open(npz, "wb") as f:
        f.write(bytes(raw))
    with pytest.raises(ValueError, match="glyphs-.*npz"):
        data.load_builtin(str(tmp_path), tiny=True)
    rebuilt = data.load_builtin(str(tmp_path), tiny=True, rebuild=True)
    assert rebuilt.info["content_sha256"] == first.info["content_sha256"]
    assert data.load_builtin(str(tmp_path), tiny=True).info["cache_hit"]


def test_font_set_enters_key_and_metadata(tmp_path, tiny):
    fonts = data.matplotlib_fonts()[:8]
    subset = data.load_builtin(str(tmp_path), tiny=True, fonts=fonts)
    assert subset.info["fonts"] == [os.path.basename(p) for p in fonts]
    assert subset.info["npz"] != tiny.info["npz"]
    assert subset.train.images.shape[0] == 10 * 8


def test_builtin_arguments_and_too_few_characters(tmp_path):
    with pytest.raises(ValueError, match="num_classes=7"):
        data.load_builtin(str(tmp_path), num_classes=7)
    with pytest.raises(ValueError, match="image_size=4"):
        data.load_builtin(str(tmp_path), image_size=4)
    with pytest.raises(FileNotFoundError, match="nofont.ttf"):
        data.load_builtin(str(tmp_path), fonts=["nofont.ttf"])
    fonts = data.matplotlib_fonts()
    display = os.path.join(os.path.dirname(fonts[0]), "DejaVuSansDisplay.ttf")
    with pytest.raises(ValueError, match="num_classes=100"):
        data.load_builtin(str(tmp_path), num_classes=100,
                          fonts=[fonts[0], display])


def test_default_set_has_enough_candidates():
    assert builtin_glyphs.DEFAULT_NUM_CLASSES >= 200
    assert builtin_glyphs.DEFAULT_NUM_CLASSES % 2 == 0
    # The shared cmap offers well over the default number of characters.
    assert len(builtin_glyphs._candidates(data.matplotlib_fonts())) >= 500


def test_builtin_through_load_dataset_with_validation(cache_dir):
    splits = data.load_dataset("builtin", cache_dir, tiny=True,
                               validation_fraction=0.2, seed=3)
    assert splits.val.num_classes == 2 and splits.train.num_classes == 8
    assert not set(splits.val.class_names) & set(splits.train.class_names)
    pre = data.Preprocessing.for_dataset("builtin")
    x, y = next(iter(data.balanced_batches(splits.train, pre, 4, 2,
                                           num_steps=1)))
    assert x.shape == (8, 32, 32, 1) and y.shape == (8,)
    assert float(x.numpy().min()) >= -1.0 - 1e-5
    assert float(x.numpy().max()) <= 1.0 + 1e-5


def test_large_set_uses_the_dejavu_faces_and_its_own_name(tmp_path):
    dejavu = data.matplotlib_fonts(builtin_glyphs.LARGE_FAMILIES)
    assert len(dejavu) == 12
    assert all(os.path.basename(p).startswith("DejaVu") for p in dejavu)
    # A small large-set build: same fonts and naming, few characters.
    splits = data.load_dataset("builtin_large", str(tmp_path), num_classes=8,
                               validation_fraction=0.25, seed=1)
    assert splits.name == "builtin_large"
    assert splits.test.name == "builtin_large/test"
    assert splits.info["fonts"] == [os.path.basename(p) for p in dejavu]
    assert splits.val.num_classes == 1 and splits.train.num_classes == 3
    for split in (splits.train, splits.val, splits.test):
        assert split.images.shape[1:] == (16, 16, 1)
        np.testing.assert_array_equal(split.class_counts(),
                                      [12] * split.num_classes)
    assert data.Preprocessing.for_dataset("builtin_large").image_size == 16
    with pytest.raises(ValueError, match="tiny=True, large=True"):
        data.load_builtin(str(tmp_path), tiny=True, large=True)


def test_large_set_has_enough_candidates():
    # Its 1,216 classes need that many candidates in the faces' shared
    # cmap (the selection then drops near-duplicates and faint glyphs).
    fonts = data.matplotlib_fonts(builtin_glyphs.LARGE_FAMILIES)
    assert builtin_glyphs.LARGE_NUM_CLASSES >= 1000
    assert len(builtin_glyphs._candidates(fonts)) >= (
        builtin_glyphs.LARGE_NUM_CLASSES)

"""The class-balanced sampler, the tf.data pipelines and the transforms."""

import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from metrix_tf import data
from metrix_tf.data.preprocessing import random_resized_crop
from metrix_tf.data.preprocessing import resize_and_center_crop

COUNTS = [1, 2, 3, 5, 8, 4, 6]  # images per class; several below m = 4


def labels_of(counts, seed=0):
    labels = np.repeat(np.arange(len(counts)), counts)
    return np.random.default_rng(seed).permutation(labels)


def index_split(labels):
    """An in-memory split whose image i is the constant 8x8 value i."""
    images = np.broadcast_to(np.arange(len(labels), dtype=np.uint8)[
        :, None, None, None], (len(labels), 8, 8, 1)).copy()
    names = [f"class{c}" for c in range(labels.max() + 1)]
    return data.ImageSplit(images, labels, names, name="index")


# Identity transform: whole-image crop, no flip, x / 255.
IDENTITY = data.Preprocessing(image_size=8, resize_size=8, channels=1,
                              crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0),
                              flip=False, mean=(0.0,), std=(1.0,))


def decode_indices(images):
    """Recovers the image indices the identity pipeline was fed."""
    values = np.round(images * 255.0).astype(np.int64)
    assert (values == values[:, :1, :1, :1]).all()  # constant images
    return values[:, 0, 0, 0]


def test_sampler_batch_composition():
    labels = labels_of(COUNTS)
    p, m = 3, 4
    sampler = data.ClassBalancedSampler(labels, p, m, seed=3)
    assert sampler.batch_size == 12
    assert sampler.steps_per_epoch == len(labels) // 12
    seen_classes = set()
    for step in range(40):
        indices = sampler.batch_indices(step).numpy()
        assert indices.shape == (p * m,)
        blocks = labels[indices].reshape(p, m)
        # m consecutive images of one class, P distinct classes.
        assert (blocks == blocks[:, :1]).all()
        classes = blocks[:, 0]
        assert len(set(classes.tolist())) == p
        for c, block in zip(classes, indices.reshape(p, m)):
            if COUNTS[c] >= m:  # without replacement
                assert len(set(block.tolist())) == m
            else:  # with replacement: every image of the class, repeats
                assert set(block.tolist()) <= set(
                    np.flatnonzero(labels == c).tolist())
        seen_classes.update(classes.tolist())
        if step % 2 == 1:  # C // P = 2 batches per round: disjoint classes
            previous = labels[sampler.batch_indices(step - 1).numpy()]
            assert not set(previous.tolist()) & set(classes.tolist())
    assert seen_classes == set(range(len(COUNTS)))


def test_sampler_small_class_sampled_with_replacement_covers_its_images():
    labels = labels_of(COUNTS)
    sampler = data.ClassBalancedSampler(labels, 7, 4, seed=0)  # all classes
    drawn = np.concatenate([sampler.batch_indices(s).numpy()
                            for s in range(30)])
    members = np.flatnonzero(labels == 1)  # a class of 2 images
    picked = drawn[np.isin(drawn, members)]
    assert picked.size == 30 * 4 and set(picked.tolist()) == set(
        members.tolist())
    big = np.flatnonzero(labels == 4)  # 8 images: all get drawn
    assert set(drawn[np.isin(drawn, big)].tolist()) == set(big.tolist())


def test_sampler_is_deterministic_and_resumable():
    labels = labels_of(COUNTS)

    def run(seed, start, steps):
        ds = data.ClassBalancedSampler(labels, 2, 3, seed=seed).dataset(
            start, steps)
        return np.stack([idx for _, idx in ds.as_numpy_iterator()])

    first = run(5, 0, 12)
    np.testing.assert_array_equal(first, run(5, 0, 12))
    np.testing.assert_array_equal(first[7:], run(5, 7, 5))
    assert not np.array_equal(first, run(6, 0, 12))


def test_sampler_rejects_bad_arguments():
    with pytest.raises(ValueError, match="classes_per_batch=9"):
        data.ClassBalancedSampler(labels_of(COUNTS), 9, 2)
    with pytest.raises(ValueError, match="images_per_class=0"):
        data.ClassBalancedSampler(labels_of(COUNTS), 2, 0)
    with pytest.raises(ValueError, match=r"\[1\].*no image"):
        data.ClassBalancedSampler([0, 2, 2], 1, 1)
    with pytest.raises(ValueError, match="seed='x'"):
        data.ClassBalancedSampler([0, 1], 1, 1, seed="x")


def test_balanced_batches_images_match_sampled_labels():
    labels = labels_of(COUNTS)
    split = index_split(labels)
    ds = data.balanced_batches(split, IDENTITY, classes_per_batch=3,
                               images_per_class=4, seed=2, num_steps=6)
    sampler = data.ClassBalancedSampler(labels, 3, 4, seed=2)
    batches = list(ds.as_numpy_iterator())
    assert len(batches) == 6
    for step, (images, batch_labels) in enumerate(batches):
        assert images.shape == (12, 8, 8, 1) and images.dtype == np.float32
        assert batch_labels.dtype == np.int32
        indices = decode_indices(images)
        np.testing.assert_array_equal(indices,
                                      sampler.batch_indices(step).numpy())
        np.testing.assert_array_equal(batch_labels, labels[indices])


def test_shuffled_batches_cover_each_epoch_and_resume():
    labels = labels_of(COUNTS)
    split = index_split(labels)  # 29 images
    ds = data.shuffled_batches(split, IDENTITY, batch_size=5, seed=1,
                               num_epochs=2, drop_remainder=False)
    batches = list(ds.as_numpy_iterator())
    order = np.concatenate([decode_indices(x) for x, _ in batches])
    assert order.size == 58
    for epoch in (order[:29], order[29:]):
        assert sorted(epoch.tolist()) == list(range(29))
    assert not np.array_equal(order[:29], order[29:])
    for x, y in batches:
        np.testing.assert_array_equal(y, labels[decode_indices(x)])
    resumed = data.shuffled_batches(split, IDENTITY, batch_size=5, seed=1,
                                    start_epoch=1, num_epochs=1,
                                    drop_remainder=False)
    np.testing.assert_array_equal(
        np.concatenate([decode_indices(x) for x, _ in resumed]), order[29:])
    full = data.shuffled_batches(split, IDENTITY, batch_size=5, seed=1,
                                 num_epochs=1)
    kept = np.concatenate([decode_indices(x) for x, _ in full])
    assert kept.size == 25 and len(set(kept.tolist())) == 25  # 5 full


def test_training_augmentation_is_deterministic_per_seed():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(12, 20, 20, 3), dtype=np.uint8)
    split = data.ImageSplit(images, np.arange(12) % 4, "abcd")
    pre = data.Preprocessing(image_size=16, resize_size=18)

    def first_batch(seed):
        ds = data.balanced_batches(split, pre, classes_per_batch=2,
                                   images_per_class=2, seed=seed,
                                   num_steps=1)
        return next(iter(ds))[0].numpy()

    a = first_batch(4)
    assert a.shape == (4, 16, 16, 3) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, first_batch(4))
    assert not np.array_equal(a, first_batch(5))
    low = (0.0 - np.array(data.IMAGENET_MEAN)) / np.array(data.IMAGENET_STD)
    high = (1.0 - np.array(data.IMAGENET_MEAN)) / np.array(data.IMAGENET_STD)
    assert (a >= low - 1e-4).all() and (a <= high + 1e-4).all()


def write_files(root, colours, sizes):
    paths = []
    for i, (colour, (w, h)) in enumerate(zip(colours, sizes)):
        path = os.path.join(root, f"im{i}.{'png' if i % 2 else 'jpg'}")
        Image.fromarray(np.full((h, w, 3), colour, np.uint8)).save(path)
        paths.append(path)
    return paths


def test_eval_batches_shapes_order_and_normalisation(tmp_path):
    colours = [(10, 20, 30), (200, 100, 50), (0, 255, 128)]
    sizes = [(40, 30), (31, 57), (300, 260)]
    paths = write_files(str(tmp_path), colours, sizes)
    split = data.ImageSplit(paths, [0, 1, 1], ["a", "b"])
    pre = data.Preprocessing()  # 256 resize, 224 crop, ImageNet stats
    batches = list(data.eval_batches(split, pre, batch_size=2))
    assert [b[0].shape for b in batches] == [(2, 224, 224, 3),
                                             (1, 224, 224, 3)]
    images = np.concatenate([b[0].numpy() for b in batches])
    labels = np.concatenate([b[1].numpy() for b in batches])
    assert images.dtype == np.float32 and labels.dtype == np.int32
    np.testing.assert_array_equal(labels, [0, 1, 1])
    for i, colour in enumerate(colours):  # a constant image stays constant
        expected = ((np.array(colour) / 255.0 - data.IMAGENET_MEAN)
                    / data.IMAGENET_STD)
        tolerance = 0.05 if i % 2 == 0 else 2e-3  # JPEG vs PNG (lossless)
        np.testing.assert_allclose(images[i].reshape(-1, 3).mean(0),
                                   expected, atol=tolerance)
        assert np.abs(images[i] - expected).max() < 2 * tolerance + 0.02


def test_resize_and_center_crop_keeps_the_centre():
    # 20 x 60 image: columns 20-39 white, the rest black. Shorter side 20
    # -> 10 gives 10 x 30 with white columns 10-19: exactly the centre crop.
    image = np.zeros((20, 60, 1), np.uint8)
    image[:, 20:40] = 255
    out = resize_and_center_crop(tf.constant(image), 10, 10).numpy()
    assert out.shape == (10, 10, 1)
    assert out[:, 2:8].min() > 250  # interior; the edges blur a little
    portrait = np.zeros((60, 20, 1), np.uint8)
    portrait[20:40] = 255
    out = resize_and_center_crop(tf.constant(portrait), 10, 10).numpy()
    assert out[2:8].min() > 250
    out = resize_and_center_crop(tf.constant(image), 14, 10).numpy()
    assert out.shape == (10, 10, 1)  # 14 x 42, centre 10 x 10 still white
    assert out[:, 2:8].min() > 250


def test_random_resized_crop_range_and_identity():
    image = tf.constant(np.random.default_rng(1).integers(
        0, 256, size=(30, 30, 3)), tf.uint8)
    for s in range(5):
        out = random_resized_crop(image, 12, seed=[s, 0]).numpy()
        assert out.shape == (12, 12, 3)
        assert out.min() >= -1e-3 and out.max() <= 255 + 1e-3
    same = random_resized_crop(image, 30, scale=(1.0, 1.0),
                               ratio=(1.0, 1.0), seed=[0, 0]).numpy()
    np.testing.assert_allclose(same, image.numpy(), atol=1e-3)


def test_flip_mirrors_about_half_the_time():
    image = np.zeros((1, 8, 8, 1), np.uint8)
    image[0, :, :2] = 255  # ink on the left only
    split = data.ImageSplit(image, [0], ["a"])
    pre = data.Preprocessing(image_size=8, resize_size=8, channels=1,
                             crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0),
                             flip=True, mean=(0.0,), std=(1.0,))
    ds = data.balanced_batches(split, pre, classes_per_batch=1,
                               images_per_class=1, seed=0, num_steps=40)
    left = [float(x[0, :, :2].mean()) > 0.9 for x, _ in ds.as_numpy_iterator()]
    assert 5 < sum(left) < 35  # both orientations occur


def test_corrupt_file_is_named_at_decode(tmp_path):
    paths = write_files(str(tmp_path), [(1, 2, 3)] * 2, [(9, 9)] * 2)
    bad = os.path.join(str(tmp_path), "broken.jpg")
    with open(bad, "wb") as f:
        f.write(b"not an image at all")
    split = data.ImageSplit(paths + [bad], [0, 0, 0], ["a"])
    with pytest.raises(tf.errors.InvalidArgumentError, match="broken.jpg"):
        list(data.eval_batches(split, data.Preprocessing(), batch_size=3))


def test_preprocessing_rejects_bad_arguments():
    with pytest.raises(ValueError, match="resize_size=100"):
        data.Preprocessing(image_size=224, resize_size=100)
    with pytest.raises(ValueError, match="crop_scale"):
        data.Preprocessing(crop_scale=(0.5, 1.5))
    with pytest.raises(ValueError, match="channels=2"):
        data.Preprocessing(channels=2)
    with pytest.raises(ValueError, match="mean"):
        data.Preprocessing(channels=1)  # ImageNet mean has 3 values
    with pytest.raises(ValueError, match="name='mnist'"):
        data.Preprocessing.for_dataset("mnist")
    pre = data.Preprocessing.for_dataset("builtin")
    assert data.Preprocessing.from_config(pre.get_config()).get_config() == (
        pre.get_config())
    split = data.ImageSplit(np.zeros((2, 8, 8, 3), np.uint8), [0, 1], "ab")
    with pytest.raises(ValueError, match="3 channel"):
        data.eval_batches(split, pre)


def test_train_on_files_jpeg_window_decode_matches_full_decode(tmp_path):
    rng = np.random.default_rng(3)
    smooth = np.kron(rng.integers(0, 256, (6, 8, 3)), np.ones((10, 10, 1)))
    paths = []
    for ext in ("jpg", "png"):
        path = str(tmp_path / f"photo.{ext}")
        Image.fromarray(smooth.astype(np.uint8)).save(path, quality=95)
        paths.append(path)
    pre = data.Preprocessing(image_size=24, resize_size=28)
    for path in paths:
        contents = tf.io.read_file(path)
        for s in range(4):
            seed = tf.constant([s, 7], tf.int64)
            fast = pre.train_from_file(contents, tf.constant(path), seed)
            full = pre.train(tf.io.decode_image(contents, channels=3), seed)
            assert fast.shape == (24, 24, 3) and fast.dtype == tf.float32
            # Same crop box, same flip: only JPEG decoding details differ.
            assert float(tf.reduce_mean(tf.abs(fast - full))) < 0.05
    split = data.ImageSplit(paths + paths, [0, 0, 1, 1], ["a", "b"])
    ds = data.balanced_batches(split, pre, 2, 2, seed=1, num_steps=2)
    first = [x.numpy() for x, _ in ds]
    again = [x.numpy() for x, _ in data.balanced_batches(
        split, pre, 2, 2, seed=1, num_steps=2)]
    np.testing.assert_array_equal(first[1], again[1])
    bad = str(tmp_path / "bad.jpg")
    with open(bad, "wb") as f:
        f.write(b"garbage")
    broken = data.ImageSplit([bad], [0], ["a"])
    with pytest.raises(tf.errors.InvalidArgumentError, match="bad.jpg"):
        list(data.shuffled_batches(broken, pre, batch_size=1, num_epochs=1))


def test_with_image_size_keeps_the_recipe_at_another_size():
    glyphs = data.Preprocessing.for_dataset("builtin")
    big = glyphs.with_image_size(64)
    assert (big.image_size, big.resize_size) == (64, 64)
    unchanged = {k: v for k, v in glyphs.get_config().items()
                 if k not in ("image_size", "resize_size")}
    assert {k: big.get_config()[k] for k in unchanged} == unchanged
    paper = data.Preprocessing.for_dataset("cub200").with_image_size(128)
    assert (paper.image_size, paper.resize_size) == (128, 146)  # 224 / 256 kept
    # 32 x 32 glyphs come out upsampled: a flat image stays flat.
    split = data.ImageSplit(np.full((4, 32, 32, 1), 204, np.uint8), [0, 0, 1, 1], "ab")
    images, _ = next(iter(data.eval_batches(split, big, 4)))
    np.testing.assert_allclose(images.numpy(), (204 / 255 - 0.5) / 0.5, atol=1e-5)
    assert images.shape == (4, 64, 64, 1)
    train, _ = next(iter(data.balanced_batches(split, big, 2, 2, seed=0)))
    assert train.shape == (4, 64, 64, 1)
    for bad in (0, 32.0, True):
        with pytest.raises(ValueError, match=f"image_size={bad!r}"):
            glyphs.with_image_size(bad)

"""Measures the data side: built-in set build/load, raw-pixel baseline, and
pipeline throughput.

    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/bench_data.py [--skip_files]

Prints: the built-in set's cold build time (fresh cache directory), cache
hit load time, size on disk, leave-one-out Recall@1/2/4/8 of raw pixels
(cosine) on the unseen test classes (the baseline training must beat), and
images/s of the training pipelines: balanced batches of the built-in set
(32x32) and of generated 500x375 JPEG files (random resized crop 224 +
flip, the paper's recipe).
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

# Run from a source checkout without installing.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def raw_pixel_recall(split, ks=(1, 2, 4, 8)):
    from metrix_tf.evaluation import recall_at_k

    x = split.images.reshape(split.num_examples, -1).astype(np.float32)
    return recall_at_k(x, split.labels, ks=ks, num_threads=1)


def throughput(ds, steps, batch):
    iterator = iter(ds)
    next(iterator)  # warm-up: tracing, first fills
    start = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    return steps * batch / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip_files", action="store_true",
                        help="skip the JPEG pipeline measurement")
    args = parser.parse_args()
    from metrix_tf import data

    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        splits = data.load_builtin(cache)
        build = time.perf_counter() - start
        start = time.perf_counter()
        again = data.load_builtin(cache)
        load = time.perf_counter() - start
        assert again.info["cache_hit"]
        size = sum(os.path.getsize(os.path.join(cache, f))
                   for f in os.listdir(cache))
    print(f"built-in set: {splits.train.num_classes} + "
          f"{splits.test.num_classes} classes, "
          f"{splits.train.num_examples} + {splits.test.num_examples} images "
          f"of {splits.train.images.shape[1:]} uint8")
    print(f"  cold build {build:.1f} s, cache hit load {load:.3f} s, "
          f"{size / 2**20:.2f} MiB on disk, sha256 "
          f"{splits.info['content_sha256'][:16]}...")
    recall = raw_pixel_recall(splits.test)
    print("  raw pixels, unseen classes, leave-one-out: " + ", ".join(
        f"R@{k} {v:.3f}" for k, v in recall.items()))
    recall = raw_pixel_recall(splits.train)
    print("  (raw pixels, training classes: " + ", ".join(
        f"R@{k} {v:.3f}" for k, v in recall.items()) + ")")

    pre = data.Preprocessing.for_dataset("builtin")
    ds = data.balanced_batches(splits.train, pre, classes_per_batch=25,
                               images_per_class=4, seed=0)
    print(f"  balanced batches (100 per batch): "
          f"{throughput(ds, 30, 100):.0f} images/s")

    if args.skip_files:
        return
    with tempfile.TemporaryDirectory() as root:
        from PIL import Image

        rng = np.random.default_rng(0)
        paths = []
        for i in range(200):
            pixels = rng.integers(0, 256, size=(375 // 8, 500 // 8, 3),
                                  dtype=np.uint8)
            image = Image.fromarray(pixels).resize((500, 375),
                                                   Image.BILINEAR)
            path = os.path.join(root, f"{i}.jpg")
            image.save(path, quality=90)
            paths.append(path)
        split = data.ImageSplit(paths, np.arange(200) // 5,
                                [str(c) for c in range(40)])
        pre = data.Preprocessing()
        ds = data.balanced_batches(split, pre, classes_per_batch=20,
                                   images_per_class=5, seed=0)
        print(f"JPEG 500x375 -> 224 train pipeline: "
              f"{throughput(ds, 5, 100):.0f} images/s")
        ds = data.eval_batches(split, pre, batch_size=100).repeat()
        print(f"JPEG 500x375 -> 256 / 224 eval pipeline: "
              f"{throughput(ds, 5, 100):.0f} images/s")


if __name__ == "__main__":
    main()

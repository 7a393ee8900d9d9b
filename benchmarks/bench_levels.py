"""Training-step time of each Metrix level relative to the baseline step.

Same model (ResNet-50 backbone, random init, small images so that it runs on
a CPU), same batch, same loss; the variants are timed in interleaved rounds
in one process, so machine noise hits them alike. Prints the median step
time of each and its ratio to the baseline.

    python benchmarks/bench_levels.py [--image-size 64] [--batch-size 32]
        [--rounds 8] [--loss contrastive] [--strategy random]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import metrix_tf  # noqa: E402

LOSSES = metrix_tf.losses.registry.loss_names()


def build(level, loss_name, image_size, strategy):
    keras.utils.set_random_seed(0)
    metrix = (
        None
        if level == "baseline"
        else metrix_tf.Metrix(level=level, strategy=strategy, seed=0)
    )
    model = metrix_tf.models.EmbeddingModel(
        backbone=None,
        embedding_dim=128,
        metrix=metrix,
        input_shape=(image_size, image_size, 3),
    )
    loss = metrix_tf.losses.registry.get(loss_name).make(
        metrix=metrix, num_classes=64, embedding_dim=128
    )
    model.compile(keras.optimizers.Adam(1e-4), loss=loss)
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--per-class", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--loss", choices=sorted(LOSSES), default="contrastive")
    parser.add_argument(
        "--strategy",
        default="random",
        help="Metrix strategy; 'random' (the default) mixes nothing on the "
        "anchor-negative half of the steps when every anchor has a positive",
    )
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch_size, args.image_size, args.image_size, 3)).astype("float32")
    y = np.repeat(np.arange(args.batch_size // args.per_class), args.per_class)[: args.batch_size]
    levels = ["baseline", "embedding", "feature", "input"]
    models = {level: build(level, args.loss, args.image_size, args.strategy) for level in levels}
    for model in models.values():  # trace and warm up
        model.train_on_batch(x, y)
        model.train_on_batch(x, y)
    times = {level: [] for level in levels}
    for _ in range(args.rounds):
        for level in levels:
            start = time.perf_counter()
            model = models[level]
            loss = model.train_on_batch(x, y)
            times[level].append(time.perf_counter() - start)
            assert np.isfinite(loss)

    base = np.median(times["baseline"])
    print(
        f"ResNet-50, {args.image_size}x{args.image_size}, batch {args.batch_size} "
        f"({args.per_class} per class), {args.loss} loss, Metrix strategy "
        f"{args.strategy}, {args.rounds} interleaved rounds, op backend: "
        f"{metrix_tf.ops.backend()}"
    )
    print("| level | median step (s) | ratio to baseline |")
    print("|---|---|---|")
    for level in levels:
        median = np.median(times[level])
        print(f"| {level} | {median:.3f} | {median / base:.2f}x |")


if __name__ == "__main__":
    main()

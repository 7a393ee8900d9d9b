"""Training-step time and images/s of each Metrix level, and its ratio to the baseline.

Same model (ResNet-50 backbone, random init), same class-balanced batch
(--classes x --per-class images of --image-size), same loss, same precision
(--precision: float32, mixed_float16 or mixed_bfloat16, the Keras global
policy); the variants are timed in interleaved rounds in one process, so
machine noise hits them alike. Prints the median step time of each, its
images/s (batch size / median step: comparable with other code run on the
same shape) and its ratio to the baseline.

    python benchmarks/bench_levels.py [--image-size 64] [--classes 8]
        [--per-class 4] [--precision float32] [--rounds 8]
        [--loss contrastive] [--strategy random] [--levels baseline,feature]
    python benchmarks/bench_levels.py --image-size 128   # README: 128 x 128, 8 x 4
    python benchmarks/bench_levels.py --image-size 224   # README: 224 x 224, 8 x 4
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

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
    model.compile(metrix_tf.optimizers.FusedAdam(1e-4), loss=loss)
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--classes", type=int, default=8, help="classes per batch")
    parser.add_argument("--per-class", type=int, default=4, help="images per class")
    parser.add_argument(
        "--precision",
        choices=["float32", "mixed_float16", "mixed_bfloat16"],
        default="float32",
        help="Keras global dtype policy of the models",
    )
    parser.add_argument(
        "--levels",
        default="baseline,embedding,feature,input",
        help="comma-separated subset of baseline,embedding,feature,input",
    )
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--loss", choices=sorted(LOSSES), default="contrastive")
    parser.add_argument(
        "--strategy",
        default="random",
        help="Metrix strategy; 'random' (the default) mixes nothing on the "
        "anchor-negative half of the steps when every anchor has a positive",
    )
    args = parser.parse_args()

    levels = [level.strip() for level in args.levels.split(",") if level.strip()]
    unknown = sorted(set(levels) - {"baseline", "embedding", "feature", "input"})
    if unknown or not levels:
        parser.error(f"--levels: unknown level(s) {unknown or levels}")
    if args.classes < 2 or args.per_class < 2:
        parser.error("--classes and --per-class must be >= 2 (pairs need positives and negatives)")
    keras.mixed_precision.set_global_policy(args.precision)
    batch = args.classes * args.per_class
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, args.image_size, args.image_size, 3)).astype("float32")
    y = np.repeat(np.arange(args.classes), args.per_class).astype("int32")
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

    base = np.median(times[levels[0]])
    print(
        f"ResNet-50, {args.image_size}x{args.image_size}, batch {batch} "
        f"({args.classes} classes x {args.per_class}), {args.precision}, "
        f"{args.loss} loss, Metrix strategy {args.strategy}, {args.rounds} "
        f"interleaved rounds, op backend: {metrix_tf.ops.backend()}, devices: "
        f"{', '.join(d.device_type for d in tf.config.list_logical_devices())}"
    )
    print(f"| level | median step (s) | images/s | ratio to {levels[0]} |")
    print("|---|---|---|---|")
    for level in levels:
        median = np.median(times[level])
        print(f"| {level} | {median:.3f} | {batch / median:.1f} | {median / base:.2f}x |")


if __name__ == "__main__":
    main()

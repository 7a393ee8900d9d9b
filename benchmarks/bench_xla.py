"""Training step with the model under XLA (the loss outside it) vs without.

`MetricModel.compile(jit_compile=True)` with a loss that uses the custom op
compiles the model's forward and backward pass with XLA and leaves the loss
outside (`model_jit_compile`); `jit_compile=False` compiles nothing. Same
ResNet-50 (random init), same batch, same weights, same loss, at the levels
asked; the two variants of each level are timed in interleaved rounds in one
process. Prints the median steps, the ratio without / with XLA (> 1: XLA is
faster) and how far apart the two are after the same steps (first-step loss,
largest difference of a trainable weight, absolute and relative to that
weight's largest value), which should be float rounding only. (The
BatchNormalization moving statistics are left out: with random inputs
through a random ResNet-50 they grow large, and their absolute differences
say little.)

    python benchmarks/bench_xla.py [--image-size 64] [--classes 8] [--per-class 4]
        [--levels baseline,feature] [--rounds 5] [--precision float32]
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import metrix_tf  # noqa: E402


def build(level, jit_compile, args):
    keras.utils.set_random_seed(0)
    metrix = None if level == "baseline" else metrix_tf.Metrix(
        level=level, strategy="positive_negative", lam=0.3, seed=0)
    model = metrix_tf.models.EmbeddingModel(
        backbone=None, embedding_dim=128, metrix=metrix,
        input_shape=(args.image_size, args.image_size, 3),
    )
    model.compile(keras.optimizers.SGD(1e-3),
                  loss=metrix_tf.losses.ContrastiveLoss(metrix=metrix),
                  jit_compile=jit_compile)
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--per-class", type=int, default=4)
    parser.add_argument("--levels", default="baseline,feature")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--precision", default="float32",
                        choices=["float32", "mixed_float16", "mixed_bfloat16"])
    args = parser.parse_args()
    keras.mixed_precision.set_global_policy(args.precision)
    levels = [level.strip() for level in args.levels.split(",") if level.strip()]
    batch = args.classes * args.per_class
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, args.image_size, args.image_size, 3)).astype("float32")
    y = np.repeat(np.arange(args.classes), args.per_class).astype("int32")

    models, first = {}, {}
    for level in levels:
        for jit in (False, True):
            model = build(level, jit, args)
            assert model.model_jit_compile is jit
            first[level, jit] = float(model.train_on_batch(x, y))  # traces (and compiles)
            model.train_on_batch(x, y)
            models[level, jit] = model
    times = {key: [] for key in models}
    for _ in range(args.rounds):
        for key, model in models.items():
            start = time.perf_counter()
            model.train_on_batch(x, y)
            times[key].append(time.perf_counter() - start)

    print(
        f"ResNet-50, {args.image_size}x{args.image_size}, batch {batch} "
        f"({args.classes} x {args.per_class}), {args.precision}, contrastive loss (op "
        f"backend {metrix_tf.ops.backend()}, outside XLA), {args.rounds} interleaved "
        f"rounds, devices: {', '.join(d.device_type for d in tf.config.list_logical_devices())}"
    )
    print("| level | without XLA (s) | model under XLA (s) | without / with | "
          "first-step loss difference | largest trainable-weight difference |")
    print("|---|---|---|---|---|---|")
    for level in levels:
        plain = statistics.median(times[level, False])
        xla = statistics.median(times[level, True])
        pairs = [(a.numpy(), b.numpy()) for a, b in zip(
            models[level, False].trainable_weights, models[level, True].trainable_weights)]
        weights = max(float(np.max(np.abs(a - b))) for a, b in pairs)
        relative = max(float(np.max(np.abs(a - b)) / (np.max(np.abs(a)) + 1e-12)) for a, b in pairs)
        print(f"| {level} | {plain:.3f} | {xla:.3f} | {plain / xla:.2f}x | "
              f"{abs(first[level, False] - first[level, True]):.1e} | {weights:.1e} "
              f"({relative:.1e} of the weight's largest value) |")


if __name__ == "__main__":
    main()

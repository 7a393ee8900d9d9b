"""Training step with the model under XLA (the loss outside it) vs without.

`MetricModel.compile(jit_compile=True)` with a loss that uses the custom op
compiles the model's forward and backward pass with XLA and leaves the loss
outside (`model_jit_compile`); `jit_compile=False` compiles nothing. Same
ResNet-50 (random init), same batch, same weights, same loss, at the levels
asked; the two variants of each level are timed in interleaved rounds in one
process. Prints the median steps, the ratio without / with XLA (> 1: XLA is
faster) and how far apart the two are: the first step's loss, and its
update of every trainable weight (the largest difference over the weights,
relative to that weight's largest update entry; weights whose update is
below 1e-3 of the largest, such as convolution biases before a
BatchNormalization, whose gradient is zero, are left out). In float32 the update of
the first convolution differs by a few percent: the rounding of XLA's and
oneDNN's kernels grows through 50 training-mode BatchNormalization layers of
a random network on random images. `--floatx float64` shows that it is
rounding (about 1e-7 there).

    python benchmarks/bench_xla.py [--image-size 64] [--classes 8] [--per-class 4]
        [--levels baseline,feature] [--rounds 5] [--precision float32]
        [--floatx float64]
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
    parser.add_argument("--floatx", default="float32", choices=["float32", "float64"],
                        help="Keras' float type (float64: the equality check, slow)")
    args = parser.parse_args()
    keras.config.set_floatx(args.floatx)
    keras.mixed_precision.set_global_policy(
        args.precision if args.floatx == "float32" else args.floatx)
    levels = [level.strip() for level in args.levels.split(",") if level.strip()]
    batch = args.classes * args.per_class
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, args.image_size, args.image_size, 3)).astype(args.floatx)
    y = np.repeat(np.arange(args.classes), args.per_class).astype("int32")

    models, first, updates = {}, {}, {}
    for level in levels:
        for jit in (False, True):
            model = build(level, jit, args)
            assert model.model_jit_compile is jit
            model.predict(x[:2], verbose=0)  # builds every weight
            before = [w.numpy() for w in model.trainable_weights]
            first[level, jit] = float(model.train_on_batch(x, y))  # traces (and compiles)
            updates[level, jit] = [w.numpy() - b for w, b in zip(model.trainable_weights, before)]
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
          "first-step loss difference | first-step update difference (relative) |")
    print("|---|---|---|---|---|---|")
    for level in levels:
        plain = statistics.median(times[level, False])
        xla = statistics.median(times[level, True])
        # The first step's update of each trainable weight, with and without
        # XLA: the largest difference relative to that update's largest entry,
        # over the weights that move (a convolution bias before a
        # BatchNormalization has a zero gradient: its update is rounding noise).
        sizes = [float(np.max(np.abs(a))) for a in updates[level, False]]
        relative = max(float(np.max(np.abs(a - b))) / size
                       for a, b, size in zip(updates[level, False], updates[level, True], sizes)
                       if size > 1e-3 * max(sizes))
        print(f"| {level} | {plain:.3f} | {xla:.3f} | {plain / xla:.2f}x | "
              f"{abs(first[level, False] - first[level, True]):.1e} | {relative:.1e} |")


if __name__ == "__main__":
    main()

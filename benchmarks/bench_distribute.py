"""Training throughput of 1 process vs 2 MultiWorkerMirroredStrategy workers.

    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/bench_distribute.py \\
        [--batch_size=64] [--steps=30] [--warmup=5] [--width=16] \\
        [--metrix_level=embedding]

Trains the same model (small CNN backbone without pretrained weights,
64-d embedding, multi-similarity loss with Metrix at --metrix_level, Adam) on
synthetic 32x32x1 images at the same global batch, first in one process
(default strategy), then with 2 worker processes on 127.0.0.1
(MultiWorkerMirroredStrategy, TF_CONFIG, each worker computing half of every
global batch; the losses all-gather embeddings and labels), and prints the
images/s of each and their ratio. Timing starts after `--warmup` steps
(tracing, first collectives) and covers `--steps` steps.

On a machine with only 2 CPU cores the 2 workers compete for the same cores
(and add gRPC all-reduce and all-gather traffic on loopback), so a ratio
near or below 1 is expected there: the figure measures the overhead of the
distributed path, not the speed-up of 2 machines.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Run from a source checkout without installing.
sys.path.insert(0, ROOT)

IMAGE_SHAPE = (32, 32, 1)


def synthetic_dataset(batch_size, num_images=1024, per_class=4, seed=0):
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(num_images // per_class), per_class).astype("int32")
    x = rng.normal(size=(num_images,) + IMAGE_SHAPE).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((x, labels)).cache().repeat()
    return ds.batch(batch_size, drop_remainder=True).prefetch(2)


class StepTimer:
    def __init__(self, warmup):
        import keras

        outer = self

        class Callback(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if batch + 1 == warmup:
                    outer.start = time.perf_counter()

            def on_train_end(self, logs=None):
                outer.end = time.perf_counter()

        self.callback = Callback()
        self.start = self.end = None


def run(args):
    """Train in this process (its TF_CONFIG decides the strategy); returns
    the measured images/s and whether this process is the chief."""
    import keras

    import metrix_tf
    from metrix_tf.training import distribution

    name = "multi_worker" if os.environ.get("TF_CONFIG") else "default"
    strategy = distribution.make_strategy(name)
    keras.utils.set_random_seed(0)
    with strategy.scope():
        metrix = metrix_tf.Metrix(level=args.metrix_level, seed=0)
        model = metrix_tf.models.EmbeddingModel(
            metrix_tf.models.small_cnn_backbone(IMAGE_SHAPE, width=args.width),
            embedding_dim=64,
            metrix=metrix,
        )
        model.compile(
            keras.optimizers.Adam(1e-3),
            loss=metrix_tf.losses.MultiSimilarityLoss(metrix=metrix),
        )
        model(np.zeros((2,) + IMAGE_SHAPE, "float32"))
        model.optimizer.build(model.trainable_variables)
    distribution.fix_multi_worker_fit(model)
    dataset = distribution.distribute_by_data(synthetic_dataset(args.batch_size), strategy)
    timer = StepTimer(args.warmup)
    model.fit(
        dataset, epochs=1, steps_per_epoch=args.warmup + args.steps,
        callbacks=[timer.callback], verbose=0,
    )
    seconds = timer.end - timer.start
    return {
        "images_per_second": args.steps * args.batch_size / seconds,
        "seconds": seconds,
        "replicas": strategy.num_replicas_in_sync,
        "chief": distribution.is_chief(strategy),
    }


def free_ports(count):
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def launch(args, num_workers, timeout):
    """Run the measurement in `num_workers` processes (1: no TF_CONFIG);
    returns the chief's result. Processes are always reaped."""
    common = [f"--batch_size={args.batch_size}", f"--steps={args.steps}",
              f"--warmup={args.warmup}", f"--width={args.width}",
              f"--metrix_level={args.metrix_level}"]
    addresses = [f"127.0.0.1:{port}" for port in free_ports(num_workers)]
    with tempfile.TemporaryDirectory() as tmp:
        processes, outs = [], []
        try:
            for index in range(num_workers):
                env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
                env.pop("TF_CONFIG", None)
                if num_workers > 1:
                    env["TF_CONFIG"] = json.dumps({
                        "cluster": {"worker": addresses},
                        "task": {"type": "worker", "index": index},
                    })
                outs.append(os.path.join(tmp, f"worker{index}.json"))
                processes.append(subprocess.Popen(
                    [sys.executable, os.path.abspath(__file__), "--_worker_out", outs[-1], *common],
                    env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                ))
            for process in processes:
                output, _ = process.communicate(timeout=timeout)
                if process.returncode:
                    raise RuntimeError(f"a worker failed:\n{output[-3000:]}")
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                process.wait()
        results = []
        for path in outs:
            with open(path) as f:
                results.append(json.load(f))
    return next(r for r in results if r["chief"])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch_size", type=int, default=64, help="global batch")
    parser.add_argument("--steps", type=int, default=30, help="timed steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed first steps")
    parser.add_argument("--width", type=int, default=16, help="small CNN width")
    parser.add_argument("--metrix_level", default="embedding",
                        choices=("input", "feature", "embedding"))
    parser.add_argument("--timeout", type=int, default=600, help="seconds per run")
    parser.add_argument("--_worker_out", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._worker_out:
        with open(args._worker_out, "w") as f:
            json.dump(run(args), f)
        return
    print(f"global batch {args.batch_size}, {args.steps} timed steps after "
          f"{args.warmup}, Metrix {args.metrix_level}, {os.cpu_count()} CPU cores here")
    one = launch(args, 1, args.timeout)
    print(f"1 process (default strategy):            {one['images_per_second']:8.1f} images/s")
    two = launch(args, 2, args.timeout)
    print(f"2 workers (MultiWorkerMirrored, {two['replicas']} repl.): "
          f"{two['images_per_second']:8.1f} images/s")
    print(f"ratio 2 workers / 1 process: {two['images_per_second'] / one['images_per_second']:.2f}"
          f"  (only {os.cpu_count()} cores here: the 2 workers share them)")


if __name__ == "__main__":
    main()

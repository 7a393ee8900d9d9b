"""Benchmarks of the compiled soft-label similarity op (issue 3).

1. Forward + backward time, side by side in one process, for M = N anchors
   and candidates of dimension D (float32): the compiled op
   (`SoftLabelSimilarity`), the pure-TF composition
   (`soft_label_similarity_reference`) and a bare `tf.matmul` of the same
   shape (similarity only, no soft labels). Each is a `tf.function` taking
   (anchors, candidates, upstream gradient of the similarity) and returning
   both gradients, the similarity and the soft labels, so nothing is pruned. The three run
   interleaved, round by round; the table shows the best round (least
   disturbed by other processes) and the median.
2. Peak memory (peak RSS, VmHWM, of a fresh subprocess, and its increase over a
   subprocess that only builds the inputs) of a multi-similarity-like loss
   with the miner, forward + backward, on a clean batch of B embeddings:
   materialised (B x B similarity and soft labels, then the reductions) vs
   fused (`soft_label_exp_reductions`, which never holds B x B).

Usage (from the repository root, after `python setup.py build_ext --inplace`):

    python benchmarks/bench_op.py                       # the README table
    python benchmarks/bench_op.py --sizes 512 --memory-batch 4096   # quick
    python benchmarks/bench_op.py --skip-timing --memory-batch 8192,16384
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import metrix_tf.ops as ops  # noqa: E402

MS = dict(scale_pos=17.97, shift_pos=0.77, scale_neg=75.66, shift_neg=0.77, epsilon=0.39)


def make_inputs(n, d, seed=0, classes=None):
    rng = np.random.default_rng(seed)
    classes = classes or max(2, n // 8)
    x = tf.math.l2_normalize(tf.constant(rng.normal(size=(n, d)), tf.float32), axis=1)
    y = tf.math.l2_normalize(tf.constant(rng.normal(size=(n, d)), tf.float32), axis=1)
    labels_a = tf.constant(rng.integers(0, classes, n), tf.int32)
    labels_b = tf.constant(rng.integers(0, classes, n), tf.int32)
    lam = tf.constant(rng.uniform(size=n), tf.float32)
    return x, y, labels_a, labels_b, lam


def timing_functions(anchor_labels, labels_a, labels_b, lam):
    def with_grads(similarity_fn):
        @tf.function
        def step(a, c, upstream):
            with tf.GradientTape() as tape:
                tape.watch([a, c])
                s, y = similarity_fn(a, c)
            grad_a, grad_c = tape.gradient(s, [a, c], output_gradients=upstream)
            # Return s as a loss would use it: otherwise grappler prunes the
            # forward matmul of the pure-TF path (its gradient does not need it).
            return grad_a, grad_c, s, y

        return step

    def compiled(a, c):
        return ops.soft_label_similarity(a, anchor_labels, c, labels_a, labels_b, lam)

    def pure_tf(a, c):
        return ops.soft_label_similarity_reference(a, anchor_labels, c, labels_a, labels_b, lam)

    def matmul(a, c):
        s = tf.matmul(a, c, transpose_b=True)
        return s, s

    return {"op": with_grads(compiled), "pure_tf": with_grads(pure_tf),
            "matmul": with_grads(matmul)}


def _call(fn, args):
    start = time.perf_counter()
    result = fn(*args)
    _ = [r.numpy()[:1, :1] for r in result]
    return time.perf_counter() - start


def run_timing(sizes, dim, repeats):
    """Best (min) and median time of each path, the three interleaved round
    by round so that load from other processes hits them alike."""
    rows = []
    names = ("op", "pure_tf", "matmul")
    for n in sizes:
        a, c, labels_a, labels_b, lam = make_inputs(n, dim)
        upstream = tf.random.stateless_normal([n, n], seed=[1, 2])
        functions = timing_functions(labels_a, labels_a, labels_b, lam)
        args = (a, c, upstream)
        reps = repeats if repeats else max(5, min(30, int(4e10 / (n * n * dim))))
        # Trace, then warm up: the first runs of each size pay for page
        # faults until the allocator has settled on its large buffers.
        for _ in range(3):
            for name in names:
                _call(functions[name], args)
        times = {name: [] for name in names}
        for _ in range(reps):
            for name in names:
                times[name].append(_call(functions[name], args))
        best = {k: min(v) for k, v in times.items()}
        median = {k: statistics.median(v) for k, v in times.items()}
        rows.append(dict(n=n, d=dim, repeats=reps,
                         **{k + "_ms": 1e3 * v for k, v in best.items()},
                         **{k + "_median_ms": 1e3 * v for k, v in median.items()},
                         speedup_vs_pure_tf=best["pure_tf"] / best["op"],
                         op_over_matmul=best["op"] / best["matmul"]))
        print(f"timed M=N={n}: {rows[-1]}", file=sys.stderr, flush=True)
    return rows


def peak_rss_mib():
    """This process's peak resident set size (VmHWM), in MiB.

    Not getrusage's ru_maxrss: Linux carries that across fork + exec, so a
    child of a big parent would report the parent's peak.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def memory_child(mode, batch, dim):
    """Runs in a fresh process; prints its peak RSS (MiB) and the time."""
    x, _, labels, _, _ = make_inputs(batch, dim, classes=max(2, batch // 4))
    ones = tf.ones([batch], tf.float32)
    start = time.perf_counter()
    if mode == "inputs":
        _ = tf.reduce_sum(x).numpy()
    else:
        with tf.GradientTape() as tape:
            tape.watch(x)
            if mode == "fused":
                r = ops.soft_label_exp_reductions(
                    x, labels, x, labels, labels, ones, exclude_self=True, **MS)
            else:
                s, y = ops.soft_label_similarity(x, labels, x, labels, labels, ones, exclude_self=True)
                eps = MS["epsilon"]
                r = ops.exp_reductions_from_similarity(
                    s, y, MS["scale_pos"], MS["shift_pos"], MS["scale_neg"], MS["shift_neg"], eps)
            loss = tf.reduce_mean(r.lse_pos / MS["scale_pos"] + r.lse_neg / MS["scale_neg"])
        grad = tape.gradient(loss, x)
        _ = grad.numpy()
    elapsed = time.perf_counter() - start
    peak_mib = peak_rss_mib()
    print(json.dumps(dict(mode=mode, peak_mib=peak_mib, seconds=elapsed, loss=(
        None if mode == "inputs" else float(loss)))))


def run_memory(batch, dim):
    results = {}
    for mode in ("inputs", "fused", "materialised"):
        out = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--memory-child", mode,
             "--memory-batch", str(batch), "--dim", str(dim)],
            capture_output=True, text=True, check=False)
        if out.returncode != 0:
            # -9 (SIGKILL) is the kernel's out-of-memory killer.
            results[mode] = dict(mode=mode, error=f"exit status {out.returncode}",
                                 stderr=out.stderr[-300:])
        else:
            results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"memory {mode}: {results[mode]}", file=sys.stderr, flush=True)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="512,2048,8192")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=0, help="0: by size")
    parser.add_argument("--memory-batch", default="16384",
                        help="comma-separated batch sizes for the memory table")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        return memory_child(args.memory_child, int(args.memory_batch), args.dim)
    info = ops.library_info()
    print(f"backend={ops.backend()} gemm={info.get('gemm_isa')} tf={tf.__version__} "
          f"intra_op_threads={tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()}"
          f" cpus={os.cpu_count()}")
    if ops.backend() != "compiled":
        print("WARNING: the compiled op is not loaded (" + info["reason"] + ")")
    if not args.skip_timing:
        rows = run_timing([int(s) for s in args.sizes.split(",")], args.dim, args.repeats)
        print("\nForward + backward, float32, D = %d: best of N interleaved runs in ms "
              "(median in brackets)\n" % args.dim)
        print("| M = N | runs | op | pure TF | bare matmul | pure TF / op | op / matmul |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['n']} | {r['repeats']} | {r['op_ms']:.1f} ({r['op_median_ms']:.1f}) "
                  f"| {r['pure_tf_ms']:.1f} ({r['pure_tf_median_ms']:.1f}) "
                  f"| {r['matmul_ms']:.1f} ({r['matmul_median_ms']:.1f}) "
                  f"| {r['speedup_vs_pure_tf']:.2f}x | {r['op_over_matmul']:.2f}x |")
    if not args.skip_memory:
        for batch in [int(b) for b in args.memory_batch.split(",")]:
            print_memory(batch, args.dim, run_memory(batch, args.dim))


def print_memory(batch, dim, mem):
    base = mem["inputs"].get("peak_mib", 0.0)
    print(f"\nPeak RSS, MS loss with miner, forward + backward, B = {batch}, D = {dim}\n")
    print("| path | peak RSS (MiB) | above inputs-only (MiB) | seconds |")
    print("|---|---|---|---|")
    for mode in ("inputs", "fused", "materialised"):
        m = mem[mode]
        if "error" in m:
            print(f"| {mode} | failed ({m['error']}) | | |")
            continue
        print(f"| {mode} | {m['peak_mib']:.0f} | {m['peak_mib'] - base:.0f} | {m['seconds']:.1f} |")
    if "error" not in mem["fused"] and "error" not in mem["materialised"]:
        f, m = mem["fused"], mem["materialised"]
        print(f"\nfused / materialised peak RSS: {f['peak_mib'] / m['peak_mib']:.3f} "
              f"(above inputs-only: {(f['peak_mib'] - base) / max(m['peak_mib'] - base, 1e-9):.4f}); "
              f"loss fused {f['loss']:.6f} vs materialised {m['loss']:.6f}")

if __name__ == "__main__":
    main()

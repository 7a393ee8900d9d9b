"""Leave-one-out Recall@K at SOP scale: faiss (metrix_tf) vs chunked numpy.

Synthetic clustered embeddings shaped like Stanford Online Products' test
split (default 60,000 x 512, 11,000 classes, ~5.5 images per class). Each
method runs in its own subprocess, so its peak resident memory
(`ru_maxrss`) is its own; both import metrix_tf.evaluation and generate
the same data first, and the table also shows the peak above that common
baseline. The numpy brute force is what one writes without faiss: query
chunks of the dense similarity matrix, the self entry masked by index,
`argpartition` for the top K, then a sort of those K by (similarity,
index). Both must report the same figures.

    python benchmarks/bench_retrieval.py                  # full run
    python benchmarks/bench_retrieval.py --n 5000 --classes 900   # quick
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def make_data(n, dim, num_classes, seed=0):
    """Clustered float32 embeddings, generated in chunks (bounded memory)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((num_classes, dim), dtype=np.float32)
    labels = np.sort(rng.integers(0, num_classes, n))
    rng.shuffle(labels)
    x = np.empty((n, dim), np.float32)
    for start in range(0, n, 8192):
        y = labels[start:start + 8192]
        noise = rng.standard_normal((len(y), dim), dtype=np.float32)
        x[start:start + 8192] = centres[y] + 2.4 * noise
    return x, labels


def _rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def numpy_recall(x, labels, ks, chunk_size):
    """Chunked numpy brute force leave-one-out Recall@K."""
    from metrix_tf.evaluation import l2_normalize

    g = l2_normalize(x)
    k_max = max(ks)
    n = g.shape[0]
    hits = np.zeros(len(ks), np.int64)
    for start in range(0, n, chunk_size):
        q = g[start:start + chunk_size]
        rows = np.arange(len(q))
        sims = q @ g.T
        sims[rows, start + rows] = -np.inf  # leave-one-out, by index
        top = np.argpartition(-sims, k_max - 1, axis=1)[:, :k_max]
        top_s = np.take_along_axis(sims, top, axis=1)
        order = np.lexsort((top, -top_s), axis=-1)
        top = np.take_along_axis(top, order, axis=1)
        rel = labels[top] == labels[start:start + len(q), None]
        first = np.where(rel.any(1), rel.argmax(1), k_max)
        hits += (first[:, None] < np.asarray(ks)[None, :]).sum(0)
        del sims
    return {f"recall@{k}": float(h) / n for k, h in zip(ks, hits)}


def worker(args):
    import metrix_tf.evaluation as evaluation

    x, labels = make_data(args.n, args.dim, args.classes)
    baseline = _rss_mb()
    start = time.perf_counter()
    if args.worker == "faiss":
        results = evaluation.evaluate_retrieval(
            x, labels, tuple(args.ks), metrics=("recall",),
            chunk_size=args.faiss_chunk, num_threads=args.threads)
        results = {k: v for k, v in results.items() if k.startswith("rec")}
    else:
        results = numpy_recall(x, labels, tuple(args.ks), args.numpy_chunk)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_mb": _rss_mb(),
                      "baseline_mb": baseline, "results": results}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=11000)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 10, 100,
                                                               1000])
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="faiss OpenMP / BLAS threads for both methods")
    parser.add_argument("--faiss-chunk", type=int, default=None)
    parser.add_argument("--numpy-chunk", type=int, default=512)
    parser.add_argument("--methods", nargs="+", default=["faiss", "numpy"])
    parser.add_argument("--worker", choices=["faiss", "numpy"])
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join(
                   [root] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
               OMP_NUM_THREADS=str(args.threads),
               OPENBLAS_NUM_THREADS=str(args.threads))
    rows = {}
    for method in args.methods:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", method,
               "--n", str(args.n), "--dim", str(args.dim), "--classes",
               str(args.classes), "--threads", str(args.threads),
               "--numpy-chunk", str(args.numpy_chunk), "--ks",
               *map(str, args.ks)]
        if args.faiss_chunk:
            cmd += ["--faiss-chunk", str(args.faiss_chunk)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"{method} worker failed:\n{out.stderr[-3000:]}")
        rows[method] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"leave-one-out Recall@{args.ks} on {args.n} x {args.dim} "
          f"({args.classes} classes), {args.threads} threads")
    keys = [f"recall@{k}" for k in args.ks]
    print("| method | time (s) | peak RSS (MB) | peak above baseline (MB) | "
          + " | ".join(keys) + " |")
    print("|---" * (4 + len(keys)) + "|")
    for method, row in rows.items():
        print(f"| {method} | {row['seconds']:.1f} | {row['peak_mb']:.0f} | "
              f"{row['peak_mb'] - row['baseline_mb']:.0f} | "
              + " | ".join(f"{row['results'][k]:.4f}" for k in keys) + " |")
    if "faiss" in rows and "numpy" in rows:
        f, n = rows["faiss"], rows["numpy"]
        above_f = f["peak_mb"] - f["baseline_mb"]
        above_n = max(1.0, n["peak_mb"] - n["baseline_mb"])
        print(f"faiss / numpy: time {f['seconds'] / n['seconds']:.2f}x, "
              f"peak RSS {f['peak_mb'] / n['peak_mb']:.2f}x, "
              f"peak above baseline {above_f / above_n:.2f}x")
        print("same figures:", f["results"] == n["results"])


if __name__ == "__main__":
    main()

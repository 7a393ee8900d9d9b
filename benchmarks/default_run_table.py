"""The README's table of the default run: untrained vs trained Recall@K and
utilization on the unseen classes of the built-in set, for each loss,
baseline vs Metrix (feature level), mean over seeds.

    python benchmarks/default_run_table.py [--seeds 0 1 2] [--workdir runs/table]

Each run is `metrix-train` with its defaults except --loss, --metrix_level
and --seed (so it is the default run's recipe), in its own workdir; an
existing finished run is reused.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np

from metrix_tf.losses import registry

LOSSES = registry.loss_names()
LEVELS = ("none", "feature")
METRICS = ("recall@1", "recall@2", "recall@4", "recall@8", "utilization", "utilization_with_mixes")


def run(workdir, loss, level, seed):
    path = os.path.join(workdir, f"{loss}_{level}_seed{seed}")
    results = os.path.join(path, "results.json")
    if not os.path.exists(results):
        subprocess.run(
            [sys.executable, "-m", "metrix_tf.training.main", f"--loss={loss}",
             f"--metrix_level={level}", f"--seed={seed}", f"--workdir={path}",
             "--noexport"],
            check=True, stdout=subprocess.DEVNULL,
        )
    with open(results) as f:
        return json.load(f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workdir", default="runs/table")
    args = parser.parse_args()
    rows = []
    for loss in LOSSES:
        for level in LEVELS:
            runs = [run(args.workdir, loss, level, seed) for seed in args.seeds]
            cells = []
            for metric in ("recall@1", "utilization"):
                for stage in ("untrained", "trained"):
                    values = np.array([r[stage][metric] for r in runs])
                    cells.append(f"{values.mean():.3f} ± {values.std():.3f}")
            minutes = np.mean([r["seconds_this_session"] for r in runs]) / 60
            name = "baseline" if level == "none" else "Metrix (feature)"
            rows.append(f"| {loss} | {name} | " + " | ".join(cells) + f" | {minutes:.1f} |")
    print(f"Built-in set, unseen classes, mean ± std over seeds {args.seeds}:")
    print("| loss | method | R@1 untrained | R@1 trained | utilization untrained | utilization trained | minutes/run |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

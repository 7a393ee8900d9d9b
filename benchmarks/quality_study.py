"""The quality study: baseline vs Metrix, per loss and level, paired seeds.

    python benchmarks/quality_study.py                        # the whole study
    python benchmarks/quality_study.py --datasets builtin_large \\
        --losses multi_similarity --levels none feature --seeds 0
    python benchmarks/quality_study.py --report-only          # tables from what ran
    python benchmarks/quality_study.py --tag w01 --set metrix_weight=0.1 \\
        --levels feature                                      # a variant

Each cell is one `metrix-train --dataset=D --loss=L --metrix_level=V
--seed=S` run (the recipe of the data set and loss, Metrix's defaults, plus any `--set`
flags of a variant) in its own workdir `ROOT/D/L/V[-TAG]/seedS`. The same
seed gives baseline and Metrix the same training classes, validation classes,
initialisation and data order, so the difference of a seed is paired. A
finished run is reused and an unfinished one resumes from its checkpoint:
the study can be stopped and continued at any time. Runs go one at a time,
in the order datasets > seeds > losses > levels.

The figures of every finished cell (results.json, history.json, minutes
and the commit of the code that ran it; a few KB) are copied to `--results` (default benchmarks/results/quality_study,
kept in git), from which the report is made and which also counts as
finished: a fresh clone continues the study where the last one stopped.

Prints a markdown table per data set: mean +- std over the seeds of the
unseen-class Recall@1/2/4/8, MAP@R, utilization (without / with mixes),
the training classes' Recall@1, the validation figures of the last epoch,
and minutes per run; then the paired difference Metrix - baseline of
Recall@1 per seed. Writes the tables to `RESULTS/study.md`, a PNG of
Recall@1 per configuration with error bars to `RESULTS/recall_at_1.png`, the
paired differences per seed against the goal of +0.010 to
`RESULTS/paired_differences.png` and the validation curves of the baseline
and each level (first seed) to `RESULTS/validation_curves.png`; a report of
other data sets than the default ones gives files of its own, named after
them (`study_icons.md`, `paired_differences_icons.png`, ...).
The study compares last epochs: a cell that kept an earlier epoch (it
selected by validation Recall@1, which picks among near-ties) has its last
epoch's weights evaluated into results_last.json (`--evaluate-last`, from
its workdir's last checkpoint), and its row uses those figures.
Paired differences compare cells that ran the same code (the git tree of
metrix_tf/ each cell records, or for older cells the commit) with the same flags other than Metrix's (`metrix_*`, `max_mixes`; also recorded) and
whose test figures are of an epoch chosen by the same rule (the last epoch,
or the best validation Recall@1; `selection_rules`): after
code that changes the numerics, `--baseline-tag TAG` reruns the baselines as
`none-TAG` for the new code's Metrix cells to pair with, and a variant that
sets training flags (`--tag long --set epochs=60`) runs its own baseline. The test classes are evaluated once per run, after training; choices
between variants are to be made on the validation columns.

The reference protocol, measured apart (`--protocol`): the reference code
keeps the epoch that is best on the test classes, and its README trains
Metrix 100 epochs against 60-epoch baselines. For the three paper losses at
the feature level, `--protocol` runs cells of their own with the test classes
scored every epoch (`--score_test_every_epoch`): the baseline and Metrix at
the recipe's schedule (tag `protocol`) and Metrix at 100/60 of it (tag
`protocol_long`, the decay epochs scaled alike). The report prints their
table apart, labelled, with what each protocol would have shown: the last
epoch at equal schedules (this study's rule), the best-on-test epoch, and
the best-on-test epoch of the longer Metrix run against the baseline's. No
choice reads it, and these cells never enter the study's tables.
"""

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads
# The study runs, and records, the metrix_tf of the checkout this script is in
# (a frozen worktree runs its own code even where another checkout is
# installed in editable mode); copy the compiled op into that checkout's
# metrix_tf/ops, or it runs the pure-TF path. Outside a checkout: the
# installed metrix_tf.
CODE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isdir(os.path.join(CODE_ROOT, "metrix_tf")):
    sys.path.insert(0, CODE_ROOT)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [CODE_ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
from metrix_tf.training.train_config import LEVELS  # noqa: E402  ("none" first)
from metrix_tf.training.train_config import LOSSES  # noqa: E402  (the loss registry)
from metrix_tf.training.train_config import recipe  # noqa: E402  (data set + loss recipes)
from metrix_tf.training import train_config  # noqa: E402  (TrainConfig's defaults)
from metrix_tf.training.run_state import write_atomically  # noqa: E402

DATASETS = ("builtin_large", "builtin")  # the default: built here, no install
# icons: the apt-get line of README "Icons data set" first.
CHOICES = DATASETS + ("icons",)
TIMES_FILE = "study_seconds.json"


def cell_dir(root, dataset, loss, level, tag, seed):
    name = level + (f"-{tag}" if tag else "")
    return os.path.join(root, dataset, loss, name, f"seed{seed}")


# How often a running cell's time is saved: a session cut off mid-cell (the
# machine taken back) loses at most this much of it from the minutes per run.
SAVE_SECONDS_EVERY = 60


def run_cell(workdir, dataset, loss, level, seed, settings, log):
    """Runs (or resumes) one cell; returns False when it failed."""
    command = [
        sys.executable, "-m", "metrix_tf.programs.train",
        f"--dataset={dataset}", f"--loss={loss}", f"--metrix_level={level}",
        f"--seed={seed}", f"--workdir={workdir}", "--noexport",
    ] + [f"--{s}" for s in settings]
    os.makedirs(workdir, exist_ok=True)
    log(f"running: {' '.join(command[2:])}")
    # Accumulated over resumed sessions (the run's own figure covers only
    # its last session), and saved while the run goes, so that a session
    # killed with it keeps its time too. The code's commit: pairs are only
    # compared within one.
    path = os.path.join(workdir, TIMES_FILE)
    earlier = _read_json(path, {"seconds": 0.0})["seconds"]
    fixed = {**code_version(), "settings": list(settings),
             "recipe": effective_recipe(dataset, loss, settings)}
    here, start = machine(), time.time()
    with open(os.path.join(workdir, "study.log"), "a") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        while True:
            try:
                code = process.wait(timeout=SAVE_SECONDS_EVERY)
                break
            except subprocess.TimeoutExpired:
                _record_time(path, earlier + time.time() - start, here, fixed)
    _record_time(path, earlier + time.time() - start, here, fixed)
    if code:
        log(f"FAILED (exit {code}): see {os.path.join(workdir, 'study.log')}")
    return code == 0


def _record_time(path, seconds, here, fixed):
    """Writes a cell's seconds so far, adds machine `here` to its machines and
    `fixed` (code, settings, recipe) where the record lacks them; whole."""
    record = _read_json(path, {})
    record["seconds"] = seconds
    # Minutes per run only compare on one kind of machine: each session's.
    machines = record.setdefault("machines", [])
    if not machines or machines[-1] != here:
        machines.append(here)
    for key, value in fixed.items():
        record.setdefault(key, value)
    write_atomically(path, json.dumps(record))


LAST_FILE = "results_last.json"
LAST_COPY_PREFIX = ".last-"  # evaluate_last's temporary copy of a workdir
CELL_FILES = ("results.json", "history.json", TIMES_FILE, LAST_FILE)


def evaluate_last(workdir, log):
    """For a finished cell that kept an earlier epoch than its last (it
    selected by validation Recall@1): evaluates its last epoch's weights the
    same way into `results_last.json`, so that all cells can be compared at
    the last epoch. Runs the trainer on a copy of the workdir (its config
    with `select_by=last`): no epoch is trained, the workdir is not touched.
    Returns False when it failed."""
    results = _read_json(os.path.join(workdir, "results.json"))
    if results is None or os.path.exists(os.path.join(workdir, LAST_FILE)):
        return True
    history = _read_json(os.path.join(workdir, "history.json"), [])
    if "last" in selection_rules(results, history):
        return True
    with tempfile.TemporaryDirectory(prefix=LAST_COPY_PREFIX, dir=workdir) as copy:
        shutil.copytree(os.path.join(workdir, "checkpoints"), os.path.join(copy, "checkpoints"))
        for name in ("history.json", "results_untrained.json"):
            if os.path.exists(os.path.join(workdir, name)):
                shutil.copyfile(os.path.join(workdir, name), os.path.join(copy, name))
        config = _read_json(os.path.join(workdir, "config.json"))
        config.update(select_by="last", workdir=copy, export=False)
        with open(os.path.join(copy, "config.json"), "w") as f:
            json.dump(config, f)
        command = [sys.executable, "-m", "metrix_tf.programs.train",
                   f"--config={os.path.join(copy, 'config.json')}", f"--workdir={copy}",
                   "--select_by=last", "--noexport"]
        log(f"evaluating the last epoch of {workdir}")
        with open(os.path.join(workdir, "study.log"), "a") as out:
            code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode
        last = _read_json(os.path.join(copy, "results.json"))
        if code or last is None or last["selected_epoch"] != results["epochs"]:
            log(f"FAILED to evaluate the last epoch of {workdir}: see its study.log")
            return False
        shutil.copyfile(os.path.join(copy, "results.json"), os.path.join(workdir, LAST_FILE))
    return True


def code_version():
    """{"commit", "code_tree"} of the metrix_tf that runs the cells: the git
    commit (+ "-dirty" when metrix_tf/ has uncommitted changes) and the git
    tree hash of metrix_tf/ (None when dirty or not a git checkout). Commits
    that touch only the docs, the benchmarks or the tests keep the tree:
    cells run on either side of such a commit ran the same code and pair."""
    import metrix_tf

    source = os.path.dirname(os.path.dirname(os.path.abspath(metrix_tf.__file__)))

    def git(*arguments):
        return subprocess.run(["git", "-C", source, *arguments], capture_output=True,
                              text=True, check=True).stdout.strip()

    try:
        commit, tree = git("rev-parse", "--short", "HEAD"), git("rev-parse", "HEAD:metrix_tf")
        dirty = git("status", "--porcelain", "metrix_tf")
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown (not a git checkout)", "code_tree": None}
    return {"commit": commit + ("-dirty" if dirty else ""), "code_tree": None if dirty else tree}


def machine():
    """The machine a cell ran on, for its minutes: CPU model and core count
    ("AMD EPYC x2")."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{model} x{os.cpu_count()}"


def same_code(a, b):
    """Whether two cells ran the same metrix_tf: the same tree when both
    recorded one, else the same commit."""
    if a.get("code_tree") and b.get("code_tree"):
        return a["code_tree"] == b["code_tree"]
    return a["commit"] == b["commit"]


def finished_cells(root):
    """The workdirs under `root` of finished cells (they hold results.json),
    in order; never a copy that `evaluate_last` left behind."""
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith(LAST_COPY_PREFIX))
        if "results.json" in files:
            yield directory


def archive(root, results):
    """Copies the figures of every finished cell under `root` to `results`.

    `results` is the record: a file archived once is never replaced (a
    finished cell is never run again, and `--evaluate-last` adds a file of
    its own), so a note added there by hand survives later runs from a
    `root` that still holds the cell's workdir."""
    for directory in finished_cells(root):
        target = os.path.join(results, os.path.relpath(directory, root))
        os.makedirs(target, exist_ok=True)
        for name in CELL_FILES:
            source, copy = os.path.join(directory, name), os.path.join(target, name)
            if os.path.exists(source) and not os.path.exists(copy):
                shutil.copyfile(source, copy)


def _read_json(path, default=None):
    if not os.path.exists(path):
        return default
    with open(path) as f:
        return json.load(f)


def read_cell(workdir):
    """The figures of a finished cell, or None."""
    results = _read_json(os.path.join(workdir, "results.json"))
    if results is None:
        return None
    history = _read_json(os.path.join(workdir, "history.json"), [])
    rules = selection_rules(results, history)
    last_epoch = _read_json(os.path.join(workdir, LAST_FILE))
    if last_epoch is not None and "last" not in rules:
        # The study compares last epochs: the cell's kept epoch is not it.
        results, rules = last_epoch, frozenset({"last"})
    trained = results["trained"]
    last = history[-1] if history else {}
    row = {key: trained[key] for key in trained if isinstance(trained[key], float)}
    row["val_recall@1"] = last.get("val_recall@1", float("nan"))
    row["val_map@r"] = last.get("val_map@r", float("nan"))
    row["best_val_map@r"] = max((h.get("val_map@r", float("nan")) for h in history),
                                default=float("nan"))
    record = _read_json(os.path.join(workdir, TIMES_FILE), {})
    seconds = record.get("seconds", results.get("seconds_this_session", float("nan")))
    row["minutes"] = seconds / 60
    row["machines"] = tuple(record.get("machines", ["not recorded"]))
    row["commit"] = record.get("commit", "?")
    row["code_tree"] = record.get("code_tree")
    # The --set flags other than Metrix's (cells from before they were
    # recorded ran none; max_mixes acts only on Metrix's mixes). A Metrix
    # cell pairs with the baseline of the same code, the same such flags
    # and a common selection rule.
    row["training"] = sorted(s for s in record.get("settings", [])
                             if not s.startswith(("metrix_", "max_mixes=", "select_by=")))
    row["selection"] = rules
    row["recipe"] = record.get("recipe")  # None: a cell from before it was recorded
    row["history"] = history
    return row


def selection_rules(results, history):
    """The selection rules whose epoch this cell's test figures are of.

    Cells kept either their last epoch (`--select_by=last`, and every run
    from before the flag existed) or their best validation Recall@1 (the
    default; the first epoch that reached the maximum). A paired difference
    compares figures of one rule, so a cell also counts under a rule that
    would have picked the same epoch (its history tells): a recall@1 cell
    whose best epoch was the last is also a last-epoch cell.
    """
    epochs = len(history)
    selected = results.get("selected_epoch") or epochs
    rules = set()
    if selected == epochs:
        rules.add("last")
    values = [h.get("val_recall@1") for h in history]
    if values and None not in values:
        if selected == 1 + int(np.argmax(values)):  # argmax: the first maximum
            rules.add("recall@1")
    return frozenset(rules)


def baseline_cells(root, dataset, loss, seeds):
    """{seed: [finished baseline cells]}: level none, untagged first, then the
    tagged ones (`--baseline-tag` reruns, variants' own baselines). A Metrix
    cell pairs with the one of its commit and its non-Metrix flags."""
    names = _listdir(os.path.join(root, dataset, loss))
    tags = [""] + [name.split("-", 1)[1] for name in names if name.startswith("none-")]
    cells = {s: [read_cell(cell_dir(root, dataset, loss, "none", tag, s)) for tag in tags]
             for s in seeds}
    return {s: [c for c in found if c is not None] for s, found in cells.items()}


COLUMNS = (
    ("R@1", "recall@1"), ("R@2", "recall@2"), ("R@4", "recall@4"), ("R@8", "recall@8"),
    ("MAP@R", "map@r"), ("util.", "utilization"), ("util. + mixes", "utilization_with_mixes"),
    ("train R@1", "train_recall@1"), ("val R@1", "val_recall@1"), ("val MAP@R", "val_map@r"),
    ("min/run", "minutes"),
)


def _mean_std(values, digits=3):
    values = np.array(values, float)
    return f"{values.mean():.{digits}f} ± {values.std():.{digits}f}"


def report(root, datasets, losses, configs, seeds):
    """Markdown tables, and {dataset: [configuration]} for the plots: each
    configuration a dict of its loss, level, tag, name, unseen Recall@1 per
    seed, the history of its first finished seed and its paired differences
    {seed: Metrix - baseline} (empty for baselines and unpaired cells)."""
    lines, plot = [], {}
    for dataset in datasets:
        table = ["| loss | method | seeds | " + " | ".join(c for c, _ in COLUMNS) + " |",
                 "|---|---|---|" + "---|" * len(COLUMNS)]
        diffs, machines = [], collections.Counter()
        for loss in losses:
            baselines = baseline_cells(root, dataset, loss, seeds)
            for level, tag in configs:
                cells = {s: read_cell(cell_dir(root, dataset, loss, level, tag, s)) for s in seeds}
                done = [s for s in seeds if cells[s] is not None]
                if not done:
                    continue
                name = "baseline" if level == "none" else f"Metrix ({level})"
                name += f" [{tag}]" if tag else ""
                row = [_mean_std([cells[s][key] for s in done], 1 if key == "minutes" else 3)
                       for _, key in COLUMNS]
                table.append(f"| {loss} | {name} | {','.join(map(str, done))} | " + " | ".join(row) + " |")
                for seed in done:
                    machines.update(cells[seed]["machines"])
                entry = {"loss": loss, "level": level, "tag": tag, "name": name,
                         "recall@1": {s: cells[s]["recall@1"] for s in done},
                         "history": cells[done[0]]["history"], "paired": {}}
                plot.setdefault(dataset, []).append(entry)
                baseline = {s: next((b for b in baselines[s] if same_code(b, cells[s])
                                     and b["training"] == cells[s]["training"]
                                     and b["selection"] & cells[s]["selection"]), None)
                            for s in done}
                paired = [s for s in done if baseline[s] is not None]
                unpaired = [s for s in done if baselines[s] and s not in paired]
                if level != "none" and unpaired:
                    print(f"warning: {dataset}/{loss}/{name}: seeds {unpaired} have no baseline "
                          "of the same code, flags and epoch-selection rule; left out of the "
                          "paired differences",
                          file=sys.stderr)
                if level != "none" and paired:
                    d = [cells[s]["recall@1"] - baseline[s]["recall@1"] for s in paired]
                    entry["paired"] = dict(zip(paired, d))
                    dv = [cells[s]["val_map@r"] - baseline[s]["val_map@r"] for s in paired]
                    diffs.append(
                        f"| {loss} | {name} | "
                        + ", ".join(f"{s}: {x:+.3f}" for s, x in zip(paired, d))
                        + f" | {np.mean(d):+.3f} | {np.mean(dv):+.3f} |")
        if len(table) == 2:
            continue
        lines += [f"### {dataset}: unseen classes, mean ± std over seeds", ""] + table + [""]
        lines += ["min/run was measured on: " + "; ".join(
            f"{m} ({n} cell{'s' if n > 1 else ''})" for m, n in sorted(machines.items()))
            + " (a cell resumed on another machine counts once for each).", ""]
        if diffs:
            lines += [f"Paired difference Metrix - baseline, unseen Recall@1 per seed ({dataset}); "
                      "last column: mean paired difference of validation MAP@R", "",
                      "| loss | method | per seed | mean R@1 | mean val MAP@R |",
                      "|---|---|---|---|---|"] + diffs + [""]
    return "\n".join(lines), plot


GOAL = 0.010  # issue 10: paired unseen Recall@1 gain asked of Metrix

PROTOCOL_LOSSES = ("contrastive", "multi_similarity", "proxy_anchor")  # the paper's
PROTOCOL_TAGS = ("protocol", "protocol_long")
LONG = 100 / 60  # the reference README: Metrix 100 epochs, baselines 60


def protocol_cells(dataset, loss):
    """The `--protocol` cells of a loss: [(level, tag, --set flags)]."""
    settled = recipe(dataset, loss)
    epochs = int(settled.get("epochs", train_config.TrainConfig.epochs))
    decay = str(settled.get("lr_decay_epochs", train_config.TrainConfig.lr_decay_epochs))
    scored = ["score_test_every_epoch=true"]
    long_flags = scored + [f"epochs={round(epochs * LONG)}"]
    if decay:
        long_flags.append("lr_decay_epochs=" + ",".join(
            str(round(int(e) * LONG)) for e in decay.split(",")))
    return [("none", "protocol", scored), ("feature", "protocol", scored),
            ("feature", "protocol_long", long_flags)]


def _best_on_test(cell):
    """(test Recall@1 of the best epoch on the test classes, that epoch)."""
    scored = [(h["test_recall@1"], h["epoch"] + 1) for h in cell["history"]
              if "test_recall@1" in h]
    if not scored:
        return float("nan"), 0
    best = max(r for r, _ in scored)
    return best, next(e for r, e in scored if r == best)  # the first best


def protocol_report(root, datasets, seeds):
    """The reference protocol's table (markdown), or "" when no cell ran."""
    lines = []
    for dataset in datasets:
        rows = []
        for loss in PROTOCOL_LOSSES:
            for seed in seeds:
                cells = [read_cell(cell_dir(root, dataset, loss, level, tag, seed))
                         for level, tag, _ in protocol_cells(dataset, loss)]
                if any(c is None for c in cells):
                    continue
                (base, metrix, long_run) = cells
                (b_best, b_epoch), (m_best, m_epoch), (l_best, l_epoch) = map(_best_on_test, cells)
                rows.append(
                    f"| {loss} | {seed} | {base['recall@1']:.3f} | {b_best:.3f} ({b_epoch}) "
                    f"| {metrix['recall@1']:.3f} | {m_best:.3f} ({m_epoch}) "
                    f"| {l_best:.3f} ({l_epoch}/{len(long_run['history'])}) "
                    f"| {metrix['recall@1'] - base['recall@1']:+.3f} | {m_best - b_best:+.3f} "
                    f"| {l_best - b_best:+.3f} |")
        if rows:
            lines += [
                f"### {dataset}: the reference protocol, measured apart (never used for a choice)",
                "",
                "Unseen Recall@1 of runs that scored the test classes every epoch: the last "
                "epoch (this study's rule), the best epoch on the test classes (the reference "
                "code's), and Metrix trained 100/60 as long (the reference README's schedules). "
                "The differences are Metrix - baseline.",
                "",
                "| loss | seed | baseline last | baseline best-on-test (epoch) | Metrix last "
                "| Metrix best-on-test (epoch) | Metrix long best-on-test (epoch/epochs) "
                "| diff: last, same epochs | diff: best-on-test | diff: best-on-test, Metrix long |",
                "|---|---|---|---|---|---|---|---|---|---|",
            ] + rows + [""]
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path, dpi):
    """Writes the figure to `path` whole or not at all."""
    import matplotlib.pyplot as plt

    tmp = f"{path}.tmp.png"
    figure.savefig(tmp, dpi=dpi)
    plt.close(figure)
    os.replace(tmp, path)


def _label(entry):
    return f"{entry['loss']}  {entry['name']}"


def _panels(plot, keep):
    """{dataset: its configurations that `keep` accepts}, without the data
    sets left with none."""
    panels = {d: [e for e in entries if keep(e)] for d, entries in plot.items()}
    return {d: entries for d, entries in panels.items() if entries}


def _loss_colors(panels):
    """One colour per loss, the same in every panel."""
    losses = sorted({e["loss"] for entries in panels.values() for e in entries})
    return {loss: f"C{i}" for i, loss in enumerate(losses)}


def _row_axes(plt, panels):
    """A figure with one panel per data set, each as tall as its
    configurations (one row each, the first on top): (figure, [(axis,
    dataset, entries, rows)])."""
    heights = [0.26 * len(entries) + 1.2 for entries in panels.values()]
    figure, axes = plt.subplots(len(panels), 1, figsize=(9, sum(heights)), squeeze=False,
                                gridspec_kw={"height_ratios": heights})
    return figure, [(axis, dataset, entries, range(len(entries))[::-1])
                    for axis, (dataset, entries) in zip(axes[:, 0], panels.items())]


def _label_rows(axis, entries, rows):
    axis.set_yticks(rows, [_label(e) for e in entries], fontsize=7)
    axis.set_ylim(-0.6, len(entries) - 0.4)
    axis.grid(axis="x", alpha=0.3)


def write_plot(plot, path):
    """Unseen Recall@1 of every configuration (mean ± std over its seeds,
    seeds as dots), one panel per data set, configurations top to bottom."""
    if not plot:
        return
    figure, panels = _row_axes(_pyplot(), plot)
    for axis, dataset, entries, rows in panels:
        values = [np.array(list(e["recall@1"].values())) for e in entries]
        colors = ["tab:gray" if e["level"] == "none" else "tab:blue" for e in entries]
        axis.barh(rows, [v.mean() for v in values], xerr=[v.std() for v in values],
                  color=colors, capsize=2, height=0.7)
        for row, v in zip(rows, values):
            axis.plot(v, [row] * len(v), "k.", markersize=3)
        _label_rows(axis, entries, rows)
        low = min(v.min() for v in values)
        axis.set_xlim(max(0.0, low - 0.03), min(1.0, max(v.max() for v in values) + 0.02))
        axis.set_xlabel("unseen Recall@1 (bar: mean ± std over seeds; dots: seeds)")
        axis.set_title(f"{dataset}: baseline (gray) vs Metrix (blue)")
    figure.tight_layout()
    _save(figure, path, dpi=100)


def write_paired_plot(plot, path):
    """The paired differences Metrix - baseline of unseen Recall@1 per seed
    (dots) and their mean (bar) for every Metrix configuration that has a
    baseline, against zero and the goal of +0.010."""
    paired = _panels(plot, lambda entry: entry["paired"])
    if not paired:
        return
    colors = _loss_colors(paired)
    figure, panels = _row_axes(_pyplot(), paired)
    for axis, dataset, entries, rows in panels:
        for row, entry in zip(rows, entries):
            d = np.array(list(entry["paired"].values()))
            axis.barh(row, d.mean(), color=colors[entry["loss"]], alpha=0.35, height=0.7)
            axis.plot(d, [row] * len(d), ".", color=colors[entry["loss"]], markersize=5)
        axis.axvline(0.0, color="black", linewidth=0.8)
        axis.axvline(GOAL, color="tab:green", linestyle="--", linewidth=1)
        _label_rows(axis, entries, rows)
        axis.set_xlabel("paired unseen Recall@1 difference, Metrix - baseline "
                        "(bar: mean; dots: seeds)")
        axis.set_title(f"{dataset}: Metrix - baseline per seed (dashed: the goal, +{GOAL:.3f})",
                       fontsize=10)
    figure.tight_layout()
    _save(figure, path, dpi=100)


def write_curves(plot, path):
    """Validation Recall@1 and MAP@R per epoch of the untagged configurations
    (baseline and each level at the data set's recipe; first finished seed):
    whether the validation classes saturate, and when the runs part. One
    colour per loss; the baseline dashed."""
    plot = _panels(plot, lambda entry: not entry["tag"])
    if not plot:
        return
    plt = _pyplot()
    styles = {"none": "--", "input": ":", "feature": "-", "embedding": "-."}
    figure, axes = plt.subplots(len(plot), 2, figsize=(12, 4.5 * len(plot)), squeeze=False)
    colors = _loss_colors(plot)
    for row, (dataset, entries) in zip(axes, plot.items()):
        for axis, key in zip(row, ("val_recall@1", "val_map@r")):
            for entry in entries:
                points = [(h["epoch"] + 1, h[key]) for h in entry["history"] if key in h]
                if points:
                    axis.plot(*zip(*points), label=_label(entry), color=colors[entry["loss"]],
                              linestyle=styles.get(entry["level"], "-"), linewidth=1)
            axis.set_xlabel("epoch")
            axis.set_ylabel(key.replace("val_", "validation "))
            axis.set_title(f"{dataset}: held-out training classes")
            axis.grid(alpha=0.3)
        row[1].legend(fontsize=6, ncol=2, loc="lower right")
    figure.tight_layout()
    _save(figure, path, dpi=90)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__)
    parser.add_argument("--root", default="runs/quality",
                        help="where the runs (checkpoints, logs) live")
    parser.add_argument("--results", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "results", "quality_study"),
                        help="where the finished cells' figures and the report are kept")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=CHOICES)
    parser.add_argument("--losses", nargs="+", default=list(LOSSES), choices=LOSSES)
    parser.add_argument("--levels", nargs="+", default=list(LEVELS), choices=LEVELS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--tag", default="", help="name of a variant (its workdirs get -TAG)")
    parser.add_argument("--set", nargs="*", default=[], metavar="FLAG=VALUE",
                        help="metrix-train flags of the variant, e.g. metrix_weight=0.1")
    parser.add_argument("--baseline-tag", default="",
                        help="run the baselines (level none) as none-TAG: a rerun of them "
                        "with other code, which the Metrix cells of that code pair with")
    parser.add_argument("--report-tags", nargs="*", default=None,
                        help="variants to list in the report (default: every one found)")
    parser.add_argument("--protocol", action="store_true",
                        help="run the reference protocol's cells (test classes scored every "
                        "epoch, Metrix also 100/60 as long) for the paper's three losses at the "
                        "feature level, instead of the study's cells")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--evaluate-last", action="store_true",
                        help="evaluate the last epoch of every finished cell under --root that "
                        "kept an earlier one (results_last.json), then report")
    args = parser.parse_args()
    if args.set and not args.tag:
        parser.error("--set needs --tag, so that a variant never reuses another's runs")
    log = lambda message: print(time.strftime("%H:%M:%S"), message, flush=True)  # noqa: E731
    if args.evaluate_last:
        for dataset in args.datasets:
            for directory in list(finished_cells(os.path.join(args.root, dataset))):
                evaluate_last(directory, log)
    elif not args.report_only:
        for dataset in args.datasets:
            for seed in args.seeds:
                for loss in (PROTOCOL_LOSSES if args.protocol else args.losses):
                    if args.protocol:
                        cells = protocol_cells(dataset, loss)
                    else:
                        cells = [(level, args.tag if level != "none" or args.set
                                  else args.baseline_tag, args.set) for level in args.levels]
                    for level, tag, settings in cells:
                        cell = (dataset, loss, level, tag, seed)
                        finished = read_cell(cell_dir(args.results, *cell))
                        check_recipe(finished, dataset, loss, settings, cell_dir(args.results, *cell))
                        if finished is None:
                            run_cell(cell_dir(args.root, *cell), dataset, loss, level, seed,
                                     settings, log)
                            archive(args.root, args.results)
    archive(args.root, args.results)
    configs = [(level, "") for level in LEVELS]
    tags = args.report_tags
    if tags is None:
        tags = sorted({name.split("-", 1)[1]
                       for dataset in args.datasets for loss in args.losses
                       for name in _listdir(os.path.join(args.results, dataset, loss)) if "-" in name}
                      - set(PROTOCOL_TAGS))
    configs += [(level, tag) for tag in tags for level in LEVELS]
    text, plot = report(args.results, args.datasets, args.losses, configs, args.seeds)
    protocol = protocol_report(args.results, args.datasets, args.seeds)
    if protocol:
        text += "\n" + protocol
    print(text)
    os.makedirs(args.results, exist_ok=True)
    suffix = output_suffix(args.datasets)
    with open(os.path.join(args.results, f"study{suffix}.md"), "w") as f:
        f.write(text)
    write_plot(plot, os.path.join(args.results, f"recall_at_1{suffix}.png"))
    write_paired_plot(plot, os.path.join(args.results, f"paired_differences{suffix}.png"))
    write_curves(plot, os.path.join(args.results, f"validation_curves{suffix}.png"))


def output_suffix(datasets):
    """"" for the default data sets, else "_" and their names: a report of
    other data sets (icons) never overwrites the glyph study's files."""
    return "" if list(datasets) == list(DATASETS) else "_" + "_".join(datasets)


def effective_recipe(dataset, loss, settings):
    """The recipe of the data set and loss with a variant's `--set` flags
    applied to it, as {flag: value as text}: `--set epochs=60` on a 30-epoch
    recipe ran what a 60-epoch recipe runs."""
    # Not the epoch-selection rule: the study compares last epochs whatever
    # a cell kept (results_last.json).
    settled = {key: str(value) for key, value in recipe(dataset, loss).items()
               if key != "select_by"}
    for setting in settings:
        key, value = setting.split("=", 1)
        if key in settled:
            settled[key] = value
    return settled


def check_recipe(cell, dataset, loss, settings, path):
    """A finished cell is reused only if it ran the current recipe of its
    data set and loss."""
    current = effective_recipe(dataset, loss, settings)
    if cell is not None and cell["recipe"] is not None and cell["recipe"] != current:
        raise SystemExit(
            f"{path} ran the recipe {cell['recipe']} of {dataset}, but the current one is "
            f"{current}: its figures are not this study's. Give this study its own --results "
            "and --root (or move the old cells away) before running it."
        )


def _listdir(path):
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


if __name__ == "__main__":
    main()

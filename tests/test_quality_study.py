"""benchmarks/quality_study.py's bookkeeping: which figures of a cell are
reported, which cells pair, and which stored cells may be reused."""

import importlib.util
import json
import os

import pytest

from metrix_tf.training import train_config

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "benchmarks", "quality_study.py")


@pytest.fixture(scope="module")
def study():
    if not os.path.exists(SCRIPT):
        pytest.skip("benchmarks/ is not beside the tests")
    spec = importlib.util.spec_from_file_location("quality_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


COLUMNS_OF_RESULTS = [(None, k) for k in ("recall@2", "recall@4", "recall@8", "map@r", "utilization",
                                          "utilization_with_mixes", "train_recall@1")]


def history(recalls):
    return [{"epoch": i, "val_recall@1": r, "val_map@r": r / 2} for i, r in enumerate(recalls)]


@pytest.mark.parametrize("recalls,selected,expected", [
    ([0.5, 0.7, 0.9], 3, {"last", "recall@1"}),  # the best is the last
    ([0.5, 0.9, 0.8], 3, {"last"}),               # kept the last, best was 2
    ([0.5, 0.9, 0.8], 2, {"recall@1"}),           # kept the best, not the last
    ([0.5, 0.9, 0.9], 2, {"recall@1"}),           # ties: the first best is kept
    ([0.5, 0.9, 0.9], 3, {"last"}),               # ... so the last is not it
    ([0.5, 0.9, 0.8], 1, set()),                  # neither rule picks epoch 1
])
def test_selection_rules_are_the_rules_that_pick_the_kept_epoch(study, recalls, selected, expected):
    results = {"epochs": len(recalls), "selected_epoch": selected}
    assert study.selection_rules(results, history(recalls)) == expected


def test_a_cell_from_before_selection_kept_its_last_epoch(study):
    assert "last" in study.selection_rules({"epochs": 3}, history([0.9, 0.5, 0.6]))


def write_cell(path, recall, selected, epochs=3, last_recall=None, settings=(), recipe=None,
               commit="abc1234", code_tree=None):
    os.makedirs(path)
    figures = {key: 0.5 for _, key in COLUMNS_OF_RESULTS}
    figures["recall@1"] = recall
    with open(os.path.join(path, "results.json"), "w") as f:
        json.dump({"trained": figures, "epochs": epochs, "selected_epoch": selected}, f)
    with open(os.path.join(path, "history.json"), "w") as f:
        json.dump(history([0.5, 0.9, 0.8][:epochs]), f)
    record = {"seconds": 60.0, "commit": commit, "settings": list(settings)}
    if code_tree is not None:
        record["code_tree"] = code_tree
    if recipe is not None:
        record["recipe"] = recipe
    with open(os.path.join(path, "study_seconds.json"), "w") as f:
        json.dump(record, f)
    if last_recall is not None:
        with open(os.path.join(path, "results_last.json"), "w") as f:
            json.dump({"trained": {"recall@1": last_recall}, "epochs": epochs,
                       "selected_epoch": epochs}, f)


def test_a_cell_reports_its_last_epoch_when_it_was_evaluated(study, tmp_path):
    write_cell(tmp_path / "kept", recall=0.70, selected=2)
    write_cell(tmp_path / "evaluated", recall=0.70, selected=2, last_recall=0.75)
    kept = study.read_cell(str(tmp_path / "kept"))
    evaluated = study.read_cell(str(tmp_path / "evaluated"))
    assert (kept["recall@1"], kept["selection"]) == (0.70, {"recall@1"})
    assert (evaluated["recall@1"], evaluated["selection"]) == (0.75, {"last"})
    assert evaluated["val_map@r"] == pytest.approx(0.4)  # the last epoch's validation


def test_pairs_need_a_common_selection_rule(study, tmp_path):
    root = tmp_path / "results"
    write_cell(root / "d" / "contrastive" / "none" / "seed0", recall=0.80, selected=3)
    write_cell(root / "d" / "contrastive" / "feature" / "seed0", recall=0.90, selected=2)
    write_cell(root / "d" / "contrastive" / "embedding" / "seed0", recall=0.83, selected=3)
    configs = [("none", ""), ("feature", ""), ("embedding", "")]
    text, _ = study.report(str(root), ["d"], ["contrastive"], configs, [0])
    assert "| contrastive | Metrix (embedding) | 0: +0.030 |" in text
    assert "Metrix (feature) | 0:" not in text  # best-epoch cell vs last-epoch baseline


def test_pairs_need_the_same_metrix_tf_tree_not_the_same_commit(study, tmp_path):
    root = tmp_path / "results"
    base = root / "d" / "contrastive"
    write_cell(base / "none" / "seed0", recall=0.80, selected=3, commit="aaa", code_tree="t1")
    write_cell(base / "none" / "seed1", recall=0.80, selected=3, commit="bbb", code_tree="t1")
    write_cell(base / "none" / "seed2", recall=0.80, selected=3, commit="ccc")
    # seed 0: another commit (say a docs change) with the same metrix_tf tree;
    # seed 1: another tree; seed 2: no tree recorded, the same commit.
    write_cell(base / "feature" / "seed0", recall=0.85, selected=3, commit="ddd", code_tree="t1")
    write_cell(base / "feature" / "seed1", recall=0.85, selected=3, commit="bbb", code_tree="t2")
    write_cell(base / "feature" / "seed2", recall=0.86, selected=3, commit="ccc")
    configs = [("none", ""), ("feature", "")]
    text, _ = study.report(str(root), ["d"], ["contrastive"], configs, [0, 1, 2])
    assert "| contrastive | Metrix (feature) | 0: +0.050, 2: +0.060 |" in text


def test_pairs_need_the_same_training_flags_but_not_metrix_ones(study, tmp_path):
    root = tmp_path / "results"
    base = root / "d" / "contrastive"
    write_cell(base / "none" / "seed0", recall=0.80, selected=3, settings=["epochs=60"])
    write_cell(base / "none-lr" / "seed0", recall=0.70, selected=3,
               settings=["epochs=60", "learning_rate=0.003"])
    write_cell(base / "feature-m" / "seed0", recall=0.85, selected=3,
               settings=["epochs=60", "max_mixes=400", "metrix_weight=0.1"])
    write_cell(base / "feature-lr" / "seed0", recall=0.75, selected=3,
               settings=["learning_rate=0.003", "epochs=60"])
    configs = [("feature", "m"), ("feature", "lr")]
    text, _ = study.report(str(root), ["d"], ["contrastive"], configs, [0])
    assert "| contrastive | Metrix (feature) [m] | 0: +0.050 |" in text
    assert "| contrastive | Metrix (feature) [lr] | 0: +0.050 |" in text  # with none-lr, not none


def test_effective_recipe_applies_the_loss_and_the_variants_flags(study, monkeypatch):
    monkeypatch.setitem(train_config.RECIPES, "d", {"epochs": 30, "lr_decay_epochs": "20",
                                                    "select_by": "last"})
    monkeypatch.setitem(train_config.LOSS_RECIPES, "d", {"ms": {"learning_rate": 3e-3}})
    assert study.effective_recipe("d", "c", ["epochs=60", "metrix_weight=0.1"]) == {
        "epochs": "60", "lr_decay_epochs": "20"}
    assert study.effective_recipe("d", "ms", ["epochs=60"]) == {
        "epochs": "60", "lr_decay_epochs": "20", "learning_rate": "0.003"}
    assert study.effective_recipe("d", "ms", ["learning_rate=0.01"])["learning_rate"] == "0.01"
    assert study.effective_recipe("other", "ms", ["epochs=60"]) == {}


def test_a_cell_of_another_recipe_is_not_reused(study, monkeypatch, tmp_path):
    monkeypatch.setitem(train_config.RECIPES, "d", {"epochs": 60})
    monkeypatch.setitem(train_config.LOSS_RECIPES, "d", {"ms": {"learning_rate": 3e-3}})
    write_cell(tmp_path / "old", recall=0.8, selected=3, recipe={"epochs": "30"})
    write_cell(tmp_path / "same", recall=0.8, selected=3, recipe={"epochs": "60"})
    write_cell(tmp_path / "unrecorded", recall=0.8, selected=3)
    with pytest.raises(SystemExit, match=r"old ran the recipe .*'30'.* current one is .*'60'"):
        study.check_recipe(study.read_cell(str(tmp_path / "old")), "d", "c", [], str(tmp_path / "old"))
    study.check_recipe(study.read_cell(str(tmp_path / "same")), "d", "c", [], "same")
    # The loss's own rate is part of its recipe: the 60-epoch cell is not multi-similarity's.
    with pytest.raises(SystemExit, match=r"same ran the recipe .* current one is .*'0.003'"):
        study.check_recipe(study.read_cell(str(tmp_path / "same")), "d", "ms", [], "same")
    study.check_recipe(study.read_cell(str(tmp_path / "old")), "d", "c", ["epochs=30"], "old")
    study.check_recipe(study.read_cell(str(tmp_path / "unrecorded")), "d", "c", [], "unrecorded")
    study.check_recipe(None, "d", "c", [], "missing")


def test_finished_cells_skip_a_left_over_copy_of_evaluate_last(study, tmp_path):
    write_cell(tmp_path / "d" / "l" / "feature" / "seed0", recall=0.8, selected=2)
    write_cell(tmp_path / "d" / "l" / "feature" / "seed0" / ".last-x", recall=0.9, selected=3)
    write_cell(tmp_path / "d" / "l" / "none" / "seed0", recall=0.8, selected=3)
    assert [os.path.relpath(p, tmp_path) for p in study.finished_cells(str(tmp_path))] == [
        os.path.join("d", "l", "feature", "seed0"), os.path.join("d", "l", "none", "seed0")]


def test_archive_adds_new_files_but_keeps_what_the_results_already_hold(study, tmp_path):
    cell = os.path.join("d", "l", "feature", "seed0")
    write_cell(tmp_path / "root" / cell, recall=0.8, selected=3)
    study.archive(str(tmp_path / "root"), str(tmp_path / "results"))
    times = tmp_path / "results" / cell / study.TIMES_FILE
    record = json.loads(times.read_text())
    record["note"] = "added by hand"
    times.write_text(json.dumps(record))
    (tmp_path / "root" / cell / study.LAST_FILE).write_text("{}")  # --evaluate-last's file
    study.archive(str(tmp_path / "root"), str(tmp_path / "results"))
    assert json.loads(times.read_text())["note"] == "added by hand"
    assert (tmp_path / "results" / cell / study.LAST_FILE).read_text() == "{}"
    assert (tmp_path / "results" / cell / "history.json").exists()


def test_the_plots_show_the_tables_paired_differences(study, tmp_path):
    root = tmp_path / "results"
    base = root / "d" / "contrastive"
    for seed, (baseline, metrix) in enumerate([(0.80, 0.83), (0.70, 0.69)]):
        write_cell(base / "none" / f"seed{seed}", recall=baseline, selected=3)
        write_cell(base / "feature" / f"seed{seed}", recall=metrix, selected=3)
    write_cell(base / "embedding" / "seed0", recall=0.9, selected=2)  # no baseline of its rule
    configs = [("none", ""), ("feature", ""), ("embedding", "")]
    text, plot = study.report(str(root), ["d"], ["contrastive"], configs, [0, 1])
    assert "| contrastive | Metrix (feature) | 0: +0.030, 1: -0.010 | +0.010 |" in text
    entries = {entry["name"]: entry for entry in plot["d"]}
    assert entries["baseline"]["recall@1"] == {0: 0.80, 1: 0.70}
    assert entries["baseline"]["paired"] == {}
    assert entries["Metrix (embedding)"]["paired"] == {}
    assert entries["Metrix (feature)"]["paired"] == pytest.approx({0: 0.03, 1: -0.01})
    for write, name in ((study.write_plot, "r1.png"), (study.write_paired_plot, "paired.png"),
                        (study.write_curves, "curves.png")):
        write(plot, str(tmp_path / name))
        with open(tmp_path / name, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["curves.png", "paired.png", "r1.png", "results"]


def test_protocol_cells_scale_the_schedule_by_100_over_60(study, monkeypatch):
    monkeypatch.setitem(train_config.RECIPES, "d", {"epochs": 24, "lr_decay_epochs": "16"})
    assert study.protocol_cells("d", "contrastive") == [
        ("none", "protocol", ["score_test_every_epoch=true"]),
        ("feature", "protocol", ["score_test_every_epoch=true"]),
        ("feature", "protocol_long",
         ["score_test_every_epoch=true", "epochs=40", "lr_decay_epochs=27"]),
    ]
    monkeypatch.setitem(train_config.RECIPES, "d", {"epochs": 30})  # no decay: none scaled
    assert study.protocol_cells("d", "contrastive")[2][2] == [
        "score_test_every_epoch=true", "epochs=50"]


def test_the_protocol_table_reads_the_best_epoch_on_the_test_classes(study, tmp_path, monkeypatch):
    monkeypatch.setitem(train_config.RECIPES, "d", {"epochs": 3})
    root = tmp_path / "results"
    base = root / "d" / "contrastive"
    runs = {"none-protocol": (0.60, [0.55, 0.63, 0.60]),
            "feature-protocol": (0.61, [0.58, 0.61, 0.61]),
            "feature-protocol_long": (0.62, [0.5, 0.6, 0.66, 0.64, 0.62])}
    for name, (last, tests) in runs.items():
        write_cell(base / name / "seed0", recall=last, selected=len(tests), epochs=len(tests))
        with open(base / name / "seed0" / "history.json", "w") as f:
            json.dump([{"epoch": i, "val_recall@1": 0.5, "val_map@r": 0.3, "test_recall@1": t}
                       for i, t in enumerate(tests)], f)
    text = study.protocol_report(str(root), ["d"], [0, 1])
    # last: +0.010; best-on-test: 0.61 (epoch 2) - 0.63 (epoch 2) = -0.020;
    # the long run's best 0.66 (epoch 3 of 5) - 0.63 = +0.030.
    assert ("| contrastive | 0 | 0.600 | 0.630 (2) | 0.610 | 0.610 (2) | 0.660 (3/5) "
            "| +0.010 | -0.020 | +0.030 |") in text
    assert "never used for a choice" in text
    # The protocol's cells are not the study's: its tables neither list nor pair them.
    configs = [("none", ""), ("feature", "")]
    assert "contrastive" not in study.report(str(root), ["d"], ["contrastive"], configs, [0])[0]
    assert study.protocol_report(str(root), ["d"], [1]) == ""


def test_a_report_of_other_data_sets_has_files_of_its_own(study):
    assert study.output_suffix(list(study.DATASETS)) == ""
    assert study.output_suffix(["icons"]) == "_icons"
    assert study.output_suffix(["builtin"]) == "_builtin"


def fake_trainer(monkeypatch, study, trainer):
    """Runs `trainer` in place of metrix_tf.programs.train; git (code_version) still runs."""
    real = study.subprocess.Popen
    monkeypatch.setattr(study.subprocess, "Popen", lambda command, **kwargs: trainer(command)
                        if "metrix_tf.programs.train" in command else real(command, **kwargs))


def test_a_cell_records_each_machine_it_ran_on_and_the_report_names_them(study, tmp_path,
                                                                         monkeypatch):
    class Done:  # the trainer, not run
        def __init__(self, command, **kwargs):
            pass

        def wait(self, timeout=None):
            return 0

    fake_trainer(monkeypatch, study, Done)
    workdir = str(tmp_path / "d" / "contrastive" / "none" / "seed0")
    write_cell(workdir, recall=0.8, selected=3)  # its figures; run_cell adds the machines
    monkeypatch.setattr(study, "machine", lambda: "CPU A x2")
    study.run_cell(workdir, "builtin", "contrastive", "none", 0, [], lambda _: None)
    study.run_cell(workdir, "builtin", "contrastive", "none", 0, [], lambda _: None)  # resumed
    monkeypatch.setattr(study, "machine", lambda: "CPU B x2")
    study.run_cell(workdir, "builtin", "contrastive", "none", 0, [], lambda _: None)  # elsewhere
    with open(os.path.join(workdir, "study_seconds.json")) as f:
        assert json.load(f)["machines"] == ["CPU A x2", "CPU B x2"]
    text, _ = study.report(str(tmp_path), ["d"], ["contrastive"], [("none", "")], [0])
    assert "min/run was measured on: CPU A x2 (1 cell); CPU B x2 (1 cell)" in text


def test_a_cells_time_is_saved_while_it_runs_so_a_killed_session_keeps_it(study, tmp_path,
                                                                           monkeypatch):
    workdir = tmp_path / "d" / "contrastive" / "none" / "seed0"
    times = workdir / study.TIMES_FILE
    workdir.mkdir(parents=True)
    times.write_text(json.dumps({"seconds": 1000.0, "note": "kept"}))  # an earlier session
    clock = iter(range(0, 10_000, 60))  # each reading of the clock: a minute later
    monkeypatch.setattr(study.time, "time", lambda: float(next(clock)))
    seen = []

    class Slow:  # the trainer: still running at its first two waits
        def __init__(self, command, **kwargs):
            self.waits = 0

        def wait(self, timeout=None):
            assert timeout == study.SAVE_SECONDS_EVERY
            self.waits += 1
            if self.waits <= 2:
                raise study.subprocess.TimeoutExpired("train", timeout)
            seen.append(json.loads(times.read_text())["seconds"])
            return 0

    fake_trainer(monkeypatch, study, Slow)
    assert study.run_cell(str(workdir), "builtin", "contrastive", "none", 0, [], lambda _: None)
    # Start at 0; saved at 60 and 120 while it ran (a kill then keeps 1120); the end at 180.
    assert seen == [1120.0]
    record = json.loads(times.read_text())
    assert record["seconds"] == 1180.0 and record["note"] == "kept"
    assert record["machines"] == [study.machine()]
    assert sorted(p.name for p in workdir.iterdir()) == ["study.log", study.TIMES_FILE]  # no .tmp


def test_machine_names_the_cpu_and_its_cores(study):
    assert study.machine().endswith(f" x{os.cpu_count()}")

"""The training binary end to end: flags, a tiny run, SIGKILL and resume,
and the SavedModel in a fresh process without metrix_tf."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import metrix_tf
from metrix_tf.training.train_config import TrainConfig

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(metrix_tf.__file__)))
TINY = [
    "--tiny",
    "--batch_size=32",
    "--backbone_width=8",
    "--embedding_dim=16",
    "--validation_fraction=0.2",
]


def environment(tmp_path):
    env = dict(os.environ)
    # The package under test (installed or source tree), and a private cache
    # so the built-in set is built here, not in the user's home.
    # No empty entry: it would put the working directory (a source tree
    # without the compiled op, in CI) on the path.
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in [PACKAGE_ROOT, env.get("PYTHONPATH", "")] if p
    )
    env["METRIX_TF_DATA_DIR"] = str(tmp_path / "data")
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


def metrix_train(tmp_path, *flags, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "metrix_tf.programs.train", *flags],
        cwd=tmp_path, env=environment(tmp_path), capture_output=True, text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    "flags,needle",
    [
        (["--loss=triplet"], "--loss must be one of"),
        (["--metrix_level=pixel"], "--metrix_level must be one of"),
        (["--metrix_mixed_labels=hard"], "--metrix_mixed_labels must be one of"),
        (["--batch_size=1"], "--batch_size must be >= 2"),
        (["--learning_rate=0"], "--learning_rate must be > 0"),
        (["--images_per_class=3", "--batch_size=32"], "--images_per_class must be 0 or"),
        (["--dataset=cub200"], "--dataset=cub200 needs --data_dir"),
        (["--seen_classes=-1"], "--seen_classes must be >= 0"),
        (["--image_size=-3"], "--image_size must be >= 0"),
        (["--backbone=resnet50", "--backbone_weights=/no/such.h5"], "no such file"),
        (["--backbone=ResNet49"], "--backbone must be one of small_cnn, resnet50"),
        (["--backbone_weights=imagenet"], "the small CNN has no pretrained weights"),
        (["--lr_decay_epochs=3,x"], "--lr_decay_epochs must be comma-separated ints"),
        (["--config=/no/such.json"], "--config: no such file"),
        (["--epochs=abc"], "epochs"),
        (["--metrix_level=input", "--metrix_stage=block2_pool"],
         "--metrix_stage applies to --metrix_level=feature"),
        ([*TINY, "--metrix_stage=block9", "--workdir=run"],
         "--metrix_stage='block9': Argument `feature_stage` is not an inner layer"),
    ],
)
def test_bad_flags_fail_with_a_message_naming_them(tmp_path, flags, needle):
    result = metrix_train(tmp_path, *flags, timeout=120)
    assert result.returncode != 0
    assert needle in result.stderr, result.stderr[-2000:]


def test_config_file_with_bad_content_is_rejected(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"epochs": "ten"}))
    assert "epochs must be a int" in _config_error(path)
    path.write_text(json.dumps({"optimizer": "sgd"}))
    assert "unknown settings ['optimizer']" in _config_error(path)
    path.write_text("{not json")
    assert "not valid JSON" in _config_error(path)


def _config_error(path):
    with pytest.raises(ValueError) as info:
        TrainConfig.from_json(str(path))
    return str(info.value)


def test_dataset_recipe_sets_defaults_that_config_and_flags_override(tmp_path):
    from absl import flags

    from metrix_tf.programs import train as train_main
    from metrix_tf.training.train_config import RECIPES

    recipe = RECIPES["builtin_large"]

    def resolve(*argv):
        values = flags.FlagValues()
        for name, flag in train_main.FLAGS._flags().items():
            if name in TrainConfig.field_names() + ["config"]:
                values[name] = flag
        values.unparse_flags()
        values(["metrix-train", *argv])
        return train_main.config_from_flags(values)

    assert resolve().epochs == TrainConfig().epochs  # builtin: no recipe
    config = resolve("--dataset=builtin_large")
    for name, value in recipe.items():
        assert getattr(config, name) == value, name
    assert resolve("--dataset=builtin_large", "--epochs=3").epochs == 3
    # A loss's own recipe (LOSS_RECIPES) on top: multi-similarity's rate.
    assert config.learning_rate == TrainConfig().learning_rate
    ms = resolve("--dataset=builtin_large", "--loss=multi_similarity")
    assert ms.learning_rate == 3e-3 and ms.epochs == recipe["epochs"]
    assert resolve("--dataset=builtin_large", "--loss=multi_similarity",
                   "--learning_rate=0.001").learning_rate == 1e-3
    assert resolve("--loss=multi_similarity").learning_rate == TrainConfig().learning_rate
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"dataset": "builtin_large", "epochs": 4}))
    config = resolve(f"--config={path}")
    assert config.epochs == 4
    assert config.images_per_class == recipe["images_per_class"]
    assert resolve(f"--config={path}", "--epochs=5").epochs == 5


def test_every_shipped_config_is_valid_and_matches_its_generator():
    configs = os.path.join(PACKAGE_ROOT, "configs")
    if not os.path.isdir(configs):
        pytest.skip("configs/ is not next to the package (installed elsewhere)")
    sys.path.insert(0, configs)
    try:
        import make_configs
    finally:
        sys.path.remove(configs)
    count = 0
    for dataset in make_configs.DATASETS:
        for loss in make_configs.LOSSES:
            for level in make_configs.LEVELS:
                name = f"{loss}_{'baseline' if level == 'none' else level}.json"
                path = os.path.join(configs, dataset, name)
                config = TrainConfig.from_json(path).replace(data_dir="/data")
                config.replace(backbone_weights="").validate()
                with open(path) as f:
                    assert json.load(f) == make_configs.recipe(dataset, loss, level)
                count += 1
    # 4 data sets x 4 levels for every registered loss (3 at least).
    assert len(make_configs.LOSSES) >= 3
    assert count == 16 * len(make_configs.LOSSES)


def test_tiny_run_trains_evaluates_plots_and_exports(tmp_path):
    workdir = tmp_path / "run"
    result = metrix_train(
        tmp_path, *TINY, "--epochs=3", "--loss=contrastive", "--metrix_level=feature",
        "--seen_classes=4", "--score_test_every_epoch", f"--workdir={workdir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "untrained" in result.stdout and "recall@1" in result.stdout
    results = json.loads((workdir / "results.json").read_text())
    for stage in ("untrained", "trained"):
        assert {"recall@1", "recall@8", "map@r", "utilization", "utilization_with_mixes"} <= set(results[stage])
    history = json.loads((workdir / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1, 2]
    assert all("val_recall@1" in h and np.isfinite(h["loss"]) for h in history)
    # 4 training classes scored every epoch beside the validation ones.
    assert all(0 <= h["seen_recall@1"] <= 1 and 0 <= h["seen_map@r"] <= 1 for h in history)
    # The test classes scored every epoch (the reference protocol, measured
    # apart): the selected epoch's figure is the final evaluation's.
    assert all(0 <= h["test_recall@1"] <= 1 for h in history)
    selected = history[results["selected_epoch"] - 1]
    assert selected["test_recall@1"] == pytest.approx(results["trained"]["recall@1"], abs=1e-6)
    png = (workdir / "recall_at_k.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert any(name.startswith("events") for _, _, files in os.walk(workdir / "logs") for name in files)
    assert (workdir / "saved_model" / "saved_model.pb").exists()
    assert not [p for p in os.listdir(workdir) if ".tmp-" in p or ".old-" in p]


def test_sigkill_then_resume_loses_and_repeats_no_epoch(tmp_path):
    workdir = tmp_path / "run"
    flags = [*TINY, "--epochs=12", "--steps_per_epoch=3", "--metrix_level=embedding",
             "--noexport", f"--workdir={workdir}"]
    process = subprocess.Popen(
        [sys.executable, "-m", "metrix_tf.programs.train", *flags],
        cwd=tmp_path, env=environment(tmp_path),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 240
        marker = workdir / "checkpoints" / "ckpt-3.index"
        while not marker.exists():
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.time() < deadline, "no checkpoint appeared"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    killed_after = len(json.loads((workdir / "history.json").read_text()))
    assert 3 <= killed_after < 12
    result = metrix_train(tmp_path, *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming" in result.stdout
    history = json.loads((workdir / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(12))
    assert json.loads((workdir / "results.json").read_text())["epochs"] == 12


def test_resume_refuses_a_workdir_of_other_settings(tmp_path):
    workdir = tmp_path / "run"
    assert metrix_train(tmp_path, *TINY, "--epochs=1", "--noexport", f"--workdir={workdir}").returncode == 0
    result = metrix_train(tmp_path, *TINY, "--epochs=1", "--loss=proxy_anchor", f"--workdir={workdir}")
    assert result.returncode != 0
    assert "holds a run with other settings" in result.stderr and "loss" in result.stderr


def test_export_serves_the_same_embeddings_in_a_process_without_metrix_tf(tmp_path):
    import tensorflow as tf

    from metrix_tf.programs.export import export_workdir
    from metrix_tf.training.run_state import RunState
    from metrix_tf.training.trainer import build_model, load_data

    workdir = tmp_path / "run"
    result = metrix_train(tmp_path, *TINY, "--epochs=1", "--loss=proxy_anchor",
                          "--metrix_level=input", "--noexport", f"--workdir={workdir}")
    assert result.returncode == 0, result.stderr[-3000:]
    os.environ["METRIX_TF_DATA_DIR"] = str(tmp_path / "data")
    export = export_workdir(str(workdir), str(tmp_path / "export"))

    config = TrainConfig.from_json(str(workdir / "config.json"))
    splits, preprocessing = load_data(config)
    model, _ = build_model(config, preprocessing, splits.train.num_classes)
    RunState(str(workdir), model).restore()
    pixels = splits.test.images[:40].astype("float32")  # 32x32 glyphs: the serving size
    want = model(preprocessing.normalize(tf.constant(pixels)), training=False).numpy()
    np.save(tmp_path / "pixels.npy", pixels)

    script = textwrap.dedent(f"""
        import sys, numpy as np, tensorflow as tf
        f = tf.saved_model.load({export!r}).signatures["serving_default"]
        out = f(images=tf.constant(np.load({str(tmp_path / 'pixels.npy')!r})))["embeddings"].numpy()
        np.save({str(tmp_path / 'served.npy')!r}, out)
        assert not [m for m in sys.modules if m.startswith("metrix_tf")], "metrix_tf was imported"
        maps = open("/proc/self/maps").read()
        assert "soft_label_similarity" not in maps, "the op library was loaded"
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    served = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert served.returncode == 0, served.stderr[-3000:]
    got = np.load(tmp_path / "served.npy")
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)

    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    if not os.path.exists(cli):
        pytest.skip("saved_model_cli is not installed next to this Python")
    shown = subprocess.run([cli, "show", "--dir", export, "--tag_set", "serve",
                            "--signature_def", "serving_default"],
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "images" in shown.stdout and "embeddings" in shown.stdout
    assert "(-1, 32, 32, 1)" in shown.stdout


def test_metrix_eval_scores_an_export(tmp_path):
    # At another input size than the data set's (--image_size): the export
    # and metrix-eval follow it.
    workdir = tmp_path / "run"
    run = metrix_train(tmp_path, *TINY, "--epochs=1", "--image_size=24", f"--workdir={workdir}")
    assert run.returncode == 0, run.stderr[-3000:]
    info = json.loads((workdir / "saved_model" / "metrix_export.json").read_text())
    assert info["input"]["shape"] == [None, 24, 24, 1]
    result = subprocess.run(
        [sys.executable, "-c", "from metrix_tf.programs.export import run_eval; run_eval()",
         f"--saved_model={workdir / 'saved_model'}", "--tiny"],
        cwd=tmp_path, env=environment(tmp_path), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    scores = json.loads(result.stdout[result.stdout.index("{"):])
    trained = json.loads((workdir / "results.json").read_text())["trained"]
    assert abs(scores["recall@1"] - trained["recall@1"]) < 1e-6
    missing = subprocess.run(
        [sys.executable, "-c", "from metrix_tf.programs.export import run_eval; run_eval()",
         f"--saved_model={tmp_path / 'nothing'}", "--tiny"],
        cwd=tmp_path, env=environment(tmp_path), capture_output=True, text=True, timeout=300,
    )
    assert missing.returncode != 0 and "No SavedModel" in missing.stderr


# A finished tiny run, shared by the tests that copy and then damage, move
# or resume it (each test works on its own copy).
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("finished")
    flags = [*TINY, "--epochs=2", "--noexport", f"--workdir={root / 'run'}"]
    result = metrix_train(root, *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "run", flags[:-1]


def copy_of(finished_run, tmp_path, name="run"):
    import shutil

    source, flags = finished_run
    target = tmp_path / name
    shutil.copytree(source, target)
    return target, [*flags, f"--workdir={target}"]


def checkpoint_files(workdir):
    directory = workdir / "checkpoints"
    return {n: (directory / n).read_bytes() for n in os.listdir(directory) if n.startswith("ckpt-")}


def selected_by_rule(history, key="val_recall@1"):
    """From 1: the best `key`; on a tie the best validation MAP@R, then the later epoch."""
    best = max(history, key=lambda h: (h[key], h["val_map@r"], h["epoch"]))
    return best["epoch"] + 1


def test_the_selected_epoch_is_evaluated_recorded_and_survives_a_resume(finished_run, tmp_path):
    from metrix_tf.training.run_state import RunState
    from metrix_tf.training.trainer import build_model, evaluate_model, load_data

    workdir, flags = copy_of(finished_run, tmp_path)
    results = json.loads((workdir / "results.json").read_text())
    history = json.loads((workdir / "history.json").read_text())
    assert results["selected_epoch"] == selected_by_rule(history)
    assert results["selection"]["select_by"] == "recall@1"
    # Resumed for a third epoch: the choice is made over all three.
    result = metrix_train(tmp_path, *[f for f in flags if f != "--epochs=2"], "--epochs=3")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming" in result.stdout and "Selected epoch" in result.stdout
    results = json.loads((workdir / "results.json").read_text())
    history = json.loads((workdir / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1, 2]
    selected = selected_by_rule(history)
    assert results["selected_epoch"] == selected
    assert results["selection"]["validation"] == history[selected - 1]["val_recall@1"]
    # The test figures are those of the selected weights.
    os.environ["METRIX_TF_DATA_DIR"] = str(finished_run[0].parent / "data")
    config = TrainConfig.from_json(str(workdir / "config.json"))
    splits, preprocessing = load_data(config)
    model, _ = build_model(config, preprocessing, splits.train.num_classes)
    state = RunState(str(workdir), model, monitor=config.selection_key())
    assert state.restore() == 3 and state.restore_selected() == selected
    scores = evaluate_model(model, splits, preprocessing, config.ks() or list(splits.recall_ks))
    assert abs(scores["recall@1"] - results["trained"]["recall@1"]) < 1e-6
    assert abs(scores["map@r"] - results["trained"]["map@r"]) < 1e-6
    # metrix-export exports the same selected epoch.
    from metrix_tf.programs.export import export_workdir

    export = export_workdir(str(workdir), str(tmp_path / "export"))
    meta = json.loads((tmp_path / "export" / "metrix_export.json").read_text())
    assert meta["selected_epoch"] == selected and export.endswith("export")


def test_select_by_last_and_its_flag_errors(tmp_path):
    workdir = tmp_path / "run"
    result = metrix_train(tmp_path, *TINY, "--epochs=2", "--select_by=last", "--noexport",
                          f"--workdir={workdir}")
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((workdir / "results.json").read_text())
    assert results["selected_epoch"] == 2 and results["selection"]["select_by"] == "last"
    for flags, needle in [
        (["--select_by=accuracy"], "--select_by must be 'recall@K'"),
        (["--validation_fraction=0"], "needs --validation_fraction > 0"),
        (["--eval_every=5", "--epochs=3"], "--eval_every (5) must be <= --epochs (3)"),
    ]:
        result = metrix_train(tmp_path, *TINY, *flags, timeout=120)
        assert result.returncode != 0 and needle in result.stderr, result.stderr[-2000:]


def test_a_saturated_validation_keeps_a_trained_epoch(tmp_path):
    # Issue 23: validation Recall@1 is 1.0 from epoch 1 on, and the first best
    # epoch used to be kept (unseen Recall@1 0.4625 untrained -> 0.4625).
    workdir = tmp_path / "run"
    result = metrix_train(tmp_path, "--tiny", "--epochs=3", "--noexport", f"--workdir={workdir}")
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((workdir / "results.json").read_text())
    history = json.loads((workdir / "history.json").read_text())
    selection = results["selection"]
    assert results["selected_epoch"] == selection["epoch"] == selected_by_rule(history)
    tied = [h["epoch"] + 1 for h in history if h["val_recall@1"] == selection["validation"]]
    assert len(tied) > 1 and selection["tied_epochs"] == tied
    assert selection["tie_break"] in (["map@r"], ["later_epoch"], ["map@r", "later_epoch"])
    assert "tied at validation recall@1" in result.stdout
    assert results["trained"]["recall@1"] > results["untrained"]["recall@1"], results


def test_a_garbage_state_file_resumes_from_the_checkpoints_on_disk(finished_run, tmp_path):
    # The reproduction of issue 13: this used to start over at epoch 0.
    workdir, flags = copy_of(finished_run, tmp_path)
    (workdir / "checkpoints" / "checkpoint").write_text("garbage {{{")
    (workdir / "results_untrained.json").write_text("{")  # an output: evaluated again
    before = checkpoint_files(workdir)
    result = metrix_train(tmp_path, *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming" in result.stdout and "after epoch 2" in result.stdout
    assert "only an index" in result.stdout
    assert "results_untrained.json' is damaged" in result.stdout
    assert "recall@1" in json.loads((workdir / "results_untrained.json").read_text())
    assert checkpoint_files(workdir) == before
    assert [h["epoch"] for h in json.loads((workdir / "history.json").read_text())] == [0, 1]


def test_a_damaged_checkpoint_stops_with_one_message_and_overwrites_nothing(finished_run, tmp_path):
    workdir, flags = copy_of(finished_run, tmp_path)
    (workdir / "checkpoints" / "ckpt-2.index").write_bytes(b"garbage {{{")
    before = checkpoint_files(workdir)
    result = metrix_train(tmp_path, *flags)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "ckpt-2" in result.stderr and "damaged" in result.stderr and "--noresume" in result.stderr
    assert checkpoint_files(workdir) == before


@pytest.mark.parametrize("content", ["{not json", None])
def test_a_damaged_config_json_is_rebuilt_from_the_checkpoint(finished_run, tmp_path, content):
    from metrix_tf.training.trainer import _check_workdir

    workdir, flags = copy_of(finished_run, tmp_path)
    path = workdir / "config.json"
    want = json.loads(path.read_text())
    if content is None:
        path.unlink()
    else:
        path.write_text(content)
    settings = TrainConfig(**{**want, "workdir": str(workdir)})
    lines = []
    _check_workdir(settings, resume=True, log=lines.append)
    assert len(lines) == 1 and "config.json" in lines[0]
    assert json.loads(path.read_text())["loss"] == want["loss"]
    # Other settings are still refused, the comparison now made with the checkpoint's copy.
    path.unlink()
    with pytest.raises(ValueError, match="holds a run with other settings.*loss"):
        _check_workdir(settings.replace(loss="proxy_anchor"), resume=True, log=lines.append)


def test_a_moved_workdir_resumes(finished_run, tmp_path):
    workdir, flags = copy_of(finished_run, tmp_path, name="moved elsewhere")
    result = metrix_train(tmp_path, *flags, "--data_dir=" + str(finished_run[0].parent / "data"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming" in result.stdout and "after epoch 2" in result.stdout
    assert json.loads((workdir / "config.json").read_text())["workdir"] == str(workdir)


def test_icons_recipe_is_a_valid_pretrained_config():
    from metrix_tf.training.train_config import LOSS_RECIPES
    from metrix_tf.training.train_config import RECIPES

    config = TrainConfig.for_dataset("icons").validate()  # no --data_dir needed
    for name, value in RECIPES["icons"].items():
        assert getattr(config, name) == value, name
    assert (config.backbone, config.backbone_weights, config.freeze_batchnorm) == (
        "efficientnet_lite0", "imagenet", True)
    proxy = TrainConfig.for_dataset("icons", loss="proxy_anchor").validate()
    assert (proxy.learning_rate, proxy.warmup_epochs) == (2e-4, 2)  # docs/quality.md "Icons"
    assert set(LOSS_RECIPES["icons"]) == {"proxy_anchor"}
    for loss in ("contrastive", "multi_similarity"):
        other = TrainConfig.for_dataset("icons", loss=loss)
        assert (other.learning_rate, other.warmup_epochs) == (3e-4, 0), loss
    # An explicit flag still wins over the loss's recipe.
    assert TrainConfig.for_dataset("icons", loss="proxy_anchor", warmup_epochs=0).warmup_epochs == 0
    # A short run the recipe's warm-up does not fit says where the warm-up came from.
    with pytest.raises(ValueError, match=r"icons recipe of --loss=proxy_anchor.*--warmup_epochs=0"):
        TrainConfig.for_dataset("icons", loss="proxy_anchor", epochs=2).validate()
    with pytest.raises(ValueError, match=r"smaller than --epochs \(2\)$"):
        TrainConfig.for_dataset("icons", loss="contrastive", epochs=2, warmup_epochs=3).validate()

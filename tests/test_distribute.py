"""tf.distribute gives the training signal of one device holding the batch.

(a) MirroredStrategy over 2 logical CPU devices: one `fit` step of SGD
    (lr = 1, so the weight change is minus the gradient) and its loss equal the
    single-device step on the same global batch, for each loss, clean and
    with Metrix at each level (fixed lam, fixed pair strategy). The
    backbone is a tiny Conv2D + ReLU network without BatchNormalization:
    BatchNormalization normalises with per-replica batch statistics, so a
    backbone with it cannot match one device exactly.
(b) MultiWorkerMirroredStrategy with 2 worker processes on 127.0.0.1: a few
    `fit` steps leave identical weights on both workers, equal to the
    single-process run.

The logical devices must be configured before TensorFlow initialises its
devices, and the workers are separate programs: both run in subprocesses
(this file, run as a script), so the pytest process is unaffected.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest


IMAGE_SHAPE = (16, 16, 1)
EMBEDDING_DIM = 9
NUM_CLASSES = 9
LAM = 0.3
# 16 images, 8 per replica. Class 0 sits on both replicas, class 3 only
# across them (rows 7 and 14): positives, negatives and mixes that only the
# global batch holds. Classes 4, 6, 7, 8 have no positive (anchor-negative).
LABELS = np.array([0, 0, 1, 1, 2, 2, 3, 4, 0, 1, 5, 5, 6, 7, 3, 8], "int32")
LOSS_NAMES = ("contrastive", "multi_similarity", "proxy_anchor")
LEVELS = ("embedding", "feature", "input")
PAIR_STRATEGIES = ("positive_negative", "both")
# The control case: a per-example Keras loss that Keras itself scales for
# tf.distribute; it checks the harness (batch split, weight copy, compare).
CASES = [("control", "none", "")] + [
    (loss, level, strategy)
    for loss in LOSS_NAMES
    for level, strategy in [("none", "")]
    + [(lv, st) for lv in LEVELS for st in PAIR_STRATEGIES]
]
# Every class twice, so every anchor has a positive: the anchor-negative
# strategy makes no mixes (an empty mixed batch must work across replicas too).
PAIRED_LABELS = np.repeat(np.arange(8), 2).astype("int32")
NO_MIX_CASES = [("contrastive", level, "anchor_negative") for level in ("feature", "input")]
CASES += NO_MIX_CASES
# Each group runs in its own child process, so that a crash in one (a
# segfault inside TensorFlow) leaves the other's results standing.
GROUPS = {"main": CASES[: -len(NO_MIX_CASES)], "no_mix": NO_MIX_CASES}
# float32; the replicas sum partial gradients in another order than one
# device does, so equal up to rounding. Measured over all cases: loss within
# 2.4e-7 (absolute), weights within 2.1e-6 of the step's largest change.
LOSS_RTOL = 1e-5
WEIGHT_RTOL = 2e-5  # of the largest weight change of the step


def case_id(case):
    loss, level, strategy = case
    return loss if level == "none" else f"{loss}-{level}-{strategy}"


def labels_of(case):
    return PAIRED_LABELS if case in NO_MIX_CASES else LABELS


# --- model and data, shared by the parent and the child processes ---------


def images(num=16, seed=0):
    return np.random.default_rng(seed).normal(size=(num,) + IMAGE_SHAPE).astype("float32")


def build(loss_name, level, pair_strategy, optimizer, seed=0, run_eagerly=False):
    """A compiled, built EmbeddingModel (no BatchNormalization anywhere)."""
    import keras

    import metrix_tf

    keras.utils.set_random_seed(seed)
    metrix = None
    if level != "none":
        metrix = metrix_tf.Metrix(
            level=level, strategy=pair_strategy, lam=LAM, weight=0.4, seed=1
        )
    inputs = keras.Input(IMAGE_SHAPE)
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    backbone = keras.Model(inputs, x, name="tiny_conv")
    # max_mixes above any mix count: no random subset of the mixes.
    model = metrix_tf.models.EmbeddingModel(
        backbone, embedding_dim=EMBEDDING_DIM, metrix=metrix, max_mixes=10_000
    )
    if loss_name == "control":
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    elif loss_name == "contrastive":
        loss = metrix_tf.losses.ContrastiveLoss(metrix=metrix)
    elif loss_name == "multi_similarity":
        loss = metrix_tf.losses.MultiSimilarityLoss(metrix=metrix)
    else:
        loss = metrix_tf.losses.ProxyAnchorLoss(
            NUM_CLASSES, EMBEDDING_DIM, metrix=metrix
        )
    model.compile(optimizer=optimizer, loss=loss, run_eagerly=run_eagerly)
    model(np.zeros((2,) + IMAGE_SHAPE, "float32"))
    model.optimizer.build(model.trainable_variables)
    return model


# --- (a) MirroredStrategy, child side ---------------------------------------


def short_error(error):
    """The error's type and message without TF's long graph traceback."""
    text = str(getattr(error, "message", None) or error)
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith(" ")]
    lines = [line for line in lines if not line.startswith("Detected at node")]
    return f"{type(error).__name__}: " + " | ".join(lines)[-1500:]


def mirrored_child(out_path, group):
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    import keras

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    x = images()
    results = {"num_replicas": strategy.num_replicas_in_sync}
    for case in GROUPS[group]:
        try:
            # The one-device reference runs eagerly (no tracing: faster).
            single = build(*case, keras.optimizers.SGD(1.0), run_eagerly=True)
            with strategy.scope():
                mirrored = build(*case, keras.optimizers.SGD(1.0))
            # Same start whatever the initialisers do under a strategy.
            assert len(single.weights) == len(mirrored.weights)
            for a, b in zip(single.weights, mirrored.weights):
                b.assign(a.numpy())
            before = [v.numpy() for v in single.trainable_variables]
            # fit, not train_on_batch: Keras 3 train_on_batch hands every
            # replica the whole batch; fit splits it between the replicas.
            batch = tf.data.Dataset.from_tensors((x, labels_of(case)))
            loss_single = single.fit(batch, verbose=0).history["loss"][0]
            loss_mirrored = mirrored.fit(batch, verbose=0).history["loss"][0]
            change = max(
                float(np.max(np.abs(v.numpy() - b)))
                for v, b in zip(single.trainable_variables, before)
            )
            diff = max(
                float(np.max(np.abs(v.numpy() - w.numpy())))
                for v, w in zip(single.trainable_variables, mirrored.trainable_variables)
            )
            # The replicas' copies of each variable must agree exactly.
            replica_spread = max(
                float(np.max(np.abs(r.numpy() - w.numpy())))
                for w in mirrored.trainable_variables
                for r in strategy.experimental_local_results(w)
            )
            results[case_id(case)] = {
                "loss_single": loss_single,
                "loss_mirrored": loss_mirrored,
                "max_weight_change": change,
                "max_weight_diff": diff,
                "replica_spread": replica_spread,
            }
        except Exception as error:  # reported per case by the parent
            results[case_id(case)] = {"error": short_error(error)}
    with open(out_path, "w") as f:
        json.dump(results, f, indent=1)


# --- (b) MultiWorkerMirroredStrategy ----------------------------------------

MW_STEPS = 3
MW_BATCH = 16
MW_LR = 0.5
MW_CASES = (("control", "none", ""), ("multi_similarity", "feature", "both"))


def multi_worker_dataset():
    import tensorflow as tf

    x = images(MW_STEPS * MW_BATCH, seed=1)
    y = np.tile(LABELS, MW_STEPS)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(MW_BATCH)


def train_few_steps(case, strategy, initial):
    """`fit` MW_STEPS global batches; returns the final trainable weights."""
    import keras

    from metrix_tf.training import distribution

    with strategy.scope():
        model = build(*case, keras.optimizers.SGD(MW_LR))
    for variable, value in zip(model.weights, initial):
        variable.assign(value)
    distribution.fix_multi_worker_fit(model)
    dataset = distribution.distribute_by_data(multi_worker_dataset(), strategy)
    model.fit(dataset, epochs=1, steps_per_epoch=MW_STEPS, verbose=0, shuffle=False)
    return [v.numpy() for v in model.trainable_variables]


def worker_child(init_path, out_path):
    """One worker of the cluster in TF_CONFIG (set by the parent)."""
    from metrix_tf.training import distribution

    strategy = distribution.make_strategy("multi_worker")
    initial = np.load(init_path)
    arrays = {"num_replicas": np.array(strategy.num_replicas_in_sync)}
    arrays["is_chief"] = np.array(distribution.is_chief(strategy))
    for case in MW_CASES:
        names = sorted(k for k in initial.files if k.startswith(case_id(case) + "/"))
        final = train_few_steps(case, strategy, [initial[k] for k in names])
        for i, value in enumerate(final):
            arrays[f"{case_id(case)}/{i:03d}"] = value
    np.savez(out_path, **arrays)


# --- the parent (pytest) side ------------------------------------------------


def child_environment():
    import metrix_tf

    # The package under test (installed, or the source tree), for the children.
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(metrix_tf.__file__)))
    env = dict(os.environ)
    # No empty entry: it would put the working directory (a source tree
    # without the compiled op, in CI) on the path.
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in [package_root, env.get("PYTHONPATH", "")] if p
    )
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.pop("TF_CONFIG", None)
    return env


@pytest.fixture(scope="module")
def mirrored_results(tmp_path_factory):
    results = {}
    for group, cases in GROUPS.items():
        out = tmp_path_factory.mktemp("mirrored") / f"{group}.json"
        result = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "mirrored", str(out), group],
            env=child_environment(), capture_output=True, text=True, timeout=600,
        )
        if result.returncode != 0:
            error = f"child process exit status {result.returncode}: {result.stderr[-3000:]}"
            results.update({case_id(case): {"error": error} for case in cases})
            continue
        with open(out) as f:
            results.update(json.load(f))
    return results


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_mirrored_step_equals_single_device_step(mirrored_results, case):
    r = mirrored_results[case_id(case)]
    assert "error" not in r, r.get("error")
    assert mirrored_results["num_replicas"] == 2
    assert r["replica_spread"] == 0.0, r
    assert abs(r["loss_mirrored"] - r["loss_single"]) <= LOSS_RTOL * max(1.0, abs(r["loss_single"])), r
    # The step must move the weights, or equal weights would prove nothing.
    assert r["max_weight_change"] > 1e-4, r
    assert r["max_weight_diff"] <= WEIGHT_RTOL * r["max_weight_change"], r


def free_ports(count):
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_workers(argv_of, count, timeout, cwd=None, data_dir=None):
    """Start `count` workers (TF_CONFIG on 127.0.0.1), wait at most
    `timeout` seconds, always reap them; returns their (rc, output)."""
    workers = ["127.0.0.1:%d" % port for port in free_ports(count)]
    processes = []
    try:
        for index in range(count):
            env = child_environment()
            if data_dir is not None:
                env["METRIX_TF_DATA_DIR"] = str(data_dir) + str(index)
            env["TF_CONFIG"] = json.dumps(
                {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
            )
            processes.append(
                subprocess.Popen(
                    argv_of(index), env=env, stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT, text=True, cwd=cwd,
                )
            )
        outputs = []
        for process in processes:
            output, _ = process.communicate(timeout=timeout)
            outputs.append((process.returncode, output))
        return outputs
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()


def test_multi_worker_steps_match_on_both_workers_and_one_process(tmp_path):
    import keras
    import tensorflow as tf

    initial, reference = {}, {}
    for case in MW_CASES:
        model = build(*case, keras.optimizers.SGD(MW_LR))
        start = [v.numpy() for v in model.weights]
        for i, value in enumerate(start):
            initial[f"{case_id(case)}/{i:03d}"] = value
        final = train_few_steps(case, tf.distribute.get_strategy(), start)
        # The steps must move the weights, or equal weights prove nothing.
        moved = [np.max(np.abs(f - v.numpy())) for f, v in zip(final, model.trainable_variables)]
        assert max(moved) > 1e-3, (case, moved)
        reference[case] = final
    init_path = tmp_path / "initial.npz"
    np.savez(init_path, **initial)
    outs = [tmp_path / f"worker{i}.npz" for i in range(2)]
    results = run_workers(
        lambda i: [sys.executable, os.path.abspath(__file__), "worker", str(init_path), str(outs[i])],
        count=2, timeout=240,
    )
    for rc, output in results:
        assert rc == 0, output[-4000:]
    first, second = (np.load(path) for path in outs)
    assert int(first["num_replicas"]) == 2 and int(second["num_replicas"]) == 2
    assert bool(first["is_chief"]) and not bool(second["is_chief"])
    for case in MW_CASES:
        keys = sorted(k for k in first.files if k.startswith(case_id(case) + "/"))
        assert len(keys) == len(reference[case])
        for key, expected in zip(keys, reference[case]):
            # Both workers apply the same all-reduced update: bit-identical.
            np.testing.assert_array_equal(first[key], second[key], err_msg=key)
            # float32 rounding only (measured: at most 7.8e-8 apart).
            np.testing.assert_allclose(first[key], expected, rtol=1e-5, atol=1e-6, err_msg=key)


# --- the training binary under MultiWorkerMirroredStrategy ------------------


def test_metrix_train_multi_worker_writes_only_from_the_chief(tmp_path):
    workdir = tmp_path / "run"
    flags = [
        "--tiny", "--batch_size=32", "--backbone_width=8", "--embedding_dim=16",
        "--validation_fraction=0.2", "--epochs=1", "--steps_per_epoch=2",
        "--loss=contrastive", "--metrix_level=embedding",
        "--distribution=multi_worker", f"--workdir={workdir}",
    ]

    def argv(index):
        return [sys.executable, "-m", "metrix_tf.programs.train", *flags]

    # Each worker builds the built-in set in its own cache directory.
    results = run_workers(argv, count=2, timeout=300, cwd=tmp_path, data_dir=tmp_path / "data")
    for rc, output in results:
        assert rc == 0, output[-4000:]
    chief_output, worker_output = results[0][1], results[1][1]
    assert "recall@1" in chief_output and "SavedModel" in chief_output
    assert "SavedModel" not in worker_output  # the other worker reports nothing
    history = json.loads((workdir / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0]
    assert (workdir / "results.json").exists()
    assert (workdir / "saved_model" / "saved_model.pb").exists()
    assert {"checkpoint", "ckpt-1.index"} <= set(os.listdir(workdir / "checkpoints"))
    # The other worker wrote to a temporary directory, removed at the end.
    assert not [name for name in os.listdir(workdir) if name.startswith("workertemp")]


# --- make_strategy and TF_CONFIG checks (in-process: no device set-up) -----


@pytest.mark.parametrize(
    "tf_config,needle",
    [
        (None, "needs the TF_CONFIG environment variable"),
        ("{not json", "TF_CONFIG is not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"task": {"type": "worker", "index": 0}}', "needs a 'cluster' object"),
        ('{"cluster": {"ps": ["a:1"]}, "task": {"type": "ps", "index": 0}}', "job 'ps' is not supported"),
        ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}', "non-empty list of 'host:port'"),
        ('{"cluster": {"worker": ["hostonly"]}, "task": {"type": "worker", "index": 0}}', "'host:port'"),
        ('{"cluster": {"chief": ["a:1", "b:2"]}, "task": {"type": "chief", "index": 0}}', "at most one chief"),
        ('{"cluster": {"worker": ["a:1"]}}', "needs a 'task' object"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}', "task type must be one of"),
        ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}', "task index must be an int in [0, 2)"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": "0"}}', "task index must be an int"),
    ],
)
def test_bad_tf_config_is_rejected_naming_it(monkeypatch, tf_config, needle):
    from metrix_tf.training import distribution

    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ValueError, match="TF_CONFIG") as error:
        distribution.make_strategy("multi_worker")
    assert needle in str(error.value)


def test_good_tf_config_parses():
    from metrix_tf.training import distribution

    text = json.dumps({"cluster": {"chief": ["h0:1"], "worker": ["h1:2", "h2:3"]},
                       "task": {"type": "worker", "index": 1}})
    cluster, task_type, index = distribution.parse_tf_config(text)
    assert cluster["worker"] == ["h1:2", "h2:3"] and (task_type, index) == ("worker", 1)


def test_unknown_distribution_is_rejected():
    from metrix_tf.training import distribution

    with pytest.raises(ValueError, match="Received: name='tpu'"):
        distribution.make_strategy("tpu")


def test_default_strategy_changes_nothing(tmp_path):
    import tensorflow as tf

    from metrix_tf.training import distribution

    strategy = distribution.make_strategy("default")
    assert strategy is tf.distribute.get_strategy()
    assert distribution.is_chief(strategy)
    assert distribution.write_dir(str(tmp_path), strategy) == str(tmp_path)
    dataset = tf.data.Dataset.range(4)
    assert distribution.distribute_by_data(dataset, strategy) is dataset
    distribution.check_same_epoch(strategy, 3)  # no-op, no collective


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "mirrored":
        mirrored_child(sys.argv[2], sys.argv[3])
    elif mode == "worker":
        worker_child(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(f"unknown mode {mode!r}")

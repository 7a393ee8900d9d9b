"""What a user of metrix-train / metrix-export / metrix-eval sees: help,
a quiet start, one line per epoch in a log file, the pictures, and one
readable line (no traceback) for every expected failure."""

import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from test_data_loaders import corrupt
from test_data_loaders import make_cub
from test_train_binary import TINY
from test_train_binary import environment

BIN = os.path.dirname(sys.executable)


def program(name, *flags, tmp_path, quiet=False, timeout=300):
    path = os.path.join(BIN, name)
    if not os.path.exists(path):
        pytest.skip(f"{name} is not installed next to this Python")
    env = environment(tmp_path)
    if quiet:  # as a user runs it: nothing asks for TensorFlow's log
        env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return subprocess.run([path, *flags], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=timeout)


def one_error_line(result, name):
    assert result.returncode == 1, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{name}: error: "), result.stderr[-3000:]
    return lines[0]


@pytest.mark.parametrize(
    "name,sentence,flags",
    [
        ("metrix-train", "metrix-train: train an embedding network", ["--loss", "--select_by", "--workdir"]),
        ("metrix-export", "metrix-export: export a training run", ["--workdir", "--output"]),
        ("metrix-eval", "metrix-eval: evaluate a SavedModel", ["--saved_model", "--dataset"]),
    ],
)
def test_help_says_what_and_how_then_lists_the_flags_quietly(tmp_path, name, sentence, flags):
    result = program(name, "--help", tmp_path=tmp_path, quiet=True)
    lines = result.stdout.splitlines()
    assert lines[0].startswith(sentence)
    assert lines[2] == "Example:" and lines[4].strip().startswith(name + " --")
    for flag in flags:
        assert re.search(rf"^  {flag}: \S", result.stdout, re.M), result.stdout
    assert "Model selection" in result.stdout if name == "metrix-train" else True
    # A quiet start: none of TensorFlow's C++ start-up lines.
    assert "absl::InitializeLog" not in result.stderr
    assert not re.search(r"^[IWEF]\d{4} ", result.stderr, re.M), result.stderr[-2000:]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("programs")
    result = program("metrix-train", *TINY, "--epochs=2", f"--workdir={root / 'run'}",
                     tmp_path=root, quiet=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return root, result


def test_a_log_file_gets_one_line_per_epoch_and_no_start_up_noise(tiny_run):
    _, result = tiny_run
    assert "\r" not in result.stdout and "\x08" not in result.stdout
    epochs = [line for line in result.stdout.splitlines() if line.startswith("Epoch")]
    assert len(epochs) == 2
    for number, line in enumerate(epochs, 1):
        assert re.match(rf"Epoch {number}/2 - [\d.]+s - loss [\d.]+ - val_recall@1 [\d.]+", line), line
    assert len(result.stdout) < 3000
    assert not re.search(r"^[IWEF]\d{4} ", result.stderr, re.M), result.stderr[-2000:]


def read_tsv(path):
    with open(path) as f:
        return [line.rstrip("\n").split("\t") for line in f]


def test_the_projector_files_hold_the_selected_models_test_embeddings(tiny_run):
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig
    from google.protobuf import text_format

    from metrix_tf.evaluation import evaluate_retrieval

    root, _ = tiny_run
    logs = root / "run" / "logs"
    config = text_format.Parse((logs / "projector_config.pbtxt").read_text(), ProjectorConfig())
    (embedding,) = config.embeddings
    tensors = np.array(read_tsv(logs / embedding.tensor_path), dtype=np.float64)
    metadata = read_tsv(logs / embedding.metadata_path)
    assert metadata[0] == ["label", "class"] and len(metadata) == len(tensors) + 1
    labels = np.array([int(row[0]) for row in metadata[1:]])
    assert tensors.shape == (160, 16)  # the tiny set: 10 test classes x 16 images; embedding_dim 16
    np.testing.assert_allclose(np.linalg.norm(tensors, axis=1), 1.0, atol=1e-4)
    # They are the embeddings results.json's test figures come from.
    results = json.loads((root / "run" / "results.json").read_text())
    recall = evaluate_retrieval(tensors, labels, ks=(1,))["recall@1"]
    assert abs(recall - results["trained"]["recall@1"]) < 1e-9
    with Image.open(logs / embedding.sprite.image_path) as sprite:
        side = math.ceil(math.sqrt(len(tensors))) * embedding.sprite.single_image_dim[0]
        assert sprite.size == (side, side)


def test_the_retrieval_gallery_marks_right_and_wrong_neighbours(tiny_run):
    from metrix_tf.training import pictures

    root, _ = tiny_run
    logs = root / "run" / "logs"
    tensors = np.array(read_tsv(logs / "projector" / "tensors.tsv"), dtype=np.float64)
    labels = np.array([int(row[0]) for row in read_tsv(logs / "projector" / "metadata.tsv")[1:]])
    with Image.open(root / "run" / pictures.GALLERY_FILE) as image:
        canvas = np.asarray(image.convert("RGB"))
    # Layout: 8 rows of a query and its 5 neighbours, cells of 64 px + 4 px frames, 8 px gaps.
    size, border, gap, rows, k = 64, 4, 8, 8, 5
    cell = size + 2 * border
    assert canvas.shape == (rows * (cell + gap) + gap, (k + 1) * (cell + gap) + 2 * gap, 3)
    # The queries: numpy's default_rng(seed).choice(N, 8, replace=False), sorted (seed 0).
    queries = np.sort(np.random.default_rng(0).choice(len(tensors), rows, replace=False))
    similarity = tensors @ tensors.T
    np.fill_diagonal(similarity, -np.inf)
    top = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    for row, query in enumerate(queries):
        y = gap + row * (cell + gap)
        query_pixels = canvas[y + border:y + border + size, gap + border:gap + border + size]
        assert query_pixels.std() > 0  # an image, not a blank cell
        colours = [tuple(canvas[y + 1, gap + col * (cell + gap) + gap + 1]) for col in range(1, k + 1)]
        want = [pictures.RIGHT if labels[n] == labels[query] else pictures.WRONG for n in top[query]]
        assert colours == want, (row, colours, want)


def test_a_bad_flag_is_one_line(tmp_path):
    line = one_error_line(program("metrix-train", "--loss=triplet", tmp_path=tmp_path), "metrix-train")
    assert "--loss must be one of" in line and "'triplet'" in line


def test_a_missing_data_dir_is_one_line(tmp_path):
    result = program("metrix-train", "--dataset=cub200", "--data_dir=/nope", tmp_path=tmp_path)
    line = one_error_line(result, "metrix-train")
    assert "/nope" in line and "not found" in line


def test_a_corrupt_jpeg_is_named_before_training(tmp_path):
    base = make_cub(tmp_path / "cub", per_class=lambda c: 2)
    bad = base / "images" / "150.Bird_150" / "Bird_150_1.jpg"
    corrupt(str(bad))
    result = program("metrix-train", "--dataset=cub200", f"--data_dir={base}", "--epochs=1",
                     "--batch_size=8", "--backbone_width=4", "--embedding_dim=8",
                     f"--workdir={tmp_path / 'run'}", tmp_path=tmp_path)
    line = one_error_line(result, "metrix-train")
    assert "Bird_150_1.jpg" in line and "corrupt" in line
    assert not (tmp_path / "run" / "history.json").exists()


def test_verified_images_are_remembered_by_file_list_and_sizes(tmp_path, monkeypatch):
    from metrix_tf import data
    from metrix_tf.data import image_files

    monkeypatch.setenv("METRIX_TF_DATA_DIR", str(tmp_path / "cache"))
    base = make_cub(tmp_path / "cub", per_class=lambda c: 1)
    splits = data.load_cub200(str(base), verify=True)
    decoded = []
    monkeypatch.setattr(image_files, "_decode_all", lambda split, paths, n: decoded.append(len(paths)))
    data.verify_images(splits.train)
    data.verify_images(splits.test)
    assert decoded == []  # remembered: no decoding the second time
    with open(splits.test.images[3], "ab") as f:
        f.write(b"\0")  # another size
    data.verify_images(splits.train)
    data.verify_images(splits.test)
    assert decoded == [splits.test.num_examples]


def test_export_and_eval_failures_are_one_line(tiny_run, tmp_path):
    root, _ = tiny_run
    line = one_error_line(program("metrix-export", "--workdir=/nope", tmp_path=tmp_path), "metrix-export")
    assert "'/nope'" in line
    line = one_error_line(program("metrix-eval", "--saved_model=/nope", tmp_path=tmp_path), "metrix-eval")
    assert "No SavedModel" in line
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "saved_model.pb").write_bytes(b"garbage {{{")
    line = one_error_line(program("metrix-eval", f"--saved_model={damaged}", tmp_path=tmp_path),
                          "metrix-eval")
    assert "cannot be loaded" in line and "damaged" in line
    line = one_error_line(
        program("metrix-eval", f"--saved_model={root / 'run' / 'saved_model'}", "--dataset=cub200",
                "--data_dir=/nope", tmp_path=tmp_path),
        "metrix-eval",
    )
    assert "/nope" in line and "not found" in line

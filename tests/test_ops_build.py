"""Build-level checks of the compiled op: thread-count independence of the
CPU kernels, the one-warning fallback to pure TF (a library built for
another TensorFlow is never loaded), and that the CUDA sources compile
(nvcc -c, skipped without nvcc)."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import metrix_tf
import metrix_tf.ops as ops

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(metrix_tf.__file__)))
requires_op = pytest.mark.skipif(
    ops.backend() != "compiled",
    reason="compiled op not built: " + ops.library_info().get("reason", ""),
)


def run_python(code, pythonpath, extra_env=None, timeout=300):
    env = dict(os.environ)
    env["PYTHONPATH"] = pythonpath
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.pop(ops._loader.DISABLE_ENV_VAR, None)
    env.update(extra_env or {})
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env, capture_output=True, text=True, timeout=timeout, cwd="/",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


THREADS_SCRIPT = """
import sys
import numpy as np
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads({threads})
tf.config.threading.set_inter_op_parallelism_threads(1)
import metrix_tf.ops as ops
assert ops.backend() == "compiled", ops.library_info()
rng = np.random.default_rng(0)
m, n, d = 300, 700, 24  # 5 row blocks x 3 candidate tiles
a = tf.constant(rng.normal(size=(m, d)), tf.float32)
c = tf.constant(rng.normal(size=(n, d)), tf.float32)
a = tf.math.l2_normalize(a, 1)
c = tf.math.l2_normalize(c, 1)
al = rng.integers(0, 5, m)
la = rng.integers(0, 5, n)
lb = rng.integers(0, 5, n)
lam = rng.uniform(size=n).astype(np.float32)
results = {{}}
with tf.GradientTape(persistent=True) as tape:
    tape.watch([a, c])
    s, y = ops.soft_label_similarity(a, al, c, la, lb, lam, exclude_self=True)
    e = ops.soft_label_exp_reductions(a, al, c, la, lb, lam, 2.0, 0.5, 4.0, 0.5, epsilon=0.1)
    k = ops.soft_label_contrastive_reductions(a, al, c, la, lb, lam, 0.1, 0.9)
    loss_e = tf.reduce_sum(e.lse_pos) + tf.reduce_sum(e.lse_neg)
    loss_k = tf.reduce_sum(k.pos_sum) + tf.reduce_sum(k.neg_sum)
results.update(s=s, y=y, **{{"exp_" + f: v for f, v in e._asdict().items()}},
               **{{"con_" + f: v for f, v in k._asdict().items()}})
results["exp_grad_a"], results["exp_grad_c"] = tape.gradient(loss_e, [a, c])
results["con_grad_a"], results["con_grad_c"] = tape.gradient(loss_k, [a, c])
np.savez(sys.argv[1] if len(sys.argv) > 1 else {path!r}, **{{k: v.numpy() for k, v in results.items()}})
"""


@requires_op
def test_cpu_kernels_do_not_depend_on_the_thread_count(tmp_path):
    outputs = []
    for threads in (1, 2, 5):
        path = str(tmp_path / f"threads_{threads}.npz")
        run_python(THREADS_SCRIPT.format(threads=threads, path=path), PACKAGE_PARENT)
        outputs.append(np.load(path))
    first = outputs[0]
    assert len(first.files) == 16
    for other in outputs[1:]:
        for name in first.files:
            np.testing.assert_array_equal(first[name], other[name], err_msg=name)


FALLBACK_SCRIPT = """
import json
import warnings
import tensorflow as tf
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import metrix_tf.ops as ops
    from metrix_tf.ops import soft_label_similarity
    import metrix_tf.ops.pair_reductions
    s, y = soft_label_similarity(tf.ones([2, 3]), [0, 1], tf.ones([2, 3]), [0, 1], [0, 1], [1.0, 1.0])
messages = [str(w.message) for w in caught
            if issubclass(w.category, RuntimeWarning) and "metrix_tf:" in str(w.message)]
print(json.dumps({"backend": ops.backend(), "warnings": messages,
                  "reason": ops.library_info()["reason"], "y": y.numpy().tolist()}))
"""


def package_copy(tmp_path, library_bytes=None):
    """The metrix_tf package without its library, optionally with a fake one."""
    target = tmp_path / "metrix_tf"
    shutil.copytree(os.path.join(PACKAGE_PARENT, "metrix_tf"), target,
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    if library_bytes is not None:
        (target / "ops" / ops._loader.LIBRARY_FILENAME).write_bytes(library_bytes)
    return str(tmp_path)


def fake_library(tmp_path, version):
    """A loadable library with no ops that claims another TensorFlow."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler")
    source = tmp_path / "fake.c"
    source.write_text(
        f'const char* metrix_tf_built_for(void) {{ return "{version}"; }}\n'
        'const char* metrix_tf_gemm_isa(void) { return "generic"; }\n'
        "int metrix_tf_has_cuda(void) { return 0; }\n")
    library = tmp_path / "fake.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    return library.read_bytes()


def fake_recording_library(tmp_path, version):
    """A library that records another TensorFlow and ends the process if it
    is ever loaded (its constructor runs on dlopen)."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler")
    source = tmp_path / "fake_recording.c"
    source.write_text(
        "#include <unistd.h>\n"
        f'const char metrix_tf_built_for_marker[] = "METRIX_TF_BUILT_FOR={version};";\n'
        "__attribute__((constructor)) static void loaded(void) { _exit(3); }\n")
    library = tmp_path / "fake_recording.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    return library.read_bytes()


@pytest.mark.parametrize("case", ["missing", "corrupt", "other_tf", "other_tf_recorded"])
def test_fallback_warns_exactly_once(tmp_path, case):
    library = {
        "missing": lambda: None,
        "corrupt": lambda: b"this is not a shared library",
        "other_tf": lambda: fake_library(tmp_path, "0.0.1"),  # read after loading
        "other_tf_recorded": lambda: fake_recording_library(tmp_path, "0.0.2"),  # never loaded
    }[case]()
    pythonpath = package_copy(tmp_path / "site", library)
    report = json.loads(run_python(FALLBACK_SCRIPT, pythonpath).strip().splitlines()[-1])
    assert report["backend"] == "pure_tf"
    assert len(report["warnings"]) == 1, report["warnings"]
    expected = {"missing": "was not found", "corrupt": "failed to load",
                "other_tf": "was built for TensorFlow 0.0.1",
                "other_tf_recorded": "was built for TensorFlow 0.0.2"}[case]
    assert expected in report["warnings"][0]
    assert "build_ext --inplace" in report["warnings"][0]
    assert report["y"] == [[1.0, 0.0], [0.0, 1.0]]


@requires_op
def test_the_library_records_its_tensorflow_in_its_bytes():
    # Read without loading the file: the loader checks it before dlopen().
    info = ops.library_info()
    assert ops._loader.recorded_version(info["path"]) == info["built_for"] == tf.__version__


MISMATCH_SCRIPT = """
import json
import warnings
import tensorflow as tf
tf.__version__ = "2.99.0"  # another TensorFlow than the op was built for
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import metrix_tf
    import metrix_tf.ops as ops
    from metrix_tf.ops import soft_label_similarity
    s, y = soft_label_similarity(tf.ones([2, 3]), [0, 1], tf.ones([2, 3]), [0, 1], [0, 1], [1.0, 1.0])
with open("/proc/self/maps") as f:
    mapped = ops.library_info()["path"] in f.read()
messages = [str(w.message) for w in caught
            if issubclass(w.category, RuntimeWarning) and "metrix_tf:" in str(w.message)]
print(json.dumps({"backend": ops.backend(), "warnings": messages, "mapped": mapped,
                  "info": ops.library_info(), "y": y.numpy().tolist()}))
"""


@requires_op
@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="no /proc/self/maps")
def test_the_real_library_is_not_loaded_into_another_tensorflow(tmp_path):
    library = open(ops.library_info()["path"], "rb").read()
    pythonpath = package_copy(tmp_path / "site", library)
    report = json.loads(run_python(MISMATCH_SCRIPT, pythonpath).strip().splitlines()[-1])
    assert report["backend"] == "pure_tf" and not report["mapped"]
    assert len(report["warnings"]) == 1, report["warnings"]
    assert (f"was built for TensorFlow {tf.__version__}, but TensorFlow 2.99.0 is imported"
            in report["warnings"][0])
    assert f"install tensorflow=={tf.__version__}" in report["warnings"][0]
    assert report["info"]["built_for"] == tf.__version__
    assert report["y"] == [[1.0, 0.0], [0.0, 1.0]]


def test_disable_env_var_skips_the_library_silently(tmp_path):
    pythonpath = package_copy(tmp_path / "site")  # would warn if it looked
    report = json.loads(run_python(
        FALLBACK_SCRIPT, pythonpath, {"METRIX_TF_DISABLE_OP": "1"}).strip().splitlines()[-1])
    assert report["backend"] == "pure_tf"
    assert report["warnings"] == []
    assert "METRIX_TF_DISABLE_OP" in report["reason"]


def find_nvcc():
    for candidate in (os.environ.get("NVCC"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.mark.skipif(find_nvcc() is None, reason="nvcc not found")
@pytest.mark.skipif(not os.path.isdir(os.path.join(REPO, "cc")), reason="no cc/ sources here")
def test_cuda_sources_compile(tmp_path):
    nvcc = find_nvcc()
    flags = ["-std=c++17", "--expt-relaxed-constexpr", "-I" + REPO,
             "-gencode", "arch=compute_80,code=sm_80", "-c"]
    commands = [
        [nvcc, *flags, os.path.join(REPO, "cc", "soft_label_similarity_kernels.cu"),
         "-o", str(tmp_path / "kernels.o")],
        [nvcc, *flags, os.path.join(REPO, "cc", "cublas_gemm.cu"),
         "-o", str(tmp_path / "cublas_gemm.o")],
        [nvcc, *flags, os.path.join(REPO, "cc", "cuda_kernel_test.cu"),
         "-o", str(tmp_path / "test.o")],
        # The TensorFlow side of the GPU kernels, as setup.py compiles it.
        [os.environ.get("CXX", "g++"), *tf.sysconfig.get_compile_flags(), "-I" + REPO,
         "-DGOOGLE_CUDA=1", "-Wno-deprecated-declarations", "-fsyntax-only",
         os.path.join(REPO, "cc", "soft_label_similarity_ops_gpu.cc")],
    ]
    processes = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for c in commands]
    for command, process in zip(commands, processes):
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, f"{' '.join(command)}\n{output[-3000:]}"

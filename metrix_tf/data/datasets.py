"""One entry point for every data set: `load_dataset(name, root)`."""

from metrix_tf.data.builtin_glyphs import load_builtin
from metrix_tf.data.cars196 import load_cars196
from metrix_tf.data.cub200 import load_cub200
from metrix_tf.data.icons import DEFAULT_ROOT as ICONS_ROOT
from metrix_tf.data.icons import load_icons
from metrix_tf.data.inshop_clothes import load_inshop
from metrix_tf.data.stanford_online_products import load_sop

LOADERS = {"cub200": load_cub200, "cars196": load_cars196, "sop": load_sop,
           "inshop": load_inshop}
DATASET_NAMES = ("builtin", "builtin_large", "icons") + tuple(LOADERS)


def load_dataset(name, root=None, verify=False, validation_fraction=None,
                 seed=0, **builtin_kwargs):
    """Loads a data set by name.

    Args:
        name: "builtin" (offline glyphs), "builtin_large" (the larger
            offline glyph set of the quality benchmark), "icons" (desktop
            icon themes, see `load_icons`), "cub200", "cars196", "sop" or
            "inshop".
        root: directory of the extracted data set (for "builtin": the cache
            directory, optional; for "icons": the icon themes, default
            /usr/share/icons).
        verify: decode every image up front (real data sets).
        validation_fraction: optional float: carve a validation split from
            the training classes (see `split_validation`).
        seed: seed of the validation class choice.
        **builtin_kwargs: extra `load_builtin` arguments (`tiny`, ...) or
            `load_icons` arguments (`image_size`, `cache_dir`, ...).

    Returns:
        `DataSplits`.
    """
    if name in ("builtin", "builtin_large"):
        return load_builtin(data_dir=root, validation_fraction=
                            validation_fraction, validation_seed=seed,
                            large=name == "builtin_large", **builtin_kwargs)
    if name == "icons":
        return load_icons(root or ICONS_ROOT, validation_fraction=
                          validation_fraction, seed=seed, **builtin_kwargs)
    if name not in LOADERS:
        raise ValueError(f"`name` must be one of {DATASET_NAMES}. "
                         f"Received: name={name!r}")
    if builtin_kwargs:
        raise ValueError(f"Unexpected arguments for {name!r}: "
                         f"{sorted(builtin_kwargs)}")
    if root is None:
        raise ValueError(f"Data set {name!r} needs `root`, the directory of "
                         "its extracted files. Received: root=None")
    return LOADERS[name](root, verify=verify,
                         validation_fraction=validation_fraction, seed=seed)

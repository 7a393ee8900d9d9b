"""Data: loaders for CUB-200-2011, Cars196, SOP and In-Shop, the built-in
offline glyph set, the icons set (Debian's desktop icon themes), and
tf.data pipelines with the paper's transforms.

How a training binary uses it (every call is seeded and deterministic):

    from metrix_tf import data

    splits = data.load_dataset(name, root, validation_fraction=0.1, seed=0)
    # name in data.DATASET_NAMES: "builtin" (root = cache dir, optional),
    # "icons" (root = icon themes, default /usr/share/icons), "cub200",
    # "cars196", "sop", "inshop". splits.train / .val / .test
    # (or .query + .gallery for In-Shop, splits.protocol says which) are
    # ImageSplits: images (file paths, or a uint8 array for "builtin"),
    # labels 0..C-1 per split, class_names. splits.recall_ks: the paper's K.
    pre = data.Preprocessing.for_dataset(name)        # or your own sizes
    train = data.balanced_batches(splits.train, pre, classes_per_batch=20,
                                  images_per_class=5, seed=seed,
                                  start_step=epoch0 * steps)  # infinite
    # or data.shuffled_batches(splits.train, pre, 100, seed=seed,
    #                          start_epoch=epoch0)           # infinite
    steps = data.steps_per_epoch(splits.train, 100)
    model.fit(train, epochs=epochs, initial_epoch=epoch0,
              steps_per_epoch=steps)
    val = data.eval_batches(splits.val, pre, 100)     # (images, labels)

Resuming: batch `t` of both training pipelines is a pure function of
`(seed, t)`, so restarting at `start_step = epoch * steps_per_epoch`
(balanced) or `start_epoch = epoch` (shuffled) continues the exact
sequence: no batch is lost or repeated.

Serving contract (for export): `Preprocessing.evaluate` = shorter side to
`resize_size`, centre crop `image_size`, `(x / 255 - mean) / std`.
"""

from metrix_tf.data.builtin_glyphs import build_glyph_set
from metrix_tf.data.builtin_glyphs import load_builtin
from metrix_tf.data.builtin_glyphs import matplotlib_fonts
from metrix_tf.data.cars196 import load_cars196
from metrix_tf.data.class_balanced_sampler import ClassBalancedSampler
from metrix_tf.data.cub200 import load_cub200
from metrix_tf.data.data_dir import default_data_dir
from metrix_tf.data.data_splits import DataSplits
from metrix_tf.data.datasets import DATASET_NAMES
from metrix_tf.data.datasets import load_dataset
from metrix_tf.data.icons import load_icons
from metrix_tf.data.image_files import verify_images
from metrix_tf.data.image_split import ImageSplit
from metrix_tf.data.image_split import split_validation
from metrix_tf.data.inshop_clothes import load_inshop
from metrix_tf.data.matfile import load_mat
from metrix_tf.data.pipelines import balanced_batches
from metrix_tf.data.pipelines import eval_batches
from metrix_tf.data.pipelines import shuffled_batches
from metrix_tf.data.pipelines import steps_per_epoch
from metrix_tf.data.preprocessing import IMAGENET_MEAN
from metrix_tf.data.preprocessing import IMAGENET_STD
from metrix_tf.data.preprocessing import Preprocessing
from metrix_tf.data.stanford_online_products import load_sop

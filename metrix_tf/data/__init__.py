"""Data: loaders for CUB-200-2011, Cars196, SOP and In-Shop, the built-in
offline glyph set, and tf.data pipelines (class-balanced / shuffled /
evaluation batches) with the paper's transforms."""

from metrix_tf.data.builtin_glyphs import build_glyph_set
from metrix_tf.data.builtin_glyphs import default_data_dir
from metrix_tf.data.builtin_glyphs import load_builtin
from metrix_tf.data.builtin_glyphs import matplotlib_fonts
from metrix_tf.data.cars196 import load_cars196
from metrix_tf.data.class_balanced_sampler import ClassBalancedSampler
from metrix_tf.data.cub200 import load_cub200
from metrix_tf.data.data_splits import DataSplits
from metrix_tf.data.datasets import DATASET_NAMES
from metrix_tf.data.datasets import load_dataset
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

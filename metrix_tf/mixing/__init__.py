"""Metrix: the mixing configuration, pair selection, mixing layers and the
mixed-batch interface to the losses."""

from metrix_tf.mixing.feature_mixing import FeatureMixing
from metrix_tf.mixing.input_mixing import InputMixing
from metrix_tf.mixing.metrix import Metrix
from metrix_tf.mixing.mixed_batch import MixedBatch
from metrix_tf.mixing.mixed_batch import make_mixed_batch
from metrix_tf.mixing.mixed_batch import mix_embeddings
from metrix_tf.mixing.mixing_layer import MixingLayer
from metrix_tf.mixing.mixing_layer_for import mixing_layer_for
from metrix_tf.mixing.pair_selection import cap_mixes
from metrix_tf.mixing.pair_selection import select_hardest_negative_pairs
from metrix_tf.mixing.pair_selection import select_mix_pairs

"""Metrix: the mixing configuration, pair selection and mixed batches."""

from metrix_tf.mixing.metrix import Metrix
from metrix_tf.mixing.mixed_batch import mix_embeddings
from metrix_tf.mixing.pair_selection import select_mix_pairs

"""The soft-label similarity op (C++/CUDA) and its pure-TF fallback.

`backend()` says which path is active ("compiled" or "pure_tf"),
`library_info()` why, and `use_pure_tf()` forces the pure-TF path for a block
of code; `METRIX_TF_DISABLE_OP=1` (set before import) skips the library.
Anything that calls these ops cannot be compiled by XLA: set
`supports_jit = False` on the Keras loss or layer that calls them.
"""

from metrix_tf.ops._loader import backend
from metrix_tf.ops._loader import library_info
from metrix_tf.ops._loader import use_pure_tf
from metrix_tf.ops.pair_reductions import ContrastiveReductions
from metrix_tf.ops.pair_reductions import ExpReductions
from metrix_tf.ops.pair_reductions import contrastive_reductions_from_similarity
from metrix_tf.ops.pair_reductions import exp_reductions_from_similarity
from metrix_tf.ops.pair_reductions import soft_label_contrastive_reductions
from metrix_tf.ops.pair_reductions import soft_label_contrastive_reductions_reference
from metrix_tf.ops.pair_reductions import soft_label_exp_reductions
from metrix_tf.ops.pair_reductions import soft_label_exp_reductions_reference
from metrix_tf.ops.pair_reductions import weighted_log_sum_exp
from metrix_tf.ops.soft_label_similarity import NOT_A_PAIR
from metrix_tf.ops.soft_label_similarity import distance_from_similarity
from metrix_tf.ops.soft_label_similarity import pair_weights
from metrix_tf.ops.soft_label_similarity import soft_label_similarity
from metrix_tf.ops.soft_label_similarity import soft_label_similarity_reference

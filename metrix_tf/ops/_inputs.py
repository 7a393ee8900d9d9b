"""Input checks and dtype handling shared by the soft-label op wrappers."""

import tensorflow as tf

# Dtypes the kernels compute in; half types are upcast to float32.
_KERNEL_DTYPES = (tf.float32, tf.float64)
_UPCAST_DTYPES = (tf.float16, tf.bfloat16)


def prepare_pair_inputs(
    anchors, anchor_labels, candidates, candidate_labels_a, candidate_labels_b, lam
):
    """Converts and checks the six pair inputs.

    Returns:
        `(inputs, compute_dtype, result_dtype)`: `inputs` is the tuple of
        tensors in kernel dtypes (floats in `compute_dtype`, labels all int32
        or all int64), `result_dtype` the dtype results are cast back to.
    """
    anchors = tf.convert_to_tensor(anchors)
    candidates = tf.convert_to_tensor(candidates)
    if not anchors.dtype.is_floating:
        raise TypeError(
            f"anchors must be a float tensor; received dtype={anchors.dtype.name}"
        )
    if candidates.dtype != anchors.dtype:
        raise TypeError(
            "candidates must have the dtype of anchors; received "
            f"anchors.dtype={anchors.dtype.name}, "
            f"candidates.dtype={candidates.dtype.name}"
        )
    result_dtype = anchors.dtype
    if result_dtype in _KERNEL_DTYPES:
        compute_dtype = result_dtype
    elif result_dtype in _UPCAST_DTYPES:
        compute_dtype = tf.float32
        anchors = tf.cast(anchors, compute_dtype)
        candidates = tf.cast(candidates, compute_dtype)
    else:
        raise TypeError(
            "anchors must be float16, bfloat16, float32 or float64; received "
            f"dtype={result_dtype.name}"
        )
    labels = []
    for name, value in (
        ("anchor_labels", anchor_labels),
        ("candidate_labels_a", candidate_labels_a),
        ("candidate_labels_b", candidate_labels_b),
    ):
        value = tf.convert_to_tensor(value)
        if value.dtype not in (tf.int32, tf.int64):
            raise TypeError(
                f"{name} must be an int32 or int64 tensor; received "
                f"dtype={value.dtype.name} (cast class ids with tf.cast)"
            )
        labels.append(value)
    label_dtype = tf.int64 if any(v.dtype == tf.int64 for v in labels) else tf.int32
    labels = [tf.cast(v, label_dtype) for v in labels]
    lam = tf.cast(tf.convert_to_tensor(lam), compute_dtype)
    _check_static_shapes(anchors, labels[0], candidates, labels[1], labels[2], lam)
    inputs = (anchors, labels[0], candidates, labels[1], labels[2], lam)
    return inputs, compute_dtype, result_dtype


def _check_static_shapes(anchors, anchor_labels, candidates, labels_a, labels_b, lam):
    """Raises ValueError for shapes that are wrong already at trace time."""
    for name, tensor, rank in (
        ("anchors", anchors, 2),
        ("candidates", candidates, 2),
        ("anchor_labels", anchor_labels, 1),
        ("candidate_labels_a", labels_a, 1),
        ("candidate_labels_b", labels_b, 1),
        ("lam", lam, 1),
    ):
        if tensor.shape.rank is not None and tensor.shape.rank != rank:
            raise ValueError(
                f"{name} must have rank {rank}; received shape={tensor.shape}"
            )
    if not anchors.shape[-1:].is_compatible_with(candidates.shape[-1:]):
        raise ValueError(
            "anchors and candidates must have the same embedding size D; "
            f"received anchors.shape={anchors.shape}, "
            f"candidates.shape={candidates.shape}"
        )
    if not anchors.shape[:1].is_compatible_with(anchor_labels.shape):
        raise ValueError(
            "anchor_labels must have shape (M,) to match anchors; received "
            f"anchors.shape={anchors.shape}, anchor_labels.shape={anchor_labels.shape}"
        )
    for name, tensor in (
        ("candidate_labels_a", labels_a),
        ("candidate_labels_b", labels_b),
        ("lam", lam),
    ):
        if not candidates.shape[:1].is_compatible_with(tensor.shape):
            raise ValueError(
                f"{name} must have shape (N,) to match candidates; received "
                f"candidates.shape={candidates.shape}, {name}.shape={tensor.shape}"
            )


def cast_results(results, result_dtype):
    """Casts float results back to the caller's (half) dtype."""
    return tuple(tf.cast(r, result_dtype) for r in results)

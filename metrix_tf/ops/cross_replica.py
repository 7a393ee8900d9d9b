"""Cross-replica helpers for losses and mixing under `tf.distribute`.

Outside a multi-replica context (one device, or the default strategy) every
function is the identity, so single-device code pays nothing.
"""

import tensorflow as tf


def replica_context():
    """The current replica context when it has more than one replica, else None."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def gather(value):
    """Concatenate `value` (rows) from every replica, in replica order.

    The gradient of the global tensor flows back to each replica's own rows,
    summed over replicas (`ReplicaContext.all_gather`).
    """
    context = replica_context()
    if context is None:
        return value
    # TF 2.21 segfaults all-gathering an empty tensor: every replica sends
    # one padding row more, dropped after the gather.
    rows = tf.shape(value)[0]
    pad = tf.zeros(tf.concat([[1], tf.shape(value)[1:]], 0), value.dtype)
    gathered = context.all_gather(tf.concat([value, pad], 0), axis=0)
    sizes = context.all_gather(tf.reshape(rows, [1]), axis=0)
    replicas = tf.shape(sizes)[0]
    keep = tf.repeat(
        tf.tile([True, False], [replicas]),
        tf.reshape(tf.stack([sizes, tf.ones_like(sizes)], 1), [-1]),
    )
    return _dense_gradient(tf.boolean_mask(gathered, keep))


@tf.custom_gradient
def _dense_gradient(x):
    return tf.identity(x), lambda dy: tf.convert_to_tensor(dy)


def local_offset(local_rows):
    """Index of this replica's first row in the gathered (global) tensor."""
    context = replica_context()
    if context is None:
        return tf.constant(0, tf.int32)
    sizes = context.all_gather(tf.reshape(tf.cast(local_rows, tf.int32), [1]), axis=0)
    replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
    return tf.reduce_sum(sizes[:replica])


def my_share(rows):
    """This replica's contiguous share of `rows` (the same on every replica,
    e.g. the global mixes): all of them outside a multi-replica context."""
    context = replica_context()
    if context is None:
        return rows
    count = tf.shape(rows)[0]
    replicas = context.num_replicas_in_sync
    chunk = (count + replicas - 1) // replicas
    start = tf.minimum(tf.cast(context.replica_id_in_sync_group, tf.int32) * chunk, count)
    return rows[start : tf.minimum(start + chunk, count)]


def sum_over_replicas(value):
    """Sum of `value` over replicas (no gradient: used for normalisers)."""
    context = replica_context()
    value = tf.stop_gradient(value)
    return value if context is None else context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def same_on_every_replica(value):
    """The first replica's `value` on every replica (random draws that must
    agree: lam, the strategy coin, the subset of mixes)."""
    context = replica_context()
    if context is None:
        return value
    # Flattened, plus one padding element: TF 2.21 segfaults all-gathering
    # a tensor with no elements (a draw over zero mixes).
    flat = tf.concat([tf.reshape(value, [-1]), tf.zeros([1], value.dtype)], 0)
    first = context.all_gather(tf.expand_dims(flat, 0), axis=0)[0]
    return tf.reshape(first[:-1], tf.shape(value))

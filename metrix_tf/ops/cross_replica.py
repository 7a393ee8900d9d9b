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
    return value if context is None else context.all_gather(value, axis=0)


def local_offset(local_rows):
    """Index of this replica's first row in the gathered (global) tensor."""
    context = replica_context()
    if context is None:
        return tf.constant(0, tf.int32)
    sizes = context.all_gather(tf.reshape(tf.cast(local_rows, tf.int32), [1]), axis=0)
    replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
    return tf.reduce_sum(sizes[:replica])


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
    return context.all_gather(tf.expand_dims(value, 0), axis=0)[0]

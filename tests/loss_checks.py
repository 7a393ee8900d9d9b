"""Shared checks of a loss against its oracle, for the loss test files.

`CASES` are the (batch, mix) pairs of tests/test_losses_oracle.py that cover
clean batches and both strategies with both scorings.
"""

import numpy as np
import tensorflow as tf

import oracle
from test_losses_oracle import BATCHES

MIX_CASES = ["clean", "pn_per_anchor", "an_all_pairs", "both_per_anchor", "both_all_pairs"]
CASES = [(batch, mix) for batch in BATCHES for mix in MIX_CASES]


def assert_value_and_gradient(library, reference, x0, gradient_reference=None):
    """The library's value (to 1e-9) and gradient (to 1e-5, against central
    finite differences) equal the oracle's, in float64.

    Args:
        library: `x -> scalar tensor`, the loss of a float64 `(B, D)` tensor.
        reference: `z -> float`, the oracle at a numpy `(B, D)` array.
        x0: the embeddings, numpy `(B, D)`.
        gradient_reference: the oracle whose finite differences give the
            gradient (default `reference`), e.g. with its miner or weights
            held at `x0`.
    """
    x = tf.constant(x0)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = library(x)
    np.testing.assert_allclose(float(value), reference(x0), rtol=1e-9, atol=1e-12)
    grad = tape.gradient(value, x)
    want = oracle.numerical_gradient(gradient_reference or reference, x0)
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(np.zeros_like(x0) if grad is None else grad.numpy(), want,
                               rtol=1e-5, atol=1e-6 * scale)

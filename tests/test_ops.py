"""SoftLabelSimilarity: the compiled op against naive numpy loops and the
pure-TF reference, gradients, dtypes, shapes and error messages."""

import numpy as np
import pytest
import tensorflow as tf

import metrix_tf.ops as ops
from metrix_tf.ops import NOT_A_PAIR
from metrix_tf.ops import soft_label_similarity
from metrix_tf.ops import soft_label_similarity_reference

COMPILED = ops.backend() == "compiled"
requires_op = pytest.mark.skipif(
    not COMPILED,
    reason="compiled op not built: " + ops.library_info().get("reason", ""),
)


def numpy_soft_label_similarity(a, al, c, la, lb, lam, exclude_self):
    """Independent oracle: one (i, j) pair at a time."""
    m, n = len(a), len(c)
    s = np.zeros((m, n))
    y = np.zeros((m, n))
    for i in range(m):
        for j in range(n):
            s[i, j] = float(np.dot(np.asarray(a[i], np.float64), np.asarray(c[j], np.float64)))
            if exclude_self and i == j:
                y[i, j] = NOT_A_PAIR
            else:
                y[i, j] = lam[j] * (la[j] == al[i]) + (1.0 - lam[j]) * (lb[j] == al[i])
    return s, y


def random_inputs(m, n, d, seed, classes=3, dtype=np.float32, label_dtype=np.int32):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(m, d)).astype(dtype)
    c = rng.normal(size=(n, d)).astype(dtype)
    al = rng.integers(0, classes, m).astype(label_dtype)
    la = rng.integers(0, classes, n).astype(label_dtype)
    lb = np.where(rng.uniform(size=n) < 0.5, la, rng.integers(0, classes, n)).astype(label_dtype)
    lam = rng.uniform(size=n).astype(dtype)
    lam[::4] = 1.0
    return a, al, c, la, lb, lam


def run_both(inputs, exclude_self):
    compiled = soft_label_similarity(*inputs, exclude_self=exclude_self)
    with ops.use_pure_tf():
        reference = soft_label_similarity(*inputs, exclude_self=exclude_self)
    return compiled, reference


SHAPES = [
    (7, 5, 3),  # M > N
    (5, 9, 1),  # D = 1
    (130, 300, 20),  # several row blocks and candidate tiles
    (64, 256, 8),  # exactly one tile
    (1, 1, 4),
]


@pytest.mark.parametrize("m,n,d", SHAPES)
@pytest.mark.parametrize("exclude_self", [False, True])
def test_reference_matches_numpy_loop(m, n, d, exclude_self):
    inputs = random_inputs(m, n, d, seed=m + n + d)
    s, y = soft_label_similarity_reference(*inputs, exclude_self=exclude_self)
    s_np, y_np = numpy_soft_label_similarity(*inputs, exclude_self)
    np.testing.assert_allclose(s, s_np, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y, y_np, rtol=1e-6, atol=1e-6)


@requires_op
@pytest.mark.parametrize("m,n,d", SHAPES)
@pytest.mark.parametrize("exclude_self", [False, True])
@pytest.mark.parametrize("dtype,label_dtype", [(np.float32, np.int32), (np.float64, np.int64)])
def test_compiled_matches_numpy_loop_and_reference(m, n, d, exclude_self, dtype, label_dtype):
    inputs = random_inputs(m, n, d, seed=3 * m + n, dtype=dtype, label_dtype=label_dtype)
    (s, y), (s_ref, y_ref) = run_both(inputs, exclude_self)
    s_np, y_np = numpy_soft_label_similarity(*inputs, exclude_self)
    assert s.dtype == dtype and y.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(s, s_np, rtol=tol, atol=tol)
    np.testing.assert_allclose(s, s_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(y, y_np, rtol=tol, atol=tol)
    # Same expression, same rounding: the soft labels agree exactly.
    np.testing.assert_array_equal(y, y_ref)


@requires_op
@pytest.mark.parametrize("m,n,d", [(0, 5, 3), (4, 0, 3), (0, 0, 2), (3, 4, 0)])
def test_empty_shapes(m, n, d):
    inputs = random_inputs(m, n, d, seed=1)
    for backend_inputs in [inputs]:
        (s, y), (s_ref, y_ref) = run_both(backend_inputs, exclude_self=True)
        assert s.shape == (m, n) and y.shape == (m, n)
        np.testing.assert_array_equal(s, s_ref)
        np.testing.assert_array_equal(y, y_ref)
    a = tf.constant(inputs[0])
    c = tf.constant(inputs[2])
    with tf.GradientTape() as tape:
        tape.watch([a, c])
        s, _ = soft_label_similarity(a, inputs[1], c, *inputs[3:], exclude_self=True)
        loss = tf.reduce_sum(s)
    grad_a, grad_c = tape.gradient(loss, [a, c])
    assert grad_a.shape == (m, d) and grad_c.shape == (n, d)
    np.testing.assert_array_equal(grad_a, np.zeros((m, d)))


@requires_op
def test_equal_and_unequal_labels():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 4)).astype(np.float32)
    lam = rng.uniform(size=6).astype(np.float32)
    same = np.zeros(6, np.int32)
    _, y = soft_label_similarity(a, same, a, same, same, lam, exclude_self=True)
    expected = np.ones((6, 6))
    np.fill_diagonal(expected, NOT_A_PAIR)
    np.testing.assert_array_equal(y, expected)  # exactly 1 whatever lam is
    distinct = np.arange(6, dtype=np.int32)
    _, y = soft_label_similarity(a, distinct, a, distinct + 10, distinct + 20, lam)
    np.testing.assert_array_equal(y, np.zeros((6, 6)))


@requires_op
def test_exclude_self_with_more_candidates_than_anchors():
    inputs = random_inputs(3, 8, 2, seed=5)
    (_, y), (_, y_ref) = run_both(inputs, exclude_self=True)
    np.testing.assert_array_equal(np.diag(y.numpy()[:, :3]), [NOT_A_PAIR] * 3)
    np.testing.assert_array_equal(y, y_ref)


@requires_op
def test_gradient_numerically_float64():
    a, al, c, la, lb, lam = random_inputs(9, 13, 5, seed=11, dtype=np.float64)
    weights = np.random.default_rng(2).normal(size=(9, 13))

    def loss(anchors, candidates):
        s, y = soft_label_similarity(anchors, al, candidates, la, lb, lam, exclude_self=True)
        return tf.reduce_sum(weights * s * s + y)  # y carries no gradient

    theoretical, numerical = tf.test.compute_gradient(loss, [tf.constant(a), tf.constant(c)])
    for t, n in zip(theoretical, numerical):
        np.testing.assert_allclose(t, n, rtol=1e-6, atol=1e-6)


@requires_op
def test_gradient_matches_reference_and_same_tensor_twice():
    a, al, c, la, lb, lam = random_inputs(20, 20, 7, seed=4, dtype=np.float64)
    x = tf.constant(a)
    weights = np.random.default_rng(3).normal(size=(20, 20))
    grads = []
    for pure in (False, True):
        with tf.GradientTape() as tape:
            tape.watch(x)
            if pure:
                with ops.use_pure_tf():
                    s, _ = soft_label_similarity(x, al, x, al, al, np.ones(20), exclude_self=True)
            else:
                s, _ = soft_label_similarity(x, al, x, al, al, np.ones(20), exclude_self=True)
            loss = tf.reduce_sum(weights * s)
        grads.append(tape.gradient(loss, x))
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grads[0], (weights + weights.T) @ a, rtol=1e-10)


@requires_op
def test_graph_mode_and_int64_labels():
    inputs = random_inputs(12, 10, 3, seed=8, label_dtype=np.int64)

    @tf.function
    def run(a, c):
        with tf.GradientTape() as tape:
            tape.watch(c)
            s, y = soft_label_similarity(a, inputs[1], c, *inputs[3:])
            loss = tf.reduce_sum(s)
        return s, y, tape.gradient(loss, c)

    s, y, grad = run(tf.constant(inputs[0]), tf.constant(inputs[2]))
    graph = run.get_concrete_function(tf.constant(inputs[0]), tf.constant(inputs[2])).graph
    assert "SoftLabelSimilarity" in {op.type for op in graph.get_operations()}
    s_np, y_np = numpy_soft_label_similarity(*inputs, False)
    np.testing.assert_allclose(s, s_np, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y, y_np, atol=1e-6)
    np.testing.assert_allclose(grad, np.tile(inputs[0].sum(0), (10, 1)), rtol=1e-5)


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
def test_half_types_are_upcast(dtype):
    a, al, c, la, lb, lam = random_inputs(6, 7, 4, seed=9)
    s, y = soft_label_similarity(tf.cast(a, dtype), al, tf.cast(c, dtype), la, lb, lam)
    assert s.dtype == dtype and y.dtype == dtype
    s_np, y_np = numpy_soft_label_similarity(
        tf.cast(tf.cast(a, dtype), tf.float32).numpy(), al,
        tf.cast(tf.cast(c, dtype), tf.float32).numpy(), la, lb, lam, False)
    np.testing.assert_allclose(tf.cast(s, tf.float32), s_np, rtol=2e-2, atol=2e-2)
    np.testing.assert_allclose(tf.cast(y, tf.float32), y_np, atol=1e-2)


def test_use_pure_tf_switches_backend():
    with ops.use_pure_tf():
        assert ops.backend() == "pure_tf"

        @tf.function
        def run(a):
            return soft_label_similarity(a, [0, 1], a, [0, 1], [0, 1], [1.0, 1.0])

        graph = run.get_concrete_function(tf.ones([2, 3])).graph
        assert "SoftLabelSimilarity" not in {op.type for op in graph.get_operations()}
    assert ops.backend() == ("compiled" if COMPILED else "pure_tf")


@pytest.mark.parametrize("pure", [False, True])
def test_static_shape_errors_name_the_argument(pure):
    a = np.ones((4, 3), np.float32)
    c = np.ones((5, 3), np.float32)
    labels_n = np.zeros(5, np.int32)
    cases = [
        ((np.ones(3, np.float32), [0], c, labels_n, labels_n, np.ones(5)), "anchors must have rank 2"),
        ((a, np.zeros(4, np.int32), np.ones((5, 2), np.float32), labels_n, labels_n, np.ones(5)),
         "same embedding size D"),
        ((a, np.zeros(3, np.int32), c, labels_n, labels_n, np.ones(5)), "anchor_labels must have shape"),
        ((a, np.zeros(4, np.int32), c, labels_n[:4], labels_n, np.ones(5)),
         "candidate_labels_a must have shape"),
        ((a, np.zeros(4, np.int32), c, labels_n, labels_n, np.ones(6)), "lam must have shape"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            if pure:
                with ops.use_pure_tf():
                    soft_label_similarity(*args)
            else:
                soft_label_similarity(*args)


def test_dtype_errors():
    a = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match="anchor_labels must be an int32 or int64.*float32"):
        soft_label_similarity(a, np.zeros(2, np.float32), a, [0, 0], [0, 0], [1.0, 1.0])
    with pytest.raises(TypeError, match="candidates must have the dtype of anchors"):
        soft_label_similarity(a, [0, 0], a.astype(np.float64), [0, 0], [0, 0], [1.0, 1.0])
    with pytest.raises(TypeError, match="anchors must be a float tensor.*int32"):
        soft_label_similarity(np.ones((2, 3), np.int32), [0, 0], a, [0, 0], [0, 0], [1.0, 1.0])


@requires_op
def test_runtime_shape_errors_from_the_kernel():
    library = ops._loader._library
    a = tf.ones([4, 3])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"anchor_labels must have shape \(M,\) = \(4,\).*\[3\]"):
        library.soft_label_similarity(a, [0, 0, 0], a, [0] * 4, [0] * 4, tf.ones([4]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="same embedding size D"):
        library.soft_label_similarity(a, [0] * 4, tf.ones([4, 2]), [0] * 4, [0] * 4, tf.ones([4]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="lam must have shape"):
        library.soft_label_similarity(a, [0] * 4, a, [0] * 4, [0] * 4, tf.ones([5]))

    @tf.function(input_signature=[tf.TensorSpec([None, None]), tf.TensorSpec([None], tf.int32)])
    def unknown_shapes(x, labels):
        return soft_label_similarity(x, labels, x, labels, labels, tf.ones([4]))

    with pytest.raises(tf.errors.InvalidArgumentError, match="anchor_labels must have shape"):
        unknown_shapes(tf.ones([4, 3]), tf.zeros([2], tf.int32))


def test_library_info_reports_the_path():
    info = ops.library_info()
    assert info["path"].endswith("_soft_label_similarity_ops.so")
    if COMPILED:
        assert info["reason"] == "loaded"
        assert info["built_for"] == tf.__version__
        assert info["gemm_isa"] in ("avx512", "avx2", "generic")

"""The losses against the naive numpy oracle (tests/oracle.py).

Two parts:
1. The oracle itself against cases computed by hand on the unit circle
   (angles, chord lengths 2 sin(theta / 2), mixes by trigonometry), so the
   oracle is trusted on its own before it judges the library.
2. The library (float64) against the oracle: values, and gradients
   (tf.GradientTape vs. central finite differences of the oracle), for every
   loss, clean and with Metrix (each strategy, both scorings, fixed lam), on
   batches of singletons, pairs, class-balanced batches and random labels.
"""

import contextlib
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

import oracle
from oracle import MixSpec

ALPHA, BETA, BASE = 17.97, 75.66, 0.77


def _circle(angles_deg, radii=None):
    """2-D points at the given angles, with non-unit radii."""
    radii = radii if radii is not None else [1.5] * len(angles_deg)
    return np.array([
        [r * math.cos(math.radians(t)), r * math.sin(math.radians(t))]
        for t, r in zip(angles_deg, radii)
    ])


def _chord(delta_deg):
    return 2.0 * math.sin(math.radians(abs(delta_deg)) / 2.0)


def _mix_angle(theta_1, theta_2, lam):
    """Angle of normalise(lam u(theta_1) + (1 - lam) u(theta_2))."""
    delta = math.radians(theta_2 - theta_1)
    return theta_1 + math.degrees(math.atan2(
        (1.0 - lam) * math.sin(delta), lam + (1.0 - lam) * math.cos(delta)))


# ------------------------------------------------- 1. oracle self-checks


class TestOracleByHand:

    def test_contrastive_three_points(self):
        # angles 0, 20, 90; labels 0, 1, 0. Positive pair (0, 2): chord of
        # 90 degrees, twice. Negatives: (0, 1) at 20 degrees is inside the
        # margin (0.5 - 2 sin 10), (1, 2) at 70 degrees is not (zero, not
        # counted).
        x = _circle([0, 20, 90], radii=[2.0, 0.5, 3.0])
        expected = math.sqrt(2.0) + (0.5 - _chord(20))
        assert oracle.contrastive_clean([0, 1, 0], x) == pytest.approx(
            expected, rel=1e-12)

    def test_contrastive_margins(self):
        # pos_margin 1.5 zeroes the 90-degree positive (chord 1.414); the
        # negative margin 1.2 now also catches the 70-degree pair.
        x = _circle([0, 20, 90])
        expected = 0.0 + ((1.2 - _chord(20)) + (1.2 - _chord(70))) / 2
        got = oracle.contrastive_clean([0, 1, 0], x, pos_margin=1.5,
                                       neg_margin=1.2)
        assert got == pytest.approx(expected, rel=1e-12)

    def test_multi_similarity_four_points(self):
        # labels 0, 0, 1, 1 at angles 0, 60, 20, 180. For anchors 0 and 1 the
        # far negative (point 3) is mined away: s + eps <= min positive.
        x = _circle([0, 60, 20, 180], radii=[1.0, 2.0, 0.7, 1.3])
        c = lambda t: math.cos(math.radians(t))
        pos = lambda s: math.log1p(math.exp(-ALPHA * (s - BASE))) / ALPHA
        neg = lambda *ss: math.log1p(
            sum(math.exp(BETA * (s - BASE)) for s in ss)) / BETA
        l0 = pos(c(60)) + neg(c(20))
        l1 = pos(c(60)) + neg(c(40))
        l2 = pos(c(160)) + neg(c(20), c(40))
        l3 = pos(c(160)) + neg(c(180), c(120))
        got = oracle.multi_similarity_clean([0, 0, 1, 1], x)
        assert got == pytest.approx((l0 + l1 + l2 + l3) / 4, rel=1e-12)
        kept_pos, kept_neg = oracle.multi_similarity_miner([0, 0, 1, 1], x)
        assert kept_pos == {(0, 1), (1, 0), (2, 3), (3, 2)}
        assert kept_neg == {(0, 2), (1, 2), (2, 0), (2, 1), (3, 0), (3, 1)}

    def test_multi_similarity_miner_drops_everything(self):
        # The positive pair is far closer than any negative: nothing is hard,
        # and the anchor without a positive keeps no negative.
        x = _circle([0, 10, 120])
        assert oracle.multi_similarity_clean([0, 0, 1], x) == 0.0

    def test_multi_similarity_no_positive_or_no_negative(self):
        x = _circle([0, 10, 20])
        assert oracle.multi_similarity_clean([0, 1, 2], x) == 0.0
        assert oracle.multi_similarity_clean([4, 4, 4], x) == 0.0

    def test_proxy_anchor_absent_class(self):
        # Proxies at 0, 90, 45 degrees (C = 3), samples at 10 (class 0) and
        # 80 (class 1); class 2 is absent: no positive part, and both samples
        # are its negatives at 35 degrees.
        x = _circle([10, 80], radii=[3.0, 0.4])
        q = _circle([0, 90, 45], radii=[0.2, 5.0, 1.0])
        a, m = 32.0, 0.1
        c = lambda t: math.cos(math.radians(t))
        pos = math.log1p(math.exp(-a * (c(10) - m)))
        neg_01 = math.log1p(math.exp(a * (c(80) + m)))
        neg_2 = math.log1p(2 * math.exp(a * (c(35) + m)))
        expected = (pos + pos) / 2 + (neg_01 + neg_01 + neg_2) / 3
        got = oracle.proxy_anchor_clean([0, 1], x, q)
        assert got == pytest.approx(expected, rel=1e-12)

    def test_mix_sources_and_entries(self):
        labels = [0, 0, 1]
        assert oracle.mix_sources(labels, "positive_negative") == [(0, 2),
                                                                     (1, 2)]
        assert oracle.mix_sources(labels, "anchor_negative") == [(2, 0),
                                                                   (2, 1)]
        lam = 0.7
        per_anchor = oracle.scored_entries(labels, "positive_negative",
                                           "per_anchor", lam)
        assert per_anchor == [(1, (0, 2), lam), (0, (1, 2), lam)]
        all_pairs = oracle.scored_entries(labels, "anchor_negative",
                                          "all_pairs", lam)
        # mix(2, n) seen from class-0 anchors carries its second label.
        assert [(a, src, round(y, 12)) for a, src, y in all_pairs] == [
            (0, (2, 0), 0.3), (1, (2, 0), 0.3), (2, (2, 0), 0.7),
            (0, (2, 1), 0.3), (1, (2, 1), 0.3), (2, (2, 1), 0.7)]
        # Every anchor has a positive: anchor-negative has nothing to mix.
        assert oracle.mix_sources([0, 0, 1, 1], "anchor_negative") == []
        assert oracle.mix_sources([0, 1, 2], "positive_negative") == []

    def test_mixed_contrastive_per_anchor_by_hand(self):
        # labels 0, 0, 1 at 0, 30, 100 degrees, lam 0.7: the two
        # positive-negative mixes and the anchor each one counts for.
        lam, w = 0.7, 0.4
        x = _circle([0, 30, 100], radii=[1.0, 2.5, 0.6])
        d_1 = _chord(30 - _mix_angle(0, 100, lam))    # anchor 1, mix(0, 2)
        d_0 = _chord(0 - _mix_angle(30, 100, lam))    # anchor 0, mix(1, 2)
        mixed_pos = lam * (d_1 + d_0) / 2
        neg = [(1 - lam) * max(0.5 - d, 0.0) for d in (d_0, d_1)]
        mixed_neg = oracle.average_non_zero(neg)
        assert mixed_neg > 0.0  # the case exercises the negative term
        clean = _chord(30)  # only the positive pair scores
        expected = clean + w * (mixed_pos + mixed_neg)
        got = oracle.contrastive(
            [0, 0, 1], x, mix=MixSpec("positive_negative", "per_anchor", lam, w))
        assert got == pytest.approx(expected, rel=1e-12)

    def test_mixed_multi_similarity_all_pairs_by_hand(self):
        # anchor-negative on labels 0, 0, 1 (only point 2 lacks a positive),
        # scored against all three anchors: y = 1 - lam for class-0 anchors.
        lam, w = 0.7, 0.5
        angles = [0, 30, 100]
        x = _circle(angles)
        mixes = [_mix_angle(100, 0, lam), _mix_angle(100, 30, lam)]
        c = lambda t: math.cos(math.radians(t))
        total = 0.0
        for a, y in ((0, 1 - lam), (1, 1 - lam), (2, lam)):
            ss = [c(angles[a] - m) for m in mixes]
            total += math.log1p(sum(
                y * math.exp(-ALPHA * (s - BASE)) for s in ss)) / ALPHA
            total += math.log1p(sum(
                (1 - y) * math.exp(BETA * (s - BASE)) for s in ss)) / BETA
        expected = oracle.multi_similarity_clean([0, 0, 1], x) + w * total / 3
        got = oracle.multi_similarity(
            [0, 0, 1], x, mix=MixSpec("anchor_negative", "all_pairs", lam, w))
        assert got == pytest.approx(expected, rel=1e-12)

    def test_mixed_proxy_anchor_by_hand(self):
        # labels 0, 1 (two singletons), C = 3: anchor-negative mixes
        # mix(0, 1) and mix(1, 0). Per-anchor: each counts for the proxy of
        # its first label with y = lam. All-pairs: for every proxy.
        lam, w, a, m = 0.7, 0.3, 32.0, 0.1
        angles, q_angles = [10, 80], [0, 90, 45]
        x = _circle(angles, radii=[3.0, 0.4])
        q = _circle(q_angles, radii=[0.2, 5.0, 1.0])
        mixes = {(0, 1): _mix_angle(10, 80, lam),
                 (1, 0): _mix_angle(80, 10, lam)}
        c = lambda t: math.cos(math.radians(t))
        labels = [0, 1]
        clean = oracle.proxy_anchor_clean(labels, x, q)

        # per_anchor: proxy 0 sees mix(0, 1), proxy 1 sees mix(1, 0).
        pos = [math.log1p(lam * math.exp(-a * (c(q_angles[k] - mixes[src]) - m)))
               for k, src in ((0, (0, 1)), (1, (1, 0)))]
        neg = [math.log1p((1 - lam) * math.exp(a * (c(q_angles[k] - mixes[src]) + m)))
               for k, src in ((0, (0, 1)), (1, (1, 0)))]
        expected = clean + w * (sum(pos) / 2 + sum(neg) / 3)
        got = oracle.proxy_anchor(
            labels, x, q, mix=MixSpec("anchor_negative", "per_anchor", lam, w))
        assert got == pytest.approx(expected, rel=1e-12)

        # all_pairs: proxy 2 has y = 0 for both mixes: negatives only.
        pos_part, neg_part = 0.0, 0.0
        for k in range(3):
            ys = {src: lam * (labels[src[0]] == k) + (1 - lam) * (labels[src[1]] == k)
                  for src in mixes}
            ss = {src: c(q_angles[k] - mixes[src]) for src in mixes}
            if any(y > 0 for y in ys.values()):
                pos_part += math.log1p(sum(
                    ys[s] * math.exp(-a * (ss[s] - m)) for s in mixes))
            neg_part += math.log1p(sum(
                (1 - ys[s]) * math.exp(a * (ss[s] + m)) for s in mixes))
        expected = clean + w * (pos_part / 2 + neg_part / 3)
        got = oracle.proxy_anchor(
            labels, x, q, mix=MixSpec("anchor_negative", "all_pairs", lam, w))
        assert got == pytest.approx(expected, rel=1e-12)

    def test_numerical_gradient_of_a_known_function(self):
        x = np.array([[0.3, -1.2], [2.0, 0.5]])
        grad = oracle.numerical_gradient(lambda z: float(np.sum(z ** 3)), x)
        np.testing.assert_allclose(grad, 3 * x ** 2, rtol=1e-8)

    def test_clustered_embeddings_exercise_every_term(self):
        # The test batches below must not be trivial: some negatives inside
        # the contrastive margin, and the MS miner dropping some pairs.
        for labels in BATCHES.values():
            x = oracle.clustered_embeddings(labels)
            norms = np.linalg.norm(x, axis=1)
            assert norms.min() < 0.9 * norms.max()
            unit = oracle.normalize(x)
            lab = np.asarray(labels)
            neg = lab[:, None] != lab[None, :]
            d = np.sqrt(np.maximum(2 - 2 * unit @ unit.T, 0))
            assert 0 < np.sum(d[neg] < 0.5) < np.sum(neg)
        kept_pos, kept_neg = oracle.multi_similarity_miner(
            BATCHES["random"], oracle.clustered_embeddings(BATCHES["random"]))
        lab = np.asarray(BATCHES["random"])
        assert len(kept_pos) < np.sum(lab[:, None] == lab[None, :]) - len(lab)
        assert len(kept_neg) < np.sum(lab[:, None] != lab[None, :])


# ----------------------------------------- 2. the library against the oracle

BATCHES = {
    "singletons": [0, 1, 2, 3, 4, 5],
    "pairs": [0, 0, 1, 1, 2, 2, 3, 3],
    "balanced": [0, 0, 0, 1, 1, 1, 2, 2, 2],
    "random": [2, 0, 3, 0, 1, 2, 0, 3, 3],  # class 1 is a singleton
}

MIXES = {
    "clean": None,
    "pn_per_anchor": MixSpec("positive_negative", "per_anchor", 0.3, 0.4),
    "pn_all_pairs": MixSpec("positive_negative", "all_pairs", 0.3, 0.4),
    "an_per_anchor": MixSpec("anchor_negative", "per_anchor", 0.3, 0.4),
    "an_all_pairs": MixSpec("anchor_negative", "all_pairs", 0.3, 0.4),
    "both_per_anchor": MixSpec(
        "both", "per_anchor", 0.65,
        {"positive_negative": 0.4, "anchor_negative": 0.3}),
    "both_all_pairs": MixSpec(
        "both", "all_pairs", 0.65,
        {"positive_negative": 0.5, "anchor_negative": 0.2}),
    # Majority labels: y of the larger source (lam 0.7 -> the first's, 0.3
    # -> the second's); the mixes themselves stay lam-weighted.
    "pn_per_anchor_majority": MixSpec("positive_negative", "per_anchor", 0.7, 0.4, "majority"),
    "both_all_pairs_majority": MixSpec("both", "all_pairs", 0.3, 0.4, "majority"),
}

LOSSES = ("contrastive", "multi_similarity", "proxy_anchor")


def _tf():
    import tensorflow as tf
    return tf


def make_metrix(mix):
    """The library's Metrix for an oracle MixSpec (None stays None)."""
    if mix is None:
        return None
    import metrix_tf
    return metrix_tf.Metrix(level="embedding", weight=mix.weight,
                            strategy=mix.strategy, scoring=mix.scoring,
                            lam=mix.lam, mixed_labels=mix.labels)


def num_classes_for(labels):
    # Two absent classes: the proxy-anchor negative part runs over all C.
    return max(labels) + 3


def make_proxies(labels, dim=4, seed=1):
    rng = np.random.default_rng(seed)
    return np.ones(dim) + rng.normal(size=(num_classes_for(labels), dim))


def library_loss(name, labels, x, proxies, mix):
    """The library function on tensors; returns a scalar tensor."""
    from metrix_tf import losses
    metrix = make_metrix(mix)
    if name == "contrastive":
        return losses.contrastive(labels, x, metrix=metrix)
    if name == "multi_similarity":
        return losses.multi_similarity(labels, x, metrix=metrix)
    return losses.proxy_anchor(labels, x, proxies, metrix=metrix)


def oracle_loss(name, labels, x, proxies, mix, miner_embeddings=None):
    if name == "contrastive":
        return oracle.contrastive(labels, x, mix=mix)
    if name == "multi_similarity":
        return oracle.multi_similarity(labels, x, mix=mix,
                                       miner_embeddings=miner_embeddings)
    return oracle.proxy_anchor(labels, x, proxies, mix=mix)


CASES = [(loss, batch, mix) for loss in LOSSES for batch in BATCHES
         for mix in MIXES]


@pytest.mark.parametrize("loss,batch,mix", CASES)
def test_value_matches_oracle(loss, batch, mix):
    tf = _tf()
    labels = BATCHES[batch]
    x = oracle.clustered_embeddings(labels)
    q = make_proxies(labels)
    expected = oracle_loss(loss, labels, x, q, MIXES[mix])
    got = library_loss(loss, tf.constant(labels, tf.int32),
                       tf.constant(x, tf.float64), tf.constant(q, tf.float64),
                       MIXES[mix])
    assert got.shape == ()
    np.testing.assert_allclose(float(got), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("loss,batch,mix", CASES)
def test_gradient_matches_oracle(loss, batch, mix):
    tf = _tf()
    labels = BATCHES[batch]
    x0 = oracle.clustered_embeddings(labels)
    q0 = make_proxies(labels)
    spec = MIXES[mix]
    x = tf.constant(x0, tf.float64)
    q = tf.constant(q0, tf.float64)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, q])
        value = library_loss(loss, tf.constant(labels, tf.int32), x, q, spec)
    grad_x = tape.gradient(value, x)
    expected_x = oracle.numerical_gradient(
        lambda z: oracle_loss(loss, labels, z, q0, spec, miner_embeddings=x0),
        x0)
    scale = max(1.0, float(np.abs(expected_x).max()))
    np.testing.assert_allclose(grad_x.numpy(), expected_x, rtol=1e-5,
                               atol=1e-6 * scale)
    if loss == "proxy_anchor":
        grad_q = tape.gradient(value, q)
        expected_q = oracle.numerical_gradient(
            lambda z: oracle.proxy_anchor(labels, x0, z, mix=spec), q0)
        scale = max(1.0, float(np.abs(expected_q).max()))
        np.testing.assert_allclose(grad_q.numpy(), expected_q, rtol=1e-5,
                                   atol=1e-6 * scale)


def _reference_mixed_contrastive(labels, x, lam, w):
    """METRIX.md section 4 "Mixed contrastive", written as its own loop.

    clean + w (avg-non-zero(lam d) + avg-non-zero((1 - lam) [0.5 - d]+)) over
    the (a, p, n) triples, every positive p of a used (not only the first).
    """
    unit = oracle.normalize(x)
    pos, neg = [], []
    b = len(labels)
    for a in range(b):
        for p in range(b):
            if p == a or labels[p] != labels[a]:
                continue
            for n in range(b):
                if labels[n] == labels[a]:
                    continue
                v = lam * unit[p] + (1 - lam) * unit[n]
                v = v / np.linalg.norm(v)
                d = math.sqrt(max(2 - 2 * float(unit[a] @ v), 0.0))
                pos.append(lam * d)
                neg.append((1 - lam) * max(0.5 - d, 0.0))
    return oracle.contrastive_clean(labels, x) + w * (
        oracle.average_non_zero(pos) + oracle.average_non_zero(neg))


@pytest.mark.parametrize("batch", ["pairs", "balanced", "random"])
def test_contrastive_positive_negative_per_anchor_is_reference(batch):
    tf = _tf()
    from metrix_tf import losses
    labels = BATCHES[batch]
    x = oracle.clustered_embeddings(labels, seed=3)
    lam, w = 0.35, 0.4
    expected = _reference_mixed_contrastive(labels, x, lam, w)
    spec = MixSpec("positive_negative", "per_anchor", lam, w)
    assert oracle.contrastive(labels, x, mix=spec) == pytest.approx(
        expected, rel=1e-12)
    got = losses.contrastive(tf.constant(labels), tf.constant(x),
                             metrix=make_metrix(spec))
    np.testing.assert_allclose(float(got), expected, rtol=1e-9)


@pytest.mark.parametrize("loss", LOSSES)
def test_non_default_hyper_parameters(loss):
    tf = _tf()
    from metrix_tf import losses
    labels = BATCHES["random"]
    x = oracle.clustered_embeddings(labels, seed=5)
    q = make_proxies(labels, seed=6)
    spec = MixSpec("both", "all_pairs", 0.8, 0.25)
    metrix = make_metrix(spec)
    lab, xt, qt = tf.constant(labels), tf.constant(x), tf.constant(q)
    if loss == "contrastive":
        got = losses.contrastive(lab, xt, pos_margin=0.1, neg_margin=0.7,
                                 metrix=metrix)
        expected = oracle.contrastive(labels, x, 0.1, 0.7, mix=spec)
    elif loss == "multi_similarity":
        got = losses.multi_similarity(lab, xt, alpha=2.0, beta=40.0, base=0.5,
                                      epsilon=0.1, metrix=metrix)
        expected = oracle.multi_similarity(labels, x, 2.0, 40.0, 0.5, 0.1,
                                           mix=spec)
    else:
        got = losses.proxy_anchor(lab, xt, qt, margin=0.3, alpha=8.0,
                                  metrix=metrix)
        expected = oracle.proxy_anchor(labels, x, q, 0.3, 8.0, mix=spec)
    np.testing.assert_allclose(float(got), expected, rtol=1e-9)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("batch", ["pairs", "random"])
def test_loss_class_matches_oracle_in_float32(loss, batch):
    tf = _tf()
    from metrix_tf import losses
    labels = BATCHES[batch]
    x = oracle.clustered_embeddings(labels, seed=7)
    spec = MIXES["both_all_pairs"]
    metrix = make_metrix(spec)
    if loss == "contrastive":
        obj = losses.ContrastiveLoss(metrix=metrix)
        expected = oracle.contrastive(labels, x, mix=spec)
    elif loss == "multi_similarity":
        obj = losses.MultiSimilarityLoss(metrix=metrix)
        expected = oracle.multi_similarity(labels, x, mix=spec)
    else:
        obj = losses.ProxyAnchorLoss(num_classes_for(labels), x.shape[1],
                                     metrix=metrix)
        q = np.asarray(obj.proxies.numpy(), dtype=np.float64)
        assert q.shape == (num_classes_for(labels), x.shape[1])
        expected = oracle.proxy_anchor(labels, x, q, mix=spec)
    got = obj(tf.constant(labels, tf.float32), tf.constant(x, tf.float32))
    np.testing.assert_allclose(float(got), expected, rtol=2e-4, atol=1e-5)


def test_random_strategy_is_one_of_the_two():
    tf = _tf()
    import metrix_tf
    from metrix_tf import losses
    labels = BATCHES["random"]  # both strategies find mixes here
    x = oracle.clustered_embeddings(labels)
    options = [oracle.contrastive(labels, x, mix=MixSpec(s, "per_anchor", 0.3))
               for s in oracle.STRATEGIES]
    assert abs(options[0] - options[1]) > 1e-3
    metrix = metrix_tf.Metrix(strategy="random", lam=0.3, weight=0.4)
    seen = set()
    for _ in range(20):
        value = float(losses.contrastive(tf.constant(labels), tf.constant(x),
                                         metrix=metrix))
        matches = [k for k, o in enumerate(options)
                   if abs(value - o) <= 1e-9 * max(1.0, abs(o))]
        assert matches, (value, options)
        seen.update(matches)
    assert seen == {0, 1}


def test_lam_none_draws_from_beta():
    tf = _tf()
    import metrix_tf
    from metrix_tf import losses
    labels = BATCHES["balanced"]
    x = oracle.clustered_embeddings(labels)
    # Beta(a, a) with a huge concentrates at 1/2 (sd ~ 5e-4).
    metrix = metrix_tf.Metrix(alpha=1e6, lam=None, strategy="positive_negative",
                              scoring="all_pairs", weight=1.0)
    expected = oracle.multi_similarity(
        labels, x, mix=MixSpec("positive_negative", "all_pairs", 0.5, 1.0))
    got = losses.multi_similarity(tf.constant(labels), tf.constant(x),
                                  metrix=metrix)
    np.testing.assert_allclose(float(got), expected, rtol=1e-2)
    # With the default alpha a fresh lam is drawn per call.
    metrix = metrix_tf.Metrix(lam=None, strategy="positive_negative",
                              weight=1.0)
    values = {float(losses.multi_similarity(tf.constant(labels),
                                            tf.constant(x), metrix=metrix))
              for _ in range(4)}
    assert len(values) > 1
    assert all(np.isfinite(v) for v in values)


def _miner_tie_batch():
    # a = (1, 0) and p = (0, 1) of class 0, n = (-1, 0) of class 1, all
    # similarities exact in floating point. With epsilon = 1, anchor a has
    # s(a, p) - eps = -1 == max_neg and s(a, n) + eps = 0 == min_pos: strict
    # inequalities keep neither. Anchor p keeps both (0 - 1 < 0, 0 + 1 > 0).
    return [0, 0, 1], np.array([[2.0, 0.0], [0.0, 0.5], [-4.0, 0.0]])


def test_oracle_miner_ties_are_strict():
    labels, x = _miner_tie_batch()
    kept_pos, kept_neg = oracle.multi_similarity_miner(labels, x, epsilon=1.0)
    assert kept_pos == {(1, 0)}
    assert kept_neg == {(1, 2)}
    l1 = (math.log1p(math.exp(ALPHA * BASE)) / ALPHA
          + math.log1p(math.exp(-BETA * BASE)) / BETA)
    assert oracle.multi_similarity_clean(labels, x, epsilon=1.0) == (
        pytest.approx(l1 / 3, rel=1e-12))


def test_multi_similarity_miner_ties_are_strict():
    tf = _tf()
    from metrix_tf import losses
    labels, x = _miner_tie_batch()
    expected = oracle.multi_similarity_clean(labels, x, epsilon=1.0)
    got = losses.multi_similarity(tf.constant(labels), tf.constant(x),
                                  epsilon=1.0)
    np.testing.assert_allclose(float(got), expected, rtol=1e-9)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("lam", [0.0, 1.0])
@pytest.mark.parametrize("scoring", ["per_anchor", "all_pairs"])
def test_lam_at_its_bounds(loss, lam, scoring):
    # lam = 0 or 1: soft labels are 0 or 1 again, and a mix is one of its
    # sources; the mixed part must still follow the generic form.
    tf = _tf()
    labels = BATCHES["random"]
    x = oracle.clustered_embeddings(labels, seed=11)
    q = make_proxies(labels, seed=12)
    spec = MixSpec("both", scoring, lam, 0.5)
    if loss == "contrastive":
        # A mix equal to its anchor has d = 0 or 1e-8 depending on rounding,
        # which average-non-zero would count or not: pos_margin > 0 zeroes
        # those entries in both computations.
        from metrix_tf import losses
        expected = oracle.contrastive(labels, x, pos_margin=0.05, mix=spec)
        got = losses.contrastive(tf.constant(labels), tf.constant(x),
                                 pos_margin=0.05, metrix=make_metrix(spec))
    else:
        expected = oracle_loss(loss, labels, x, q, spec)
        got = library_loss(loss, tf.constant(labels), tf.constant(x),
                           tf.constant(q), spec)
    np.testing.assert_allclose(float(got), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("pure_tf", [False, True])
def test_contrastive_duplicated_rows_have_distance_exactly_zero(dtype, fused, pure_tf):
    # A batch holding each image twice: the coincident positives are at
    # distance 0 and add nothing to "average non-zero" (the reference's
    # value); float32 similarity rounding must not turn them into ~3e-4.
    tf = _tf()
    import metrix_tf
    from metrix_tf import losses
    if (fused or not pure_tf) and metrix_tf.ops.backend() != "compiled":
        pytest.skip("the compiled op is not loaded")
    rows = [0, 0, 1, 1, 2, 2, 3, 3]
    labels = [0, 0, 1, 1, 2, 2, 0, 0]  # rows 0, 1, 6, 7: two distinct points
    x = oracle.clustered_embeddings([0, 1, 2, 0], dim=16, seed=9)[rows]
    expected = oracle.contrastive(labels, x)
    # 8 of the 12 positive pairs are coincident: counting them (at d ~ 3e-4)
    # would divide the positive part by 12 instead of 4.
    assert oracle.contrastive_clean(labels, x) > 0.1
    context = metrix_tf.ops.use_pure_tf() if pure_tf else contextlib.nullcontext()
    with context:
        got = losses.contrastive(tf.constant(labels), tf.constant(x, dtype), fused=fused)
    np.testing.assert_allclose(float(got), expected, rtol=1e-5 if dtype == "float32" else 1e-12)


@pytest.mark.parametrize("loss", LOSSES)
def test_majority_labels_change_the_mixed_term_only(loss):
    """Majority labels give another loss than soft ones at lam = 0.7 (so the
    option is live), the same at lam = 1 (labels already hard), and the
    clean part is untouched (weight 0)."""
    tf = _tf()
    labels = BATCHES["balanced"]
    x = oracle.clustered_embeddings(labels)
    q = make_proxies(labels)

    def value(lam, mixed_labels, weight=0.4):
        spec = MixSpec("positive_negative", "all_pairs", lam, weight, mixed_labels)
        return float(library_loss(loss, tf.constant(labels, tf.int32),
                                  tf.constant(x, tf.float64), tf.constant(q, tf.float64), spec))

    assert abs(value(0.7, "majority") - value(0.7, "soft")) > 1e-6
    np.testing.assert_allclose(value(1.0, "majority"), value(1.0, "soft"), rtol=1e-12)
    np.testing.assert_allclose(value(0.7, "majority", 0.0), value(0.7, "soft", 0.0), rtol=1e-12)

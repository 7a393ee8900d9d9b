"""Metrix configuration and the embedding-level pair selection."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

import metrix_tf
from metrix_tf.mixing import mixed_batch as mb
from metrix_tf.mixing.pair_selection import select_mix_pairs


def naive_pairs(labels, positive_negative=True, anchor_negative=True):
    """Mix sets and per-anchor entries by plain loops (METRIX.md section 3)."""
    b = len(labels)
    has_pos = [any(labels[j] == labels[i] for j in range(b) if j != i) for i in range(b)]
    mixes, entries = [], []
    if positive_negative:
        for p, n in itertools.product(range(b), range(b)):
            if has_pos[p] and labels[n] != labels[p]:
                for a in range(b):
                    if a != p and labels[a] == labels[p]:
                        entries.append((a, ("pn", p, n)))
                mixes.append(("pn", p, n))
    if anchor_negative:
        for a, n in itertools.product(range(b), range(b)):
            if not has_pos[a] and labels[n] != labels[a]:
                mixes.append(("an", a, n))
                entries.append((a, ("an", a, n)))
    return mixes, entries


@pytest.mark.parametrize(
    "labels",
    [
        [0, 1, 2, 3],  # singletons only
        [0, 0, 1, 1, 2, 2],  # pairs
        [0, 0, 0, 1, 1, 1, 2, 2, 2],  # balanced
        [3, 1, 3, 0, 2, 2, 2, 5],  # mixed
        [4, 4, 4],  # one class
        [7],  # one example
    ],
)
@pytest.mark.parametrize("pn,an", [(True, True), (True, False), (False, True)])
def test_select_mix_pairs_matches_loops(labels, pn, an):
    pairs = select_mix_pairs(tf.constant(labels), pn, an)
    names = ["pn", "an"]
    got_mixes = [
        (names[s], a, b)
        for s, a, b in zip(
            pairs.strategy.numpy(), pairs.source_a.numpy(), pairs.source_b.numpy()
        )
    ]
    got_entries = [
        (a, got_mixes[v]) for a, v in zip(pairs.entry_anchor.numpy(), pairs.entry_mix.numpy())
    ]
    want_mixes, want_entries = naive_pairs(labels, pn, an)
    assert sorted(got_mixes) == sorted(want_mixes)
    assert len(set(got_mixes)) == len(got_mixes)
    assert sorted(got_entries) == sorted(want_entries)


def test_select_mix_pairs_in_tf_function_with_unknown_batch():
    fn = tf.function(
        lambda y: select_mix_pairs(y).source_a,
        input_signature=[tf.TensorSpec([None], tf.int32)],
    )
    assert fn(tf.constant([0, 0, 1])).shape == (4,)  # (p, n): 0-2, 1-2; (a, n): 2-0, 2-1


def test_mix_embeddings_is_normalised_mix_with_fixed_lambda():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 3))
    labels = np.array([0, 0, 1, 2, 2])
    metrix = metrix_tf.Metrix(strategy="both", lam=0.3)
    batch = mb.mix_embeddings(tf.constant(labels), tf.constant(x), metrix)
    e = x / np.linalg.norm(x, axis=1, keepdims=True)
    pairs = select_mix_pairs(tf.constant(labels))
    want = 0.3 * e[pairs.source_a.numpy()] + 0.7 * e[pairs.source_b.numpy()]
    np.testing.assert_allclose(batch.mixed_embeddings.numpy(), want, atol=1e-12)
    np.testing.assert_array_equal(batch.labels_a.numpy(), labels[pairs.source_a.numpy()])
    np.testing.assert_array_equal(batch.labels_b.numpy(), labels[pairs.source_b.numpy()])
    np.testing.assert_allclose(batch.lam.numpy(), 0.3)


def test_sampled_lambda_follows_beta_and_random_strategy_flips():
    metrix = metrix_tf.Metrix(alpha=2.0, seed=3)
    lams = np.array([float(metrix.sample_lambda()) for _ in range(400)])
    assert ((lams > 0) & (lams < 1)).all()
    # Beta(2, 2): mean 1/2, variance 1/20.
    assert abs(lams.mean() - 0.5) < 0.05
    assert abs(lams.var() - 0.05) < 0.015
    coins = [bool(metrix.active_strategies()[0]) for _ in range(200)]
    assert 60 < sum(coins) < 140
    assert all(
        bool(a) != bool(b) for a, b in (metrix.active_strategies() for _ in range(20))
    )


def test_metrix_config_round_trip():
    metrix = metrix_tf.Metrix(
        level="feature",
        alpha=1.5,
        weight={"positive_negative": 0.4, "anchor_negative": 0.3},
        strategy="both",
        scoring="all_pairs",
        lam=0.25,
        seed=7,
        mixed_labels="majority",
    )
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metrix))
    assert again == metrix
    assert metrix_tf.Metrix.from_config(metrix.get_config()) == metrix
    assert again.weight_for("anchor_negative") == 0.3
    assert again.mixed_labels == "majority"
    assert metrix != metrix_tf.Metrix.from_config({**metrix.get_config(), "mixed_labels": "soft"})


def test_label_lambda():
    lam = keras.ops.convert_to_tensor([0.0, 0.3, 0.5, 0.7, 1.0], dtype="float64")
    soft = metrix_tf.Metrix(mixed_labels="soft").label_lambda(lam)
    majority = metrix_tf.Metrix(mixed_labels="majority").label_lambda(lam)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(soft), [0.0, 0.3, 0.5, 0.7, 1.0])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(majority), [0.0, 0.0, 1.0, 1.0, 1.0])


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"level": "pixel"}, "level='pixel'"),
        ({"strategy": "hardest"}, "strategy='hardest'"),
        ({"scoring": "pairs"}, "scoring='pairs'"),
        ({"alpha": 0.0}, "alpha=0.0"),
        ({"alpha": -1}, "alpha=-1"),
        ({"weight": -0.1}, "weight=-0.1"),
        ({"weight": {"positive_negative": -1}}, "weight['positive_negative']=-1"),
        ({"weight": {"bogus": 1.0}}, "bogus"),
        ({"weight": {"anchor_negative": 0.3}}, "exactly the keys"),
        ({"lam": 1.5}, "lam=1.5"),
        ({"lam": -0.1}, "lam=-0.1"),
        ({"lam": float("nan")}, "lam=nan"),
        ({"seed": 1.5}, "seed=1.5"),
        ({"mixed_labels": "hard"}, "mixed_labels='hard'"),
    ],
)
def test_metrix_rejects_bad_arguments(kwargs, needle):
    with pytest.raises(ValueError) as info:
        metrix_tf.Metrix(**kwargs)
    assert needle in str(info.value)

"""`Metrix`: the configuration of mixup for deep metric learning."""

import numbers

import keras

from metrix_tf.ops.cross_replica import same_on_every_replica

LEVELS = ("input", "feature", "embedding")
STRATEGIES = ("positive_negative", "anchor_negative", "random", "both")
SCORINGS = ("per_anchor", "all_pairs")
MIXED_LABELS = ("soft", "majority")
# The two pair-selection strategies that produce mixes; "random" and "both"
# choose among them. Every mix carries the id of the one that made it.
MIX_STRATEGIES = ("positive_negative", "anchor_negative")


def strategy_id(name):
    """The int id a mix carries for one of `MIX_STRATEGIES`."""
    if name not in MIX_STRATEGIES:
        raise ValueError(
            f"A mix is made by one of {MIX_STRATEGIES}. Received: {name!r}"
        )
    return MIX_STRATEGIES.index(name)


def check_metrix(metrix):
    """A `Metrix`, or None; a serialised config dict is rebuilt."""
    if isinstance(metrix, dict):
        if "config" in metrix:
            metrix = keras.saving.deserialize_keras_object(metrix)
        else:
            metrix = Metrix.from_config(metrix)
    if metrix is not None and not isinstance(metrix, Metrix):
        raise TypeError(
            "Argument `metrix` must be a `metrix_tf.Metrix` or None. "
            f"Received: metrix={metrix!r}"
        )
    return metrix


def _check_weight(name, value):
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not value >= 0
    ):
        raise ValueError(
            f"Argument `{name}` must be a number >= 0. Received: {name}={value!r}"
        )
    return float(value)


@keras.saving.register_keras_serializable(package="metrix_tf")
class Metrix:
    """Mixup for deep metric learning (Venkataramanan et al., ICLR 2022).

    A `Metrix` object says how examples are mixed and how the mixes are
    scored; the losses (and, for the input and feature levels, the mixing
    layers) take it as their `metrix` argument. Each training step draws one
    mixing factor `lam ~ Beta(alpha, alpha)` (or uses the fixed `lam`),
    builds mixes `lam * u + (1 - lam) * v` of pairs of examples, gives each
    mix the soft label `y = lam [class(u) == class(anchor)]
    + (1 - lam) [class(v) == class(anchor)]` relative to an anchor, and adds
    `weight * L_mixed` to the clean loss.

    Pair selection (which pairs are mixed):
    - `"positive_negative"`: every ordered pair (p, n) where p has a positive
      in the batch and n has another class; mix(p, n) is scored for each
      anchor a != p of p's class (every (a, p), not only the first positive
      as in the reference code).
    - `"anchor_negative"`: for each anchor a without a positive in the batch,
      mix(a, n) for every negative n, scored for a. When every anchor has a
      positive it adds nothing.
    - `"random"`: one of the two, drawn with probability 1/2 each step, as
      the reference code does.
    - `"both"`: both, each reduced separately with its own weight.

    Scoring:
    - `"per_anchor"` (reference behaviour): a mix counts only for the
      anchor(s) it was built for. For proxy anchor the anchors are proxies:
      a mix counts for the proxy of its first label.
    - `"all_pairs"`: every mix is a soft-labelled candidate for every anchor
      of the batch (every proxy, for proxy anchor).

    Labels of the mixes (`mixed_labels`):
    - `"soft"` (the paper's): `y = lam [class(u) == class(anchor)]
      + (1 - lam) [class(v) == class(anchor)]`.
    - `"majority"`: the mix takes the label of its larger source, `y =
      [class(u) == class(anchor)]` if `lam >= 0.5`, else `[class(v) ==
      class(anchor)]`; the mix itself is still `lam * u + (1 - lam) * v`.
      With soft labels the mixed term of multi-similarity and proxy anchor
      is smallest at a similarity close to the decision boundary whatever
      `lam` is (both terms act on every mix); with majority labels a mix is
      pulled to the positive or the negative side like a clean pair.

    Args:
        level: where mixing happens: `"input"` (images), `"feature"` (the
            backbone's last feature maps) or `"embedding"` (final embeddings,
            done inside the loss). Input and feature levels need a mixing
            layer in the model (see `metrix_tf.mixing`).
        alpha: float > 0, the Beta(alpha, alpha) parameter of `lam`.
        weight: float >= 0, the weight `w` of the mixed loss; or a dict
            mapping both `"positive_negative"` and `"anchor_negative"` to
            their own weights. The reference code uses
            `{"positive_negative": 0.4, "anchor_negative": 0.3}` at the
            embedding level.
        strategy: one of `"positive_negative"`, `"anchor_negative"`,
            `"random"`, `"both"`.
        scoring: `"per_anchor"` or `"all_pairs"`.
        lam: None to draw `lam` each step, or a fixed float in [0, 1].
        mixed_labels: `"soft"` (default, the paper's) or `"majority"`.
        seed: optional int seed for the draws of `lam` and of the random
            strategy.

    Example:

    ```python
    metrix = metrix_tf.Metrix(level="embedding", lam=None)
    model.compile(
        optimizer="adam",
        loss=metrix_tf.losses.ContrastiveLoss(metrix=metrix),
    )
    ```

    Reference:
        - [Venkataramanan et al., 2022](https://arxiv.org/abs/2106.04990)
    """

    def __init__(
        self,
        level="embedding",
        alpha=2.0,
        weight=0.4,
        strategy="random",
        scoring="per_anchor",
        lam=None,
        seed=None,
        mixed_labels="soft",
    ):
        if level not in LEVELS:
            raise ValueError(
                f"Argument `level` must be one of {LEVELS}. "
                f"Received: level={level!r}"
            )
        if strategy not in STRATEGIES:
            raise ValueError(
                f"Argument `strategy` must be one of {STRATEGIES}. "
                f"Received: strategy={strategy!r}"
            )
        if scoring not in SCORINGS:
            raise ValueError(
                f"Argument `scoring` must be one of {SCORINGS}. "
                f"Received: scoring={scoring!r}"
            )
        if mixed_labels not in MIXED_LABELS:
            raise ValueError(
                f"Argument `mixed_labels` must be one of {MIXED_LABELS}. "
                f"Received: mixed_labels={mixed_labels!r}"
            )
        if (
            isinstance(alpha, bool)
            or not isinstance(alpha, numbers.Real)
            or not alpha > 0
        ):
            raise ValueError(
                f"Argument `alpha` must be a number > 0. Received: alpha={alpha!r}"
            )
        if isinstance(weight, dict):
            weight = {
                k: _check_weight(f"weight[{k!r}]", v) for k, v in weight.items()
            }
            if set(weight) != set(MIX_STRATEGIES):
                raise ValueError(
                    "A dict `weight` must have exactly the keys "
                    f"{MIX_STRATEGIES}. Received: weight={weight!r}"
                )
        else:
            weight = _check_weight("weight", weight)
        if lam is not None:
            if (
                isinstance(lam, bool)
                or not isinstance(lam, numbers.Real)
                or not 0.0 <= lam <= 1.0
            ):
                raise ValueError(
                    "Argument `lam` must be None or a number in [0, 1]. "
                    f"Received: lam={lam!r}"
                )
            lam = float(lam)
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, numbers.Integral)
        ):
            raise ValueError(
                f"Argument `seed` must be None or an int. Received: seed={seed!r}"
            )
        self.level = level
        self.alpha = float(alpha)
        self.weight = weight
        self.strategy = strategy
        self.scoring = scoring
        self.lam = lam
        self.seed = seed
        self.mixed_labels = mixed_labels
        self._seed_generator = None

    @property
    def mixes_in_loss(self):
        """The loss makes the mixes (embedding level); else the model does."""
        return self.level == "embedding"

    def scored_strategies(self):
        """The strategies whose mixes the loss scores, each with its weight."""
        names = [self.strategy] if self.strategy in MIX_STRATEGIES else MIX_STRATEGIES
        return [(name, self.weight_for(name)) for name in names]

    def weight_for(self, strategy):
        """The weight of the mixed loss of one pair-selection strategy."""
        if isinstance(self.weight, dict):
            return self.weight[strategy]
        return self.weight

    def label_lambda(self, lam):
        """The weight of the first source in the mixes' labels.

        `lam` itself for soft labels; 1 where `lam >= 0.5`, else 0, for
        majority labels. `lam`: float tensor of any shape.
        """
        if self.mixed_labels == "soft":
            return lam
        return keras.ops.cast(keras.ops.greater_equal(lam, 0.5), lam.dtype)

    @property
    def seed_generator(self):
        # Created on first use (eagerly, outside any tf.function, when the
        # loss or layer that owns this config is first built).
        if self._seed_generator is None:
            self._seed_generator = keras.random.SeedGenerator(self.seed)
        return self._seed_generator

    def sample_lambda(self, dtype="float32", seed_generator=None):
        """This step's mixing factor: the fixed `lam`, or a Beta draw.

        `seed_generator` defaults to this config's own; a mixing layer passes
        its (tracked) generator. Under tf.distribute every replica gets the
        first replica's draw.
        """
        if self.lam is not None:
            return keras.ops.convert_to_tensor(self.lam, dtype=dtype)
        lam = keras.random.beta(
            (),
            self.alpha,
            self.alpha,
            dtype=dtype,
            seed=seed_generator or self.seed_generator,
        )
        return same_on_every_replica(lam)

    def active_strategies(self, seed_generator=None):
        """Is each of MIX_STRATEGIES used this step (bools or bool tensors)?"""
        if self.strategy == "both":
            return (True, True)
        if self.strategy == "random":
            seed = seed_generator or self.seed_generator
            coin = same_on_every_replica(keras.random.uniform((), seed=seed)) < 0.5
            return (coin, keras.ops.logical_not(coin))
        return tuple(s == self.strategy for s in MIX_STRATEGIES)

    def get_config(self):
        return {
            "level": self.level,
            "alpha": self.alpha,
            "weight": dict(self.weight)
            if isinstance(self.weight, dict)
            else self.weight,
            "strategy": self.strategy,
            "scoring": self.scoring,
            "lam": self.lam,
            "seed": self.seed,
            "mixed_labels": self.mixed_labels,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"Metrix({args})"

    def __eq__(self, other):
        return isinstance(other, Metrix) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash(repr(self))

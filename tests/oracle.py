"""Naive numpy oracle for the metric losses, clean and with Metrix.

Written from ../shared/docs/METRIX.md (sections 2 to 4) and issue 2, not from
the implementation: plain Python loops over anchors and pairs, in float64.
Every function takes raw (not necessarily unit) embeddings and normalises
them itself, like the library does. Tests import this file as a plain module
(`import oracle`): pytest puts `tests/` on `sys.path`.

Conventions:
    labels: a sequence of `B` integers.
    embeddings: an array of shape `(B, D)`.
    proxies: an array of shape `(C, D)` (proxy anchor only).
    mix: a `MixSpec` (strategy, scoring, lam, weight) or None for the clean
        loss. Strategies "positive_negative", "anchor_negative" and "both";
        "random" picks at run time and is not an oracle strategy.
"""

import dataclasses
import math

import numpy as np

STRATEGIES = ("positive_negative", "anchor_negative")
SCORINGS = ("per_anchor", "all_pairs")


@dataclasses.dataclass(frozen=True)
class MixSpec:
    """Metrix at the embedding level with a fixed lam.

    Attributes:
        strategy: "positive_negative", "anchor_negative" or "both".
        scoring: "per_anchor" or "all_pairs".
        lam: weight of the first source of every mix, in [0, 1].
        weight: a float, or a dict {strategy: weight}.
        labels: "soft" (y = lam [u's class] + (1 - lam) [v's class]) or
            "majority" (y of the larger source: u's if lam >= 0.5).
    """

    strategy: str
    scoring: str
    lam: float
    weight: object = 0.4
    labels: str = "soft"

    def label_lam(self):
        """The weight of the first source in the soft label."""
        if self.labels == "soft":
            return self.lam
        if self.labels == "majority":
            return 1.0 if self.lam >= 0.5 else 0.0
        raise ValueError(f"oracle labels must be soft or majority: {self.labels!r}")

    def strategies(self):
        if self.strategy == "both":
            return STRATEGIES
        if self.strategy in STRATEGIES:
            return (self.strategy,)
        raise ValueError(f"oracle strategy must be explicit: {self.strategy!r}")

    def weight_of(self, strategy):
        if isinstance(self.weight, dict):
            return float(self.weight[strategy])
        return float(self.weight)


# ----------------------------------------------------------------- helpers


def normalize(x):
    """Row-wise L2 normalisation in float64."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _as_labels(labels):
    return [int(round(float(v))) for v in np.asarray(labels).reshape(-1)]


def similarity(u, v):
    """Cosine similarity of two unit vectors: a plain sum of products."""
    return float(sum(float(a) * float(b) for a, b in zip(u, v)))


def distance(u, v):
    """Euclidean distance of two unit vectors, sqrt(2 - 2 s): exactly 0 for
    coincident points (identical non-zero vectors), as PML 1.3.0 computes it
    from the vectors. A zero row (similarity 0 to everything) is at sqrt(2)."""
    u, v = np.asarray(u), np.asarray(v)
    if np.array_equal(u, v) and np.any(u != 0):
        return 0.0
    return math.sqrt(max(2.0 - 2.0 * similarity(u, v), 0.0))


def average_non_zero(values):
    """Sum of the strictly positive values / their count; 0 when none."""
    kept = [v for v in values if v > 0.0]
    return sum(kept) / len(kept) if kept else 0.0


def has_positive(labels, i):
    """Whether example `i` has another example with its label."""
    return any(labels[k] == labels[i] for k in range(len(labels)) if k != i)


def mix_vector(unit, i, j, lam):
    """normalise(lam e_i + (1 - lam) e_j)."""
    v = lam * unit[i] + (1.0 - lam) * unit[j]
    return v / math.sqrt(sum(float(c) * float(c) for c in v))


def soft_label(labels, i, j, lam, anchor_class):
    """y of mix(i, j) relative to an anchor of class `anchor_class`."""
    return lam * float(labels[i] == anchor_class) + (1.0 - lam) * float(
        labels[j] == anchor_class
    )


def mix_sources(labels, strategy):
    """The (first, second) source indices of every mix of a strategy.

    positive_negative: every ordered (p, n) with p having a positive in the
    batch and label_n != label_p. anchor_negative: every (a, n) with a having
    no positive and label_n != label_a.
    """
    labels = _as_labels(labels)
    b = len(labels)
    pairs = []
    for i in range(b):
        if strategy == "positive_negative" and not has_positive(labels, i):
            continue
        if strategy == "anchor_negative" and has_positive(labels, i):
            continue
        for j in range(b):
            if labels[j] != labels[i]:
                pairs.append((i, j))
    return pairs


def scored_entries(labels, strategy, scoring, lam):
    """(anchor index, (i, j), y) for the pairwise losses.

    per_anchor: positive_negative mix(p, n) counts for every a != p with
    label_a == label_p; anchor_negative mix(a, n) counts for a only.
    all_pairs: every mix counts for every anchor of the batch.
    """
    labels = _as_labels(labels)
    b = len(labels)
    entries = []
    for i, j in mix_sources(labels, strategy):
        if scoring == "all_pairs":
            anchors = range(b)
        elif strategy == "positive_negative":
            anchors = [a for a in range(b) if a != i and labels[a] == labels[i]]
        else:
            anchors = [i]
        for a in anchors:
            entries.append((a, (i, j), soft_label(labels, i, j, lam, labels[a])))
    return entries


def proxy_entries(labels, num_classes, strategy, scoring, lam):
    """(proxy class, (i, j), y) for proxy anchor: the anchors are proxies.

    per_anchor: each mix counts only for the proxy of its first label.
    all_pairs: each mix counts for every proxy.
    """
    labels = _as_labels(labels)
    entries = []
    for i, j in mix_sources(labels, strategy):
        classes = range(num_classes) if scoring == "all_pairs" else [labels[i]]
        for c in classes:
            entries.append((c, (i, j), soft_label(labels, i, j, lam, c)))
    return entries


def _log1p_sum(terms):
    return math.log1p(sum(terms))


def log_sum_exp(exponents):
    """log(sum_j exp(e_j)) of a non-empty list, shifted by its maximum."""
    top = max(exponents)
    return top + math.log(sum(math.exp(e - top) for e in exponents))


def anchor_candidates(labels, embeddings, mix=None, strategy=None):
    """{anchor: [(unit candidate vector, y), ...]} for the pairwise losses.

    Clean (`mix` None): every other example b of the batch, y = [label_b ==
    label_a]. With a `MixSpec` and one of its strategies: the mixes scored
    for that anchor (`scored_entries`), with their soft labels. Anchors with
    no candidate are absent.
    """
    labels = _as_labels(labels)
    unit = normalize(embeddings)
    candidates = {}
    if mix is None:
        for a in range(len(labels)):
            for b in range(len(labels)):
                if b != a:
                    y = float(labels[b] == labels[a])
                    candidates.setdefault(a, []).append((unit[b], y))
        return candidates
    for a, (i, j), y in scored_entries(labels, strategy, mix.scoring, mix.label_lam()):
        candidates.setdefault(a, []).append((mix_vector(unit, i, j, mix.lam), y))
    return candidates


# ------------------------------------------------------------ contrastive


def contrastive_clean(labels, embeddings, pos_margin=0.0, neg_margin=0.5):
    """PML 1.3.0 contrastive: two global average-non-zero terms."""
    labels = _as_labels(labels)
    unit = normalize(embeddings)
    pos, neg = [], []
    for a in range(len(labels)):
        for b in range(len(labels)):
            if a == b:
                continue
            d = distance(unit[a], unit[b])
            if labels[a] == labels[b]:
                pos.append(max(d - pos_margin, 0.0))
            else:
                neg.append(max(neg_margin - d, 0.0))
    return average_non_zero(pos) + average_non_zero(neg)


def contrastive_mixed(labels, embeddings, strategy, scoring, lam,
                      pos_margin=0.0, neg_margin=0.5, label_lam=None):
    """L_k of one strategy: avg-non-zero(y [d - m+]+) + avg-non-zero((1-y) [m- - d]+).

    `label_lam` (default `lam`) weighs the first source in the labels."""
    unit = normalize(embeddings)
    pos, neg = [], []
    label_lam = lam if label_lam is None else label_lam
    for a, (i, j), y in scored_entries(labels, strategy, scoring, label_lam):
        d = distance(unit[a], mix_vector(unit, i, j, lam))
        pos.append(y * max(d - pos_margin, 0.0))
        neg.append((1.0 - y) * max(neg_margin - d, 0.0))
    return average_non_zero(pos) + average_non_zero(neg)


def contrastive(labels, embeddings, pos_margin=0.0, neg_margin=0.5, mix=None):
    """Clean contrastive + sum_k weight_k L_k."""
    total = contrastive_clean(labels, embeddings, pos_margin, neg_margin)
    if mix is not None:
        for strategy in mix.strategies():
            total += mix.weight_of(strategy) * contrastive_mixed(
                labels, embeddings, strategy, mix.scoring, mix.lam,
                pos_margin, neg_margin, mix.label_lam())
    return total


# ------------------------------------------------------- multi-similarity


def multi_similarity_miner(labels, embeddings, epsilon=0.39):
    """Kept (anchor, positive) and (anchor, negative) index pairs.

    Keep p iff s(a,p) - epsilon < max negative similarity of a; keep n iff
    s(a,n) + epsilon > min positive similarity of a (strict inequalities).
    """
    labels = _as_labels(labels)
    unit = normalize(embeddings)
    b = len(labels)
    kept_pos, kept_neg = set(), set()
    for a in range(b):
        pos_sims = [similarity(unit[a], unit[p]) for p in range(b)
                    if p != a and labels[p] == labels[a]]
        neg_sims = [similarity(unit[a], unit[n]) for n in range(b)
                    if labels[n] != labels[a]]
        min_pos = min(pos_sims) if pos_sims else math.inf
        max_neg = max(neg_sims) if neg_sims else -math.inf
        for k in range(b):
            if k == a:
                continue
            s = similarity(unit[a], unit[k])
            if labels[k] == labels[a]:
                if s - epsilon < max_neg:
                    kept_pos.add((a, k))
            elif s + epsilon > min_pos:
                kept_neg.add((a, k))
    return kept_pos, kept_neg


def multi_similarity_clean(labels, embeddings, alpha=17.97, beta=75.66,
                           base=0.77, epsilon=0.39, miner_embeddings=None):
    """Mean over all B anchors of the mined MS loss.

    `miner_embeddings` (default: `embeddings`) feed the miner only: finite
    differences pass the unperturbed batch so the miner stays fixed, as it
    does under stop-gradient.
    """
    labels = _as_labels(labels)
    unit = normalize(embeddings)
    mined = embeddings if miner_embeddings is None else miner_embeddings
    kept_pos, kept_neg = multi_similarity_miner(labels, mined, epsilon)
    b = len(labels)
    total = 0.0
    for a in range(b):
        pos_terms = [math.exp(-alpha * (similarity(unit[a], unit[p]) - base))
                     for p in range(b) if (a, p) in kept_pos]
        neg_terms = [math.exp(beta * (similarity(unit[a], unit[n]) - base))
                     for n in range(b) if (a, n) in kept_neg]
        total += _log1p_sum(pos_terms) / alpha + _log1p_sum(neg_terms) / beta
    return total / b if b else 0.0


def multi_similarity_mixed(labels, embeddings, strategy, scoring, lam,
                           alpha=17.97, beta=75.66, base=0.77, label_lam=None):
    """L_k: mean over anchors with a scored mix of the generic MS form."""
    unit = normalize(embeddings)
    per_anchor = {}
    label_lam = lam if label_lam is None else label_lam
    for a, (i, j), y in scored_entries(labels, strategy, scoring, label_lam):
        s = similarity(unit[a], mix_vector(unit, i, j, lam))
        pos_terms, neg_terms = per_anchor.setdefault(a, ([], []))
        pos_terms.append(y * math.exp(-alpha * (s - base)))
        neg_terms.append((1.0 - y) * math.exp(beta * (s - base)))
    if not per_anchor:
        return 0.0
    losses = [_log1p_sum(p) / alpha + _log1p_sum(n) / beta
              for p, n in per_anchor.values()]
    return sum(losses) / len(losses)


def multi_similarity(labels, embeddings, alpha=17.97, beta=75.66, base=0.77,
                     epsilon=0.39, mix=None, miner_embeddings=None):
    """Clean MS + sum_k weight_k L_k."""
    total = multi_similarity_clean(labels, embeddings, alpha, beta, base,
                                   epsilon, miner_embeddings)
    if mix is not None:
        for strategy in mix.strategies():
            total += mix.weight_of(strategy) * multi_similarity_mixed(
                labels, embeddings, strategy, mix.scoring, mix.lam,
                alpha, beta, base, mix.label_lam())
    return total


# ------------------------------------------------------------ proxy anchor


def proxy_anchor_clean(labels, embeddings, proxies, margin=0.1, alpha=32.0):
    """Positive part over proxies of present classes, negative over all C."""
    labels = _as_labels(labels)
    unit = normalize(embeddings)
    units_q = normalize(proxies)
    num_classes = len(units_q)
    pos_total, present, neg_total = 0.0, 0, 0.0
    for c in range(num_classes):
        pos_terms, neg_terms = [], []
        for i in range(len(labels)):
            s = similarity(units_q[c], unit[i])
            if labels[i] == c:
                pos_terms.append(math.exp(-alpha * (s - margin)))
            else:
                neg_terms.append(math.exp(alpha * (s + margin)))
        if pos_terms:
            present += 1
            pos_total += _log1p_sum(pos_terms)
        neg_total += _log1p_sum(neg_terms)
    pos_part = pos_total / present if present else 0.0
    return pos_part + neg_total / num_classes


def proxy_anchor_mixed(labels, embeddings, proxies, strategy, scoring, lam,
                       margin=0.1, alpha=32.0, label_lam=None):
    """L_k with the proxies as anchors and y from the proxy's class."""
    unit = normalize(embeddings)
    units_q = normalize(proxies)
    num_classes = len(units_q)
    pos_terms = {c: [] for c in range(num_classes)}
    neg_terms = {c: [] for c in range(num_classes)}
    has_pos = set()
    label_lam = lam if label_lam is None else label_lam
    for c, (i, j), y in proxy_entries(labels, num_classes, strategy, scoring,
                                      label_lam):
        s = similarity(units_q[c], mix_vector(unit, i, j, lam))
        pos_terms[c].append(y * math.exp(-alpha * (s - margin)))
        neg_terms[c].append((1.0 - y) * math.exp(alpha * (s + margin)))
        if y > 0.0:
            has_pos.add(c)
    pos_part = (sum(_log1p_sum(pos_terms[c]) for c in has_pos) / len(has_pos)
                if has_pos else 0.0)
    neg_part = sum(_log1p_sum(neg_terms[c]) for c in range(num_classes))
    return pos_part + neg_part / num_classes


def proxy_anchor(labels, embeddings, proxies, margin=0.1, alpha=32.0,
                 mix=None):
    """Clean PA + sum_k weight_k L_k."""
    total = proxy_anchor_clean(labels, embeddings, proxies, margin, alpha)
    if mix is not None:
        for strategy in mix.strategies():
            total += mix.weight_of(strategy) * proxy_anchor_mixed(
                labels, embeddings, proxies, strategy, mix.scoring, mix.lam,
                margin, alpha, mix.label_lam())
    return total


# --------------------------------------------------------------- gradients


def numerical_gradient(f, x, h=1e-6):
    """Central finite differences of a scalar function `f` at `x` (float64)."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for index in np.ndindex(*x.shape):
        step = np.zeros_like(x)
        step[index] = h
        grad[index] = (f(x + step) - f(x - step)) / (2.0 * h)
    return grad


# ------------------------------------------------------------- test data


def clustered_embeddings(labels, dim=4, seed=0):
    """Raw (non-unit) embeddings, clustered by label, shape `(B, dim)`.

    Classes sit around a common direction, so some negatives fall inside the
    contrastive margin and the multi-similarity miner drops some pairs; the
    rows have random norms in [0.5, 3] so the losses must normalise.
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(_as_labels(labels))
    centers = rng.normal(size=(int(labels.max()) + 1, dim))
    x = np.ones(dim) + 0.9 * centers[labels] + 0.5 * rng.normal(
        size=(len(labels), dim))
    return x * rng.uniform(0.5, 3.0, size=(len(labels), 1))


# ---------------------------------------------------------- triplet margin


def triplet_margin_terms(anchor, candidates, margin=0.05, selection="all"):
    """The weighted triplet terms of one anchor.

    `candidates` is a list of (unit vector, y). "all": every ordered pair of
    distinct candidates (j, k) with weight y_j (1 - y_k) > 0 gives
    w relu(d_j - d_k + margin); "semi_hard" keeps those with
    0 < d_k - d_j <= margin; "hard": one term, the farthest positive
    (y == 1) against the nearest negative (y == 0).
    """
    d = [distance(anchor, v) for v, _ in candidates]
    y = [y for _, y in candidates]
    if selection == "hard":
        pos = [d[j] for j in range(len(d)) if y[j] == 1.0]
        neg = [d[k] for k in range(len(d)) if y[k] == 0.0]
        return [max(max(pos) - min(neg) + margin, 0.0)] if pos and neg else []
    terms = []
    for j in range(len(d)):
        for k in range(len(d)):
            weight = y[j] * (1.0 - y[k])
            if j == k or weight == 0.0:
                continue
            if selection == "semi_hard" and not 0.0 < d[k] - d[j] <= margin:
                continue
            terms.append(weight * max(d[j] - d[k] + margin, 0.0))
    return terms


def triplet_margin(labels, embeddings, margin=0.05, selection="all", mix=None):
    """PML 1.3.0 TripletMarginLoss (average of the non-zero triplet terms)
    over the clean triplets selected, + sum_k weight_k of the same over each
    strategy's mixes (every weighted triplet, no selection)."""
    total = average_non_zero([
        term
        for a, cands in anchor_candidates(labels, embeddings).items()
        for term in triplet_margin_terms(normalize(embeddings)[a], cands, margin, selection)
    ])
    if mix is not None:
        unit = normalize(embeddings)
        for strategy in mix.strategies():
            terms = [
                term
                for a, cands in anchor_candidates(labels, embeddings, mix, strategy).items()
                for term in triplet_margin_terms(unit[a], cands, margin)
            ]
            total += mix.weight_of(strategy) * average_non_zero(terms)
    return total


# -------------------------------------------------- supervised contrastive


def supervised_contrastive_term(anchor, candidates, temperature=0.1):
    """-sum_j y_j log softmax_j(s / t) / sum_j y_j; 0 without positives."""
    positives = sum(y for _, y in candidates)
    if positives == 0.0:
        return 0.0
    logits = [similarity(anchor, v) / temperature for v, _ in candidates]
    lse = log_sum_exp(logits)
    return -sum(y * (logit - lse) for (_, y), logit in zip(candidates, logits)) / positives


def supervised_contrastive(labels, embeddings, temperature=0.1, mix=None):
    """PML 1.3.0 SupConLoss (average of the non-zero anchor losses; 0 for a
    batch without positive or negative pairs) + sum_k weight_k of the same
    form over each strategy's mixes, the positive weights being the soft
    labels."""
    labels = _as_labels(labels)
    unit = normalize(embeddings)
    pairs = [labels[a] == labels[b] for a in range(len(labels))
             for b in range(len(labels)) if a != b]
    total = 0.0
    if any(pairs) and not all(pairs):
        total = average_non_zero([
            supervised_contrastive_term(unit[a], cands, temperature)
            for a, cands in anchor_candidates(labels, embeddings).items()
        ])
    if mix is not None:
        for strategy in mix.strategies():
            total += mix.weight_of(strategy) * average_non_zero([
                supervised_contrastive_term(unit[a], cands, temperature)
                for a, cands in anchor_candidates(labels, embeddings, mix, strategy).items()
            ])
    return total


# ------------------------------------------------------------------ circle


def circle_term(anchor, candidates, margin=0.4, gamma=80.0, weights_from=None):
    """softplus(lse_pos + lse_neg) of one anchor; 0 without a positive or a
    negative. `weights_from` (default: `candidates`) gives the similarities
    of the self-paced weights, which carry no gradient: finite differences
    pass the unperturbed candidates there."""
    weights_from = candidates if weights_from is None else weights_from
    pos, neg = [], []
    for (v, y), (w, _) in zip(candidates, weights_from):
        s, s_fixed = similarity(anchor[0], v), similarity(anchor[1], w)
        if y > 0.0:
            pos.append(math.log(y) - gamma * max(1.0 + margin - s_fixed, 0.0) * (s - (1.0 - margin)))
        if y < 1.0:
            neg.append(math.log(1.0 - y) + gamma * max(s_fixed + margin, 0.0) * (s - margin))
    if not pos or not neg:
        return 0.0
    x = log_sum_exp(pos) + log_sum_exp(neg)
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))  # softplus


def circle(labels, embeddings, margin=0.4, gamma=80.0, mix=None, weight_embeddings=None):
    """PML 1.3.0 CircleLoss (average of the non-zero anchor losses) + sum_k
    weight_k of the same over each strategy's mixes, with soft labels
    weighting the positive and negative sums. `weight_embeddings` (default:
    `embeddings`) feed the weights only (see `circle_term`)."""
    fixed = embeddings if weight_embeddings is None else weight_embeddings
    unit, unit_fixed = normalize(embeddings), normalize(fixed)

    def part(candidates, candidates_fixed):
        return average_non_zero([
            circle_term((unit[a], unit_fixed[a]), cands, margin, gamma, candidates_fixed[a])
            for a, cands in candidates.items()
        ])

    total = part(anchor_candidates(labels, embeddings), anchor_candidates(labels, fixed))
    if mix is not None:
        for strategy in mix.strategies():
            total += mix.weight_of(strategy) * part(
                anchor_candidates(labels, embeddings, mix, strategy),
                anchor_candidates(labels, fixed, mix, strategy))
    return total

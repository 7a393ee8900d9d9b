"""A metric loss is one declaration.

A loss file declares a `LossDeclaration` subclass: its name, its
hyper-parameters (each written once, with its default, meaning and check),
its per-pair terms as functions of the similarity `s` and the soft label `y`
reduced over each anchor's row (`row_statistics`, with the miner, if it has
one, on the clean block), and its reduction (`ratios`: how the per-row
statistics become `numerator / denominator` pairs whose denominators are
summed over the global batch). `define_loss` derives from it:

- the loss function, e.g. `contrastive(labels, embeddings, pos_margin=0.0,
  neg_margin=0.5, metrix=None, fused=None)`;
- the Keras `Loss` class with its config (every hyper-parameter an attribute
  of the same name, as Keras' `LossFunctionWrapper` keeps its kwargs);
- its entry in the loss registry (`metrix_tf.losses.registry`) that the
  trainer, `TrainConfig`, `configs/make_configs.py`, the benchmarks and the
  tests read.

The materialised path (anchor x candidate similarity and soft-label
matrices), Metrix (clean + weighted mixed part, both scorings, every
strategy) and the per-replica ratios under tf.distribute are the library's
(`metrix_tf.losses.metric_loss`); a declaration may also name the fused
kernels of the compiled op that compute the same statistics (`fused`), an
optional speed-up: without them the materialised path runs.

Example (a complete loss file):

```python
class Hinge(LossDeclaration):
    \"\"\"Hinge on the similarity: y [m - s]+ + (1 - y) [s]+, mean over pairs.\"\"\"

    name = "hinge"
    class_name = "HingeLoss"
    hyper_parameters = (HyperParameter("margin", 0.5, "float >= 0.", minimum=0.0),)

    def row_statistics(self, similarity, soft_labels, clean):
        y_pos, y_neg = pair_weights(soft_labels)
        terms = y_pos * tf.nn.relu(self.margin - similarity) + y_neg * tf.nn.relu(similarity)
        scored = tf.cast(soft_labels >= 0.0, terms.dtype)
        return tf.reduce_sum(terms, 1), tf.reduce_sum(scored, 1)

    def ratios(self, statistics, clean):
        total, count = statistics
        return [(tf.reduce_sum(total), tf.reduce_sum(count))]


hinge, HingeLoss = define_loss(Hinge)
```
"""

import inspect
import textwrap

import keras
import tensorflow as tf

from metrix_tf.losses import registry
from metrix_tf.losses.metric_loss import MetricLoss
from metrix_tf.losses.metric_loss import ProxyMetricLoss
from metrix_tf.losses.metric_loss import check_float
from metrix_tf.losses.metric_loss import check_fused
from metrix_tf.losses.metric_loss import metric_loss_value
from metrix_tf.mixing.metrix import check_metrix


class HyperParameter:
    """One hyper-parameter of a loss, declared once.

    Args:
        name: the argument name (of the function, the class and its config).
        default: the default value.
        doc: its meaning, for the generated docstrings.
        minimum: for a number: the smallest accepted value (None: any).
        strict: for a number: `minimum` itself is refused.
        choices: for a string option: the accepted values (then `minimum` and
            `strict` do not apply).
    """

    def __init__(self, name, default, doc, minimum=None, strict=False, choices=None):
        self.name = name
        self.default = default
        self.doc = doc
        self.minimum = minimum
        self.strict = strict
        self.choices = None if choices is None else tuple(choices)

    def check(self, value):
        """The validated value; ValueError quoting it otherwise."""
        if self.choices is None:
            return check_float(self.name, value, self.minimum, self.strict)
        if value not in self.choices:
            raise ValueError(
                f"Argument `{self.name}` must be one of {self.choices}. "
                f"Received: {self.name}={value!r}"
            )
        return value

    def describe(self):
        return f"{self.name}: {self.doc} Defaults to `{self.default!r}`."


class LossDeclaration:
    """The declaration of one metric loss (subclass it, see the module doc).

    Class attributes:
        name: snake_case name: the function's name and the registry key.
        class_name: the Keras `Loss` class's name.
        hyper_parameters: a tuple of `HyperParameter`.
        uses_proxies: the anchors are trainable class proxies (the class then
            owns a proxy table and the function takes `proxies`) instead of
            the batch examples.
        references: `(text, url)` pairs for the docstrings (the Metrix
            paper is added after them).

    An instance holds validated hyper-parameter values as attributes.

    Methods to implement:
        row_statistics(similarity, soft_labels, clean): from the `(M, N)`
            anchor x candidate similarity and soft labels (soft label
            `NOT_A_PAIR` = not scored; `pair_weights` gives `y` and `1 - y`),
            any structure of `(M,)` tensors. `clean` is True for the clean
            batch block, where a miner runs; False for mixes.
        ratios(statistics, clean): a list of `(numerator, denominator)`
            scalar pairs; the loss is `sum numerator / denominator`, each
            denominator summed over tf.distribute replicas (0 / 0 = 0).
        fused (optional): `fused(anchors, anchor_labels, candidates,
            labels_a, labels_b, lam, clean, exclude_self)` giving the same
            statistics with the compiled op's fused kernels; None (default)
            when the loss has none.
    """

    name = None
    class_name = None
    hyper_parameters = ()
    uses_proxies = False
    references = ()
    fused = None

    def __init__(self, **values):
        unknown = sorted(set(values) - {p.name for p in self.hyper_parameters})
        if unknown:
            raise TypeError(f"{type(self).__name__} has no hyper-parameters {unknown}")
        for parameter in self.hyper_parameters:
            value = values.get(parameter.name, parameter.default)
            setattr(self, parameter.name, parameter.check(value))

    def row_statistics(self, similarity, soft_labels, clean):
        raise NotImplementedError

    def ratios(self, statistics, clean):
        raise NotImplementedError


def average_non_zero(values):
    """The `(numerator, denominator)` of "average of the non-zero entries"
    (pytorch-metric-learning's `AvgNonZeroReducer`) of a tensor of terms:
    the sum of the strictly positive ones and their count."""
    positive = values > 0.0
    return (
        tf.reduce_sum(tf.where(positive, values, tf.zeros_like(values))),
        tf.reduce_sum(tf.cast(positive, values.dtype)),
    )


_POSITIONAL = inspect.Parameter.POSITIONAL_OR_KEYWORD
_COMMON_ARGS = """\
metrix: a `metrix_tf.Metrix`, or None for the clean loss.
fused: None (by size), True or False: score with the fused, low-memory
    reductions of the compiled op{fused_note}."""
_LABELS_ARG = """\
labels: int (or whole-number float) tensor of shape `(B,)` or `(B, 1)`{label_range}.
embeddings: float tensor of shape `(B, D)` (normalised inside), or a mixed
    batch from a mixing layer (see `metrix_tf.mixing.mixed_batch`)."""
_PROXIES_ARG = """\
proxies: float tensor (or variable) of shape `(C, D)`, normalised inside."""
_CLASS_ARGS = """\
num_classes: int > 0, the number of training classes (labels must lie in
    `[0, num_classes)`).
embedding_dim: int > 0, the embedding size."""
_PROXY_CLASS_ARGS = """\
proxy_initializer: initializer of the proxies; defaults to a normal
    distribution with std `sqrt(2 / num_classes)`.
proxy_lr_multiplier: float > 0: the proxies learn this many times faster
    (see `metrix_tf.losses.ProxyMetricLoss`)."""


def _section(title, lines):
    return f"{title}:\n" + textwrap.indent("\n".join(lines), "    ")


def _hyper_lines(declaration):
    lines = []
    for parameter in declaration.hyper_parameters:
        lines += textwrap.wrap(
            parameter.describe(), 76, subsequent_indent="    "
        )
    return lines


# Every loss here comes with Metrix: its paper closes each reference list.
METRIX_REFERENCE = ("Venkataramanan et al., 2022", "https://arxiv.org/abs/2106.04990")


def _references(declaration):
    references = tuple(declaration.references) + (METRIX_REFERENCE,)
    return _section("Reference", [f"- [{text}]({url})" for text, url in references])


def _common(declaration):
    note = "" if declaration.fused is not None else " (this loss has none: None or False)"
    return _COMMON_ARGS.format(fused_note=note).splitlines()


def _function_signature(declaration):
    names = ["labels", "embeddings"] + (["proxies"] if declaration.uses_proxies else [])
    parameters = [inspect.Parameter(n, _POSITIONAL) for n in names]
    parameters += [
        inspect.Parameter(p.name, _POSITIONAL, default=p.default)
        for p in declaration.hyper_parameters
    ]
    parameters += [
        inspect.Parameter("metrix", _POSITIONAL, default=None),
        inspect.Parameter("fused", _POSITIONAL, default=None),
    ]
    return inspect.Signature(parameters)


def _function_doc(declaration):
    summary = inspect.cleandoc(declaration.__doc__ or declaration.name)
    label_range = " with values in `[0, C)`" if declaration.uses_proxies else ""
    args = _LABELS_ARG.format(label_range=label_range).splitlines()
    if declaration.uses_proxies:
        args += _PROXIES_ARG.splitlines()
    args += _hyper_lines(declaration) + _common(declaration)
    return "\n\n".join(
        [
            summary,
            _section("Args", args),
            _section("Returns", ["A scalar tensor."]),
            _references(declaration),
        ]
    )


def _class_signature(declaration):
    self_ = [inspect.Parameter("self", _POSITIONAL)]
    proxy_table = [
        inspect.Parameter(n, _POSITIONAL) for n in ("num_classes", "embedding_dim")
    ]
    hyper = [
        inspect.Parameter(p.name, _POSITIONAL, default=p.default)
        for p in declaration.hyper_parameters
    ]
    metrix = [inspect.Parameter("metrix", _POSITIONAL, default=None)]
    proxy_options = [
        inspect.Parameter("proxy_initializer", _POSITIONAL, default=None),
        inspect.Parameter("proxy_lr_multiplier", _POSITIONAL, default=1.0),
    ]
    tail = [
        inspect.Parameter("fused", _POSITIONAL, default=None),
        inspect.Parameter("name", _POSITIONAL, default=f"{declaration.name}_loss"),
        inspect.Parameter("reduction", _POSITIONAL, default="sum_over_batch_size"),
        inspect.Parameter("dtype", _POSITIONAL, default=None),
    ]
    if declaration.uses_proxies:
        return inspect.Signature(self_ + proxy_table + hyper + metrix + proxy_options + tail)
    return inspect.Signature(self_ + hyper + metrix + tail)


def _class_doc(declaration):
    summary = inspect.cleandoc(declaration.__doc__ or declaration.name)
    args = _CLASS_ARGS.splitlines() if declaration.uses_proxies else []
    args += _hyper_lines(declaration) + _common(declaration)[:1]
    if declaration.uses_proxies:
        args += _PROXY_CLASS_ARGS.splitlines()
    args += _common(declaration)[1:] + [
        "name: optional name of the loss instance.",
        "reduction: as for any Keras loss.",
        "dtype: as for any Keras loss.",
    ]
    call = [
        "y_true: class ids, shape `(batch_size,)` or `(batch_size, 1)`.",
        "y_pred: embeddings of shape `(batch_size, dim)` (normalised inside),",
        "    or a mixed batch from a mixing layer.",
    ]
    table = "num_classes, embedding_dim, " if declaration.uses_proxies else ""
    example = [
        "```python",
        f"loss = metrix_tf.losses.{declaration.class_name}(",
        f"    {table}metrix=metrix_tf.Metrix(level=\"embedding\"))",
        "model = metrix_tf.models.MetricModel(inputs, embeddings)",
        "model.compile(optimizer=\"adam\", loss=loss)",
        "```",
    ]
    return "\n\n".join(
        [
            summary,
            _section("Args", args),
            _section("Call arguments", call),
            "Example:\n\n" + textwrap.indent("\n".join(example), "    "),
            _references(declaration),
        ]
    )


def make_function(declaration):
    """The loss function of a declaration (see the module docstring)."""
    signature = _function_signature(declaration)

    def function(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = bound.arguments
        scoring = declaration(
            **{p.name: values[p.name] for p in declaration.hyper_parameters}
        )
        return metric_loss_value(
            scoring,
            values["labels"],
            values["embeddings"],
            check_metrix(values["metrix"]),
            check_fused(values["fused"], declaration),
            proxies=values.get("proxies"),
        )

    function.__signature__ = signature
    function.__name__ = function.__qualname__ = declaration.name
    function.__module__ = declaration.__module__
    function.__doc__ = _function_doc(declaration)
    return function


def make_loss_class(declaration, function):
    """The Keras `Loss` class of a declaration, registered for serialisation."""
    signature = _class_signature(declaration)
    base = ProxyMetricLoss if declaration.uses_proxies else MetricLoss
    hyper_names = [p.name for p in declaration.hyper_parameters]

    def __init__(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        del values["self"]
        checked = declaration(**{n: values.pop(n) for n in hyper_names})
        base.__init__(self, **values)
        for name in hyper_names:
            setattr(self, name, getattr(checked, name))

    __init__.__signature__ = signature
    __init__.__qualname__ = f"{declaration.class_name}.__init__"
    # Named as a method of the class in its loss file, so that doc tools
    # (mkdocstrings) find it there.
    __init__.__module__ = declaration.__module__
    namespace = {
        "__init__": __init__,
        "__doc__": _class_doc(declaration),
        "__module__": declaration.__module__,
        "__qualname__": declaration.class_name,
        "declaration": declaration,
        "function": staticmethod(function),
    }
    loss_class = type(declaration.class_name, (base,), namespace)
    return keras.saving.register_keras_serializable(package="metrix_tf")(loss_class)


def define_loss(declaration):
    """`(function, loss_class)` of a declaration, registered by its name."""
    if not (isinstance(declaration, type) and issubclass(declaration, LossDeclaration)):
        raise TypeError(
            "define_loss takes a LossDeclaration subclass. Received: "
            f"{declaration!r}"
        )
    for attribute in ("name", "class_name"):
        if not getattr(declaration, attribute):
            raise ValueError(f"{declaration.__name__} must set `{attribute}`")
    function = make_function(declaration)
    loss_class = make_loss_class(declaration, function)
    registry.register(registry.LossEntry(declaration, function, loss_class))
    return function, loss_class

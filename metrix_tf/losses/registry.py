"""The loss registry: every declared loss, by name.

`define_loss` (`metrix_tf.losses.loss_declaration`) adds an entry for each
loss file under `metrix_tf/losses/`; `metrix_tf.losses` imports them all.
The trainer, `TrainConfig` (the `--loss` choices), `configs/make_configs.py`,
the benchmarks and the tests read this registry instead of keeping lists.
"""

import dataclasses

_ENTRIES = {}


@dataclasses.dataclass(frozen=True)
class LossEntry:
    """A registered loss.

    Attributes:
        declaration: its `LossDeclaration` subclass.
        function: the loss function.
        loss_class: the Keras `Loss` class.
    """

    declaration: type
    function: object
    loss_class: type

    @property
    def name(self):
        return self.declaration.name

    @property
    def uses_proxies(self):
        """The loss owns class proxies (it needs `num_classes`, `embedding_dim`)."""
        return self.declaration.uses_proxies

    @property
    def has_fused_kernels(self):
        return self.declaration.fused is not None

    def make(self, metrix=None, num_classes=None, embedding_dim=None,
             proxy_lr_multiplier=1.0, **options):
        """An instance of the loss with its default hyper-parameters.

        Args:
            metrix: a `metrix_tf.Metrix` or None.
            num_classes: the proxy table of a loss that uses proxies
                (ignored by the others): its rows.
            embedding_dim: its columns (ignored likewise).
            proxy_lr_multiplier: its learning-rate multiplier (ignored
                likewise).
            **options: hyper-parameters and other class arguments.
        """
        if self.uses_proxies:
            if num_classes is None or embedding_dim is None:
                raise ValueError(
                    f"The {self.name} loss needs `num_classes` and `embedding_dim`. "
                    f"Received: num_classes={num_classes!r}, "
                    f"embedding_dim={embedding_dim!r}"
                )
            return self.loss_class(
                num_classes, embedding_dim, metrix=metrix,
                proxy_lr_multiplier=proxy_lr_multiplier, **options,
            )
        return self.loss_class(metrix=metrix, **options)


def register(entry):
    """Add a loss; a name is registered once (a reload replaces it)."""
    previous = _ENTRIES.get(entry.name)
    if previous is not None and previous.loss_class.__module__ != entry.loss_class.__module__:
        raise ValueError(
            f"Two losses are named {entry.name!r}: in "
            f"{previous.loss_class.__module__} and {entry.loss_class.__module__}"
        )
    _ENTRIES[entry.name] = entry
    return entry


def loss_names():
    """The registered loss names, in registration order."""
    _import_losses()
    return tuple(_ENTRIES)


def get(name):
    """The `LossEntry` of a name; ValueError listing the names otherwise."""
    _import_losses()
    if name not in _ENTRIES:
        raise ValueError(
            f"Unknown loss {name!r}: the registered losses are {tuple(_ENTRIES)}"
        )
    return _ENTRIES[name]


def entries():
    """Every `LossEntry`, in registration order."""
    _import_losses()
    return tuple(_ENTRIES.values())


def _import_losses():
    import metrix_tf.losses  # noqa: F401  (imports and registers every loss file)

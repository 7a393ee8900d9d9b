"""Writes the paper's recipes (METRIX.md section 6) as metrix-train configs.

    python configs/make_configs.py     # rewrites configs/<dataset>/*.json

One JSON file per data set x loss x {baseline, input, feature, embedding};
`metrix-train --config=FILE --data_dir=...` runs it. The recipe: ResNet-50
from ImageNet weights, embedding 512, batch 100, Adam (lr 1e-4, weight decay
1e-4), 60 epochs with step decay, 5 warm-up epochs training only the head
(and proxies, whose lr is x100), frozen BatchNorm; SOP and In-Shop use
class-balanced batches of 5 images per class. Where METRIX.md gives no value
(the decay steps; the lr of SOP / In-Shop) we use lr x0.5 every 10 epochs
and lr 1e-4.
"""

import json
import os

from metrix_tf.losses import registry
from metrix_tf.mixing.metrix import LEVELS as METRIX_LEVELS

HERE = os.path.dirname(os.path.abspath(__file__))
DATASETS = {
    "cub200": {"images_per_class": 0},
    "cars196": {"images_per_class": 0},
    "sop": {"images_per_class": 5},
    "inshop": {"images_per_class": 5},
}
LOSSES = registry.loss_names()
LEVELS = ("none",) + METRIX_LEVELS


def recipe(dataset, loss, level):
    config = {
        "dataset": dataset,
        "loss": loss,
        "metrix_level": level,
        "backbone": "resnet50",
        "backbone_weights": "imagenet",
        "freeze_batchnorm": True,
        "embedding_dim": 512,
        "batch_size": 100,
        "epochs": 60,
        "warmup_epochs": 5,
        "learning_rate": 1e-4,
        "weight_decay": 1e-4,
        "lr_decay_epochs": "10,20,30,40,50",
        "lr_decay_factor": 0.5,
        "proxy_lr_multiplier": 100.0,
        "metrix_weight": 0.4,
        "metrix_alpha": 2.0,
        "metrix_strategy": "random",
        "validation_fraction": 0.1,
        "workdir": f"runs/{dataset}/{loss}_{'baseline' if level == 'none' else level}",
    }
    config.update(DATASETS[dataset])
    return config


def main():
    for dataset in DATASETS:
        os.makedirs(os.path.join(HERE, dataset), exist_ok=True)
        for loss in LOSSES:
            for level in LEVELS:
                name = f"{loss}_{'baseline' if level == 'none' else level}.json"
                with open(os.path.join(HERE, dataset, name), "w") as f:
                    json.dump(recipe(dataset, loss, level), f, indent=2, sort_keys=True)
                    f.write("\n")


if __name__ == "__main__":
    main()

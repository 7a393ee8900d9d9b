"""The figures of the README section "Icons data set", reproducibly.

    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/icons_summary.py [--fresh]

Needs the Debian themes (`metrix_tf.data.icons.APT_LINE`). Prints: the
apt-get line; the build time in a fresh cache directory (`--fresh`; else
the load through the default cache) and the cached load time; a table of
the design groups (their themes, images each); classes, images, images per
class (min / median / max); train / val / test classes and images; how
often themes derived from one another give exact or near duplicates in
their shared classes (the near-duplicate rule's evidence, with unrelated
pairs as controls); the broken files; and the leave-one-out Recall@K on
the test classes of raw pixels (L2-normalised flattened RGB) and of the
ImageNet EfficientNet-Lite0's pooled features, untrained (global average
plus max pooling of its last maps, as the embedding head pools, at the data
set's size; `--no-imagenet` skips it).
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

# Run from a source checkout without installing.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DERIVED = (("Faba", "Moka"), ("Numix", "Numix-Circle"), ("gnome", "mate"),
           ("elementary", "elementary-xfce"), ("Faenza", "Obsidian"),
           ("Papirus", "ePapirus"), ("bloom", "bloom-classic"),
           ("Sea", "bloom"), ("Vintage", "bloom"), ("Nuovo", "yasis"),
           ("Adwaita", "gnome"), ("Papirus", "breeze"))
UNRELATED = (("Papirus", "oxygen"), ("Faenza", "Moka"), ("Moka", "oxygen"),
             ("Faenza", "breeze"), ("Paper", "oxygen"))


def group_images(splits):
    """Images per design group in the whole set (train + test)."""
    with np.load(splits.info["npz"], allow_pickle=False) as f:
        theme_index = f["theme_index"]
    base = {t: g for g, themes in splits.info["groups"].items()
            for t in themes}
    names = splits.info["theme_names"]
    counts = {}
    for t in theme_index:
        counts[base[names[t]]] = counts.get(base[names[t]], 0) + 1
    return counts


def pair_line(splits, a, b):
    key = "|".join(sorted((a, b)))
    counts = splits.info["group_pairs"].get(
        key, {"exact": 0, "near": 0, "distinct": 0})
    shared = counts["exact"] + counts["near"] + counts["distinct"]
    if not shared:
        return f"| {a} / {b} | 0 | - | - |"
    return (f"| {a} / {b} | {shared} | {counts['exact'] / shared:.1%} | "
            f"{counts['near'] / shared:.1%} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/usr/share/icons")
    parser.add_argument("--image_size", type=int, default=None)
    parser.add_argument("--validation_fraction", type=float, default=0.2)
    parser.add_argument("--cache_dir", default=None,
                        help="cache directory (default: the library's)")
    parser.add_argument("--no-imagenet", dest="imagenet", action="store_false",
                        help="skip the untrained ImageNet features")
    parser.add_argument("--fresh", action="store_true",
                        help="build in a new temporary cache directory")
    args = parser.parse_args()

    import faiss

    from metrix_tf import data
    from metrix_tf.data import icons
    from metrix_tf.evaluation import evaluate_retrieval

    faiss.omp_set_num_threads(1)
    image_size = args.image_size or icons.IMAGE_SIZE
    print(f"apt-get update && {icons.APT_LINE}")
    cache_dir = (tempfile.mkdtemp(prefix="icons_") if args.fresh
                 else args.cache_dir)
    start = time.perf_counter()
    splits = data.load_icons(args.root, image_size=image_size,
                             cache_dir=cache_dir)
    first = time.perf_counter() - start
    how = "cache hit" if splits.info["cache_hit"] else "build"
    print(f"first load ({how}, {image_size} px): {first:.1f} s")
    start = time.perf_counter()
    again = data.load_icons(args.root, image_size=image_size,
                            cache_dir=cache_dir,
                            validation_fraction=args.validation_fraction)
    print(f"cached load (cache_hit={again.info['cache_hit']}): "
          f"{time.perf_counter() - start:.2f} s, "
          f"{os.path.getsize(again.info['npz']) / 2 ** 20:.0f} MiB npz")

    counts = group_images(splits)
    print("\n| design group | themes | images |\n|---|---|---:|")
    for group, themes in sorted(splits.info["groups"].items(),
                                key=lambda g: g[0].lower()):
        print(f"| {group} | {', '.join(themes)} | {counts.get(group, 0)} |")
    per_class = np.concatenate([splits.train.class_counts(),
                                splits.test.class_counts()])
    print(f"\n{len(splits.info['groups'])} design groups from "
          f"{len(splits.info['theme_names'])} themes; "
          f"{per_class.size} classes, {per_class.sum()} images; images per "
          f"class min {per_class.min()} / median {np.median(per_class):g} / "
          f"max {per_class.max()}")
    print("\n| split | classes | images |\n|---|---:|---:|")
    for part in ("train", "val", "test"):
        split = getattr(again, part)
        print(f"| {part} | {split.num_classes} | {split.num_examples} |")
    print(f"(val: {args.validation_fraction:g} of the training classes, "
          "seed 0)")

    print("\nDuplicates between themes, among the classes both draw "
          "(before the min_designs filter):")
    print("| themes | shared classes | exact duplicates | near duplicates "
          "(< 0.02) |\n|---|---:|---:|---:|")
    for a, b in DERIVED + UNRELATED:
        print(pair_line(splits, a, b) + (" (unrelated)" if (a, b) in
                                         UNRELATED else ""))
    print(f"\nbroken files skipped: {splits.info['num_broken']}, dangling "
          f"links: {splits.info['num_dangling_links']}")
    for line in splits.info["broken"]:
        print("  " + line[:160])

    test = splits.test
    pixels = test.images.reshape(test.num_examples, -1).astype(np.float32)
    result = evaluate_retrieval(pixels, test.labels, ks=(1, 2, 4, 8),
                                num_threads=1)
    print(f"\nraw pixels, test classes ({test.num_classes} classes, "
          f"{test.num_examples} queries, leave-one-out): "
          + ", ".join(f"R@{k} {result[f'recall@{k}']:.3f}"
                      for k in (1, 2, 4, 8))
          + f", MAP@R {result['map@r']:.3f}")
    if args.imagenet:
        result = evaluate_retrieval(imagenet_features(test), test.labels, ks=(1, 2, 4, 8),
                                    num_threads=1)
        print(f"untrained ImageNet EfficientNet-Lite0 (GAP + GMP of its {test.images.shape[1]} px "
              "maps): " + ", ".join(f"R@{k} {result[f'recall@{k}']:.3f}" for k in (1, 2, 4, 8))
              + f", MAP@R {result['map@r']:.3f}")


def imagenet_features(split):
    """Pooled maps of the ImageNet EfficientNet-Lite0 (eval transform)."""
    from metrix_tf import data
    from metrix_tf.models import backbone_input
    from metrix_tf.models import make_backbone

    pre = data.Preprocessing.for_dataset("icons").for_backbone(backbone_input("efficientnet_lite0"))
    backbone = make_backbone("efficientnet_lite0", (pre.image_size,) * 2 + (3,), weights="imagenet")
    features = []
    for images, _ in data.eval_batches(split, pre, 256):
        maps = backbone(images, training=False).numpy()
        features.append(maps.mean(axis=(1, 2)) + maps.max(axis=(1, 2)))
    return np.concatenate(features)


if __name__ == "__main__":
    main()

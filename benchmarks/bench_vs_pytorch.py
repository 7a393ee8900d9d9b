"""A plain training step of ours against a plain PyTorch step of the same shape.

Both sides train ResNet-50 (random init; `--backbone=efficientnet_lite0`
(or 1, 2): EfficientNet-Lite, ours `metrix_tf.applications`, PyTorch's the
`efficientnet_lite_pytorch` package's, both with drop-connect) with the paper's embedding head
(global average + max pooling summed, Linear/Dense to --embedding-dim, L2
normalisation) and the contrastive loss (positive margin 0, negative margin
0.5, each of the two terms averaged over its non-zero entries, as
pytorch-metric-learning's ContrastiveLoss), Adam at 1e-4, on the same
class-balanced batch (--classes x --per-class images of --image-size). Ours is
`metrix_tf.models.EmbeddingModel` + `metrix_tf.losses.ContrastiveLoss` +
`metrix_tf.optimizers.FusedAdam` (what metrix-train uses; `--keras-adam` for
keras.optimizers.Adam) stepped by `train_on_batch`; PyTorch's is a ResNet-50 written here from
torch.nn (torchvision's layout: stride in the 3x3 convolution, "v1.5";
`--torch-stride-in-1x1` uses Keras' original layout instead) stepped by a
plain loop (zero_grad, forward, loss, backward, step). Each runs with
BatchNormalization frozen (inference mode, not trained: the paper's recipe
and the reference implementation's) and in training mode.

The variants are timed interleaved, round by round, in one process with the
same number of threads (--threads, both frameworks); the table gives the
median step, images/s, and ours / PyTorch in images/s (> 1: ours is faster).

PyTorch is a benchmark-only dependency (pip install torch); the library and
the tests never import it.

    python benchmarks/bench_vs_pytorch.py                 # 128 x 128, 8 x 4
    python benchmarks/bench_vs_pytorch.py --rounds 3 --bn frozen
    python benchmarks/bench_vs_pytorch.py --backbone=efficientnet_lite0 --bn frozen \
        --image-size 224        # pip install efficientnet-lite-pytorch
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

try:
    import torch  # noqa: E402
    from torch import nn  # noqa: E402
except ImportError:  # pragma: no cover - benchmark-only dependency
    sys.exit("bench_vs_pytorch.py needs PyTorch: pip install torch")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import metrix_tf  # noqa: E402


# ------------------------------------------------------------------ PyTorch --


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels, width, stride, stride_in_1x1):
        super().__init__()
        out = width * self.expansion
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = nn.Conv2d(in_channels, width, 1, s1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, s3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = None
        if stride != 1 or in_channels != out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out, 1, stride, bias=False), nn.BatchNorm2d(out)
            )

    def forward(self, x):
        identity = x if self.shortcut is None else self.shortcut(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + identity)


def torch_resnet50_trunk(stride_in_1x1=False):
    """ResNet-50 without its head: `(trunk, channels)`."""
    layers = [
        nn.Conv2d(3, 64, 7, 2, padding=3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, padding=1),
    ]
    channels = 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for b in range(blocks):
            layers.append(Bottleneck(channels, width, stride if b == 0 else 1, stride_in_1x1))
            channels = width * Bottleneck.expansion
    return nn.Sequential(*layers), channels


def torch_lite(name, image_size):
    """EfficientNet-Lite of the `efficientnet_lite_pytorch` package: `(network,
    channels)`; its `extract_features` is the trunk (no pooling, dropout or
    classifier)."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        sys.exit("--backbone=efficientnet_lite*: pip install efficientnet-lite-pytorch")
    # Static "same" padding for this image size (the port's default).
    model = EfficientNet.from_name(name.replace("_", "-"), image_size=image_size)
    return model, model._conv_head.out_channels


class TorchEmbeddingNet(nn.Module):
    """A trunk (ResNet-50 or EfficientNet-Lite) + GAP/GMP + Linear + L2
    normalisation."""

    def __init__(self, embedding_dim, stride_in_1x1=False, backbone="resnet50", image_size=128):
        super().__init__()
        if backbone == "resnet50":
            self.trunk, channels = torch_resnet50_trunk(stride_in_1x1)
        else:
            self.network, channels = torch_lite(backbone, image_size)
            self.trunk = self.network.extract_features
        self.projection = nn.Linear(channels, embedding_dim)

    def forward(self, x):
        maps = self.trunk(x)
        pooled = maps.mean(dim=(2, 3)) + maps.amax(dim=(2, 3))
        return nn.functional.normalize(self.projection(pooled), dim=1)


def torch_contrastive(embeddings, labels, pos_margin=0.0, neg_margin=0.5):
    distances = torch.cdist(embeddings, embeddings)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos = torch.relu(distances[same & ~eye] - pos_margin)
    neg = torch.relu(neg_margin - distances[~same])

    def average_non_zero(terms):
        count = (terms > 0).sum()
        return terms.sum() / count if count > 0 else terms.sum() * 0

    return average_non_zero(pos) + average_non_zero(neg)


def freeze_torch_batchnorm(model):
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eval()
            for p in module.parameters():
                p.requires_grad_(False)


def torch_step_fn(images, labels, args, frozen, channels_last=False):
    """PyTorch's step; `channels_last`: the model and batch in NHWC memory
    (PyTorch's faster CPU layout for depthwise convolutions)."""
    torch.manual_seed(0)
    device = "cuda" if args.device == "gpu" else "cpu"
    model = TorchEmbeddingNet(args.embedding_dim, args.torch_stride_in_1x1, args.backbone,
                              args.image_size).to(device)
    model.train()
    if frozen:
        freeze_torch_batchnorm(model)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).to(device)  # NCHW
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.from_numpy(labels.astype(np.int64)).to(device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = torch_contrastive(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


# --------------------------------------------------------------------- ours --


def ours_step_fn(images, labels, args, frozen, plain=False):
    """Our step; `plain`: Keras' BatchNormalization and Adam (before issue 12)."""
    keras.utils.set_random_seed(0)
    shape = (args.image_size, args.image_size, 3)
    if args.backbone != "resnet50":
        backbone = metrix_tf.models.make_backbone(args.backbone, shape)
    elif plain:
        backbone = keras.applications.ResNet50(include_top=False, weights=None, input_shape=shape)
    else:
        backbone = None
    model = metrix_tf.models.EmbeddingModel(
        backbone=backbone,
        embedding_dim=args.embedding_dim,
        freeze_batchnorm=frozen,
        input_shape=(args.image_size, args.image_size, 3),
    )
    keras_adam = args.keras_adam or plain
    optimizer = (keras.optimizers.Adam if keras_adam else metrix_tf.optimizers.FusedAdam)(1e-4)
    model.compile(optimizer, loss=metrix_tf.losses.ContrastiveLoss())

    def step():
        return float(model.train_on_batch(images, labels))

    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backbone", default="resnet50",
        choices=["resnet50", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--per-class", type=int, default=4)
    parser.add_argument("--embedding-dim", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--bn", choices=["frozen", "training", "both"], default="both")
    parser.add_argument("--torch-stride-in-1x1", action="store_true")
    parser.add_argument(
        "--torch-channels-last", action="store_true",
        help="also time PyTorch with channels_last memory; ratios are to PyTorch's faster layout")
    parser.add_argument("--keras-adam", action="store_true")
    parser.add_argument(
        "--with-plain-keras", action="store_true",
        help="also time ours with Keras' BatchNormalization and Adam (no fused kernels)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    if args.device == "cpu":
        tf.config.set_visible_devices([], "GPU")
    elif not (torch.cuda.is_available() and tf.config.list_physical_devices("GPU")):
        sys.exit("--device gpu: PyTorch or TensorFlow sees no GPU")
    batch = args.classes * args.per_class
    rng = np.random.default_rng(0)
    images = rng.normal(size=(batch, args.image_size, args.image_size, 3)).astype("float32")
    labels = np.repeat(np.arange(args.classes), args.per_class).astype("int32")

    modes = ["frozen", "training"] if args.bn == "both" else [args.bn]
    steps = {}
    for mode in modes:
        steps[f"ours, BN {mode}"] = ours_step_fn(images, labels, args, mode == "frozen")
        if args.with_plain_keras:
            steps[f"ours with Keras BN + Adam, BN {mode}"] = ours_step_fn(
                images, labels, args, mode == "frozen", plain=True)
        steps[f"PyTorch, BN {mode}"] = torch_step_fn(images, labels, args, mode == "frozen")
        if args.torch_channels_last:
            steps[f"PyTorch channels_last, BN {mode}"] = torch_step_fn(
                images, labels, args, mode == "frozen", channels_last=True)
    for name, step in steps.items():  # trace, allocate, warm up
        for _ in range(args.warmup):
            assert np.isfinite(step()), name
    times = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)

    print(
        f"{args.backbone}, {args.image_size}x{args.image_size}, batch {batch} "
        f"({args.classes} classes x {args.per_class}), contrastive loss, Adam, "
        f"{args.device}, {args.threads} threads, {args.rounds} interleaved rounds; TensorFlow "
        f"{tf.__version__}, Keras {keras.__version__}, PyTorch {torch.__version__}, "
        f"op backend {metrix_tf.ops.backend()}"
    )
    print("| variant | median step (s) | images/s | ours / PyTorch (images/s) |")
    print("|---|---|---|---|")
    for mode in modes:
        ours = statistics.median(times[f"ours, BN {mode}"])
        layouts = [f"PyTorch, BN {mode}"] + (
            [f"PyTorch channels_last, BN {mode}"] if args.torch_channels_last else [])
        theirs = min(statistics.median(times[name]) for name in layouts)  # their faster layout
        print(f"| ours, BN {mode} | {ours:.3f} | {batch / ours:.1f} | {theirs / ours:.2f}x |")
        if args.with_plain_keras:
            plain = statistics.median(times[f"ours with Keras BN + Adam, BN {mode}"])
            print(f"| ours with Keras BN + Adam, BN {mode} | {plain:.3f} | {batch / plain:.1f} "
                  f"| {theirs / plain:.2f}x |")
        for name in layouts:
            median = statistics.median(times[name])
            print(f"| {name} | {median:.3f} | {batch / median:.1f} | |")


if __name__ == "__main__":
    main()

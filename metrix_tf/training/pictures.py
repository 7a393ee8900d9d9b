"""What a run shows besides figures: a retrieval gallery of test queries
and the test embeddings for TensorBoard's embedding projector.

- `retrieval_gallery`: a PNG with a few test queries (left column), each
  followed by its K nearest neighbours by cosine similarity, framed green
  when of the query's class and red otherwise (leave-one-out: the query
  itself is never its neighbour).
- `write_projector`: `projector_config.pbtxt` in a TensorBoard logdir and,
  under `projector/`, the embeddings (`tensors.tsv`), their labels and class
  names (`metadata.tsv`) and a sprite of image thumbnails (`sprite.png`):
  `tensorboard --logdir=WORKDIR/logs`, tab "Projector".
"""

import math
import os

import numpy as np
from PIL import Image

from metrix_tf.evaluation import knn

GALLERY_FILE = "retrieval_gallery.png"
PROJECTOR_CONFIG = "projector_config.pbtxt"
PROJECTOR_DIR = "projector"
RIGHT, WRONG, QUERY = (0, 170, 0), (220, 0, 0), (40, 40, 40)


def thumbnails(split, indices, size):
    """uint8 RGB thumbnails `(len(indices), size, size, 3)` of a split's
    images (centre square, resized)."""
    out = np.zeros((len(indices), size, size, 3), np.uint8)
    for row, index in enumerate(indices):
        if split.is_files:
            with Image.open(str(split.images[index])) as image:
                image.draft("RGB", (size * 2, size * 2))  # fast JPEG decode
                image = image.convert("RGB")
        else:
            pixels = np.asarray(split.images[index])
            if pixels.ndim == 3 and pixels.shape[-1] == 1:
                pixels = pixels[..., 0]
            image = Image.fromarray(pixels.astype(np.uint8)).convert("RGB")
        side = min(image.size)
        left, top = (image.size[0] - side) // 2, (image.size[1] - side) // 2
        image = image.crop((left, top, left + side, top + side))
        out[row] = np.asarray(image.resize((size, size), Image.BILINEAR))
    return out


def _save_png(array, path):
    tmp = f"{path}.tmp-{os.getpid()}.png"
    Image.fromarray(array).save(tmp)
    os.replace(tmp, path)


def retrieval_gallery(path, split, embeddings, num_queries=8, k=5, seed=0, size=64,
                      gallery_split=None, gallery_embeddings=None):
    """Write the retrieval gallery PNG (see the module); atomic write.

    Args:
        path: the PNG's path.
        split: the query `ImageSplit` (the test classes).
        embeddings: its embeddings `(N, D)`.
        num_queries: rows: the queries are
            `np.sort(np.random.default_rng(seed).choice(N, num_queries, replace=False))`.
        k: neighbours per query.
        seed: seed of the query draw.
        size: thumbnail side in pixels.
        gallery_split, gallery_embeddings: a separate gallery (In-Shop);
            None for leave-one-out within `split`.

    Returns:
        `(queries, neighbours, right)`: the query indices `(Q,)`, neighbour
        indices `(Q, k)` and whether each neighbour is of the query's class.
    """
    leave_one_out = gallery_split is None
    if leave_one_out:
        gallery_split, gallery_embeddings = split, embeddings
    k = min(k, len(gallery_embeddings) - (1 if leave_one_out else 0))
    rng = np.random.default_rng(seed)
    queries = np.sort(rng.choice(len(embeddings), min(num_queries, len(embeddings)), replace=False))
    _, found = knn(np.asarray(embeddings)[queries], gallery_embeddings, k=k + leave_one_out)
    neighbours = np.stack([
        [n for n in row if not (leave_one_out and n == q)][:k] for q, row in zip(queries, found)
    ])
    right = gallery_split.labels[neighbours] == split.labels[queries][:, None]

    border, gap = max(2, size // 16), max(4, size // 8)
    cell = size + 2 * border
    canvas = np.full((len(queries) * (cell + gap) + gap, (k + 1) * (cell + gap) + 2 * gap, 3),
                     255, np.uint8)
    query_images = thumbnails(split, queries, size)
    for row, q in enumerate(queries):
        y = gap + row * (cell + gap)
        images = [query_images[row], *thumbnails(gallery_split, neighbours[row], size)]
        colours = [QUERY] + [RIGHT if r else WRONG for r in right[row]]
        for col, (image, colour) in enumerate(zip(images, colours)):
            x = gap + col * (cell + gap) + (gap if col else 0)  # a wider gap after the query
            canvas[y:y + cell, x:x + cell] = colour
            canvas[y + border:y + border + size, x + border:x + border + size] = image
    _save_png(canvas, path)
    return queries, neighbours, right


def write_projector(logdir, split, embeddings, max_points=4096, seed=0, size=None):
    """Write the embeddings of `split` for TensorBoard's projector.

    Args:
        logdir: the TensorBoard logdir (`projector_config.pbtxt` goes there,
            the data into `logdir/projector/`).
        split: the `ImageSplit` embedded (labels, class names, images).
        embeddings: `(N, D)` float array.
        max_points: at most this many rows (a seeded random subset, in
            order), which keeps the sprite within TensorBoard's 8192 px.
        seed: seed of the subset.
        size: thumbnail side (default: 32 for in-memory images, else 64,
            smaller when the sprite would exceed 8192 px).

    Returns:
        The indices of the rows written.
    """
    embeddings = np.asarray(embeddings, np.float32)
    rows = np.arange(len(embeddings))
    if len(rows) > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(len(rows), max_points, replace=False))
    side = math.ceil(math.sqrt(len(rows)))
    size = min(size or (64 if split.is_files else 32), 8192 // side)
    directory = os.path.join(logdir, PROJECTOR_DIR)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "tensors.tsv"), "w") as f:
        for vector in embeddings[rows]:
            f.write("\t".join(f"{v:.6g}" for v in vector) + "\n")
    with open(os.path.join(directory, "metadata.tsv"), "w") as f:
        f.write("label\tclass\n")
        for label in split.labels[rows]:
            name = str(split.class_names[label]).replace("\t", " ").replace("\n", " ")
            f.write(f"{int(label)}\t{name}\n")
    sprite = np.zeros((side * size, side * size, 3), np.uint8)
    for i, image in enumerate(thumbnails(split, rows, size)):
        y, x = divmod(i, side)
        sprite[y * size:(y + 1) * size, x * size:(x + 1) * size] = image
    _save_png(sprite, os.path.join(directory, "sprite.png"))
    config = (
        "embeddings {\n"
        '  tensor_name: "test_embeddings"\n'
        f'  tensor_path: "{PROJECTOR_DIR}/tensors.tsv"\n'
        f'  metadata_path: "{PROJECTOR_DIR}/metadata.tsv"\n'
        "  sprite {\n"
        f'    image_path: "{PROJECTOR_DIR}/sprite.png"\n'
        f"    single_image_dim: {size}\n"
        f"    single_image_dim: {size}\n"
        "  }\n"
        "}\n"
    )
    with open(os.path.join(logdir, PROJECTOR_CONFIG), "w") as f:
        f.write(config)
    return rows

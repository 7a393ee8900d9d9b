"""The built-in offline data set: Unicode glyphs rendered from bundled fonts.

Each class is one Unicode character; its examples are that character drawn
in each of the fonts that ship inside the matplotlib wheel (DejaVu Sans,
Sans Mono and Serif, and STIX General, each in 4 styles: 16 fonts), each
with a small seeded random affine jitter (rotation, scale, shear, shift),
as 32x32 grayscale images (white ink on black). No download, no apt
package: a fresh `pip install` is enough.

Characters: those every font maps in its cmap (checked with fontTools),
letters, digits and symbols only, that leave enough ink in every font (no
empty or near-empty glyph), fit the canvas, and differ from every character
already chosen (homoglyphs such as Latin "A" / Greek "Alpha" / Cyrillic "A"
render identically and would make impossible classes). The candidates are
visited in a seeded order and the first `num_classes` that pass are kept;
half of them (seeded) are training classes, the other half the unseen test
classes.

The set is deterministic for a given font set, generator version and
renderer (Pillow + FreeType versions): all of these form the cache key. The
result is cached as `glyphs-<key>.npz` + `.json` under `data_dir`; the JSON
records the content SHA-256 of the arrays, checked at every load.
"""

import hashlib
import io
import json
import os
import tempfile
import time
import unicodedata

import numpy as np

from metrix_tf.data.data_splits import DataSplits
from metrix_tf.data.image_files import sha256_file
from metrix_tf.data.image_split import ImageSplit
from metrix_tf.data.image_split import remap_labels

GENERATOR_VERSION = 1
DEFAULT_NUM_CLASSES = 360
TINY_NUM_CLASSES = 20
# The large set (the quality benchmark): the characters the 12 DejaVu
# faces render distinctly at 16 x 16 (1,156 pass here), rounded down. At
# 16 pixels accents and small marks blur, which makes the set hard (and
# training four times cheaper than at 32).
LARGE_NUM_CLASSES = 1152
LARGE_IMAGE_SIZE = 16
LARGE_FAMILIES = ("DejaVu",)
_SUPERSAMPLE = 4     # render at 4x, then area-average down
_EM_FRACTION = 0.6   # font size as a fraction of the (supersampled) canvas
_MIN_INK = 0.02      # least mean ink (0..1) in every font
_MIN_DISTANCE = 0.008  # least mean |difference| to any chosen character
_CATEGORIES = ("Lu", "Ll", "Lt", "Lo", "Nd", "No", "Nl", "Sm", "Sc", "So")
_ARRAYS = ("images", "class_index", "font_index", "codepoints", "train_class")


def _require(module):
    try:
        return __import__(module)
    except ImportError:
        raise ImportError(
            f"The built-in glyph data set needs {module!r} (Pillow, "
            "matplotlib and fontTools): pip install matplotlib pillow") from None


def matplotlib_fonts(families=("DejaVu", "STIXGeneral")):
    """The text fonts bundled with matplotlib, as sorted file paths.

    DejaVu Sans, DejaVu Sans Mono, DejaVu Serif (regular, bold, oblique /
    italic, bold oblique / bold italic) and STIX General (4 styles). The
    Display, STIX size/non-Unicode, Computer Modern (non-Unicode cmaps) and
    Last Resort (placeholder boxes) fonts are left out.

    Args:
        families: file-name prefixes to keep: ("DejaVu", "STIXGeneral")
            gives the 16 fonts of the built-in set, ("DejaVu",) the 12
            DejaVu faces of the large set.
    """
    matplotlib = _require("matplotlib")
    directory = os.path.join(os.path.dirname(matplotlib.__file__),
                             "mpl-data", "fonts", "ttf")
    fonts = sorted(
        os.path.join(directory, f) for f in os.listdir(directory)
        if f.endswith(".ttf") and "Display" not in f
        and f.startswith(tuple(families)))
    if len(fonts) < 4 * len(families):
        raise FileNotFoundError(f"Expected matplotlib's {families} fonts in "
                                f"{directory!r}, found {len(fonts)}")
    return fonts


def content_hash(arrays):
    """SHA-256 over the named arrays (name, dtype, shape and bytes)."""
    digest = hashlib.sha256()
    for name in _ARRAYS:
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _candidates(font_paths):
    """Code points mapped by every font, in the kept categories."""
    from fontTools.ttLib import TTFont

    common = None
    for path in font_paths:
        cmap = set(TTFont(path, lazy=True).getBestCmap() or {})
        common = cmap if common is None else common & cmap
    keep = []
    for code in sorted(common):
        if unicodedata.category(chr(code)) not in _CATEGORIES:
            continue
        if 0x2500 <= code <= 0x259F:  # box drawing / blocks: font-invariant
            continue
        keep.append(code)
    return keep


class _Renderer:
    """Draws one character of one font, optionally with an affine jitter."""

    def __init__(self, font_paths, image_size):
        from PIL import ImageFont

        self.size = image_size
        self.canvas = image_size * _SUPERSAMPLE
        self.fonts = [ImageFont.truetype(p, size=int(_EM_FRACTION *
                                                     self.canvas))
                      for p in font_paths]

    def fits(self, char, font_index):
        from PIL import Image, ImageDraw

        draw = ImageDraw.Draw(Image.new("L", (1, 1)))
        half = self.canvas / 2
        box = draw.textbbox((half, half), char, font=self.fonts[font_index],
                            anchor="mm")
        return (box[0] >= 0 and box[1] >= 0 and box[2] <= self.canvas
                and box[3] <= self.canvas)

    def render(self, char, font_index, jitter=None):
        """uint8 array `(size, size)`; `jitter` is a numpy Generator."""
        from PIL import Image, ImageDraw

        big = Image.new("L", (self.canvas, self.canvas), 0)
        half = self.canvas / 2
        ImageDraw.Draw(big).text((half, half), char, fill=255,
                                 font=self.fonts[font_index], anchor="mm")
        if jitter is not None:
            angle = np.deg2rad(jitter.uniform(-10.0, 10.0))
            scale = jitter.uniform(0.85, 1.1)
            aspect = jitter.uniform(-0.08, 0.08)
            shear = jitter.uniform(-0.15, 0.15)
            shift = jitter.uniform(-0.06, 0.06, size=2) * self.canvas
            rotation = np.array([[np.cos(angle), -np.sin(angle)],
                                 [np.sin(angle), np.cos(angle)]])
            forward = rotation @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag(
                [scale * (1 + aspect), scale * (1 - aspect)])
            # PIL maps output pixels back to input pixels: invert about the
            # centre, then shift.
            inverse = np.linalg.inv(forward)
            centre = np.array([half, half])
            offset = centre - inverse @ (centre + shift)
            big = big.transform(
                big.size, Image.AFFINE,
                (inverse[0, 0], inverse[0, 1], offset[0],
                 inverse[1, 0], inverse[1, 1], offset[1]),
                resample=Image.BILINEAR)
        small = big.resize((self.size, self.size), Image.BOX)
        return np.asarray(small, dtype=np.uint8)


def _too_close(chosen, norms, signature):
    """Whether mean |chosen_i - signature| < _MIN_DISTANCE for some i.

    Values lie in [0, 1], so |d| >= d^2: rows whose mean squared difference
    (one matrix-vector product) already reaches the threshold are far
    enough; only the others need the exact mean absolute difference.
    """
    squared = (norms + signature @ signature - 2.0 * (chosen @ signature)
               ) / signature.size
    near = np.flatnonzero(squared < _MIN_DISTANCE + 1e-4)  # rounding slack
    if near.size == 0:
        return False
    return bool(np.abs(chosen[near] - signature).mean(1).min() <
                _MIN_DISTANCE)


def select_characters(font_paths, num_classes, image_size=32, seed=0):
    """Picks `num_classes` characters every font renders distinctly.

    Args:
        font_paths: list of font files.
        num_classes: how many characters.
        image_size: side of the rendered images.
        seed: int, order in which candidates are tried.

    Returns:
        A list of `num_classes` code points, in selection order.

    Raises:
        ValueError: when the fonts offer fewer usable characters.
    """
    candidates = _candidates(font_paths)
    renderer = _Renderer(font_paths, image_size)
    order = np.random.default_rng(seed).permutation(len(candidates))
    chosen = []
    signatures = np.zeros((num_classes, len(font_paths) * image_size ** 2),
                          np.float32)
    norms = np.zeros(num_classes, np.float32)
    for position in order:
        char = chr(candidates[position])
        if not all(renderer.fits(char, f) for f in range(len(font_paths))):
            continue
        glyphs = np.stack([renderer.render(char, f)
                           for f in range(len(font_paths))])
        signature = glyphs.astype(np.float32).reshape(-1) / 255.0
        if signature.reshape(len(font_paths), -1).mean(1).min() < _MIN_INK:
            continue
        if chosen and _too_close(signatures[:len(chosen)],
                                 norms[:len(chosen)], signature):
            continue
        signatures[len(chosen)] = signature
        norms[len(chosen)] = signature @ signature
        chosen.append(candidates[position])
        if len(chosen) == num_classes:
            return chosen
    raise ValueError(
        f"The {len(font_paths)} fonts render only {len(chosen)} distinct "
        f"usable characters in common; requested num_classes={num_classes}")


def build_glyph_set(font_paths, num_classes, image_size=32,
                    samples_per_font=1, seed=0):
    """Renders the glyph data set in memory (no cache).

    Args:
        font_paths: list of font files.
        num_classes: even int >= 2, number of characters.
        image_size: int, side of the square images.
        samples_per_font: int, jittered renderings per (character, font).
        seed: int; fixes characters, split and jitter.

    Returns:
        A dict of numpy arrays: `images` uint8 `(N, size, size, 1)`,
        `class_index` int32 `(N,)` (index into `codepoints`), `font_index`
        int32 `(N,)`, `codepoints` int32 `(num_classes,)`, `train_class`
        bool `(num_classes,)` (exactly half True).
    """
    chosen = select_characters(font_paths, num_classes, image_size, seed)
    renderer = _Renderer(font_paths, image_size)
    images, class_index, font_index = [], [], []
    for c, code in enumerate(chosen):
        for f in range(len(font_paths)):
            for s in range(samples_per_font):
                # Keyed on the character, not its position: the tiny set's
                # images are the full set's images for the same characters.
                jitter = np.random.default_rng([seed, code, f, s])
                images.append(renderer.render(chr(code), f, jitter))
                class_index.append(c)
                font_index.append(f)
    train_class = np.zeros(num_classes, dtype=bool)
    train_class[np.random.default_rng([seed, 1]).permutation(
        num_classes)[:num_classes // 2]] = True
    return {"images": np.stack(images)[..., None],
            "class_index": np.array(class_index, np.int32),
            "font_index": np.array(font_index, np.int32),
            "codepoints": np.array(chosen, np.int32),
            "train_class": train_class}


def default_data_dir():
    """`$METRIX_TF_DATA_DIR`, else `$XDG_CACHE_HOME/metrix_tf`, else
    `~/.cache/metrix_tf`."""
    if os.environ.get("METRIX_TF_DATA_DIR"):
        return os.environ["METRIX_TF_DATA_DIR"]
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "metrix_tf")


def _spec(font_paths, num_classes, image_size, samples_per_font, seed):
    import PIL
    from PIL import features

    return {
        "generator_version": GENERATOR_VERSION,
        "num_classes": num_classes, "image_size": image_size,
        "samples_per_font": samples_per_font, "seed": seed,
        "fonts": [{"name": os.path.basename(p), "sha256": sha256_file(p)}
                  for p in font_paths],
        "pillow": PIL.__version__,
        "freetype": features.version("freetype2"),
    }


def _atomic_write(path, write):
    directory = os.path.dirname(path)
    handle, temporary = tempfile.mkstemp(dir=directory, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as f:
            write(f)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def _read_cache(npz_path, json_path, spec):
    """Returns the cached arrays, or raises ValueError naming the file."""
    try:
        with open(json_path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"Built-in data set cache {json_path!r} is "
                         f"unreadable ({e})") from None
    if meta.get("spec") != spec:
        raise ValueError(f"Built-in data set cache {json_path!r} records "
                         "another build specification than the requested "
                         "one")
    try:
        with np.load(npz_path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in _ARRAYS}
    except Exception as e:  # zip / npy errors come in many types
        raise ValueError(f"Built-in data set cache {npz_path!r} is "
                         f"unreadable ({type(e).__name__}: {e})") from None
    actual = content_hash(arrays)
    if actual != meta.get("content_sha256"):
        raise ValueError(
            f"Built-in data set cache {npz_path!r} is corrupt: content "
            f"SHA-256 {actual} != recorded {meta.get('content_sha256')}")
    return arrays, meta


def load_builtin(data_dir=None, tiny=False, num_classes=None, image_size=None,
                 samples_per_font=1, fonts=None, seed=0, rebuild=False,
                 validation_fraction=None, validation_seed=0, large=False):
    """Loads (building and caching on first use) the built-in glyph set.

    Default: 360 Unicode characters x 16 matplotlib fonts = 5,760 images of
    32x32x1 uint8; 180 training classes (2,880 images), 180 unseen test
    classes (2,880 images), evaluated leave-one-out with Recall@1, 2, 4, 8.
    `tiny=True`: 20 classes (10 / 10), 320 images, for tests.
    `large=True`: the quality benchmark ("builtin_large"): 1,152 characters
    x the 12 DejaVu faces = 13,824 images of 16x16x1, 576 training and 576
    unseen test classes of 12 images each (many classes with few images,
    as in SOP or CUB); building it takes about a minute once.

    Args:
        data_dir: cache directory (default: `default_data_dir()`).
        tiny: bool, the small variant (ignored when `num_classes` is set).
        num_classes: optional even int >= 4, number of characters.
        image_size: int >= 8, image side (default 32; 16 with `large`).
        samples_per_font: int >= 1, jittered images per (character, font).
        fonts: optional list of font files (default: `matplotlib_fonts()`);
            e.g. add Debian fonts; their names and hashes enter the cache
            key and the metadata.
        seed: int; characters, split and jitter.
        rebuild: bool; rebuild even when a cache exists (also the way out
            of a corrupt cache).
        validation_fraction: optional float: carve this fraction of the
            training classes into `val` (see `split_validation`).
        validation_seed: seed of that choice.
        large: bool, the large set (default fonts: the 12 DejaVu faces,
            `num_classes` 1,152, `image_size` 16); not with `tiny`.

    Returns:
        `DataSplits` named "builtin" ("builtin_large" with `large`): `train` and `test` in-memory
        `ImageSplit`s (images uint8 `(N, size, size, 1)`, labels remapped
        per split to `0..C-1` in code point order, `class_names` like
        "A U+0041 LATIN CAPITAL LETTER A"), optional `val`; `info` holds the
        cache paths, content hash, build seconds, whether it was a cache
        hit, and the font list.

    Raises:
        ValueError: bad arguments, or a cache that fails its hash check
            (names the file; pass `rebuild=True` or delete it).
    """
    if tiny and large:
        raise ValueError("`tiny` and `large` exclude each other. Received: "
                         "tiny=True, large=True")
    name = "builtin_large" if large else "builtin"
    if num_classes is None:
        num_classes = (LARGE_NUM_CLASSES if large else
                       TINY_NUM_CLASSES if tiny else DEFAULT_NUM_CLASSES)
    if image_size is None:
        image_size = LARGE_IMAGE_SIZE if large else 32
    for arg, value, low in (("num_classes", num_classes, 4),
                            ("image_size", image_size, 8),
                            ("samples_per_font", samples_per_font, 1)):
        if isinstance(value, bool) or not isinstance(
                value, (int, np.integer)) or value < low:
            raise ValueError(f"`{arg}` must be an int >= {low}. "
                             f"Received: {arg}={value!r}")
    if num_classes % 2:
        raise ValueError("`num_classes` must be even (split 50/50). "
                         f"Received: num_classes={num_classes}")
    _require("PIL")
    _require("fontTools")
    font_paths = (list(fonts) if fonts is not None else
                  matplotlib_fonts(LARGE_FAMILIES) if large else
                  matplotlib_fonts())
    for path in font_paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Font file not found: {path!r}")
    spec = _spec(font_paths, int(num_classes), int(image_size),
                 int(samples_per_font), int(seed))
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
    data_dir = data_dir or default_data_dir()
    os.makedirs(data_dir, exist_ok=True)
    stem = os.path.join(data_dir, f"glyphs-{key[:16]}")
    npz_path, json_path = stem + ".npz", stem + ".json"
    start = time.perf_counter()
    cache_hit = (not rebuild and os.path.isfile(json_path)
                 and os.path.isfile(npz_path))
    if cache_hit:
        arrays, meta = _read_cache(npz_path, json_path, spec)
    else:
        arrays = build_glyph_set(font_paths, int(num_classes),
                                 int(image_size), int(samples_per_font),
                                 int(seed))
        meta = {"spec": spec, "content_sha256": content_hash(arrays),
                "characters": "".join(chr(c) for c in arrays["codepoints"])}
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        _atomic_write(npz_path, lambda f: f.write(buffer.getvalue()))
        _atomic_write(json_path, lambda f: f.write(
            json.dumps(meta, indent=1, ensure_ascii=False).encode("utf-8")))
    seconds = time.perf_counter() - start
    splits = {}
    codepoints = arrays["codepoints"]
    for part, is_train in (("train", True), ("test", False)):
        keep = arrays["train_class"][arrays["class_index"]] == is_train
        labels, codes = remap_labels(
            codepoints[arrays["class_index"][keep]].tolist(),
            f"{name}/{part}")
        names = [f"{chr(c)} U+{c:04X} {unicodedata.name(chr(c), '?')}"
                 for c in codes]
        splits[part] = ImageSplit(arrays["images"][keep], labels, names,
                                  name=f"{name}/{part}")
    info = {"npz": npz_path, "json": json_path,
            "content_sha256": meta["content_sha256"], "cache_hit": cache_hit,
            "seconds": seconds, "fonts": [f["name"] for f in spec["fonts"]]}
    result = DataSplits(name, splits["train"], test=splits["test"],
                        recall_ks=(1, 2, 4, 8), info=info)
    if validation_fraction:
        result = result.with_validation(validation_fraction,
                                        seed=validation_seed)
    return result

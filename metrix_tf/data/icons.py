"""The icons data set: desktop icon themes, one class per icon name.

Debian packages about twenty freedesktop icon themes drawn by different
designers. One icon name ("folder", "firefox", "edit-copy") drawn by several
of them is one class with several designs, as one product photographed
several times is one class of Stanford Online Products.

Rules (each is deterministic; `load_icons` documents its arguments):

- Themes: every directory under `root` with an `index.theme` that has icon
  directories, except `hicolor` (the fallback theme that collects the
  installed applications' own icons: its content depends on the machine,
  not on the theme packages).
- Directories and sizes come from `index.theme` (`Directories`,
  `ScaledDirectories`, each with `Size`, `Scale`, `Type`, `MaxSize`); a
  theme without that list is read from folder names (`48x48/apps`,
  `apps/48`, `48x48@2x`, `scalable`). Names ending in `-symbolic`
  (monochrome glyphs drawn to one shared specification) are left out.
- One source file per (design group, icon name): the largest PNG of at
  least 48 px (`Size x Scale`), else the SVG of the largest size (a
  scalable directory counts its `MaxSize`), rendered with librsvg's
  `rsvg-convert` (the renderer GTK / GNOME draw these themes with, so they
  look as designed; maintained, in Debian as librsvg2-bin); alpha
  composited on mid grey (128, 128, 128), padded to a square and resized
  to `image_size`. Grey, not white: several themes draw their panel and
  status icons white (for dark panels) and others black; on grey both stay
  visible, and it is about zero after ImageNet normalisation.
- Design groups: recoloured variants count as one design. Theme A is a
  variant of theme B when A's name is B's name, "-" and words that all
  name a colour or a lightness (`VARIANT_WORDS`: Papirus-Dark, breeze-dark,
  Obsidian-Aqua-Light, Faenza-Ambiance, elementary-xfce-darkest,
  Paper-Mono-Dark), or when `KNOWN_VARIANTS` says so (menta, a green mate);
  variants of variants join the same group. Within a group the base theme
  (the one that is no variant) answers first, then its variants by depth
  and name: a variant fills only the names its base lacks.
- Aliases: the same file (a symlink, or a byte-identical copy) reachable
  under several icon names, in one theme or several, is one image, and it
  goes to one name: the name most design groups have (as a file or a
  link), ties to the alphabetically first. A design group contributes at
  most one image to a class (its own file for that name first).
- Exact duplicates (pixel-identical after rendering) are one image: within
  a class the first design group in name order keeps it; across classes
  the alias rule above picks the class.
- Near duplicates: themes derived from one another (Faenza -> Obsidian,
  elementary -> elementary-xfce, gnome -> mate, Papirus -> ePapirus) share
  many drawings re-exported with small changes. Both themes are kept, but
  within a class an image whose 16 x 16 grayscale thumbnail differs from
  an image of an earlier group (name order) by a mean absolute difference
  below `near_duplicate_threshold` (0.02 of the range) is dropped: a
  derived theme adds a design only where it redrew the icon. At 0.02
  unrelated themes collide in at most 0.3 % of the classes both draw
  (Papirus / oxygen; 0 for Faenza / Moka, Moka / oxygen, Faenza / breeze,
  Paper / oxygen), derived ones in 32-54 % (gnome / mate, Faenza /
  Obsidian, elementary / elementary-xfce); `info["group_pairs"]`
  counts, for each pair of groups, the exact and near duplicates removed
  and the distinct images kept together.
- Classes: the icon names left with at least `min_designs` images (each
  from a different design group).
- Broken files (undecodable PNG, SVG that librsvg refuses, dangling
  symlinks): skipped and counted: `info["broken"]` lists them with the
  reason, `info["num_dangling_links"]` counts dangling links.
- Blank renders: an image of one grey once composited (pixel standard
  deviation under `BLANK_STD`) shows no design: monochrome glyphs drawn in
  the background's own grey (suru's action icons, `#808080`: monochrome
  like the `-symbolic` icons left out above), text in a font the machine
  lacks. Skipped like a broken file, listed in `info["blank"]`; the theme's
  file for that name is not replaced by another of the group's files.
- Split: a fixed zero-shot split by class, half / half: classes ranked by
  SHA-256 of `"<split_seed>/<name>"`, the first half (rounded down) train,
  the rest test; a validation split of the training classes on request.
  Ranking by a hash keeps the split of every other class unchanged when a
  theme adds or removes a class.

The set is cached as `icons-<key>.npz` + `.json` under `cache_dir`
(default `default_data_dir()`): the key hashes the loader's parameters, a
format version, the renderer versions and a listing of the themes (each
`index.theme`'s bytes and the modification time of every icon directory,
which changes when a package adds, removes or replaces a file). A file
edited in place without touching its directory is not seen: pass
`rebuild=True`.
"""

import configparser
import hashlib
import io
import os
import re
import shutil
import subprocess
import time
from concurrent import futures

import numpy as np

from metrix_tf.data import array_cache
from metrix_tf.data.data_dir import default_data_dir
from metrix_tf.data.data_splits import DataSplits
from metrix_tf.data.image_split import ImageSplit
from metrix_tf.data.image_split import remap_labels

FORMAT_VERSION = 2  # 2: blank renders skipped
# Below this standard deviation of its pixel values (0..255, all channels
# together: a uniform grey, not a solid colour, which is a design), a rendered
# icon is blank: 215 files at 64 px, 213 of them suru's #808080 action glyphs.
BLANK_STD = 2.0
DEFAULT_ROOT = "/usr/share/icons"
IMAGE_SIZE = 64
MIN_RASTER_SIZE = 48
BACKGROUND = (128, 128, 128)
EXCLUDED_THEMES = ("hicolor",)
THEME_PACKAGES = (
    "adwaita-icon-theme", "breeze-icon-theme", "deepin-icon-theme",
    "elementary-icon-theme", "elementary-xfce-icon-theme", "faba-icon-theme",
    "faenza-icon-theme", "gnome-icon-theme", "gnome-icon-theme-gartoon",
    "gnome-icon-theme-nuovo", "gnome-icon-theme-yasis", "lxde-icon-theme",
    "mate-icon-theme", "moka-icon-theme", "numix-icon-theme",
    "numix-icon-theme-circle", "obsidian-icon-theme", "oxygen-icon-theme",
    "paper-icon-theme", "papirus-icon-theme", "suru-icon-theme",
    "tango-icon-theme", "librsvg2-bin")
APT_LINE = ("apt-get install -y --no-install-recommends "
            + " ".join(THEME_PACKAGES))
VARIANT_WORDS = frozenset((
    "dark", "darker", "darkest", "light", "semilight", "mono", "ambiance",
    "radiance", "amber", "aqua", "black", "blue", "brown", "cyan", "gray",
    "grey", "green", "indigo", "mint", "orange", "pink", "purple", "red",
    "sand", "teal", "violet", "white", "yellow"))
KNOWN_VARIANTS = {"menta": "mate"}
_ARRAYS = ("images", "class_index", "theme_index", "class_names",
           "theme_names", "sources")
_EXTENSIONS = {".png": "png", ".svg": "svg", ".svgz": "svg"}
_SIZE_FOLDER = re.compile(r"^(\d+)(?:x(\d+))?(?:@(\d+)x?)?$")
_SVG_TIMEOUT_S = 60
_THUMBNAIL = 16
NEAR_DUPLICATE_THRESHOLD = 0.02


def _missing_themes_error(root, detail):
    return ValueError(
        f"No icon theme found under {root!r} ({detail}). Install the "
        f"themes with (as root): apt-get update && {APT_LINE}")


def _read_index(path):
    """The `index.theme` sections as dicts, keys as written."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str
    with open(path, encoding="utf-8", errors="replace") as f:
        parser.read_string(f.read())
    return {s: dict(parser[s]) for s in parser.sections()}


def _int(text, default):
    try:
        return int(str(text).strip())
    except (TypeError, ValueError):
        return default


def _folder_size(relative):
    """(nominal px, scalable) of an undeclared folder from its name."""
    size, scalable = 0, False
    for part in relative.split("/"):
        if part.lower().startswith("scalable"):
            scalable = True
        match = _SIZE_FOLDER.match(part)
        if match:
            size = int(match.group(1)) * int(match.group(3) or 1)
    return size, scalable


def _theme_directories(theme_path, sections):
    """[(relative dir, nominal px, scalable)] of one theme."""
    header = sections.get("Icon Theme", {})
    listed = []
    for key in ("Directories", "ScaledDirectories"):
        listed += [d.strip().strip("/") for d in header.get(key, "").split(",")
                   if d.strip()]
    if listed:
        result = []
        for relative in dict.fromkeys(listed):
            section = sections.get(relative, {})
            size = _int(section.get("Size"), 0)
            scale = max(1, _int(section.get("Scale"), 1))
            scalable = section.get("Type", "").strip().lower() == "scalable"
            if scalable:
                size = max(size, _int(section.get("MaxSize"), size))
            if not size:
                size, folder_scalable = _folder_size(relative)
                scalable = scalable or folder_scalable
            result.append((relative, size * scale, scalable))
        return result
    result = []
    for folder, _, files in os.walk(theme_path):
        if any(os.path.splitext(f)[1].lower() in _EXTENSIONS for f in files):
            relative = os.path.relpath(folder, theme_path).replace(os.sep, "/")
            size, scalable = _folder_size(relative)
            result.append((relative, size, scalable))
    return sorted(result)


def find_themes(root, exclude_themes=EXCLUDED_THEMES):
    """The icon themes directly under `root`, sorted by name.

    Args:
        root: a directory of freedesktop icon themes.
        exclude_themes: theme folder names to leave out.

    Returns:
        A list of dicts: `name`, `path`, `inherits` (list of names),
        `index_sha256`, `directories` (list of `(relative dir, nominal px,
        scalable)` that exist).

    Raises:
        ValueError: when none is found; the message gives the apt-get line.
    """
    if not os.path.isdir(root):
        raise _missing_themes_error(root, "no such directory")
    themes = []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        index = os.path.join(path, "index.theme")
        if name in exclude_themes or not os.path.isfile(index):
            continue
        try:
            sections = _read_index(index)
        except (configparser.Error, OSError, UnicodeError):
            continue  # not a readable theme; nothing to take from it
        directories = [d for d in _theme_directories(path, sections)
                       if os.path.isdir(os.path.join(path, d[0]))]
        if not directories:
            continue  # e.g. "default": only an Inherits= line
        inherits = [t.strip() for t in sections.get("Icon Theme", {}).get(
            "Inherits", "").split(",") if t.strip()]
        themes.append({"name": name, "path": path, "inherits": inherits,
                       "index_sha256": array_cache.sha256_file(index),
                       "directories": directories})
    if not themes:
        raise _missing_themes_error(root, "no folder with an index.theme "
                                    "and icon directories")
    return themes


def design_groups(theme_names, known_variants=None):
    """Maps each theme to its design group's base theme (see module doc).

    Args:
        theme_names: the installed themes' names.
        known_variants: dict variant -> base for variants the name rule
            misses (default `KNOWN_VARIANTS`); entries whose themes are
            absent are ignored.

    Returns:
        `(base, depth)`: dicts theme -> base theme of its group, and theme
        -> number of variant steps from that base (0 for a base).
    """
    known = KNOWN_VARIANTS if known_variants is None else known_variants
    names = sorted(theme_names)
    lower = {n.lower(): n for n in names}
    parent = {}
    for name in names:
        if name in known and known[name] in names:
            parent[name] = known[name]
            continue
        best = None
        for other in names:
            prefix = other.lower() + "-"
            if other == name or not name.lower().startswith(prefix):
                continue
            words = name.lower()[len(prefix):].split("-")
            if all(w in VARIANT_WORDS for w in words) and (
                    best is None or len(other) > len(best)):
                best = other
        if best is not None:
            parent[name] = lower[best.lower()]
    base, depth = {}, {}
    for name in names:
        node, steps, seen = name, 0, {name}
        while node in parent and parent[node] not in seen:
            node = parent[node]
            seen.add(node)
            steps += 1
        base[name], depth[name] = node, steps
    return base, depth


def _scan_theme(theme):
    """{icon name: [(kind, nominal px, path)]} and the dangling link count."""
    found, dangling = {}, 0
    for relative, size, _ in theme["directories"]:
        folder = os.path.join(theme["path"], relative)
        with os.scandir(folder) as entries:
            for entry in entries:
                stem, ext = os.path.splitext(entry.name)
                kind = _EXTENSIONS.get(ext.lower())
                if kind is None or stem.endswith("-symbolic"):
                    continue
                if not entry.is_file():  # follows links
                    dangling += entry.is_symlink()
                    continue
                found.setdefault(stem, []).append((kind, size, entry.path))
    return found, dangling


def _choose(candidates):
    """The largest PNG of >= 48 px, else the largest SVG, else None."""
    pngs = [c for c in candidates if c[0] == "png" and c[1] >= MIN_RASTER_SIZE]
    pool = pngs or [c for c in candidates if c[0] == "svg"]
    if not pool:
        return None
    return sorted(pool, key=lambda c: (-c[1], c[2]))[0]


def _file_identities(paths):
    """{path: identity}: the real path, or the content SHA-256 when another
    real file has the same size (only those can be byte-identical)."""
    real = {p: os.path.realpath(p) for p in paths}
    sizes = {}
    for r in set(real.values()):
        sizes.setdefault(os.path.getsize(r), []).append(r)
    identity = {}
    for same in sizes.values():
        for r in same:
            identity[r] = (array_cache.sha256_file(r) if len(same) > 1
                           else r)
    return {p: identity[r] for p, r in real.items()}


def _pick_name(names, popularity):
    return min(names, key=lambda n: (-popularity[n], n))


def _rsvg_version():
    binary = shutil.which("rsvg-convert")
    if binary is None:
        return None
    out = subprocess.run([binary, "--version"], capture_output=True,
                         text=True, check=False)
    return out.stdout.strip()


def _square(rgba, image_size, background):
    """RGBA PIL image -> composited on `background`, padded, resized."""
    from PIL import Image

    canvas = Image.new("RGBA", rgba.size, tuple(background) + (255,))
    flat = Image.alpha_composite(canvas, rgba).convert("RGB")
    side = max(flat.size)
    if flat.size != (side, side):
        padded = Image.new("RGB", (side, side), tuple(background))
        padded.paste(flat, ((side - flat.size[0]) // 2,
                            (side - flat.size[1]) // 2))
        flat = padded
    if side != image_size:
        flat = flat.resize((image_size, image_size), Image.LANCZOS)
    return np.asarray(flat, dtype=np.uint8)


def _render(kind, path, image_size, background, rsvg):
    """uint8 `(size, size, 3)`, or a string saying why the file is broken."""
    from PIL import Image

    try:
        if kind == "svg":
            out = subprocess.run(
                [rsvg, "-w", str(image_size), "-h", str(image_size), "-a",
                 "-f", "png", path], capture_output=True, check=False,
                timeout=_SVG_TIMEOUT_S)
            if out.returncode != 0 or not out.stdout:
                message = out.stderr.decode("utf-8", "replace").strip()
                return f"rsvg-convert failed: {message[:200] or 'no output'}"
            source = io.BytesIO(out.stdout)
        else:
            source = path
        with Image.open(source) as image:
            image.load()
            rgba = image.convert("RGBA")
        if min(rgba.size) < 1:
            return "empty image"
        return _square(rgba, image_size, background)
    except subprocess.TimeoutExpired:
        return f"rsvg-convert took over {_SVG_TIMEOUT_S} s"
    except Exception as e:  # PIL raises many types on corrupt files
        return f"{type(e).__name__}: {e}"


def _count(pairs, group_names, first, second, what):
    """Adds one to `pairs["<group>|<group>"][what]` (names sorted)."""
    key = "|".join(sorted((group_names[first], group_names[second])))
    counts = pairs.setdefault(key, {"exact": 0, "near": 0, "distinct": 0})
    counts[what] += 1


def _thumbnail(image):
    """16 x 16 grayscale in [0, 1]: what the near-duplicate test compares."""
    from PIL import Image

    small = Image.fromarray(image).convert("L").resize(
        (_THUMBNAIL, _THUMBNAIL), Image.BOX)
    return np.asarray(small, np.float32) / 255.0


def _drop_near_duplicates(items, threshold, pairs, group_names):
    """Within each class, drops an image whose thumbnail is within
    `threshold` (mean absolute difference) of an image kept before it
    (items sorted by class, then group); counts kept pairs as distinct."""
    final, kept = [], []
    for item in items:
        if kept and kept[0][0][0] != item[0]:
            kept = []
        thumb = _thumbnail(item[3])
        twin = next((k for k, t in kept
                     if np.abs(t - thumb).mean() < threshold), None)
        if twin is not None:
            _count(pairs, group_names, twin[1], item[1], "near")
            continue
        for other, _ in kept:
            _count(pairs, group_names, other[1], item[1], "distinct")
        kept.append((item, thumb))
        final.append(item)
    return final


def _listing_hash(themes):
    """SHA-256 over each theme's index.theme hash and directory mtimes."""
    digest = hashlib.sha256()
    for theme in themes:
        digest.update(f"{theme['name']}\0{theme['index_sha256']}\n".encode())
        for relative, _, _ in theme["directories"]:
            info = os.stat(os.path.join(theme["path"], relative))
            digest.update(f"{relative}\0{info.st_mtime_ns}\n".encode(
                "utf-8", "surrogateescape"))
    return digest.hexdigest()


def build_icon_set(themes, image_size=IMAGE_SIZE, min_designs=5,
                   background=BACKGROUND, known_variants=None,
                   near_duplicate_threshold=NEAR_DUPLICATE_THRESHOLD,
                   num_workers=None):
    """Builds the icons set in memory (no cache) from `find_themes` output.

    Args:
        themes: list of theme dicts (see `find_themes`).
        image_size, min_designs, background, known_variants,
        near_duplicate_threshold, num_workers: see `load_icons`.

    Returns:
        `(arrays, facts)`: arrays `images` uint8 `(N, size, size, 3)`,
        `class_index` int32 `(N,)` into `class_names` (sorted),
        `theme_index` int32 `(N,)` into `theme_names` (the theme whose file
        it is), `sources` (N,) the files (symlinks resolved) relative to
        the root; facts
        a JSON-ready dict (groups, broken files, duplicate counts).

    Raises:
        FileNotFoundError: SVGs must be rendered and `rsvg-convert` is
            missing (the message gives the apt-get line).
        ValueError: no icon name reaches `min_designs`.
    """
    names = [t["name"] for t in themes]
    base, depth = design_groups(names, known_variants)
    order = sorted(names, key=lambda n: (base[n], depth[n], n))
    group_names = sorted(set(base.values()))
    group_of = {n: group_names.index(base[n]) for n in names}
    by_name = {t["name"]: t for t in themes}
    # One entry per (group, icon name): the first theme of the group that
    # has the name, its chosen file.
    entries, dangling = {}, 0
    for theme_name in order:
        found, lost = _scan_theme(by_name[theme_name])
        dangling += lost
        group = group_of[theme_name]
        for icon, candidates in found.items():
            chosen = _choose(candidates)
            if chosen is not None and (group, icon) not in entries:
                entries[(group, icon)] = (theme_name, chosen[0], chosen[2])
    popularity = {}
    for _, icon in entries:
        popularity[icon] = popularity.get(icon, 0) + 1
    identity = _file_identities([e[2] for e in entries.values()])
    by_identity = {}
    for (group, icon), entry in sorted(entries.items()):
        by_identity.setdefault(identity[entry[2]], []).append(
            (group, icon, entry))
    # Alias rule: one image per identity, under the most common name; one
    # image per (class, group), the group's own file for that name first.
    per_class, pairs = {}, {}
    for same in by_identity.values():
        icon = _pick_name({s[1] for s in same}, popularity)
        direct = [s for s in same if s[1] == icon]
        group, _, entry = (direct or same)[0]
        for other, other_icon, _ in same:
            if other != group and other_icon == icon:
                _count(pairs, group_names, group, other, "exact")
        slot = per_class.setdefault(icon, {})
        if group not in slot or (bool(direct) and not slot[group][0]):
            slot[group] = (bool(direct), entry)
    work = [(icon, group, entry) for icon, slot in sorted(per_class.items())
            if len(slot) >= min_designs
            for group, (_, entry) in sorted(slot.items())]
    rsvg = shutil.which("rsvg-convert")
    if rsvg is None and any(w[2][1] == "svg" for w in work):
        raise FileNotFoundError(
            "Rendering the themes' SVG icons needs librsvg's rsvg-convert, "
            f"which is not on PATH. Install it with: {APT_LINE}")
    workers = num_workers or min(4, os.cpu_count() or 1)
    with futures.ThreadPoolExecutor(max_workers=workers) as pool:
        rendered = list(pool.map(
            lambda w: _render(w[2][1], w[2][2], image_size, background, rsvg),
            work))
    root = os.path.dirname(themes[0]["path"])
    broken, blank, kept = [], [], []
    for (icon, group, entry), image in zip(work, rendered):
        if isinstance(image, str):
            broken.append(f"{os.path.relpath(entry[2], root)}: {image}")
        elif image.std() < BLANK_STD:
            blank.append(os.path.relpath(entry[2], root))
        else:
            kept.append((icon, group, entry, image))
    # Exact duplicates after rendering: one image per pixel content, in the
    # class the alias rule picks, kept by the first group.
    by_pixels = {}
    for item in kept:
        key = hashlib.sha256(item[3].tobytes()).hexdigest()
        by_pixels.setdefault(key, []).append(item)
    unique = []
    for same in by_pixels.values():
        icon = _pick_name({s[0] for s in same}, popularity)
        keep = min((s for s in same if s[0] == icon), key=lambda s: s[1])
        for other in same:
            if other is not keep and other[0] == icon:
                _count(pairs, group_names, keep[1], other[1], "exact")
        unique.append(keep)
    final = _drop_near_duplicates(sorted(unique, key=lambda f: (f[0], f[1])),
                                  near_duplicate_threshold, pairs,
                                  group_names)
    counts = {}
    for item in final:
        counts[item[0]] = counts.get(item[0], 0) + 1
    final = [f for f in final if counts[f[0]] >= min_designs]
    if not final:
        raise ValueError(
            f"No icon name has {min_designs} or more designs in the "
            f"{len(group_names)} design group(s) of the themes under "
            f"{root!r}; install more themes ({APT_LINE}) or lower "
            f"`min_designs`. Received: min_designs={min_designs}")
    class_names = sorted({f[0] for f in final})
    class_of = {c: i for i, c in enumerate(class_names)}
    theme_names = sorted(names)
    theme_of = {t: i for i, t in enumerate(theme_names)}
    arrays = {
        "images": np.stack([f[3] for f in final]),
        "class_index": np.array([class_of[f[0]] for f in final], np.int32),
        "theme_index": np.array([theme_of[f[2][0]] for f in final], np.int32),
        "class_names": np.array(class_names, dtype=str),
        "theme_names": np.array(theme_names, dtype=str),
        "sources": np.array([os.path.relpath(os.path.realpath(f[2][2]),
                                             os.path.realpath(root))
                             for f in final], dtype=str),
    }
    facts = {"groups": {g: sorted(n for n in names if base[n] == g)
                        for g in group_names},
             "broken": sorted(broken), "num_broken": len(broken),
             "blank": sorted(blank), "num_blank": len(blank),
             "num_dangling_links": dangling,
             "group_pairs": {k: pairs[k] for k in sorted(pairs)}}
    return arrays, facts


def _check_int(arg, value, low):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
            or value < low:
        raise ValueError(f"`{arg}` must be an int >= {low}. "
                         f"Received: {arg}={value!r}")


def load_icons(root=DEFAULT_ROOT, image_size=IMAGE_SIZE,
               validation_fraction=None, seed=0, min_designs=5,
               cache_dir=None, split_seed=0, background=BACKGROUND,
               exclude_themes=EXCLUDED_THEMES, known_variants=None,
               near_duplicate_threshold=NEAR_DUPLICATE_THRESHOLD,
               rebuild=False, num_workers=None):
    """Loads (building and caching on first use) the icons data set.

    With the Debian themes of `APT_LINE` installed: see the README section
    "Icons data set" for the classes, images and themes it gives.

    Args:
        root: directory of freedesktop icon themes.
        image_size: int >= 16, side of the stored RGB images.
        validation_fraction: optional float: carve this fraction of the
            training classes into `val` (see `split_validation`).
        seed: seed of the validation class choice.
        min_designs: int >= 2, least number of designs (images from
            distinct design groups) of a class.
        cache_dir: cache directory (default: `default_data_dir()`).
        split_seed: int, the fixed train / test class split.
        background: RGB triple the alpha is composited on.
        exclude_themes: theme folder names to leave out.
        known_variants: dict variant theme -> base theme, for recolours
            the name rule misses (default `KNOWN_VARIANTS`).
        near_duplicate_threshold: float >= 0; within a class an image
            whose 16 x 16 grayscale thumbnail differs from an earlier
            group's by less than this mean absolute difference (on the
            0..1 scale) is dropped; 0 keeps all but exact duplicates.
        rebuild: bool; rebuild even when a cache exists (also the way out
            of a corrupt cache).
        num_workers: parallel decodes / rsvg-convert calls (default
            min(4, CPUs)).

    Returns:
        `DataSplits` named "icons": `train` and `test` in-memory
        `ImageSplit`s (images uint8 `(N, size, size, 3)`, labels remapped
        per split to `0..C-1` in icon name order, `class_names` the icon
        names), optional `val`; `info` holds the root, cache paths, content
        hash, build or load seconds, whether it was a cache hit, the design
        groups, the theme names, the broken files and the duplicate
        counts (which theme and file each image came from: the `npz`'s
        `theme_index` and `sources`, in `class_names` order).

    Raises:
        ValueError: bad arguments; no theme under `root` (the message gives
            the apt-get line); no class with `min_designs` designs; a cache
            that fails its check (names the file; pass `rebuild=True`).
        FileNotFoundError: `rsvg-convert` missing while SVGs need rendering.

    Example:

    >>> splits = load_icons(validation_fraction=0.1)  # doctest: +SKIP
    >>> splits.train.images.shape[1:]  # doctest: +SKIP
    (64, 64, 3)
    """
    _check_int("image_size", image_size, 16)
    _check_int("min_designs", min_designs, 2)
    if not isinstance(near_duplicate_threshold, (int, float)) or isinstance(
            near_duplicate_threshold, bool) or not (
            0 <= near_duplicate_threshold < 1):
        raise ValueError("`near_duplicate_threshold` must be a float in "
                         "[0, 1). Received: near_duplicate_threshold="
                         f"{near_duplicate_threshold!r}")
    background = tuple(int(v) for v in background)
    if len(background) != 3 or not all(0 <= v <= 255 for v in background):
        raise ValueError("`background` must be 3 ints in 0..255. "
                         f"Received: background={background!r}")
    themes = find_themes(root, tuple(exclude_themes))
    import PIL

    spec = {"format_version": FORMAT_VERSION, "image_size": int(image_size),
            "min_designs": int(min_designs), "background": list(background),
            "min_raster_size": MIN_RASTER_SIZE,
            "near_duplicate_threshold": float(near_duplicate_threshold),
            "known_variants": dict(sorted((KNOWN_VARIANTS if known_variants
                                           is None else known_variants
                                           ).items())),
            "root": os.path.realpath(root),
            "listing_sha256": _listing_hash(themes),
            "pillow": PIL.__version__, "rsvg_convert": _rsvg_version()}
    key = array_cache.spec_key(spec)
    cache_dir = cache_dir or default_data_dir()
    os.makedirs(cache_dir, exist_ok=True)
    stem = os.path.join(cache_dir, f"icons-{key[:16]}")
    start = time.perf_counter()
    cache_hit = (not rebuild and os.path.isfile(stem + ".json")
                 and os.path.isfile(stem + ".npz"))
    if cache_hit:
        arrays, meta = array_cache.read_cache(stem, spec, _ARRAYS,
                                              "Icons data set")
    else:
        arrays, facts = build_icon_set(themes, int(image_size),
                                       int(min_designs), background,
                                       known_variants,
                                       float(near_duplicate_threshold),
                                       num_workers)
        meta = array_cache.write_cache(stem, arrays, _ARRAYS,
                                       dict(facts, spec=spec))
    seconds = time.perf_counter() - start
    class_names = arrays["class_names"].tolist()
    ranked = sorted(class_names, key=lambda c: hashlib.sha256(
        f"{split_seed}/{c}".encode("utf-8")).hexdigest())
    train_names = set(ranked[:len(ranked) // 2])
    is_train = np.array([c in train_names for c in class_names])
    splits = {}
    for part, wanted in (("train", True), ("test", False)):
        keep = is_train[arrays["class_index"]] == wanted
        labels, names = remap_labels(
            arrays["class_names"][arrays["class_index"][keep]].tolist(),
            f"icons/{part}")
        splits[part] = ImageSplit(arrays["images"][keep], labels, names,
                                  name=f"icons/{part}")
    info = {"root": root, "npz": stem + ".npz", "json": stem + ".json",
            "content_sha256": meta["content_sha256"], "cache_hit": cache_hit,
            "seconds": seconds, "groups": meta["groups"],
            "theme_names": arrays["theme_names"].tolist(),
            "broken": meta["broken"], "num_broken": meta["num_broken"],
            "blank": meta["blank"], "num_blank": meta["num_blank"],
            "num_dangling_links": meta["num_dangling_links"],
            "group_pairs": meta["group_pairs"],
            "split_seed": split_seed}
    result = DataSplits("icons", splits["train"], test=splits["test"],
                        recall_ks=(1, 2, 4, 8), info=info)
    if validation_fraction:
        result = result.with_validation(validation_fraction, seed=seed)
    return result

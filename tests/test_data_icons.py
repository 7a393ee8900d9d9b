"""The icons data set on a small theme tree written by the test."""

import hashlib
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from metrix_tf import data
from metrix_tf.data import icons

SIZE = 16  # stored side in these tests: small and fast
BASES = ("Alpha", "Beta", "Delta", "Epsilon", "Gamma", "Zeta")
CORE = [f"n{i:02d}" for i in range(20)]
needs_rsvg = pytest.mark.skipif(shutil.which("rsvg-convert") is None,
                                reason="rsvg-convert (librsvg2-bin) missing")


def _pattern(*key):
    """A 48 x 48 RGB drawing of its own: a seeded 6 x 6 colour grid."""
    seed = int(hashlib.sha256(repr(key).encode()).hexdigest()[:8], 16)
    grid = np.random.default_rng(seed).integers(0, 256, (6, 6, 3))
    return np.repeat(np.repeat(grid, 8, 0), 8, 1).astype(np.uint8)


def _solid(rgba, side=48):
    return np.tile(np.array(rgba, np.uint8), (side, side, 1))


def _write_png(path, pixels, **save):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(pixels).save(path, **save)


def _write_index(theme_dir, directories, inherits=None):
    os.makedirs(theme_dir, exist_ok=True)
    lines = ["[Icon Theme]", f"Name={os.path.basename(theme_dir)}",
             f"Directories={','.join(d for d, _ in directories)}"]
    if inherits:
        lines.append(f"Inherits={inherits}")
    for directory, (size, kind) in directories:
        lines += ["", f"[{directory}]", f"Size={size}", f"Type={kind}"]
        if kind == "Scalable":
            lines.append("MaxSize=256")
    with open(os.path.join(theme_dir, "index.theme"), "w") as f:
        f.write("\n".join(lines) + "\n")


def _arrays(splits):
    """The cached arrays (theme and source file of every image)."""
    with np.load(splits.info["npz"], allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _images_of(arrays, icon):
    """{theme: image} of one class."""
    c = arrays["class_names"].tolist().index(icon)
    rows = np.flatnonzero(arrays["class_index"] == c)
    return {str(arrays["theme_names"][arrays["theme_index"][r]]):
            arrays["images"][r] for r in rows}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """Six design groups (plus a recolour and hicolor) with the cases."""
    root = str(tmp_path_factory.mktemp("icons"))
    layouts = {"Alpha": ("48x48/apps", 48), "Beta": ("apps/64", 64),
               "Gamma": ("48x48/apps", 48), "Delta": ("96x96/apps", 48),
               "Epsilon": ("48x48/apps", 48), "Zeta": ("apps/48", 48)}
    for theme, (folder, size) in layouts.items():
        directories = [(folder, (size, "Threshold"))]
        if theme == "Beta":
            directories += [("apps/32", (32, "Fixed")),
                            ("apps/48", (48, "Fixed"))]
        _write_index(os.path.join(root, theme), directories)
        apps = os.path.join(root, theme, folder)
        names = CORE + ["doc", "x-symbolic"]
        names += ["few"] if theme in ("Alpha", "Beta", "Gamma", "Delta") else []
        names += ["variant-only"] if theme not in ("Alpha", "Zeta") else []
        for icon in names:
            _write_png(os.path.join(apps, icon + ".png"),
                       _pattern(theme, icon))
        if theme in ("Alpha", "Beta", "Gamma", "Delta"):
            _write_png(os.path.join(apps, "edit-copy.png"),
                       _pattern(theme, "edit-copy"))
        if theme in ("Epsilon", "Zeta"):
            _write_png(os.path.join(apps, "gtk-copy.png"),
                       _pattern(theme, "gtk-copy"))
        if theme == "Epsilon":
            os.symlink("gtk-copy.png", os.path.join(apps, "edit-copy.png"))
        if theme == "Zeta":
            os.remove(os.path.join(apps, "doc.png"))
            _write_png(os.path.join(apps, "doc-alias.png"),
                       _pattern("Zeta", "doc-alias"))
            with open(os.path.join(apps, "n03.png"), "wb") as f:
                f.write(b"\x89PNG\r\n\x1a\n not really a PNG")
            os.remove(os.path.join(apps, "n04.png"))
            os.symlink("gone.png", os.path.join(apps, "n04.png"))
            # Fully transparent: the background's grey alone, no design.
            _write_png(os.path.join(apps, "n09.png"), _solid((10, 200, 30, 0)))
    gamma = os.path.join(root, "Gamma", "48x48", "apps")
    shutil.copyfile(os.path.join(gamma, "doc.png"),
                    os.path.join(gamma, "doc-alias.png"))
    # Delta's n01: Alpha's pixels in other bytes (another compression).
    _write_png(os.path.join(root, "Delta", "96x96", "apps", "n01.png"),
               _pattern("Alpha", "n01"), compress_level=0)
    # Epsilon's n02: Alpha's drawing with a faint noise.
    noise = np.random.default_rng(0).integers(-2, 3, (48, 48, 3))
    _write_png(os.path.join(root, "Epsilon", "48x48", "apps", "n02.png"),
               np.clip(_pattern("Alpha", "n02") + noise, 0, 255)
               .astype(np.uint8))
    beta = os.path.join(root, "Beta", "apps")
    _write_png(os.path.join(beta, "64", "n05.png"), _solid((0, 255, 0, 255)))
    _write_png(os.path.join(beta, "48", "n05.png"), _solid((0, 0, 255, 255)))
    _write_png(os.path.join(beta, "32", "n05.png"), _solid((255, 0, 0, 255)))
    os.remove(os.path.join(beta, "64", "n06.png"))
    _write_png(os.path.join(beta, "32", "n06.png"), _solid((255, 0, 0, 255)))
    _write_png(os.path.join(beta, "64", "n08.png"), _solid((0, 0, 255, 128)))
    # A recolour of Alpha: one design with it; fills what Alpha lacks.
    _write_index(os.path.join(root, "Alpha-Dark"),
                 [("48x48/apps", (48, "Threshold"))], inherits="Alpha")
    for icon in ("n00", "variant-only"):
        _write_png(os.path.join(root, "Alpha-Dark", "48x48", "apps",
                                icon + ".png"), _pattern("Alpha-Dark", icon))
    # hicolor is left out by default: with it "few" would have 5 designs.
    _write_index(os.path.join(root, "hicolor"),
                 [("48x48/apps", (48, "Threshold"))])
    _write_png(os.path.join(root, "hicolor", "48x48", "apps", "few.png"),
               _pattern("hicolor", "few"))
    # Only an Inherits= line (like Debian's "default"): not a theme.
    os.makedirs(os.path.join(root, "default"))
    with open(os.path.join(root, "default", "index.theme"), "w") as f:
        f.write("[Icon Theme]\nInherits=Alpha\n")
    return root


@pytest.fixture(scope="module")
def loaded(tree, tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("icons_cache"))
    return data.load_icons(tree, image_size=SIZE, cache_dir=cache), cache


def test_classes_and_min_designs(loaded):
    splits, _ = loaded
    names = set(splits.train.class_names) | set(splits.test.class_names)
    # "few": 4 designs; gtk-copy / doc-alias: 1 each after the alias rule;
    # symbolic names never count.
    assert names == set(CORE) | {"doc", "edit-copy", "variant-only"}
    arrays = _arrays(splits)
    counts = {c: len(_images_of(arrays, c)) for c in names}
    expected = dict.fromkeys(names, 6)
    # n01 exact, n02 near duplicate, n03 broken, n04 dangling, n06 too
    # small in Beta, n09 blank in Zeta; edit-copy / doc / variant-only are
    # in 5 groups.
    expected.update({"n01": 5, "n02": 5, "n03": 5, "n04": 5, "n06": 5, "n09": 5,
                     "edit-copy": 5, "doc": 5, "variant-only": 5})
    assert counts == expected
    assert splits.train.images.shape[1:] == (SIZE, SIZE, 3)
    assert splits.train.images.dtype == np.uint8


def test_min_designs_lower_keeps_smaller_classes(tree, tmp_path):
    splits = data.load_icons(tree, image_size=SIZE, min_designs=4,
                             cache_dir=str(tmp_path))
    names = set(splits.train.class_names) | set(splits.test.class_names)
    assert "few" in names and "gtk-copy" not in names


def test_hicolor_counts_when_not_excluded(tree, tmp_path):
    splits = data.load_icons(tree, image_size=SIZE, exclude_themes=(),
                             cache_dir=str(tmp_path))
    names = set(splits.train.class_names) | set(splits.test.class_names)
    assert "few" in names


def test_recolour_is_one_design(loaded):
    splits, _ = loaded
    arrays = _arrays(splits)
    n00 = _images_of(arrays, "n00")
    assert "Alpha" in n00 and "Alpha-Dark" not in n00   # the base answers
    variant = _images_of(arrays, "variant-only")
    assert "Alpha-Dark" in variant and "Alpha" not in variant
    assert splits.info["groups"]["Alpha"] == ["Alpha", "Alpha-Dark"]


def test_design_groups_rule():
    names = ["Papirus", "Papirus-Dark", "Papirus-Light", "ePapirus",
             "Obsidian", "Obsidian-Aqua", "Obsidian-Aqua-Light",
             "Numix", "Numix-Circle", "Numix-Circle-Light", "bloom",
             "bloom-classic", "bloom-classic-dark", "breeze", "breeze-dark",
             "elementary", "elementary-xfce", "elementary-xfce-darkest",
             "mate", "menta"]
    base, depth = icons.design_groups(names)
    assert base == {
        "Papirus": "Papirus", "Papirus-Dark": "Papirus",
        "Papirus-Light": "Papirus", "ePapirus": "ePapirus",
        "Obsidian": "Obsidian", "Obsidian-Aqua": "Obsidian",
        "Obsidian-Aqua-Light": "Obsidian", "Numix": "Numix",
        "Numix-Circle": "Numix-Circle",
        "Numix-Circle-Light": "Numix-Circle", "bloom": "bloom",
        "bloom-classic": "bloom-classic",
        "bloom-classic-dark": "bloom-classic", "breeze": "breeze",
        "breeze-dark": "breeze", "elementary": "elementary",
        "elementary-xfce": "elementary-xfce",
        "elementary-xfce-darkest": "elementary-xfce", "mate": "mate",
        "menta": "mate"}
    assert depth["Obsidian-Aqua-Light"] == 2 and depth["Obsidian"] == 0


def test_alias_goes_to_the_most_common_name(loaded, tree):
    splits, _ = loaded
    arrays = _arrays(splits)
    epsilon = _images_of(arrays, "edit-copy")["Epsilon"]
    source = Image.open(os.path.join(
        tree, "Epsilon", "48x48", "apps", "gtk-copy.png")).convert("RGB")
    expected = np.asarray(source.resize((SIZE, SIZE), Image.LANCZOS))
    np.testing.assert_array_equal(epsilon, expected)
    sources = arrays["sources"].tolist()
    assert sources.count(os.path.join("Epsilon", "48x48", "apps",
                                      "gtk-copy.png")) == 1
    # Gamma's byte-identical copy doc-alias.png is its doc image, once.
    assert not any("doc-alias" in s for s in sources)
    assert "Gamma" in _images_of(arrays, "doc")


def test_no_image_twice(loaded):
    splits, _ = loaded
    images = np.concatenate([splits.train.images, splits.test.images])
    digests = {hashlib.sha256(x.tobytes()).hexdigest() for x in images}
    assert len(digests) == len(images)


def test_exact_and_near_duplicates_are_removed(loaded, tree, tmp_path):
    splits, _ = loaded
    arrays = _arrays(splits)
    assert "Delta" not in _images_of(arrays, "n01")
    assert "Epsilon" not in _images_of(arrays, "n02")
    assert splits.info["group_pairs"]["Alpha|Delta"]["exact"] == 1
    assert splits.info["group_pairs"]["Alpha|Epsilon"]["near"] == 1
    kept = data.load_icons(tree, image_size=SIZE, cache_dir=str(tmp_path),
                           near_duplicate_threshold=0.0)
    n02 = _images_of(_arrays(kept), "n02")
    assert "Epsilon" in n02 and "Alpha" in n02
    assert "Delta" not in _images_of(_arrays(kept), "n01")  # still exact


def test_largest_png_and_alpha_on_grey(loaded):
    splits, _ = loaded
    arrays = _arrays(splits)
    # Beta's n05 exists at 32, 48 and 64 px: the 64 px one (solid green).
    np.testing.assert_array_equal(_images_of(arrays, "n05")["Beta"],
                                  _solid((0, 255, 0), SIZE))
    # Only a 32 px PNG (no SVG): no image.
    assert "Beta" not in _images_of(arrays, "n06")
    # Blue at alpha 128 over grey 128: 128 * (0, 0, 255) / 255 + 127 * 128
    # / 255 per channel.
    blended = _images_of(arrays, "n08")["Beta"].astype(int)
    expected = np.round((128 * np.array([0, 0, 255]) + 127 * 128) / 255)
    assert np.abs(blended - expected).max() <= 1


def test_broken_and_dangling_files_are_skipped_and_counted(loaded):
    splits, _ = loaded
    assert splits.info["num_broken"] == 1
    assert splits.info["broken"][0].startswith(
        os.path.join("Zeta", "apps", "48", "n03.png") + ": ")
    assert splits.info["num_dangling_links"] == 1


def test_blank_renders_are_skipped_and_listed(loaded):
    splits, _ = loaded
    assert splits.info["blank"] == [os.path.join("Zeta", "apps", "48", "n09.png")]
    assert splits.info["num_blank"] == 1
    images = np.concatenate([splits.train.images, splits.test.images]).astype(float)
    assert images.reshape(len(images), -1).std(axis=1).min() >= icons.BLANK_STD


def test_split_by_class_half_half_seeded(loaded, tree):
    splits, cache = loaded
    train, test = set(splits.train.class_names), set(splits.test.class_names)
    assert not train & test
    total = len(train) + len(test)
    assert len(train) == total // 2 and len(test) == total - total // 2
    again = data.load_icons(tree, image_size=SIZE, cache_dir=cache)
    assert again.train.class_names == splits.train.class_names
    np.testing.assert_array_equal(again.train.images, splits.train.images)
    np.testing.assert_array_equal(again.test.labels, splits.test.labels)
    ranked = sorted(train | test, key=lambda c: hashlib.sha256(
        f"0/{c}".encode()).hexdigest())
    assert train == set(ranked[:total // 2])
    other = data.load_icons(tree, image_size=SIZE, cache_dir=cache,
                            split_seed=1)
    assert set(other.train.class_names) != train


def test_validation_split_through_load_dataset(loaded, tree):
    splits, cache = loaded
    with_val = data.load_dataset("icons", tree, validation_fraction=0.25,
                                 seed=0, image_size=SIZE, cache_dir=cache)
    train = set(with_val.train.class_names)
    val = set(with_val.val.class_names)
    assert not train & val
    assert train | val == set(splits.train.class_names)
    assert with_val.test.class_names == splits.test.class_names
    assert len(val) == round(0.25 * len(splits.train.class_names))


def test_cache_reuse_and_invalidation(loaded, tree, tmp_path):
    splits, cache = loaded
    again = data.load_icons(tree, image_size=SIZE, cache_dir=cache)
    assert again.info["cache_hit"] is True
    assert again.info["content_sha256"] == splits.info["content_sha256"]
    assert again.info["broken"] == splits.info["broken"]
    # Another tree: a theme gains a file.
    copy = str(tmp_path / "tree")
    shutil.copytree(tree, copy, symlinks=True)
    first = data.load_icons(copy, image_size=SIZE, cache_dir=cache)
    assert first.info["cache_hit"] is False
    _write_png(os.path.join(copy, "Zeta", "apps", "48", "edit-copy.png"),
               _pattern("Zeta", "edit-copy"))
    changed = data.load_icons(copy, image_size=SIZE, cache_dir=cache)
    assert changed.info["cache_hit"] is False
    assert changed.info["npz"] != first.info["npz"]


def test_corrupt_cache_is_named(loaded, tree, tmp_path):
    splits, _ = loaded
    cache = str(tmp_path)
    first = data.load_icons(tree, image_size=SIZE, cache_dir=cache)
    with np.load(first.info["npz"]) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["images"] = arrays["images"].copy()
    arrays["images"][0, 0, 0, 0] ^= 1
    np.savez_compressed(first.info["npz"], **arrays)
    with pytest.raises(ValueError, match="icons-.*npz.*corrupt"):
        data.load_icons(tree, image_size=SIZE, cache_dir=cache)
    assert data.load_icons(tree, image_size=SIZE, cache_dir=cache,
                           rebuild=True).info["cache_hit"] is False


def test_no_theme_error_gives_apt_line(tmp_path):
    for root in (str(tmp_path), str(tmp_path / "missing")):
        with pytest.raises(ValueError, match="apt-get install .*"
                           "papirus-icon-theme"):
            data.load_icons(root, cache_dir=str(tmp_path))


def test_bad_arguments(tree, tmp_path):
    for kwargs, text in (({"image_size": 8}, "image_size=8"),
                         ({"min_designs": 1}, "min_designs=1"),
                         ({"near_duplicate_threshold": 1.5},
                          "near_duplicate_threshold=1.5"),
                         ({"background": (0, 0)}, "background")):
        with pytest.raises(ValueError, match=text):
            data.load_icons(tree, cache_dir=str(tmp_path), **kwargs)
    with pytest.raises(ValueError, match="min_designs=50"):
        data.load_icons(tree, image_size=SIZE, min_designs=50,
                        cache_dir=str(tmp_path))


def _svg_tree(root):
    """Two themes: S1 draws "red" as SVG (and a 32 px PNG), S2 as a 48 px
    PNG and an SVG; S1's "bad.svg" is not XML."""
    _write_index(os.path.join(root, "S1"),
                 [("32x32/apps", (32, "Fixed")),
                  ("scalable/apps", (48, "Scalable"))])
    scalable = os.path.join(root, "S1", "scalable", "apps")
    os.makedirs(scalable)
    with open(os.path.join(scalable, "red.svg"), "w") as f:
        f.write('<svg xmlns="http://www.w3.org/2000/svg" width="16" '
                'height="16"><rect width="16" height="16" fill="#ff0000" '
                'fill-opacity="0.5"/></svg>')
    with open(os.path.join(scalable, "bad.svg"), "w") as f:
        f.write("<svg this is not xml")
    _write_png(os.path.join(root, "S1", "32x32", "apps", "red.png"),
               _solid((0, 0, 0, 255), 32))
    # S2 has a 48 px PNG and an SVG of "red": the PNG wins.
    _write_index(os.path.join(root, "S2"), [("48x48/apps", (48, "Fixed")),
                                            ("scalable/apps",
                                             (48, "Scalable"))])
    for icon in ("red", "bad"):
        _write_png(os.path.join(root, "S2", "48x48", "apps", icon + ".png"),
                   _pattern("S2", icon))
    os.makedirs(os.path.join(root, "S2", "scalable", "apps"))
    with open(os.path.join(root, "S2", "scalable", "apps", "red.svg"),
              "w") as f:
        f.write('<svg xmlns="http://www.w3.org/2000/svg" width="16" '
                'height="16"><rect width="16" height="16" fill="#00ff00"/>'
                '</svg>')


@needs_rsvg
def test_svg_rendered_when_no_png_of_48(tmp_path):
    _svg_tree(str(tmp_path / "svg"))
    splits = data.load_icons(str(tmp_path / "svg"), image_size=SIZE,
                             min_designs=2, cache_dir=str(tmp_path))
    arrays = _arrays(splits)
    red = _images_of(arrays, "red")["S1"].astype(int)
    # Red at opacity 0.5 over grey 128 (not the 32 px black PNG).
    expected = np.array([(255 + 128) / 2, 64, 64])
    assert np.abs(red - expected).max() <= 2
    png = Image.fromarray(_pattern("S2", "red")).resize((SIZE, SIZE),
                                                        Image.LANCZOS)
    np.testing.assert_array_equal(_images_of(arrays, "red")["S2"],
                                  np.asarray(png))
    assert splits.info["num_broken"] == 1
    assert "bad.svg: rsvg-convert failed" in splits.info["broken"][0]


def test_missing_renderer_names_the_package(tmp_path, monkeypatch):
    _svg_tree(str(tmp_path / "svg"))
    monkeypatch.setattr(icons.shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match="rsvg-convert.*"
                       "apt-get install .*librsvg2-bin"):
        data.load_icons(str(tmp_path / "svg"), image_size=SIZE,
                        min_designs=2, cache_dir=str(tmp_path))


def test_preprocessing_for_icons():
    pre = data.Preprocessing.for_dataset("icons")
    assert (pre.image_size, pre.resize_size, pre.channels, pre.flip) == (
        icons.IMAGE_SIZE, icons.IMAGE_SIZE, 3, False)
    assert pre.mean == data.IMAGENET_MEAN and pre.crop_scale == (0.6, 1.0)

"""Loaders on small generated directories in the official layouts."""

import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from metrix_tf import data
from metrix_tf.data.matfile import MatFileError
from metrix_tf.data.matfile import load_mat


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """verify_images remembers verified splits in the cache: not the user's."""
    monkeypatch.setenv("METRIX_TF_DATA_DIR", str(tmp_path / "cache"))


def write_image(path, value=0, size=(12, 10), fmt=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = np.full((size[1], size[0], 3), value % 256, np.uint8)
    pixels[0, 0] = (255 - value % 256, 0, 0)
    Image.fromarray(pixels).save(path, format=fmt)


def corrupt(path):
    with open(path, "wb") as f:
        f.write(b"this is not an image")


# --------------------------------------------------------------------------
# A MAT level-5 writer, independent of the reader (format description):
# tag = (type, nbytes) then data padded to 8 bytes; small elements pack
# (nbytes << 16 | type) and up to 4 data bytes into the 8-byte tag.

def _element(mtype, payload):
    return (struct.pack("<II", mtype, len(payload)) + payload
            + b"\0" * (-len(payload) % 8))


def _small(mtype, payload):
    assert len(payload) <= 4
    return struct.pack("<HH", mtype, len(payload)) + payload.ljust(4, b"\0")


def _matrix(name, mx_class, dims, body, logical=False):
    flags = _element(6, struct.pack("<II", mx_class | (0x200 if logical
                                                       else 0), 0))
    head = flags + _element(5, np.array(dims, "<i4").tobytes())
    head += _element(1, name.encode())
    return _element(14, head + body)


def mat_double(values, name=""):
    values = np.atleast_2d(np.asarray(values, np.float64))
    return _matrix(name, 6, values.shape,
                   _element(9, values.astype("<f8").tobytes(order="F")))


def mat_uint8(value, name=""):  # a 1x1 uint8 stored as a small element
    return _matrix(name, 9, (1, 1), _small(2, bytes([value])))


def mat_char(text, name=""):
    codes = np.array([ord(c) for c in text], "<u2")
    return _matrix(name, 4, (1, len(text)), _element(4, codes.tobytes()))


def mat_cell(items, name=""):
    return _matrix(name, 1, (1, len(items)), b"".join(items))


def mat_struct(records, fields, name=""):
    length = 32
    names = b"".join(f.encode().ljust(length, b"\0") for f in fields)
    body = _small(5, struct.pack("<i", length)) + _element(1, names)
    for record in records:
        body += b"".join(record[f] for f in fields)
    return _matrix(name, 2, (1, len(records)), body)


def write_mat(path, elements, compress=()):
    header = b"MATLAB 5.0 MAT-file, written by a test".ljust(116, b" ")
    out = header + b"\0" * 8 + struct.pack("<H", 0x0100) + b"IM"
    for i, element in enumerate(elements):
        if i in compress:
            packed = zlib.compress(element)
            out += struct.pack("<II", 15, len(packed)) + packed
        else:
            out += element
    with open(path, "wb") as f:
        f.write(out)


def test_matfile_reader_numeric_char_cell_struct(tmp_path):
    path = str(tmp_path / "x.mat")
    matrix = np.arange(6, dtype=np.float64).reshape(2, 3)
    records = [{"relative_im_path": mat_char(f"car_ims/{i:06d}.jpg"),
                "class": mat_double([[i + 1]]), "test": mat_uint8(i % 2)}
               for i in range(3)]
    write_mat(path, [
        mat_double(matrix, "m"),
        mat_cell([mat_char("Audi"), mat_char("BMW x")], "names"),
        mat_struct(records, ["relative_im_path", "class", "test"], "ann"),
        mat_char("hello", "greeting"),
    ], compress=(2, 3))
    out = load_mat(path)
    np.testing.assert_array_equal(out["m"], matrix)  # column-major order
    assert out["names"].shape == (1, 2)
    assert list(out["names"].ravel()) == ["Audi", "BMW x"]
    assert out["greeting"] == "hello"
    ann = out["ann"].ravel()
    assert [a["relative_im_path"] for a in ann] == [
        "car_ims/000000.jpg", "car_ims/000001.jpg", "car_ims/000002.jpg"]
    assert [int(a["class"][0, 0]) for a in ann] == [1, 2, 3]
    assert [int(a["test"][0, 0]) for a in ann] == [0, 1, 0]
    assert ann[1]["test"].dtype == np.uint8


def test_matfile_reader_matches_scipy_when_available(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    path = str(tmp_path / "s.mat")
    annotations = np.zeros((1, 2), dtype=[("relative_im_path", "O"),
                                          ("class", "O")])
    annotations[0, 0] = ("car_ims/000001.jpg", np.array([[5]], np.uint8))
    annotations[0, 1] = ("car_ims/000002.jpg", np.array([[7]], np.uint8))
    scipy_io.savemat(path, {"annotations": annotations,
                            "x": np.arange(12.0).reshape(3, 4)},
                     do_compression=True)
    out = load_mat(path)
    np.testing.assert_array_equal(out["x"], np.arange(12.0).reshape(3, 4))
    assert [int(a["class"][0, 0]) for a in out["annotations"].ravel()] == [
        5, 7]


def test_matfile_reader_rejects_bad_files(tmp_path):
    short = tmp_path / "short.mat"
    short.write_bytes(b"MATLAB")
    with pytest.raises(MatFileError, match="short.mat"):
        load_mat(str(short))
    truncated = tmp_path / "trunc.mat"
    write_mat(str(truncated), [mat_double(np.ones((4, 4)), "m")])
    truncated.write_bytes(truncated.read_bytes()[:-40])
    with pytest.raises(MatFileError, match="trunc.mat.*truncated"):
        load_mat(str(truncated))


# --------------------------------------------------------------------------
# CUB-200-2011

def make_cub(root, per_class=lambda c: 1 + c % 3):
    base = root / "CUB_200_2011"
    images, labels, classes = [], [], []
    image_id = 0
    for c in range(1, 201):
        class_dir = f"{c:03d}.Bird_{c}"
        classes.append(f"{c} {class_dir}")
        for j in range(per_class(c)):
            image_id += 1
            relative = f"{class_dir}/Bird_{c}_{j}.jpg"
            write_image(str(base / "images" / relative), value=c)
            images.append(f"{image_id} {relative}")
            labels.append(f"{image_id} {c}")
    (base / "images.txt").write_text("\n".join(images) + "\n")
    (base / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (base / "classes.txt").write_text("\n".join(classes) + "\n")
    return base


def test_cub200_split_and_labels(tmp_path):
    base = make_cub(tmp_path)
    splits = data.load_cub200(str(tmp_path))  # the parent is accepted too
    assert splits.protocol == "leave_one_out"
    assert splits.recall_ks == (1, 2, 4, 8)
    train, test = splits.train, splits.test
    assert (train.num_classes, test.num_classes) == (100, 100)
    assert train.num_examples == sum(1 + c % 3 for c in range(1, 101))
    assert test.num_examples == sum(1 + c % 3 for c in range(101, 201))
    # Label i of the test split is class 101 + i; class from the file name.
    for path, label in zip(test.images, test.labels):
        class_id = int(os.path.basename(os.path.dirname(path))[:3])
        assert label == class_id - 101
        assert os.path.isfile(path)
    assert test.class_names[0] == "101.Bird_101"
    assert train.class_names[99] == "100.Bird_100"
    assert data.load_cub200(str(base)).train.num_examples == train.num_examples


def test_cub200_missing_image_is_named(tmp_path):
    base = make_cub(tmp_path)
    os.remove(base / "images" / "150.Bird_150" / "Bird_150_0.jpg")
    with pytest.raises(FileNotFoundError, match="Bird_150_0.jpg"):
        data.load_cub200(str(base))


def test_cub200_corrupt_image_found_by_verify(tmp_path):
    base = make_cub(tmp_path)
    bad = base / "images" / "007.Bird_7" / "Bird_7_1.jpg"
    corrupt(bad)
    splits = data.load_cub200(str(base))  # existence only: loads
    with pytest.raises(ValueError, match="Bird_7_1.jpg"):
        data.verify_images(splits.train)
    with pytest.raises(ValueError, match="Bird_7_1.jpg"):
        data.load_cub200(str(base), verify=True)
    data.verify_images(splits.test)  # the test side is clean


def test_cub200_empty_class_and_missing_dir_are_named(tmp_path):
    base = make_cub(tmp_path, per_class=lambda c: 0 if c == 42 else 1)
    with pytest.raises(ValueError, match="42.*042.Bird_42"):
        data.load_cub200(str(base))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        data.load_cub200(str(tmp_path / "nowhere"))
    os.remove(base / "image_class_labels.txt")
    with pytest.raises(FileNotFoundError, match="image_class_labels.txt"):
        data.load_cub200(str(base))


# --------------------------------------------------------------------------
# Cars196

def make_cars(root, skip_class=None):
    records = []
    index = 0
    for c in range(1, 197):
        if c == skip_class:
            continue
        for _ in range(1 + c % 2):
            index += 1
            relative = f"car_ims/{index:06d}.jpg"
            write_image(str(root / relative), value=c)
            records.append({
                "relative_im_path": mat_char(relative),
                "bbox_x1": mat_double([[1]]), "bbox_y1": mat_double([[1]]),
                "bbox_x2": mat_double([[9]]), "bbox_y2": mat_double([[9]]),
                "class": mat_double([[c]]),
                "test": mat_uint8(index % 2)})
    fields = ["relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2",
              "bbox_y2", "class", "test"]
    names = mat_cell([mat_char(f"Make Model {c}") for c in range(1, 197)],
                     "class_names")
    write_mat(str(root / "cars_annos.mat"),
              [mat_struct(records, fields, "annotations"), names],
              compress=(0,))
    return records


def test_cars196_split_ignores_test_flag(tmp_path):
    make_cars(tmp_path)
    splits = data.load_cars196(str(tmp_path))
    train, test = splits.train, splits.test
    assert (train.num_classes, test.num_classes) == (98, 98)
    assert train.num_examples == sum(1 + c % 2 for c in range(1, 99))
    assert test.num_examples == sum(1 + c % 2 for c in range(99, 197))
    assert test.class_names[0] == "Make Model 99"
    # Images were written with value = class id: read one back per label.
    for label in (0, 50, 97):
        path = test.images[np.flatnonzero(test.labels == label)[0]]
        pixel = np.asarray(Image.open(path))[-1, -1, 1]  # clean block
        assert abs(int(pixel) - (99 + label)) <= 2  # JPEG rounding


def test_cars196_errors_name_file_or_class(tmp_path):
    make_cars(tmp_path, skip_class=120)
    with pytest.raises(ValueError, match="120.*Make Model 120"):
        data.load_cars196(str(tmp_path))
    make_cars(tmp_path)
    os.remove(tmp_path / "car_ims" / "000003.jpg")
    with pytest.raises(FileNotFoundError, match="000003.jpg"):
        data.load_cars196(str(tmp_path))
    write_image(str(tmp_path / "car_ims" / "000003.jpg"))
    corrupt(tmp_path / "car_ims" / "000010.jpg")
    with pytest.raises(ValueError, match="000010.jpg"):
        data.load_cars196(str(tmp_path), verify=True)
    os.remove(tmp_path / "cars_annos.mat")
    with pytest.raises(FileNotFoundError, match="cars_annos.mat"):
        data.load_cars196(str(tmp_path))


# --------------------------------------------------------------------------
# Stanford Online Products

def make_sop(root, train_classes=(1, 2, 3, 4), test_classes=(5, 6, 7)):
    base = root / "Stanford_Online_Products"
    image_id = 0
    for file_name, classes in (("Ebay_train.txt", train_classes),
                               ("Ebay_test.txt", test_classes)):
        lines = ["image_id class_id super_class_id path"]
        for c in classes:
            for j in range(1 + c % 3):
                image_id += 1
                relative = f"chair_final/{c}_{j}.JPG"
                write_image(str(base / relative), value=c, fmt="JPEG")
                lines.append(f"{image_id} {c} 1 {relative}")
        (base / file_name).write_text("\n".join(lines) + "\n")
    return base


def test_sop_split_and_errors(tmp_path):
    base = make_sop(tmp_path)
    splits = data.load_sop(str(tmp_path))
    assert splits.recall_ks == (1, 10, 100, 1000)
    train, test = splits.train, splits.test
    assert train.class_names == ("1", "2", "3", "4")
    assert test.class_names == ("5", "6", "7")
    assert np.bincount(test.labels).tolist() == [1 + c % 3 for c in (5, 6, 7)]
    os.remove(base / "chair_final" / "6_0.JPG")
    with pytest.raises(FileNotFoundError, match="6_0.JPG"):
        data.load_sop(str(base))
    gap = tmp_path / "gap"
    make_sop(gap, train_classes=(1, 2, 4))
    with pytest.raises(ValueError, match="Ebay_train.txt.*3"):
        data.load_sop(str(gap))
    overlap = tmp_path / "overlap"
    make_sop(overlap, test_classes=(4, 5))
    with pytest.raises(ValueError, match=r"\[4\].*both"):
        data.load_sop(str(overlap))


# --------------------------------------------------------------------------
# In-Shop Clothes

def make_inshop(root):
    rows = []
    plan = {"id_00000001": ("train", 2), "id_00000003": ("train", 1),
            "id_00000007": ("test", 3), "id_00000002": ("test", 2)}
    for item, (side, count) in plan.items():
        for j in range(count):
            relative = f"img/WOMEN/Dresses/{item}/{j:02d}_1_front.jpg"
            write_image(str(root / relative), value=j)
            if side == "train":
                status = "train"
            else:
                status = "query" if j == 0 else "gallery"
            rows.append(f"{relative} {item} {status}")
    (root / "list_eval_partition.txt").write_text(
        f"{len(rows)}\nimage_name item_id evaluation_status\n"
        + "\n".join(rows) + "\n")


def test_inshop_keeps_query_gallery_with_shared_labels(tmp_path):
    make_inshop(tmp_path)
    splits = data.load_inshop(str(tmp_path))
    assert splits.protocol == "query_gallery" and splits.test is None
    assert splits.recall_ks == (1, 10, 20, 30)
    assert splits.train.class_names == ("id_00000001", "id_00000003")
    assert splits.query.class_names == ("id_00000002", "id_00000007")
    assert splits.gallery.class_names == splits.query.class_names
    assert splits.query.num_examples == 2
    assert splits.gallery.num_examples == 3
    for split in (splits.query, splits.gallery):
        for path, label in zip(split.images, split.labels):
            assert split.class_names[label] in path


def test_inshop_errors(tmp_path):
    make_inshop(tmp_path)
    bad = tmp_path / "img/WOMEN/Dresses/id_00000007/01_1_front.jpg"
    os.remove(bad)
    with pytest.raises(FileNotFoundError, match="01_1_front.jpg"):
        data.load_inshop(str(tmp_path))
    write_image(str(bad))
    corrupt(bad)
    with pytest.raises(ValueError, match="id_00000007/01_1_front.jpg"):
        data.load_inshop(str(tmp_path), verify=True)
    listing = tmp_path / "list_eval_partition.txt"
    text = listing.read_text().replace(
        "id_00000002/01_1_front.jpg id_00000002 gallery",
        "id_00000002/01_1_front.jpg id_00000002 query")
    listing.write_text(text)  # id_00000002 now has no gallery image
    with pytest.raises(ValueError, match="id_00000002"):
        data.load_inshop(str(tmp_path))
    listing.write_text(text.replace(" query\n", " unknown\n", 1))
    with pytest.raises(ValueError, match="unknown"):
        data.load_inshop(str(tmp_path))


# --------------------------------------------------------------------------
# Validation split, dispatch

def test_split_validation_is_by_class_and_seeded():
    labels = np.repeat(np.arange(10), 3)
    names = [f"c{i}" for i in range(10)]
    split = data.ImageSplit([f"{i}.jpg" for i in range(30)], labels, names,
                            name="t")
    train, val = data.split_validation(split, fraction=0.3, seed=1)
    assert (train.num_classes, val.num_classes) == (7, 3)
    assert not set(train.class_names) & set(val.class_names)
    assert set(train.class_names) | set(val.class_names) == set(names)
    for part in (train, val):  # relabelled 0..C'-1, images follow labels
        assert sorted(set(part.labels.tolist())) == list(range(
            part.num_classes))
        for path, label in zip(part.images, part.labels):
            assert names.index(part.class_names[label]) == int(
                path.split(".")[0]) // 3
    again = data.split_validation(split, fraction=0.3, seed=1)[1]
    assert again.class_names == val.class_names
    other = [data.split_validation(split, fraction=0.3, seed=s)[1].class_names
             for s in range(2, 6)]
    assert any(o != val.class_names for o in other)
    with pytest.raises(ValueError, match="fraction=1.5"):
        data.split_validation(split, fraction=1.5)
    with pytest.raises(ValueError, match="num_classes=10"):
        data.split_validation(split, num_classes=10)


def test_load_dataset_dispatch_and_validation(tmp_path):
    make_sop(tmp_path, train_classes=tuple(range(1, 11)),
             test_classes=(11, 12))
    splits = data.load_dataset("sop", str(tmp_path), validation_fraction=0.2,
                               seed=0)
    assert splits.val.num_classes == 2 and splits.train.num_classes == 8
    assert splits.test.num_classes == 2
    with pytest.raises(ValueError, match="name='mnist'"):
        data.load_dataset("mnist", str(tmp_path))
    with pytest.raises(ValueError, match="root=None"):
        data.load_dataset("cub200")


def test_image_split_rejects_bad_labels():
    with pytest.raises(ValueError, match="empty class.*'b'"):
        data.ImageSplit(["x", "y"], [0, 0], ["a", "b"])
    with pytest.raises(ValueError, match="0..1"):
        data.ImageSplit(["x", "y"], [0, 2], ["a", "b"])
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        data.ImageSplit(["x", "y"], [0], ["a"])


def test_verify_images_finds_truncated_files(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for ext in ("jpg", "png"):
        good = str(tmp_path / f"good.{ext}")
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), np.uint8)).save(good)
        raw = open(good, "rb").read()
        cut = str(tmp_path / f"cut.{ext}")
        with open(cut, "wb") as f:  # valid header, body cut in half
            f.write(raw[:len(raw) // 2])
        paths += [good, cut]
    split = data.ImageSplit(paths, [0, 0, 0, 0], ["a"])
    with pytest.raises(ValueError, match="2 image file.*cut.jpg.*cut.png"):
        data.verify_images(split)
    data.verify_images(data.ImageSplit(paths[::2], [0, 0], ["a"]))

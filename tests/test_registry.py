"""One table over the whole registry: every mode, every head, the head
record, the ``.keras`` round trip, on the tiny test-only configs
(tests/tiny_models.py); every published model is built at full depth in the
slow table."""

import inspect

import keras
import numpy as np
import pytest

import zoo
from tests.cases import head_cases
from tests.support.helpers import backbone_layers
from tests.tiny_models import TINY_NAMES
from zoo.assembler import backbone_spec, min_input_table
from zoo.registry import get_entry

CLASSES = 7


def _size(name, mode, odd=(5, 9)):
    """The mode's minimum legal side (from the table, nothing built), made
    non-square and odd to catch alignment bugs; classify takes the builder's
    default crop where it has one."""
    spec = backbone_spec(name)
    if mode == "classify" and spec.classify_input is not None:
        return (spec.classify_input, spec.classify_input)  # the builder's default input
    side = max(min_input_table(name)[mode], 16)
    return (side + odd[0], side + odd[1])


def _x(size, batch=2, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, *size, 3)).astype("float32")


def _numpy(y):
    return keras.tree.map_structure(keras.ops.convert_to_numpy, y)


def _check_output(y, mode, size, batch=2):
    if mode == "classify":
        assert y.shape == (batch, CLASSES)
    elif mode == "heatmap":
        assert y.ndim == 4 and y.shape[0] == batch and y.shape[-1] == CLASSES
        assert y.shape[1] >= 1 and y.shape[2] >= 1
    elif mode == "dense":
        assert y.shape == (batch, *size, CLASSES)
        assert np.isfinite(y).all()
    else:
        assert isinstance(y, dict) and y
        for key, value in y.items():
            assert value.shape[0] == batch and value.ndim == 4, key


def _tiny_cases():
    for name in TINY_NAMES:
        for mode in get_entry(name).modes:
            yield pytest.param(name, mode, id=f"{name}-{mode}")


@pytest.mark.parametrize("name,mode", list(_tiny_cases()))
def test_every_mode_shapes_record_and_keras_round_trip(name, mode, tmp_path):
    model = zoo.create_model(name, mode=mode, classes=CLASSES)
    size = _size(name, mode)
    x = _x(size)
    # Direct calls, not predict(): the table is about shapes, records and
    # saving, and tracing each model twice cost a third of its time.
    y = _numpy(model(x))
    _check_output(y, mode, size)
    record = model.zoo
    assert record["model"] == name and record["mode"] == mode
    assert record["head"] == (backbone_spec(name).default_head if mode == "dense" else None)
    # The head record is what the backbone's own features model lacks.
    weighted = {l.name for l in model.layers if l.weights}
    assert set(record["head_layers"]) == weighted - backbone_layers(name)
    assert bool(record["head_layers"]) == (mode != "features")
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.zoo == record
    got = _numpy(loaded(x))
    for key in (y if isinstance(y, dict) else [None]):
        want_k, got_k = (y[key], got[key]) if key is not None else (y, got)
        np.testing.assert_allclose(got_k, want_k, rtol=1e-6, atol=1e-6)


def _published_cases():
    for name in zoo.list_models():
        if name in TINY_NAMES:
            continue
        yield pytest.param(name, id=name, marks=[pytest.mark.slow])


@pytest.mark.parametrize("name", list(_published_cases()))
def test_every_published_model_builds(name):
    """Full depth, in its default mode at the minimum legal input (CI's slow
    step): every published model is built in some CI step; every mode of
    every family runs on the tiny configs above."""
    mode = get_entry(name).default_mode
    size = _size(name, mode)
    y = zoo.create_model(name, mode=mode, classes=CLASSES).predict_on_batch(_x(size, batch=1))
    _check_output(y, mode, size, batch=1)


def test_list_models_is_sorted_and_filterable():
    names = zoo.list_models()
    assert names == sorted(names)
    assert {"vgg16", "vgg19", "fcn32s", "fcn16s", "fcn8s"} <= set(names)
    assert zoo.list_models("fcn*") == ["fcn16s", "fcn32s", "fcn8s"]


def test_model_info_counts_match_the_built_model():
    info = zoo.model_info("vgg16")
    assert info["params"] == 138_357_544  # keras.applications' VGG16
    # 15.47 GMACs at 224: 13 convs + 3 FC layers, counted by hand below.
    convs = [(224, 3, 64), (224, 64, 64), (112, 64, 128), (112, 128, 128),
             (56, 128, 256), (56, 256, 256), (56, 256, 256), (28, 256, 512),
             (28, 512, 512), (28, 512, 512), (14, 512, 512), (14, 512, 512), (14, 512, 512)]
    hand = sum(s * s * 9 * cin * cout for s, cin, cout in convs) + 25088 * 4096 + 4096 * 4096 + 4096 * 1000
    assert info["flops"] == hand
    assert info["output_stride"] == 32 and "imagenet" in info["weights"]
    big = zoo.model_info("vgg16", input_size=(384, 384))
    assert big["params"] == info["params"] and big["flops"] > 3 * info["flops"]


# ------------------------------------------------------- heads x backbones


@pytest.mark.parametrize("backbone,head,stride", [
    pytest.param(*c, id=f"{c[0]}-{c[1]}") for c in head_cases(TINY_NAMES)])
def test_every_head_on_every_backbone(backbone, head, stride):
    kwargs = {"output_stride": stride} if stride else {}
    model = zoo.create_model(backbone, mode="dense", head=head, classes=CLASSES, **kwargs)
    size = (37, 53)
    y = model(_x(size, batch=1))
    assert tuple(y.shape) == (1, *size, CLASSES)
    assert model.zoo["head"] == head
    assert set(model.zoo["head_layers"]) == ({l.name for l in model.layers if l.weights}
                                             - backbone_layers(backbone, stride))


# The published models in the heads table: the Inception families have no
# tiny config, and these sizes are the non-multiple-of-32 cases.
PUBLISHED_HEAD_BACKBONES = ("googlenet", "inception_v3")


@pytest.mark.slow
@pytest.mark.parametrize("backbone,head,stride", [
    pytest.param(*c, id=f"{c[0]}-{c[1]}") for c in head_cases(
        ("resnet18", "resnet50", "drn_d_22", "drn_c_26", "drn_a_18", "vgg16")
        + PUBLISHED_HEAD_BACKBONES)])
def test_every_head_on_every_published_backbone(backbone, head, stride):
    kwargs = {"output_stride": stride} if stride else {}
    model = zoo.create_model(backbone, mode="dense", head=head, classes=CLASSES, **kwargs)
    for size in ((97, 131), (256, 320)):
        assert tuple(model(_x(size, batch=1)).shape) == (1, *size, CLASSES)


@pytest.mark.parametrize("head", ["bilinear", "fcn", "deeplabv3"])
def test_heads_on_googlenet(head):
    model = zoo.GoogLeNet(mode="dense", head=head, classes=CLASSES)
    assert tuple(model(_x((45, 61), batch=1)).shape) == (1, 45, 61, CLASSES)


def test_head_needing_missing_levels_names_the_backbone_strides():
    with pytest.raises(ValueError, match=r"needs pyramid levels P5, P4, P3.*P3 \(stride 8\)"):
        zoo.ResNet18(mode="dense", head="fcn8s")  # dense default output_stride 8: no P4/P5
    with pytest.raises(ValueError, match="x8"):
        zoo.VGG16(mode="dense", head="drnseg")
    from zoo.heads import list_heads

    with pytest.raises(ValueError, match="valid heads: " + ", ".join(sorted(list_heads()))):
        zoo.VGG16(mode="dense", head="segformer")
    with pytest.raises(ValueError, match="mode='dense'"):
        zoo.VGG16(mode="classify", head="fcn")


def test_fcn_heads_start_at_zero_with_frozen_bilinear_upsampling():
    model = zoo.ResNet18(mode="dense", head="fcn8s", output_stride=32, classes=3)
    for lname in ("score_fr", "score_pool4", "score_pool3"):
        assert not np.any(model.get_layer(lname).get_weights()[0])
    for lname in ("upscore2", "upscore_pool4", "upscore8"):
        layer = model.get_layer(lname)
        assert not layer.trainable and not layer.trainable_weights
    y = model.predict_on_batch(np.ones((1, 97, 131, 3), "float32"))
    assert not np.any(y)  # zero scores, zero output


def test_aux_head_on_fcn_and_deeplab():
    for head in ("fcn", "deeplabv3"):
        out = zoo.DRN_D_22(mode="dense", head=head, aux_head=True, classes=CLASSES)(
            np.zeros((1, 40, 56, 3), "float32"))
        assert set(out) == {"out", "aux"}
        assert tuple(out["aux"].shape) == (1, 40, 56, CLASSES)
    with pytest.raises(ValueError, match="aux_head"):
        zoo.DRN_D_22(mode="dense", aux_head=True)  # drnseg has no auxiliary output


# ------------------------------------------------------- generated builders


def test_builders_are_generated_from_the_records():
    for name in zoo.list_models():
        record = get_entry(name)
        builder = record.builder
        assert builder.__name__ == record.builder_name
        assert builder.__doc__.startswith(record.summary)
        params = inspect.signature(builder).parameters
        assert list(params)[:6] == ["weights", "mode", "input_shape", "classes",
                                    "classifier_activation", "name"]
        assert params["mode"].default == record.modes[0]
        for opt in record.options:
            assert params[opt.name].default == opt.default and opt.name in builder.__doc__
        if name not in TINY_NAMES:
            assert getattr(zoo, record.builder_name) is builder
    with pytest.raises(TypeError, match="unexpected keyword argument 'stride_in_1x1'"):
        zoo.ResNet18(stride_in_1x1=True)


def test_mode_errors_name_the_mode_not_an_unpassed_argument():
    with pytest.raises(ValueError, match="unknown mode 'classify'; valid choices: dense, features"):
        zoo.DeepLabV3_ResNet50(mode="classify")
    assert get_entry("deeplabv3_resnet50").modes == ("dense", "features")
    assert get_entry("fcn8s").modes == ("dense",)


def test_custom_objects_lists_the_zoo_classes():
    objs = zoo.custom_objects()
    for cls in ("MinSize", "ResizeLike", "CropLike", "FitLike", "WindowConv2D",
                "DepthwiseConv2DTranspose", "BilinearInitializer", "LocalResponseNorm"):
        assert f"zoo>{cls}" in objs, cls

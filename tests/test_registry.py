"""One shape table over the whole registry: every model, every mode it has."""

import numpy as np
import pytest

import zoo
from zoo.registry import get_entry

# The deepest variants share their code path with a shallower sibling in the
# default suite; they run in CI's slow step.
HEAVY = {"vgg19", "resnet34", "resnet101", "resnet152", "drn_a_34", "drn_a_50",
         "drn_c_42", "drn_c_58", "drn_d_24", "drn_d_38", "drn_d_40", "drn_d_54",
         "drn_d_56", "drn_d_105", "drn_d_107", "fcn16s", "fcn32s",
         "deeplabv3_resnet50", "deeplabv3_resnet101"}

# Input sizes per mode: heatmap needs a full training crop for VGG/ResNet,
# Inception v3 needs 75 px; odd sizes elsewhere catch alignment bugs.
SIZES = {"classify": (80, 96), "heatmap": (224, 256), "dense": (77, 101), "features": (80, 112)}
CLASSES = 7


def _cases():
    for name in zoo.list_models():
        for mode in get_entry(name).modes:
            marks = [pytest.mark.slow] if name in HEAVY else []
            yield pytest.param(name, mode, id=f"{name}-{mode}", marks=marks)


@pytest.mark.parametrize("name,mode", list(_cases()))
def test_output_shapes(name, mode):
    model = zoo.create_model(name, mode=mode, classes=CLASSES)
    static = model.input_shape[1:3]
    h, w = static if None not in static else SIZES[mode]
    y = model.predict_on_batch(np.random.default_rng(0).normal(size=(2, h, w, 3)).astype("float32"))
    if mode == "classify":
        assert y.shape == (2, CLASSES)
    elif mode == "heatmap":
        assert y.ndim == 4 and y.shape[0] == 2 and y.shape[-1] == CLASSES
        assert y.shape[1] >= 1 and y.shape[2] >= 1
    elif mode == "dense":
        assert y.shape == (2, h, w, CLASSES)
        assert np.isfinite(y).all()
    else:
        assert isinstance(y, dict) and y
        for key, value in y.items():
            assert value.shape[0] == 2 and value.ndim == 4, key


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

# Default suite: light backbones; the rest run under the slow marker.
LIGHT_BACKBONES = ("resnet18", "drn_d_22", "vgg16")
TABLE_BACKBONES = ("resnet18", "resnet50", "drn_d_22", "drn_c_26", "drn_a_18", "vgg16", "googlenet",
                   "inception_v3")
# The output stride each head needs: FCN skips read P5/P4/P3; DRNSeg's x8 up
# needs the last level at stride 8; the rest take the family's default.
HEAD_OUTPUT_STRIDE = {"fcn32s": 32, "fcn16s": 32, "fcn8s": 32, "drnseg": 8}
TABLE_SIZES = ((97, 131), (256, 320))


def _head_cases():
    from zoo.assembler import backbone_spec
    from zoo.heads import list_heads

    for backbone in TABLE_BACKBONES:
        spec = backbone_spec(backbone)
        for head in list_heads():
            stride = HEAD_OUTPUT_STRIDE.get(head)
            if stride is not None and stride not in spec.output_strides:
                continue
            for size in TABLE_SIZES:
                light = backbone in LIGHT_BACKBONES and (size == TABLE_SIZES[0] or head == "fcn8s")
                marks = [] if light else [pytest.mark.slow]
                yield pytest.param(backbone, head, stride, size, marks=marks,
                                   id=f"{backbone}-{head}-{size[0]}x{size[1]}")


@pytest.mark.parametrize("backbone,head,stride,size", list(_head_cases()))
def test_every_head_on_every_backbone(backbone, head, stride, size):
    kwargs = {"output_stride": stride} if stride else {}
    model = zoo.create_model(backbone, mode="dense", head=head, classes=CLASSES, **kwargs)
    y = model(np.random.default_rng(0).normal(size=(1, *size, 3)).astype("float32"))
    assert tuple(y.shape) == (1, *size, CLASSES)


def test_head_needing_missing_levels_names_the_backbone_strides():
    with pytest.raises(ValueError, match=r"needs pyramid levels P5, P4, P3.*P3 \(stride 8\)"):
        zoo.ResNet18(mode="dense", head="fcn8s")  # dense default output_stride 8: no P4/P5
    with pytest.raises(ValueError, match="x8"):
        zoo.VGG16(mode="dense", head="drnseg")
    with pytest.raises(ValueError, match="valid heads: bilinear, deeplabv3, drnseg, fcn"):
        zoo.VGG16(mode="dense", head="unet")
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


# ------------------------------------------------------- .keras round trip


def _keras_cases():
    for name in zoo.list_models():
        for mode in get_entry(name).modes:
            marks = [] if (name, mode) in {("resnet18", "dense"), ("drn_d_22", "features"),
                                           ("fcn8s", "dense"), ("googlenet", "classify")} \
                else [pytest.mark.slow]
            yield pytest.param(name, mode, id=f"{name}-{mode}", marks=marks)


@pytest.mark.parametrize("name,mode", list(_keras_cases()))
def test_keras_round_trip(name, mode, tmp_path):
    import keras

    model = zoo.create_model(name, mode=mode, classes=CLASSES)
    static = model.input_shape[1:3]
    h, w = static if None not in static else SIZES[mode]
    x = np.random.default_rng(0).normal(size=(1, h, w, 3)).astype("float32")
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, custom_objects=zoo.custom_objects())
    want, got = model.predict_on_batch(x), loaded.predict_on_batch(x)
    if isinstance(want, dict):
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-6, atol=1e-6)
    else:
        for a, b in zip(np.atleast_1d(want) if isinstance(want, list) else [want],
                        np.atleast_1d(got) if isinstance(got, list) else [got]):
            np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)


def test_custom_objects_lists_the_zoo_classes():
    objs = zoo.custom_objects()
    for cls in ("MinSize", "ResizeLike", "CropLike", "FitLike", "WindowConv2D",
                "DepthwiseConv2DTranspose", "BilinearInitializer", "LocalResponseNorm"):
        assert f"zoo>{cls}" in objs, cls

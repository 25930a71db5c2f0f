"""One shape table over the whole registry: every model, every mode it has."""

import numpy as np
import pytest

import zoo
from zoo.registry import get_entry

# The deepest variants share their code path with a shallower sibling in the
# default suite; they run in CI's slow step.
HEAVY = {"vgg19", "resnet101", "resnet152", "drn_d_105", "drn_d_107", "drn_c_58",
         "drn_d_54", "drn_d_56", "drn_a_50", "fcn16s", "fcn32s"}

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

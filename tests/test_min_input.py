"""Declared minimum input sizes (issue 12 item 5) and output_stride on every
builder (item 9): static checks at build time, run-time checks on every
backend, each a ValueError naming the minimum."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import zoo


def _x(h, w):
    return np.zeros((1, h, w, 3), "float32")


@pytest.mark.parametrize("name, minimum", [("vgg16", 224), ("resnet18", 224), ("googlenet", 15),
                                           ("inception_v3", 75), ("drn_d_22", 1)])
def test_model_info_declares_heatmap_minimum(name, minimum):
    assert zoo.model_info(name, input_size=(224, 224) if name != "inception_v3" else (299, 299)
                          )["min_input"]["heatmap"] == minimum


def test_googlenet_heatmap_on_a_sliver_is_refused():
    model = zoo.GoogLeNet(mode="heatmap")
    with pytest.raises(ValueError, match="15x15"):
        model(_x(7, 1000))


def test_resnet_heatmap_below_the_window_is_refused_clearly():
    model = zoo.ResNet18(mode="heatmap")
    with pytest.raises(ValueError, match="224x224"):
        model(_x(100, 100))
    # At output_stride 8 the 7-cell pooling window spans 56 px.
    assert zoo.ResNet18(mode="heatmap", output_stride=8)(_x(56, 60)).shape == (1, 1, 2, 1000)
    with pytest.raises(ValueError, match="56x56"):
        zoo.ResNet18(mode="heatmap", output_stride=8)(_x(55, 60))


def test_vgg_heatmap_under_tf_function_with_unknown_dims_is_refused():
    tf = pytest.importorskip("tensorflow")
    model = zoo.VGG16(mode="heatmap", classes=3)
    fn = tf.function(lambda x: model(x, training=False),
                     input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)])
    assert fn(tf.zeros((1, 224, 240, 3))).shape == (1, 1, 1, 3)
    # Inside a graph Python cannot raise; the graph assertion carries the message.
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match="224x224"):
        fn(tf.zeros((1, 100, 100, 3)))


@pytest.mark.parametrize("builder, shape, minimum", [
    (zoo.GoogLeNet, (10, 64, 3), 15),
    (zoo.InceptionV3, (60, 80, 3), 75),
    (zoo.DRN_D_22, (0, 64, 3), 1),
    (zoo.VGG16, (200, 200, 3), 224),
])
def test_static_heatmap_shape_below_minimum_is_refused(builder, shape, minimum):
    with pytest.raises(ValueError, match=f"at least {minimum}x{minimum}"):
        builder(mode="heatmap", input_shape=shape)


@pytest.mark.parametrize("builder, size, minimum", [
    (zoo.VGG16, (20, 40), 32),
    (zoo.GoogLeNet, (1, 1), 15),
    (zoo.GoogLeNet, (7, 200), 15),
    (zoo.InceptionV3, (74, 120), 75),
])
def test_dense_on_tiny_inputs_is_refused(builder, size, minimum):
    model = builder(mode="dense", classes=2)
    with pytest.raises(ValueError, match=f"{minimum}x{minimum}"):
        model(_x(*size))
    with pytest.raises(ValueError, match=f"at least {minimum}x{minimum}"):
        builder(mode="dense", classes=2, input_shape=(*size, 3))


def test_dense_at_the_minimum_works():
    assert zoo.VGG16(mode="dense", classes=2)(_x(32, 33)).shape == (1, 32, 33, 2)
    assert zoo.GoogLeNet(mode="dense", classes=2)(_x(15, 16)).shape == (1, 15, 16, 2)


@pytest.mark.parametrize("builder, valid", [
    (zoo.VGG16, "32"), (zoo.GoogLeNet, "32"), (zoo.InceptionV3, "32"), (zoo.DRN_C_26, "8"),
    (zoo.DRN_D_22, "8"), (zoo.ResNet18, "8, 16, 32"), (zoo.DRN_A_18, "8, 16, 32"), (zoo.FCN8s, "32"),
])
def test_output_stride_is_one_argument_everywhere(builder, valid):
    with pytest.raises(ValueError, match=f"output_stride must be one of {valid}; got 4"):
        builder(output_stride=4)


_BACKEND_SCRIPT = textwrap.dedent("""
    import numpy as np, zoo
    model = zoo.ResNet18(mode="heatmap", classes=2)
    assert model(np.zeros((1, 224, 230, 3), "float32")).shape == (1, 1, 2, 2)
    try:
        model(np.zeros((1, 100, 100, 3), "float32"))
    except ValueError as e:
        assert "224x224" in str(e), e
    else:
        raise SystemExit("no error")
    try:
        zoo.GoogLeNet(mode="dense", classes=2)(np.zeros((1, 7, 200, 3), "float32"))
    except ValueError as e:
        assert "15x15" in str(e), e
    else:
        raise SystemExit("no error")
    print("OK")
""")


@pytest.mark.slow  # two fresh interpreters, about 2 min each on a shared CPU
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_runtime_minimum_on_other_backends(backend):
    pytest.importorskip(backend)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": root}
    out = subprocess.run([sys.executable, "-c", _BACKEND_SCRIPT], env=env, capture_output=True,
                         text=True, timeout=600, cwd=root)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


def test_min_input_table_lists_exactly_each_names_modes():
    from zoo.assembler import min_input_table
    from zoo.registry import get_entry

    for name in zoo.list_models():
        assert list(min_input_table(name)) == list(get_entry(name).modes), name
    # Models defined by their head: the FCNs are dense only; torchvision's
    # deeplabv3 also gives its backbone's features (no classifier modes).
    for name in ("fcn8s", "fcn16s", "fcn32s"):
        assert min_input_table(name) == {"dense": 1}, name
    for name in ("deeplabv3_resnet50", "deeplabv3_resnet101"):
        assert min_input_table(name) == {"dense": 1, "features": 1}, name
    with pytest.raises(ValueError, match="unknown mode 'classify'; valid choices: dense, features"):
        zoo.DeepLabV3_ResNet50(mode="classify")
    assert min_input_table("vgg16") == {"classify": 224, "heatmap": 224, "dense": 32, "features": 32}
    assert min_input_table("resnet50", output_stride=8)["heatmap"] == 56

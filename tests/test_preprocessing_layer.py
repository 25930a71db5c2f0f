"""The in-model ``Preprocess`` layer against the tf.data ``preprocess()`` and
keras.applications' ``preprocess_input`` (independent references)."""

import keras
import numpy as np
import pytest

import zoo
from zoo.preprocessing import Preprocess, family_default, preprocess, preprocessing_for, preprocessing_layer

CAFFE = preprocessing_for("vgg16", "imagenet")
TORCH = preprocessing_for("resnet18", "imagenet")
TF = preprocessing_for("inception_v3", "imagenet")
CITYSCAPES = preprocessing_for("drn_d_22", "cityscapes")


def _pixels(shape=(2, 7, 9, 3), seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape).astype("uint8")


def _layer_model(spec, dtype):
    inp = keras.Input((None, None, 3), dtype=dtype)
    return keras.Model(inp, Preprocess(spec)(inp))


@pytest.mark.parametrize("spec", [CAFFE, TORCH, TF, CITYSCAPES], ids=["caffe", "torch", "tf", "cityscapes"])
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_layer_equals_pipeline_preprocess(spec, dtype):
    x = _pixels()
    got = np.asarray(_layer_model(spec, dtype)(x.astype(dtype)))
    want = preprocess(x, spec).numpy()
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("spec,reference", [
    (CAFFE, lambda x: keras.applications.vgg16.preprocess_input(x)),
    (TF, lambda x: keras.applications.inception_v3.preprocess_input(x)),
    (TORCH, lambda x: keras.applications.imagenet_utils.preprocess_input(x, mode="torch")),
], ids=["vgg16-caffe", "inception_v3-tf", "torch"])
def test_layer_equals_keras_applications(spec, reference):
    x = _pixels(seed=1)
    want = reference(x.astype("float32").copy())
    got = np.asarray(_layer_model(spec, "uint8")(x))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_resnet_file_layouts_pick_their_own_record():
    assert preprocessing_for("resnet50", "imagenet", "keras_top")["type"] == "caffe"
    assert preprocessing_for("resnet50", "imagenet", "torch")["type"] == "torch"
    layer = preprocessing_layer("resnet50", "imagenet", file_key="torch")
    x = _pixels()
    np.testing.assert_allclose(np.asarray(layer(x)), preprocess(x, TORCH).numpy(), rtol=0, atol=1e-6)


def test_override_and_weights_none():
    # weights=None: the family's ImageNet record
    assert preprocessing_layer("vgg16", None).spec == CAFFE
    assert preprocessing_layer("inception_v3", None).spec == TF
    assert preprocessing_layer("resnet50", None, file_key="keras_top").spec["type"] == "caffe"
    assert preprocessing_layer("resnet50", None, file_key="torch").spec == TORCH
    assert preprocessing_layer("drn_d_22", None).spec == TORCH  # its imagenet tag, not cityscapes
    layer = preprocessing_layer("drn_d_22", None, preprocessing=CITYSCAPES)
    assert layer.spec == CITYSCAPES and layer.name == "preprocess"


def test_weights_none_pipelines_agree_with_builders_across_the_registry():
    """A data pipeline's ``preprocessing_for(name, None)`` is the record a
    builder with ``include_preprocessing=True, weights=None`` puts inside, for
    every registry name and every mode of its default configuration."""
    from zoo.assembler import backbone_spec, file_key_for
    from zoo.preprocessing import DEFAULT_PREPROCESSING

    for name in zoo.list_models():
        pipeline = preprocessing_for(name, None)
        spec = backbone_spec(name)
        for mode in zoo.registry.get_entry(name).modes:
            file_key = file_key_for(spec, None, mode)
            built = preprocessing_layer(name, None, file_key=file_key).spec
            assert built == pipeline, (name, mode, built, pipeline)
    # the records themselves: the family's ImageNet file, torch without any
    assert preprocessing_for("vgg16", None) == CAFFE
    assert preprocessing_for("fcn8s", None) == CAFFE
    assert preprocessing_for("resnet50", None)["type"] == "caffe"  # keras layout by default
    assert preprocessing_for("resnet18", None) == TORCH
    assert preprocessing_for("inception_v3", None) == TF
    assert preprocessing_for("drn_a_18", None) == DEFAULT_PREPROCESSING


def test_keras_round_trip(tmp_path):
    model = _layer_model(CITYSCAPES, "uint8")
    path = str(tmp_path / "pre.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = _pixels(seed=2)
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))
    assert loaded.layers[-1].spec == CITYSCAPES


@pytest.mark.parametrize("bad,msg", [
    ({"type": "yuv"}, "unknown preprocessing type"),
    ({"type": "torch", "mean": [0.5, 0.5, 0.5]}, "'std'"),
    ({"type": "caffe", "mean": [1, 2]}, "3-value 'mean'"),
    ({"type": "caffe", "mean": [1, 2, 3], "channels": "GBR"}, "channels"),
])
def test_bad_records_are_clear_errors(bad, msg):
    with pytest.raises(ValueError, match=msg):
        Preprocess(bad)


# --- builders' include_preprocessing=True ---


_SLOW = pytest.mark.slow  # two builds per case; the default suite keeps two layouts + a weights file

BUILDER_CASES = [
    # (name, builder kwargs, weights layout, preprocessing record)
    pytest.param("vgg16", dict(mode="dense", classes=3), "vgg16", CAFFE, marks=_SLOW),
    pytest.param("resnet50", dict(mode="dense", classes=3), "keras",
                 preprocessing_for("resnet50", "imagenet", "keras_top"), marks=_SLOW),
    ("resnet50", dict(mode="dense", classes=3, stride_in_1x1=False), "torch",
     preprocessing_for("resnet50", "imagenet", "torch")),
    pytest.param("googlenet", dict(mode="dense", classes=3), None, preprocessing_for("googlenet", "imagenet"),
                 marks=_SLOW),
    pytest.param("inception_v3", dict(mode="dense", classes=3), None, TF, marks=_SLOW),
    ("drn_d_22", dict(mode="dense", classes=3, preprocessing=CITYSCAPES), None, CITYSCAPES),
]


@pytest.mark.parametrize("name,kwargs,_key,spec", BUILDER_CASES,
                         ids=["vgg16", "resnet50-keras", "resnet50-torch", "googlenet", "inception_v3",
                              "drn_d_22-cityscapes"])
def test_include_preprocessing_equals_preprocess_then_model(name, kwargs, _key, spec):
    """Same weights, raw uint8 into the wrapped model == preprocess(x) into the bare one.

    The weights are random (weights=None) and copied across by position, so
    the only difference between the two models is the first layer; the
    record the builder picks is checked against the manifest separately.
    """
    size = 75 if name == "inception_v3" else 64
    plain_kwargs = {k: v for k, v in kwargs.items() if k != "preprocessing"}
    bare = zoo.create_model(name, weights=None, **plain_kwargs)
    wrapped = zoo.create_model(name, weights=None, include_preprocessing=True, **kwargs)
    wrapped_pre = [layer for layer in wrapped.layers if isinstance(layer, Preprocess)]
    assert len(wrapped_pre) == 1
    wrapped.set_weights(bare.get_weights())
    # weights=None takes the family's ImageNet record unless overridden.
    want_spec = kwargs.get("preprocessing") or spec
    assert wrapped_pre[0].spec == want_spec
    x = _pixels((1, size, size, 3), seed=3)
    got = np.asarray(wrapped(x))
    want = np.asarray(bare(preprocess(x, want_spec)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,tag,file_key,kwargs", [
    ("vgg16", "imagenet", None, {}),
    ("resnet50", "imagenet", "keras_top", {}),
    ("resnet50", "imagenet", "torch", {"stride_in_1x1": False}),
    ("googlenet", "imagenet", None, {}),
    ("inception_v3", "imagenet", None, {}),
    ("drn_d_22", "cityscapes", None, {}),
])
def test_manifest_record_per_weights(name, tag, file_key, kwargs):
    """The record a builder would pick for published weights (no download:
    :func:`preprocessing_layer` is what builders call)."""
    layer = preprocessing_layer(name, tag, file_key=file_key)
    entry = zoo.weights.manifest_entry(name, tag)
    want = entry.get("files", {}).get(file_key, {}).get("preprocessing") or entry["preprocessing"]
    assert layer.spec == want


def test_include_preprocessing_with_weights_file(vgg16_notop):
    """weights=<keras.applications .h5>: the layer takes that file's record
    (caffe) and the wrapped model on uint8 equals the bare one on preprocess(x)."""
    _, notop = vgg16_notop
    bare = zoo.create_model("vgg16", weights=notop, mode="features")
    wrapped = zoo.create_model("vgg16", weights=notop, mode="features", include_preprocessing=True)
    assert wrapped.get_layer("preprocess").spec == CAFFE
    x = _pixels((1, 48, 48, 3), seed=4)
    got, want = wrapped(x), bare(preprocess(x, CAFFE))
    if isinstance(want, dict):
        got, want = [got[k] for k in sorted(want)], [want[k] for k in sorted(want)]
    for g, w in zip(keras.tree.flatten(got), keras.tree.flatten(want)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-4)

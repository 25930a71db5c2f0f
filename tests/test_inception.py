"""Inception family: GoogLeNet parity with a PyTorch reference, InceptionV3
parity with keras.applications, every mode's shapes, and the 1x1-reduction
savings."""

import keras
import numpy as np
import pytest

import zoo
from tests.cases import min_side
from tests.support.helpers import (EXACT, REFERENCE, assert_close, nchw, nhwc, normal, randomize, save_legacy_h5,
                                   save_torch)
from zoo.analysis.flops import count_flops
from zoo.weights.readers.errors import CheckpointError
from zoo.models import inception

# Module-scoped reference models and files are built once: one pytest-xdist
# worker runs this file (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("inception")

# Feature maps grow with depth: 1e-4 of their largest value (and 1e-4 absolute).
FEATURES = {"rtol": 1e-4, "atol": 1e-4}


# ------------------------------------------------------------ GoogLeNet


@pytest.fixture(scope="module")
def torch_googlenet(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from tests.support import googlenet_torch_ref as ref

    net = ref.randomize(ref.GoogLeNet(classes=10, aux_logits=True, transform_input=True)).eval()
    folder = tmp_path_factory.mktemp("googlenet")
    files = {"zip": str(folder / "zip.pth"), "legacy": str(folder / "legacy.pth")}
    save_torch(net.state_dict(), files["zip"])
    save_torch(net.state_dict(), files["legacy"], legacy=True)
    # Odd and even sides: the ceil-mode pools and the adaptive aux pool (6x8
    # -> 4x4, overlapping windows) are exercised.
    x = normal((2, 99, 131, 3), seed=1)
    with torch.no_grad():
        xt = nchw(x)
        logits, aux2, aux1 = (t.numpy() for t in net(xt))
        feats = {k: nhwc(v) for k, v in net.features(xt).items()}
    return {"files": files, "x": x, "logits": logits, "aux2": aux2, "aux1": aux1, "feats": feats}


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_googlenet_matches_torch(torch_googlenet, fmt):
    ref = torch_googlenet
    model = zoo.GoogLeNet(weights=ref["files"][fmt], input_shape=(99, 131, 3), classes=10,
                          aux_logits=True, transform_input=True, classifier_activation=None)
    logits, aux2, aux1 = (np.asarray(t) for t in model(ref["x"], training=False))
    for name, got, want in (("logits", logits, ref["logits"]), ("aux2", aux2, ref["aux2"]),
                            ("aux1", aux1, ref["aux1"])):
        assert got.shape == want.shape, name
        assert_close(got, want, **REFERENCE, what=f"{fmt} {name}")


def test_googlenet_features_and_heatmap_match_torch(torch_googlenet):
    ref = torch_googlenet
    feats = zoo.GoogLeNet(weights=ref["files"]["zip"], mode="features", transform_input=True)
    out = {k: np.asarray(v) for k, v in feats(ref["x"], training=False).items()}
    levels = {"P2": "stem", "P3": "inception3", "P4": "inception4", "P5": "inception5"}
    assert sorted(out) == sorted(levels)
    for key in out:
        want = ref["feats"][levels[key]]
        assert out[key].shape == want.shape, key
        assert_close(out[key], want, **FEATURES, what=key)
    # Heatmap: the classifier as a 1x1 conv; averaging its logits over the
    # map is exactly global average pooling then fc.
    heat = zoo.GoogLeNet(weights=ref["files"]["legacy"], mode="heatmap", classes=10,
                         transform_input=True, classifier_activation=None)
    h = np.asarray(heat(ref["x"], training=False))
    assert h.shape == (2, 3, 4, 10)
    assert_close(h.mean(axis=(1, 2)), ref["logits"], **REFERENCE, what="heatmap mean")


def test_googlenet_modes_shapes():
    model = zoo.GoogLeNet(mode="dense", classes=5)
    m = min_side("googlenet", "dense")
    for hw in ((m, m), (m + 6, 2 * m + 3)):  # the smallest input, and odd sides
        assert model(np.zeros((1, *hw, 3), "float32"), training=False).shape == (1, *hw, 5)
    classify = zoo.GoogLeNet(classes=7)
    assert classify.output.shape == (None, 7)
    assert [l.name for l in classify.layers if l.name.startswith("aux")] == []
    with pytest.raises(ValueError, match="aux_logits"):
        zoo.GoogLeNet(mode="dense", aux_logits=True)


def test_googlenet_paper_variant_builds():
    model = zoo.GoogLeNet(batch_norm=False, aux_logits=True, classes=11)
    assert [tuple(o.shape) for o in model.outputs] == [(None, 11)] * 3
    names = {l.name for l in model.layers}
    assert {"norm1", "norm2"} <= names and not any(n.endswith("_bn") for n in names)
    assert model.get_layer("inception3a_branch3_1_conv").kernel_size == (5, 5)
    assert model.get_layer("maxpool4").pool_size == (3, 3)
    out = model(np.random.default_rng(0).uniform(size=(1, 224, 224, 3)).astype("float32"), training=False)
    assert all(np.isfinite(np.asarray(o)).all() for o in out)
    with pytest.raises(ValueError, match="batch_norm=False"):
        zoo.GoogLeNet(weights="imagenet", batch_norm=False)


def test_lrn_matches_torch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).uniform(0, 3, (2, 5, 6, 17)).astype("float32")
    got = inception.LocalResponseNorm(5, 1e-4, 0.75, 1.0)(x)
    want = torch.nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0)(nchw(x))
    assert_close(got, nhwc(want), rtol=0.0, atol=1e-6, what="LRN")


def test_ceil_max_pool_matches_torch():
    torch = pytest.importorskip("torch")
    for k in (2, 3):
        for side in (7, 8, 13, 14):
            x = np.random.default_rng(side).uniform(0, 1, (1, side, side + 1, 4)).astype("float32")
            inp = keras.Input(x.shape[1:])
            got = np.asarray(keras.Model(inp, inception.ceil_max_pool(inp, k, "p"))(x))
            pool = torch.nn.MaxPool2d(k, stride=2, ceil_mode=True)
            want = nhwc(pool(nchw(x)))
            assert got.shape == want.shape, (k, side)
            assert_close(got, want, **EXACT, what=f"ceil max pool k={k} side={side}")


# ----------------------------------------------------------- InceptionV3


@pytest.fixture(scope="module")
def v3_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("v3")
    shape = (107, 97, 3)
    top = keras.applications.InceptionV3(weights=None, input_shape=shape, classes=6,
                                         classifier_activation=None)
    randomize(top, seed=3)
    notop = keras.applications.InceptionV3(weights=None, include_top=False, input_shape=shape)
    # The no-top file holds the same conv/BN weights (keras.applications
    # loads both files by layer order).
    src_layers = [l for l in top.layers if l.weights][:-1]
    for src, dst in zip(src_layers, [l for l in notop.layers if l.weights]):
        dst.set_weights(src.get_weights())
    x = np.random.default_rng(2).uniform(-1, 1, (2,) + shape).astype("float32")
    return {
        "top": save_legacy_h5(top, str(folder / "top.h5")),
        "notop": save_legacy_h5(notop, str(folder / "notop.h5")),
        "x": x, "logits": np.asarray(top(x, training=False)), "mixed10": np.asarray(notop(x, training=False)),
        "keras_top": top,
    }


@pytest.fixture(scope="module")
def v3_models(v3_files):
    """Ours from the file with top: classify at the file's size, heatmap at any."""
    top = v3_files["top"]
    return {
        "classify": zoo.InceptionV3(weights=top, input_shape=(107, 97, 3), classes=6,
                                    classifier_activation=None),
        "heatmap": zoo.InceptionV3(weights=top, mode="heatmap", classes=6, classifier_activation=None),
    }


def test_inception_v3_matches_keras_applications(v3_files, v3_models):
    ref = v3_files
    got = np.asarray(v3_models["classify"](ref["x"], training=False))
    assert got.shape == ref["logits"].shape
    assert_close(got, ref["logits"], **REFERENCE, what="logits")
    h = np.asarray(v3_models["heatmap"](ref["x"], training=False))
    assert_close(h.mean(axis=(1, 2)), ref["logits"], **REFERENCE, what="heatmap mean")


def test_inception_v3_notop_features(v3_files):
    ref = v3_files
    model = zoo.InceptionV3(weights=ref["notop"], mode="features")
    out = {k: np.asarray(v) for k, v in model(ref["x"], training=False).items()}
    assert sorted(out) == ["P2", "P3", "P4", "P5"]  # stem, mixed2, mixed7, mixed10
    want = ref["mixed10"]
    assert out["P5"].shape == want.shape
    assert_close(out["P5"], want, **FEATURES, what="P5")
    # A file with top into a headless mode: the classifier is ignored.
    zoo.InceptionV3(weights=ref["top"], mode="features")


def test_inception_v3_file_order_table(v3_files, v3_models):
    """The static table is keras.applications' weighted-layer order: same
    count, layer types and shapes position by position (parity above proves
    the pairing of equal-shaped layers)."""
    ka, mine = v3_files["keras_top"], v3_models["classify"]
    ref = [l for l in ka.layers if l.weights]
    table = inception.INCEPTION_V3_FILE_ORDER
    assert len(table) == len(ref) == len(set(table))
    for name, src in zip(table, ref):
        dst = mine.get_layer(name)
        assert type(dst) is type(src), name
        assert [w.shape for w in dst.weights] == [w.shape for w in src.weights], name


def test_inception_v3_rejects_wrong_file(tmp_path):
    small = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="c")])
    path = save_legacy_h5(small, str(tmp_path / "small.h5"))
    with pytest.raises(CheckpointError, match="InceptionV3"):
        zoo.InceptionV3(weights=path, mode="features")


def test_inception_v3_modes_shapes(v3_models):
    dense = zoo.InceptionV3(mode="dense", classes=4)
    m = min_side("inception_v3", "dense")
    for hw in ((m, m + 25), (m + 36, m + 5)):
        assert dense(np.zeros((1,) + hw + (3,), "float32"), training=False).shape == (1,) + hw + (4,)
    assert v3_models["classify"].output.shape == (None, 6)
    heat = v3_models["heatmap"](np.zeros((1, 139, 139, 3), "float32"), training=False)
    assert heat.shape == (1, 3, 3, 6)
    with pytest.raises(ValueError, match=str(m)):
        zoo.InceptionV3(input_shape=(m - 11, m - 11, 3))


# --------------------------------------------------------------- savings


def test_worked_example_4x4():
    s = inception.reduction_savings(256, 256, 4, 64)
    assert s["naive_params"] == 256 * 256 * 16
    assert s["params"] == 256 * 64 * 17
    assert s["ratio"] == pytest.approx(64 / 17) and round(s["ratio"], 2) == 3.76
    # The same figures counted from real layers by zoo.analysis.flops.
    inp = keras.Input((8, 8, 256))
    naive = keras.Model(inp, keras.layers.Conv2D(256, 4, padding="same", use_bias=False)(inp))
    red = keras.layers.Conv2D(64, 1, use_bias=False)(inp)
    reduced = keras.Model(inp, keras.layers.Conv2D(256, 4, padding="same", use_bias=False)(red))
    assert count_flops(naive) / count_flops(reduced) == pytest.approx(64 / 17)
    assert naive.count_params() / reduced.count_params() == pytest.approx(64 / 17)


def test_inception_3a_against_paper_table():
    info = zoo.model_info("googlenet", (224, 224), batch_norm=False)
    rows = {r["block"]: r for r in info["inception_blocks"]}
    assert list(rows) == list(inception.GOOGLENET_BLOCKS)
    r3a = rows["inception3a"]
    weights = 192 * 64 + 192 * 96 + 96 * 128 * 9 + 192 * 16 + 16 * 32 * 25 + 192 * 32
    assert weights == 163_328
    # The paper's table: 128M ops, 159K params (its params column is ~3% under
    # the exact weight count of its own channel table).
    assert r3a["flops"] == weights * 28 * 28 and round(r3a["flops"] / 1e6) == 128
    assert r3a["params"] == weights + (64 + 96 + 128 + 16 + 32 + 32)
    assert abs(r3a["params"] - 159e3) / 159e3 < 0.03
    naive = 192 * 64 + 192 * 128 * 9 + 192 * 32 * 25 + 192 * 32
    assert r3a["naive_flops"] == naive * 28 * 28
    assert r3a["flops_ratio"] == pytest.approx(naive / weights, abs=1e-3)
    # Whole network: the totals both ways.
    assert info["naive_flops"] - info["flops"] == sum(r["naive_flops"] - r["flops"] for r in rows.values())
    assert info["naive_params"] > info["params"] and info["naive_flops_ratio"] > 1.5


def test_inception_block_naive_same_channels():
    inp = keras.Input((28, 28, 192))
    full = zoo.layers.inception_block(inp, *inception.GOOGLENET_BLOCKS["inception3a"], name="a")
    naive = zoo.layers.inception_block(inp, *inception.GOOGLENET_BLOCKS["inception3a"], name="b",
                                       reduce=False)
    assert full.shape == naive.shape == (None, 28, 28, 256)
    m = keras.Model(inp, [full, naive])
    assert "b_branch2_0_conv" not in {l.name for l in m.layers}
    assert m.get_layer("b_branch2_1_conv").input.shape[-1] == 192

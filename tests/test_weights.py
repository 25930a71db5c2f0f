"""The loading contract: formats by content, resolution order, downloads,
and errors that name the file and the layer and leave the model untouched."""

import hashlib
import os
import pickle
import shutil
import warnings

import h5py
import keras
import numpy as np
import pytest

import zoo
from tests.cases import TINY_VGG
from tests.support.helpers import assert_untouched, snapshot, use_manifest
from zoo import weights as zw
from zoo.weights.readers.errors import CheckpointError


@pytest.fixture(scope="module")
def features_file(vgg16_notop):
    return vgg16_notop[1]


def test_keras3_weights_file_round_trip(tmp_path, features_file):
    src = zoo.VGG16(weights=features_file, mode="features")
    path = str(tmp_path / "vgg.weights.h5")
    src.save_weights(path)
    # Content, not suffix, decides the format.
    odd = str(tmp_path / "vgg.bin")
    shutil.copy(path, odd)
    dst = zoo.VGG16(weights=odd, mode="features")
    for a, b in zip(src.get_weights(), dst.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_wrong_shape_names_layer_and_shapes_and_loads_nothing(tmp_path, features_file):
    bad = str(tmp_path / "bad.h5")
    shutil.copy(features_file, bad)
    with h5py.File(bad, "r+") as f:
        g = f["block3_conv2"]
        names = [n.decode() if isinstance(n, bytes) else n for n in g.attrs["weight_names"]]
        del g[names[0]]
        g.create_dataset(names[0], data=np.zeros((3, 3, 256, 128), "float32"))
    model = zoo.VGG16(mode="features")
    before = snapshot(model)
    with pytest.raises(CheckpointError) as e:
        zw.load_weights(model, bad, "vgg16")
    msg = str(e.value)
    assert bad in msg and "block3_conv2" in msg
    assert "(3, 3, 256, 128)" in msg and "(3, 3, 256, 256)" in msg
    assert_untouched(model, before)


def test_other_architecture_is_refused(tmp_path):
    from tests.support.helpers import save_legacy_h5

    path = save_legacy_h5(keras.applications.VGG19(weights=None, include_top=False), str(tmp_path / "v19.h5"))
    model = zoo.VGG16(mode="features")
    before = snapshot(model)
    with pytest.raises(CheckpointError, match="block3_conv4"):
        zw.load_weights(model, path, "vgg16")
    assert_untouched(model, before)


def test_truncated_file_is_refused(tmp_path, features_file):
    bad = str(tmp_path / "truncated.h5")
    with open(features_file, "rb") as f:
        data = f.read()
    with open(bad, "wb") as f:
        f.write(data[: len(data) // 2])
    model = zoo.VGG16(mode="features")
    before = snapshot(model)
    with pytest.raises(CheckpointError, match="truncated.h5"):
        zw.load_weights(model, bad, "vgg16")
    assert_untouched(model, before)


def test_unrecognised_file_is_refused(tmp_path):
    path = tmp_path / "noise.pth"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="noise.pth"):
        zoo.VGG16(weights=str(path), mode="features")


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch " + os.environ["ZOO_EVIL_MARK"],))


def test_malicious_pth_never_runs(tmp_path, monkeypatch):
    mark = tmp_path / "pwned"
    monkeypatch.setenv("ZOO_EVIL_MARK", str(mark))
    path = tmp_path / "evil.pth"
    # The legacy torch container: magic number, protocol, sys_info, object.
    with open(path, "wb") as f:
        pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
        pickle.dump(1001, f, protocol=2)
        pickle.dump({"little_endian": True}, f, protocol=2)
        pickle.dump({"block1_conv1.weight": _Evil()}, f, protocol=2)
        pickle.dump([], f, protocol=2)
    with pytest.raises(CheckpointError, match="system"):
        zoo.VGG16(weights=str(path), mode="features")
    assert not mark.exists()


def test_class_count_mismatch_drops_classifier_with_warning(tiny_vgg_top):
    # Refused by default (issue 19 item 2); skip_mismatch=True asks for it.
    # A keras.applications-layout top file of the tiny VGG: VGG16's path.
    from zoo import assembler

    ref, top = tiny_vgg_top
    with pytest.raises(CheckpointError, match="predictions.*skip_mismatch=True"):
        zoo.create_model(TINY_VGG, weights=top, classes=10, mode="heatmap")
    model = zoo.create_model(TINY_VGG, classes=10, mode="heatmap")
    wmap = assembler.derive_weight_map(assembler.backbone_spec(TINY_VGG), "heatmap")
    with pytest.warns(UserWarning, match="predictions"):
        zoo.load_weights(model, top, TINY_VGG, wmap, skip_mismatch=True)
    np.testing.assert_array_equal(
        model.get_layer("fc2").get_weights()[1], ref.get_layer("fc2").get_weights()[1]
    )
    hidden = ref.get_layer("fc2").get_weights()[1].shape[0]
    assert model.get_layer("predictions").get_weights()[0].shape == (1, 1, hidden, 10)


def test_unknown_names_list_valid_choices():
    with pytest.raises(ValueError, match="vgg16"):
        zoo.create_model("vgg17")
    with pytest.raises(ValueError, match="classify, heatmap, dense, features"):
        zoo.VGG16(mode="segment")
    with pytest.raises(ValueError, match="imagenet"):
        zoo.VGG16(weights="places365")
    with pytest.raises(ValueError, match="dense"):
        zoo.FCN8s(mode="classify")


# ------------------------------------------------------------ resolution


def _md5(path):
    return hashlib.md5(open(path, "rb").read()).hexdigest()


@pytest.fixture
def fake_manifest(monkeypatch, tmp_path, features_file):
    """A manifest whose vgg16 'imagenet' notop file is served from file://."""
    served = tmp_path / "server" / "vgg16_notop.h5"
    served.parent.mkdir()
    shutil.copy(features_file, served)
    manifest = {
        "vgg16": {
            "imagenet": {
                "files": {
                    "notop": {
                        "file": "vgg16_notop_test.h5",
                        "url": served.as_uri(),
                        "hash": "md5:" + _md5(served),
                        "format": "keras_legacy_h5",
                    }
                },
            }
        }
    }
    use_manifest(monkeypatch, tmp_path, manifest)
    return manifest, served, tmp_path


def test_download_is_hash_checked_and_cached(fake_manifest):
    manifest, served, root = fake_manifest
    model = zoo.VGG16(weights="imagenet", mode="features")
    cached = root / "keras_home" / "models" / "vgg16_notop_test.h5"
    assert cached.is_file()
    np.testing.assert_array_equal(
        model.get_layer("block1_conv1").get_weights()[0],
        zoo.VGG16(weights=str(served), mode="features").get_layer("block1_conv1").get_weights()[0],
    )
    # Found locally the second time: the URL may now be dead.
    manifest["vgg16"]["imagenet"]["files"]["notop"]["url"] = "file:///nonexistent/x.h5"
    assert zw.resolve_file("vgg16", "imagenet", "notop") == str(cached)


def test_hash_mismatch_leaves_no_file(fake_manifest):
    manifest, served, root = fake_manifest
    manifest["vgg16"]["imagenet"]["files"]["notop"]["hash"] = "md5:" + "0" * 32
    with pytest.raises(CheckpointError, match="hash mismatch"):
        zoo.VGG16(weights="imagenet", mode="features")
    folder = root / "keras_home" / "models"
    assert not (folder / "vgg16_notop_test.h5").exists()
    assert not folder.exists() or not list(folder.iterdir())


def test_sha256_prefix_hashes(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"keras-zoo")
    digest = hashlib.sha256(b"keras-zoo").hexdigest()
    assert zw.check_hash(str(path), "sha256:" + digest[:8])
    assert not zw.check_hash(str(path), "sha256:" + ("0" * 8))


def test_resolution_order_prefers_env_folder(fake_manifest, monkeypatch, features_file):
    manifest, served, root = fake_manifest
    env_dir = root / "env"
    env_dir.mkdir()
    shutil.copy(features_file, env_dir / "vgg16_notop_test.h5")
    monkeypatch.setenv(zw.ENV_DIR, str(env_dir))
    assert zw.resolve_file("vgg16", "imagenet", "notop") == str(env_dir / "vgg16_notop_test.h5")


def test_offline_error_says_what_to_put_where(fake_manifest):
    manifest, served, root = fake_manifest
    manifest["vgg16"]["imagenet"]["files"]["notop"]["url"] = "file:///nonexistent/vgg16_notop_test.h5"
    with pytest.raises(FileNotFoundError) as e:
        zoo.VGG16(weights="imagenet", mode="features")
    msg = str(e.value)
    assert "vgg16_notop_test.h5" in msg and "file:///nonexistent" in msg and "md5:" in msg
    assert zw.ENV_DIR in msg

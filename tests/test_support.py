"""The test support itself: the files it writes are the upstream formats the
parity tests claim they are."""

import h5py
import keras
import numpy as np

from tests.support.helpers import randomize, save_legacy_h5, snapshot, tiny_model


def test_save_legacy_h5_is_what_keras_own_loader_reads(tmp_path):
    """keras.applications' layout, read back by Keras's legacy ``.h5``
    loader (by layer order, BN's four weights in legacy order)."""
    src = randomize(tiny_model(), seed=1)
    path = save_legacy_h5(src, str(tmp_path / "tiny.h5"))
    with h5py.File(path, "r") as f:
        assert [n.decode() for n in f.attrs["layer_names"]] == [layer.name for layer in src.layers]
        names = [n.decode() for n in f["bn"].attrs["weight_names"]]
        assert [n.rsplit("/", 1)[-1] for n in names] == ["gamma", "beta", "moving_mean", "moving_variance"]
    dst = tiny_model()
    dst.load_weights(path)
    for a, b in zip(snapshot(dst), snapshot(src), strict=True):
        np.testing.assert_array_equal(a, b)


def test_save_legacy_h5_splits_long_name_lists(tmp_path):
    """Name lists over HDF5's 64 KiB header limit go into numbered
    attributes, as Keras writes (and reads) them."""
    inputs = keras.Input((4,))
    x = inputs
    for i in range(700):  # 700 names of 100 bytes: over the limit
        x = keras.layers.Activation("linear", name=f"layer_{i:05d}_" + "x" * 88)(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="fc")(x))
    path = save_legacy_h5(model, str(tmp_path / "long.h5"))
    with h5py.File(path, "r") as f:
        assert "layer_names" not in f.attrs and "layer_names0" in f.attrs
    model.load_weights(path)

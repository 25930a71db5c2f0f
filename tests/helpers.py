"""Test utilities: random weights, checkpoints in the exact upstream formats,
and the one close-compare every parity test uses.

Tolerances, by comparison kind (``assert_close`` scales ``rtol`` by the
largest magnitude of the reference, because elementwise relative error is
meaningless where outputs cross zero):

- ``EXACT``: copied tensors (weights, fixed kernels) -- no error at all.
- ``BACKEND``: the same Keras graph and weights on another Keras backend
  (issue 9: <= 1e-5 relative); only float32 summation order differs.
- ``REFERENCE``: an independent float32 implementation (a PyTorch
  reference module or keras.applications) of a deep network with random
  He-scaled weights: summation order differs in every one of 20-150 layers,
  so an absolute 1e-4 floor (values near zero) plus 1e-5 of the largest
  reference value.
- ``SEGMENTATION``: a dense head against torchvision's layout (issue 9:
  <= 1e-4 relative at 256x320): bilinear upsampling to full size and the
  ASPP's image pooling add their own rounding, so 1e-4 of the largest value.
"""

import h5py
import numpy as np

EXACT = {"rtol": 0.0, "atol": 0.0}
BACKEND = {"rtol": 1e-5, "atol": 0.0}
REFERENCE = {"rtol": 1e-5, "atol": 1e-4}
SEGMENTATION = {"rtol": 1e-4, "atol": 0.0}


def assert_close(actual, expected, rtol, atol, what=""):
    """Asserts ``max|actual - expected| <= atol + rtol * max|expected|``.

    Args:
        actual: the array under test (anything ``np.asarray`` takes).
        expected: the reference array, same shape.
        rtol: tolerance relative to the largest magnitude in ``expected``.
        atol: absolute tolerance.
        what: names the comparison in the failure message.

    Returns:
        The max absolute difference (float), for tests that report it.
    """
    a = np.asarray(actual, dtype="float64")
    b = np.asarray(expected, dtype="float64")
    assert a.shape == b.shape, f"{what}: shape {a.shape} != reference {b.shape}"
    assert np.isfinite(a).all(), f"{what}: non-finite values"
    if a.size == 0:
        return 0.0
    scale = float(np.abs(b).max())
    tol = atol + rtol * scale
    err = np.abs(a - b)
    diff = float(err.max())
    at = np.unravel_index(int(err.argmax()), err.shape)
    assert diff <= tol, (
        f"{what}: max abs diff {diff:.3g} at {at} > {tol:.3g} "
        f"(atol {atol:g} + rtol {rtol:g} x max|ref| {scale:.3g})")
    return diff


def save_torch(state_dict, path, legacy=False):
    """Writes a ``torch.save`` file, zip (default) or the pre-1.6 legacy format.

    Args:
        state_dict: what to save (usually ``module.state_dict()``).
        path: destination file.
        legacy: write the legacy (non-zip) serialization.

    Returns:
        ``str(path)``.
    """
    import torch

    torch.save(state_dict, path, _use_new_zipfile_serialization=not legacy)
    return str(path)


def randomize(model, seed=0, scale=1.0):
    """Gives every weight a fresh He-scaled normal value (BN variances positive).

    Random but well-conditioned weights make parity tests meaningful: zeros
    or the builders' own initialisers could hide a transposed kernel.
    """
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        new = []
        for w in layer.weights:
            shape = tuple(w.shape)
            name = w.path.rsplit("/", 1)[-1]
            if "moving_variance" in name:
                new.append(rng.uniform(0.5, 1.5, shape))
            elif "gamma" in name:
                new.append(rng.uniform(0.5, 1.5, shape))
            elif len(shape) <= 1:
                new.append(rng.normal(0, 0.1, shape))
            else:
                fan_in = np.prod(shape[:-1]) if len(shape) > 2 else shape[0]
                new.append(rng.normal(0, scale * np.sqrt(2.0 / fan_in), shape))
        if new:
            layer.set_weights([a.astype("float32") for a in new])
    return model


def save_legacy_h5(model, path):
    """Writes keras.applications' legacy ``.h5`` layout (layer_names, weight_names)."""
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return path


def serve_files(tmp_path, files):
    """Writes ``{name: bytes}`` under ``tmp_path/served`` (the ``file://``
    "server" of the weights tests).

    Returns:
        The folder, a ``pathlib.Path``.
    """
    served = tmp_path / "served"
    served.mkdir()
    for name, data in files.items():
        (served / name).write_bytes(data)
    return served


def use_manifest(monkeypatch, tmp_path, manifest):
    """Points ``zoo.weights`` at ``manifest``, with an empty package folder,
    ``KERAS_HOME`` under ``tmp_path`` and no ``$KERAS_ZOO_WEIGHTS`` folder.

    Returns:
        The download cache folder, a ``pathlib.Path``.
    """
    from zoo import weights as zw

    monkeypatch.setattr(zw, "load_manifest", lambda: manifest)
    monkeypatch.setattr(zw, "package_weights_dir", lambda: str(tmp_path / "pkg"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.delenv(zw.ENV_DIR, raising=False)
    return tmp_path / "keras_home" / "models"

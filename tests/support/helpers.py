"""Test utilities: random weights and inputs, checkpoints in the exact
upstream formats, the one close-compare every parity test uses, and the small
models and helpers several test files share.

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

import functools

import h5py
import numpy as np

# Object headers of an HDF5 file hold at most 64 KiB: longer name lists are
# split into numbered attributes, as Keras's legacy writer does.
_HDF5_HEADER_LIMIT = 64512

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


def _write_names(group, name, names):
    """``group.attrs[name] = names``, split into ``name0``, ``name1``, ...
    where one attribute would not fit an HDF5 object header."""
    data = np.asarray(names)
    chunks = 1
    while any(c.nbytes > _HDF5_HEADER_LIMIT for c in np.array_split(data, chunks)):
        chunks += 1
    if chunks == 1:
        group.attrs[name] = data
    else:
        for i, chunk in enumerate(np.array_split(data, chunks)):
            group.attrs[f"{name}{i}"] = chunk


def save_legacy_h5(model, path):
    """Writes keras.applications' legacy ``.h5`` weights layout.

    The layout of the published ``*_weights_tf_dim_ordering_tf_kernels*.h5``
    files (written with h5py here, not through Keras's private legacy
    module): root attributes ``layer_names`` (every layer, in model order),
    ``backend`` and ``keras_version``; one group per layer whose
    ``weight_names`` attribute lists its datasets, trainable weights first
    then non-trainable ones (BN: gamma, beta, moving mean, moving variance).

    Returns:
        ``path``.
    """
    import keras

    with h5py.File(path, "w") as f:
        _write_names(f, "layer_names", [layer.name.encode("utf8") for layer in model.layers])
        f.attrs["backend"] = keras.backend.backend().encode("utf8")
        f.attrs["keras_version"] = str(keras.__version__).encode("utf8")
        for layer in sorted(model.layers, key=lambda layer: layer.name):
            group = f.create_group(layer.name)
            weights = layer.trainable_weights + layer.non_trainable_weights
            names = [str(w.path).encode("utf8") for w in weights]
            _write_names(group, "weight_names", names)
            for name, w in zip(names, weights):
                group.create_dataset(name, data=keras.ops.convert_to_numpy(w))
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


# ------------------------------------------------------------ inputs


def normal(shape, seed=0):
    """``N(0, 1)`` float32 values of any ``shape`` (images, feature maps)."""
    return np.random.default_rng(seed).normal(0, 1, shape).astype("float32")


def images(n, h, w, seed=0, preprocess=None):
    """A batch of ``n`` NHWC RGB test images.

    Args:
        n, h, w: batch size and spatial size.
        seed: seed of the generator.
        preprocess: None for ``N(0, 1)`` values (what the torch references
            take); else a ``preprocess_input`` function (e.g.
            ``keras.applications.resnet.preprocess_input``) applied to
            uniform pixel values in [0, 255].
    """
    if preprocess is None:
        return normal((n, h, w, 3), seed)
    rng = np.random.default_rng(seed)
    return preprocess(rng.uniform(0, 255, (n, h, w, 3)).astype("float32"))


def pixels(shape, seed=0):
    """Random ``uint8`` pixel values of ``shape``."""
    return np.random.default_rng(seed).integers(0, 256, shape).astype("uint8")


# ------------------------------------------------------------ torch layout


def nchw(x):
    """A NHWC numpy batch as a contiguous NCHW torch tensor."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))


def nhwc(t):
    """A NCHW torch tensor (or numpy array) as a NHWC numpy array."""
    a = t.detach().numpy() if hasattr(t, "detach") else np.asarray(t)
    return a.transpose(0, 2, 3, 1)


def torch_forward(module, x):
    """Runs a torch ``module`` on the NHWC batch ``x`` without gradients.

    Returns:
        Logits (2-D) as numpy; a 4-D output (or a dict of them) as NHWC numpy.
    """
    import torch

    with torch.no_grad():
        out = module(nchw(x))
    if isinstance(out, dict):
        return {k: nhwc(v) for k, v in out.items()}
    return nhwc(out) if out.ndim == 4 else out.numpy()


def torch_kernel(conv):
    """A torch conv's kernel in Keras's layout ((out, in, kh, kw) -> (kh, kw, in, out))."""
    return conv.weight.detach().numpy().transpose(2, 3, 1, 0)


# ------------------------------------------------------------ models


def tiny_model(name="tiny"):
    """conv -> BN -> dense on 8x8x3: the loaders' smallest real model (every
    kind of weight: kernel, bias, BN's four, a Dense matrix)."""
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="fc")(x), name=name)


def snapshot(model):
    """Copies of every weight of ``model``, to compare after a refused load."""
    return [w.copy() for w in model.get_weights()]


def assert_untouched(model, before):
    """``model``'s weights equal the ``snapshot`` taken ``before``, exactly."""
    after = model.get_weights()
    assert len(after) == len(before)
    for a, b in zip(after, before):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------ files


def write_png(path, array, mode=None, palette=None):
    """Writes ``array`` (HxW or HxWxC uint8) as a PNG, creating its folder;
    ``mode``/``palette`` write a palette ("P") image."""
    import os

    from PIL import Image

    os.makedirs(os.path.dirname(str(path)) or ".", exist_ok=True)
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    image = Image.fromarray(array, mode) if mode else Image.fromarray(array)
    if palette is not None:
        image.putpalette(palette)
    image.save(str(path))


@functools.lru_cache(maxsize=None)
def backbone_layers(name, output_stride=None):
    """Names of the weighted layers of ``name``'s features-mode model (built
    once per name and stride): what a head record must *not* contain."""
    import zoo

    kwargs = {"output_stride": output_stride} if output_stride else {}
    model = zoo.create_model(name, mode="features", **kwargs)
    return frozenset(layer.name for layer in model.layers if layer.weights)

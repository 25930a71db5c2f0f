"""Published-weights registry, file resolution and all-or-nothing loading.

``weights/manifest.json`` is the only place that knows URLs, hashes, formats,
preprocessing, class counts and classifier layer names. Builders call
:func:`load_weights` with a tag or a path and a :class:`zoo.convert.WeightMap`.
"""

import fnmatch
import functools
import hashlib
import json
import os
import tempfile
import urllib.request
import warnings
from importlib import resources

import numpy as np

from zoo.convert import WeightMap, h5_layers, torch_layers
from zoo.io import h5 as h5_io
from zoo.io import pth as pth_io
from zoo.io.errors import CheckpointError

ENV_DIR = "KERAS_ZOO_WEIGHTS"


def package_weights_dir():
    """The package's own ``weights/`` folder (a search location for files).

    Installed, it is the ``zoo.published`` package; in a bare checkout on
    ``PYTHONPATH`` it is the top-level ``weights/`` folder.
    """
    # A source checkout's own weights/ wins over an installed copy, so that a
    # second checkout (a git worktree) reads its own manifest.
    checkout = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights")
    if os.path.isfile(os.path.join(checkout, "manifest.json")):
        return checkout
    try:
        return str(resources.files("zoo.published"))
    except ModuleNotFoundError:
        return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights")


@functools.lru_cache(maxsize=1)
def load_manifest():
    """Returns the parsed ``weights/manifest.json`` shipped with the package."""
    with open(os.path.join(package_weights_dir(), "manifest.json"), encoding="utf8") as f:
        return json.load(f)


def available_tags(model_name):
    """Published weight tags for a registered model name."""
    return sorted(load_manifest().get(model_name, {}))


def manifest_entry(model_name, tag):
    """Returns the manifest entry for ``(model_name, tag)``.

    Raises:
        ValueError: unknown tag, listing the valid ones.
    """
    tags = available_tags(model_name)
    if tag not in tags:
        raise ValueError(
            f"unknown weights tag {tag!r} for {model_name}; valid choices: "
            f"{', '.join(tags) if tags else '(none published)'}, None, or a file path"
        )
    return load_manifest()[model_name][tag]


def classifier_layers(model_name):
    """Classifier layer names recorded in the manifest for ``model_name``."""
    names = []
    for entry in load_manifest().get(model_name, {}).values():
        for name in entry.get("classifier", []):
            if name not in names:
                names.append(name)
    return names


def file_spec(model_name, tag, file_key=None):
    """Returns the manifest's file record (``file``, ``url``, ``hash``, ``format``).

    An entry holds one file, or several under ``files`` keyed by variant
    (``top``/``notop``, ``keras``/``torch``); ``file_key`` picks one.
    """
    entry = manifest_entry(model_name, tag)
    files = entry.get("files")
    if files is None:
        return entry
    if file_key not in files:
        file_key = next(iter(files))
    return files[file_key]


# ---------------------------------------------------------------- hashes


def check_hash(path, expected):
    """Checks ``path`` against ``"md5:<hex>"`` or ``"sha256:<hex or prefix>"``.

    torch hub names carry only a SHA-256 prefix; keras.applications publishes
    full MD5 sums. Both are accepted.

    Returns:
        True when the hash matches (or no hash is recorded).
    """
    if not expected:
        warnings.warn(f"{path}: upstream publishes no hash for this file; it is not verified")
        return True
    algo, _, want = expected.partition(":")
    digest = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest().startswith(want.lower())


# ------------------------------------------------------------ resolution


def search_dirs():
    """Folders searched, in order, for a published file before downloading."""
    dirs = []
    if os.environ.get(ENV_DIR):
        dirs.append(os.environ[ENV_DIR])
    dirs.append(package_weights_dir())
    keras_home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    dirs.append(os.path.join(keras_home, "models"))
    return dirs


def _progress_hook():
    """A ``urlretrieve`` report hook drawing Keras's progress bar."""
    from keras.utils import Progbar

    bar = {}

    def hook(blocks, block_size, total):
        if total <= 0:
            return
        if "bar" not in bar:
            bar["bar"] = Progbar(total, unit_name="B")
        bar["bar"].update(min(blocks * block_size, total))

    return hook


def download(url, dest, expected_hash):
    """Downloads ``url`` to ``dest``: a temporary file, hash-checked, then
    atomically renamed, so ``dest`` never holds a partial or bad file.

    Raises:
        CheckpointError: hash mismatch (the temporary file is removed).
        OSError: the download itself failed.
    """
    folder = os.path.dirname(dest)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".part-", dir=folder)
    os.close(fd)
    try:
        urllib.request.urlretrieve(url, tmp, reporthook=_progress_hook())
        if not check_hash(tmp, expected_hash):
            raise CheckpointError(
                f"hash mismatch for {url}: expected {expected_hash}; the file was discarded"
            )
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return dest


def resolve_file(model_name, tag, file_key=None):
    """Finds the file for a published tag, downloading it if needed.

    Order: ``$KERAS_ZOO_WEIGHTS``, the package's ``weights/`` folder, the Keras
    cache (``~/.keras/models``), then a download into that cache.

    Returns:
        A local path.

    Raises:
        FileNotFoundError: offline and no local copy; the message says which
            file to put where, with its URL and hash.
    """
    spec = file_spec(model_name, tag, file_key)
    fname = spec["file"]
    dirs = search_dirs()
    for d in dirs:
        candidate = os.path.join(d, fname)
        if os.path.isfile(candidate):
            return candidate
    dest = os.path.join(dirs[-1], fname)
    try:
        return download(spec["url"], dest, spec.get("hash"))
    except OSError as e:
        raise FileNotFoundError(
            f"weights {model_name}/{tag} not found and could not be downloaded ({e}).\n"
            f"Put the file {fname!r} (hash {spec.get('hash')}) from\n  {spec['url']}\n"
            f"into one of: {', '.join(dirs)} (or set ${ENV_DIR})."
        ) from None


# --------------------------------------------------------------- loading


def read_checkpoint(path):
    """Reads any supported file, detected by content, not suffix.

    Returns:
        ``(kind, contents)``: ``("h5", {layer: [arrays]})`` or
        ``("torch", {key: array})``.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: anything else wrong with the file; the message names it.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        if h5_io.is_hdf5(path) or h5_io.is_keras_archive(path):
            return "h5", h5_io.read_h5(path)
        if pth_io.is_pth(path):
            return "torch", pth_io.read_pth(path)
    except CheckpointError:
        raise
    except Exception as e:  # a reader's own bug or an unforeseen corruption
        raise CheckpointError(f"{path}: cannot read weights ({type(e).__name__}: {e})") from e
    raise CheckpointError(
        f"{path}: unrecognised weights file (expected Keras .weights.h5, "
        "keras.applications .h5, .keras, or PyTorch .pth)"
    )


def _matches(name, patterns):
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def plan_assignment(model, layers, origin, path, weight_map, classifier=()):
    """Checks every layer before anything is written.

    Returns:
        A list of ``(layer, arrays)`` to assign.

    Raises:
        CheckpointError: naming the file, the first mismatched layer and both
            shapes, or the first missing or unexpected layer.
    """
    targets = [l for l in model.layers if l.weights]
    by_name = {l.name: l for l in targets}
    dropped = []
    for name in classifier:
        layer = by_name.get(name)
        if layer is None or name not in layers:
            continue
        have = [tuple(a.shape) for a in layers[name]]
        want = [tuple(w.shape) for w in layer.weights]
        if have != want and len(have) == len(want) and have[-1][-1:] != want[-1][-1:]:
            dropped.append(name)
    if dropped:
        warnings.warn(
            f"{path}: class count differs, so classifier layer(s) {', '.join(dropped)} "
            "keep their initial values; the rest loads."
        )
    plan = []
    for layer in targets:
        if layer.name in dropped:
            continue
        if layer.name not in layers:
            if _matches(layer.name, weight_map.optional):
                continue
            raise CheckpointError(
                f"{path}: layer {layer.name!r} of the model has no weights in the file "
                f"(file layers start with: {', '.join(list(layers)[:5])})"
            )
        arrays = layers[layer.name]
        want = [tuple(w.shape) for w in layer.weights]
        have = [tuple(np.shape(a)) for a in arrays]
        if have != want:
            src = origin.get(layer.name, layer.name)
            raise CheckpointError(
                f"{path}: shape mismatch at layer {layer.name!r} (file: {src!r}): "
                f"file has {have}, model expects {want}"
            )
        plan.append((layer, [np.asarray(a, dtype=w.dtype) for a, w in zip(arrays, layer.weights)]))
    for name in layers:
        if name in by_name or name in dropped or _matches(name, weight_map.ignore):
            continue
        raise CheckpointError(
            f"{path}: the file has layer {origin.get(name, name)!r} "
            f"(-> {name!r}) that the model does not have; is this a checkpoint "
            f"of another architecture?"
        )
    return plan


def assign(plan):
    """Writes a checked plan; on any failure restores every layer written."""
    saved = []
    try:
        for layer, arrays in plan:
            saved.append((layer, layer.get_weights()))
            layer.set_weights(arrays)
    except Exception:
        for layer, old in saved:
            layer.set_weights(old)
        raise


def is_weights_path(weights, model_name=None):
    """Whether ``weights`` names a file rather than a published tag.

    A published tag of ``model_name`` always means the tag, even when a file
    or folder of that name sits in the working directory; write
    ``./imagenet`` to mean such a file. Anything else that exists, contains a
    path separator or ends in a weights suffix is a path.

    Args:
        weights: a tag or a path (str or os.PathLike).
        model_name: registry name whose tags take precedence, or None.

    Returns:
        True for a path, False for a tag.
    """
    if not isinstance(weights, str):
        return True  # os.PathLike: always a path
    if model_name is not None and weights in load_manifest().get(model_name, {}):
        return False
    return (os.path.exists(weights) or os.sep in weights or "/" in weights
            or weights.endswith((".h5", ".pth", ".pt", ".keras")))


def load_weights(model, weights, model_name=None, weight_map=None, file_key=None):
    """Loads ``weights`` into ``model``, all or nothing.

    ``zoo.load_weights(model, path)`` reads a Keras file (``.weights.h5``,
    legacy ``.h5``, ``.keras``) or a PyTorch file whose module paths are the
    layer names with dots for underscores. Builders pass their family's
    ``model_name`` and ``weight_map`` (e.g. ``zoo.VGG16(weights=...)``),
    which is how upstream torchvision/fyu checkpoints load.

    Args:
        model: the built ``keras.Model``.
        weights: None, a published tag such as ``"imagenet"``, or a file path.
            A published tag wins over a file or folder of the same name in
            the working directory (write ``./imagenet`` for the file).
        model_name: registry name, to look up tags and classifier names;
            default: the model's own name when it is a registered one.
        weight_map: a :class:`zoo.convert.WeightMap` (defaults to names as-is).
        file_key: which file of a multi-file tag (e.g. ``"notop"``).

    Returns:
        The model.

    Raises:
        FileNotFoundError: no such file (or, for a tag, no copy and no network).
        CheckpointError: the file is unreadable or does not fit the model;
            nothing has been written to the model.
        ValueError: an unknown tag, listing the valid ones.
    """
    if weights is None:
        return model
    if model_name is None and getattr(model, "name", None) in load_manifest():
        model_name = model.name
    weight_map = weight_map or WeightMap()
    if is_weights_path(weights, model_name):
        path = os.fspath(weights)
    elif model_name is None:
        raise ValueError(
            f"weights={weights!r} is neither an existing file nor usable as a published tag "
            "without model_name (e.g. load_weights(model, 'imagenet', 'vgg16'))")
    else:
        path = resolve_file(model_name, weights, file_key)
    kind, contents = read_checkpoint(path)
    if kind == "torch":
        layers, origin = torch_layers(contents, model, weight_map)
    else:
        layers, origin = h5_layers(contents, model, weight_map)
    plan = plan_assignment(model, layers, origin, path, weight_map,
                           classifier_layers(model_name) if model_name else ())
    assign(plan)
    return model

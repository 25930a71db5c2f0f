"""Published-weights registry, file resolution and all-or-nothing loading.

``zoo/weights/manifest.json`` is the only place that knows URLs, hashes, formats,
preprocessing, class counts and classifier layer names. Builders call
:func:`load_weights` with a tag or a path and a :class:`zoo.weights.convert.WeightMap`.
"""

import fnmatch
import functools
import hashlib
import json
import logging
import os
import re
import secrets
import socket
import tempfile
import urllib.request
import warnings

import numpy as np

# Keras and the converter (which needs Keras) are imported inside the
# functions that use them: the listing commands (``zoo list``, ``zoo weights
# list``) read the manifest, the search folders and the verified-files cache
# through this module, and must answer without importing Keras.
from zoo.weights.readers import h5 as h5_io
from zoo.weights.readers import pth as pth_io
from zoo.weights.readers import safetensors as st_io
from zoo.weights.readers.errors import CheckpointError

ENV_DIR = "KERAS_ZOO_WEIGHTS"
# Download bounds: seconds a read may stall, and the byte cap for files whose
# manifest record has no ``size_bytes`` (which is the cap when present).
ENV_TIMEOUT = "KERAS_ZOO_DOWNLOAD_TIMEOUT"
ENV_MAX_BYTES = "KERAS_ZOO_MAX_DOWNLOAD_BYTES"
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_BYTES = 4 << 30
# Full SHA-256 pins recorded on first verified download (trust on first use),
# kept in the verified-files cache under this key.
PINS_KEY = "__sha256_pins__"
HF_PREFIX = "hf://"
HF_DEFAULT_FILE = "model.safetensors"
# Suffixes that make a weights string a path even before the file exists.
PATH_SUFFIXES = (".h5", ".pth", ".pt", ".keras", ".safetensors")

logger = logging.getLogger(__name__)


def package_weights_dir():
    """The folder of ``manifest.json`` inside the package (also a search
    location for published files)."""
    return os.path.dirname(os.path.abspath(__file__))


@functools.lru_cache(maxsize=1)
def load_manifest():
    """Returns the parsed ``zoo/weights/manifest.json`` shipped with the package."""
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


def file_digest(path, algo):
    """Hex digest of a whole file, read in 1 MiB chunks.

    Args:
        path: the file.
        algo: a :mod:`hashlib` name (``"md5"``, ``"sha256"``, ...).

    Returns:
        The lowercase hex digest.
    """
    digest = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
    return file_digest(path, algo).startswith(want.lower())


def verify_cache_path():
    """The JSON file remembering which local files already matched their hash."""
    return os.path.join(search_dirs()[-1], ".keras_zoo_verified.json")


def _read_verify_cache():
    try:
        with open(verify_cache_path(), encoding="utf8") as f:
            cache = json.load(f)
        return cache if isinstance(cache, dict) else {}
    except (OSError, ValueError):
        return {}


def remember_verified(path, expected, full_sha256=None):
    """Records that ``path`` (at its current size and mtime) matched ``expected``.

    Args:
        path: a local file that was just hashed.
        expected: the manifest hash it matched.
        full_sha256: its full SHA-256 hex digest; for a short-prefix
            ``expected`` it is pinned (trust on first use) unless a pin
            already exists, and every later download or re-hash of that
            file must match it.
    """
    cache = _read_verify_cache()
    st = os.stat(path)
    cache[os.path.realpath(path)] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "hash": expected}
    if full_sha256 and is_short_hash(expected):
        pins = cache.get(PINS_KEY) if isinstance(cache.get(PINS_KEY), dict) else {}
        pins.setdefault(expected, full_sha256)
        cache[PINS_KEY] = pins
    target = verify_cache_path()
    tmp = None
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".verified-", dir=os.path.dirname(target))
        with os.fdopen(fd, "w", encoding="utf8") as f:
            json.dump(cache, f, indent=1, sort_keys=True)
        # Atomic: concurrent builds never read half a cache.
        os.replace(tmp, target)
    except OSError:
        # A read-only cache only costs a re-hash next time.
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def is_verified(path, expected):
    """True when the cache says ``path`` matched ``expected`` at its current size and mtime."""
    record = _read_verify_cache().get(os.path.realpath(path))
    if not record or record.get("hash") != expected:
        return False
    st = os.stat(path)
    return record.get("size") == st.st_size and record.get("mtime_ns") == st.st_mtime_ns


def verify_local(path, expected, how_to_fix=""):
    """Checks a local file against its manifest hash, once per size and mtime.

    Hashing a 500 MB file on every build is too slow, so a match is cached
    (:func:`verify_cache_path`) keyed by path, size and mtime; rewriting or
    touching the file makes it hash again.

    Args:
        path: the local file.
        expected: ``"algo:hex"`` or None (unverified entries: a warning).
        how_to_fix: what the error should tell the user to do.

    Raises:
        CheckpointError: the file does not match; names it, both hashes and
            what to do.
    """
    if not expected:
        check_hash(path, expected)  # warns
        return
    if is_verified(path, expected):
        return
    algo, _, want = expected.partition(":")
    actual = file_digest(path, algo)
    if not actual.startswith(want.lower()):
        raise CheckpointError(
            f"{path}: hash mismatch: expected {expected}, the file has {algo}:{actual}. "
            f"The file is truncated, corrupt or another file under a published name; "
            f"delete it{how_to_fix}."
        )
    check_pin(path, expected, actual if algo == "sha256" else None, how_to_fix)
    remember_verified(path, expected)


def is_short_hash(expected):
    """True for a SHA-256 prefix shorter than the full 64 hex digits (torch
    hub and fyu file names carry 8: 32 bits, forgeable in hours)."""
    algo, _, want = (expected or "").partition(":")
    return algo == "sha256" and len(want) < 64


def pinned_sha256(expected):
    """The full SHA-256 recorded for a short-prefix hash on its first verified
    download (trust on first use), or None."""
    pins = _read_verify_cache().get(PINS_KEY)
    return pins.get(expected) if isinstance(pins, dict) else None


def check_pin(path, expected, full=None, how_to_fix=""):
    """Checks ``path`` against the full SHA-256 pinned for ``expected``.

    Args:
        path: a file that already matched ``expected``.
        expected: its manifest hash (only short SHA-256 prefixes are pinned).
        full: the file's full SHA-256 when already computed.

    Returns:
        The file's full SHA-256 (None when ``expected`` is not a short prefix).

    Raises:
        CheckpointError: the file matches the prefix but not the pinned hash.
    """
    if not is_short_hash(expected):
        return None
    full = full or file_digest(path, "sha256")
    pin = pinned_sha256(expected)
    if pin is not None and pin != full:
        raise CheckpointError(
            f"{path}: matches the published prefix {expected} but not the full SHA-256 "
            f"sha256:{pin} recorded when this file was first downloaded (a forgery of the "
            f"short prefix, or another file); delete it{how_to_fix}.")
    return full


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


def download_timeout():
    """Seconds a download read may stall (``$KERAS_ZOO_DOWNLOAD_TIMEOUT``, default 60)."""
    return _env_number(ENV_TIMEOUT, DEFAULT_TIMEOUT, float)


def max_download_bytes():
    """The byte cap of a file without a manifest ``size_bytes``
    (``$KERAS_ZOO_MAX_DOWNLOAD_BYTES``, default 4 GiB)."""
    return _env_number(ENV_MAX_BYTES, DEFAULT_MAX_BYTES, int)


def _env_number(name, default, kind):
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"${name}={raw!r} is not a number") from None
    if not value > 0:
        raise ValueError(f"${name} must be > 0; got {raw!r}")
    return value


_PART = ".part-"


def _part_prefix():
    """The owned temporary-name prefix of this process: ``.part-<host>-<pid>-``."""
    host = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())[:40] or "host"
    return f"{_PART}{host}-{os.getpid()}-"


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def clean_stale_parts(folder):
    """Removes ``.part-*`` files a killed download of *this host* left in ``folder``.

    Only owned names are touched: ``.part-<host>-<pid>-<random>-<file>``
    with this host's name and a process id that no longer runs. Parts of
    live processes, of other hosts sharing the folder, and any other file
    are left alone.

    Returns:
        The removed paths.
    """
    host = _part_prefix().split("-")[1]
    pattern = re.compile(rf"^{re.escape(_PART)}{re.escape(host)}-(\d+)-[0-9a-f]{{16}}-")
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        m = pattern.match(name)
        if not m or int(m.group(1)) == os.getpid() or _pid_alive(int(m.group(1))):
            continue
        try:
            os.remove(os.path.join(folder, name))
            removed.append(os.path.join(folder, name))
        except OSError:
            pass
    return removed


def _shared_mode(path):
    """``chmod`` a finished file to 0666 minus the umask (0644 usually), as
    ``open()`` would create it: ``mkstemp``'s 0600 hides it from the other
    users of a shared cache."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def download(url, dest, expected_hash, progress=True, max_bytes=None):
    """Downloads ``url`` to ``dest``: a temporary file, hash-checked, then
    atomically renamed, so ``dest`` never holds a partial or bad file.

    Bounded: every read times out after :func:`download_timeout` seconds (a
    stalled mirror fails over to the next one), and the file may not exceed
    ``max_bytes`` (the manifest's ``size_bytes``; default
    :func:`max_download_bytes`), checked against ``Content-Length`` before
    reading and while reading. The temporary file has an owned name
    (``.part-<host>-<pid>-<random>-<file>``), removed on any failure; parts
    left by killed processes of this host are removed on the next download
    into the folder (:func:`clean_stale_parts`). The result is readable by
    others (0666 minus the umask), for shared caches.

    A file checked only by a short SHA-256 prefix over plain ``http://`` is
    warned about; its full SHA-256 is pinned on the first verified download
    and checked on every later one (:func:`check_pin`).

    Raises:
        CheckpointError: hash mismatch, or a file over the size cap (the
            temporary file is removed).
        OSError: the download itself failed or stalled.
    """
    folder = os.path.dirname(dest)
    os.makedirs(folder, exist_ok=True)
    clean_stale_parts(folder)
    cap = int(max_bytes) if max_bytes else max_download_bytes()
    if expected_hash and is_short_hash(expected_hash) and str(url).startswith("http://"):
        warnings.warn(
            f"{url}: served over plain http and published with only a "
            f"{4 * len(expected_hash.partition(':')[2])}-bit SHA-256 prefix ({expected_hash}); "
            "a forgery is feasible. Its full SHA-256 is recorded on this first download and "
            "checked from then on.")
    tmp = os.path.join(folder, f"{_part_prefix()}{secrets.token_hex(8)}-{os.path.basename(dest)}")
    try:
        bar = _progress_hook() if progress else None
        with urllib.request.urlopen(url, timeout=download_timeout()) as response, \
                open(tmp, "xb") as out:
            declared = response.headers.get("Content-Length") if response.headers else None
            total = int(declared) if declared and declared.isdigit() else -1
            if total > cap:
                raise CheckpointError(
                    f"{url} declares {total} bytes, more than the {cap} expected "
                    f"(manifest size_bytes or ${ENV_MAX_BYTES}); refused")
            done = 0
            while True:
                chunk = response.read(1 << 20)
                if not chunk:
                    break
                done += len(chunk)
                if done > cap:
                    raise CheckpointError(
                        f"{url} sent more than the {cap} bytes expected (manifest size_bytes "
                        f"or ${ENV_MAX_BYTES}); the download was stopped and discarded")
                out.write(chunk)
                if bar is not None:
                    bar(done, 1, total)
        full = None
        if not expected_hash:
            warnings.warn(f"{dest} (from {url}): upstream publishes no hash for this file; it is not verified")
        elif not check_hash(tmp, expected_hash):
            raise CheckpointError(
                f"hash mismatch for {url}: expected {expected_hash}; the file was discarded"
            )
        else:
            full = check_pin(tmp, expected_hash, how_to_fix="")
        _shared_mode(tmp)
        os.replace(tmp, dest)
    except socket.timeout as e:
        raise OSError(f"{url}: stalled for {download_timeout():g} s (${ENV_TIMEOUT}): {e}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    if expected_hash:
        remember_verified(dest, expected_hash, full)
    return dest


def file_urls(spec):
    """The primary URL of a manifest file record, then its mirrors."""
    return [spec["url"]] + [u for u in spec.get("mirrors", []) if u and u != spec["url"]]


def fetch(spec, dest, progress=True):
    """Downloads a manifest file record to ``dest``: the primary URL, then
    each mirror, every one hash-checked against the record's one hash.

    Returns:
        ``dest``.

    Raises:
        CheckpointError: no source gave a good file and at least one gave a
            bad one (nothing is left under ``dest``).
        OSError: every source failed to download; the message lists them.
    """
    failures, bad = [], False
    extra = {"max_bytes": int(spec["size_bytes"])} if spec.get("size_bytes") else {}
    for url in file_urls(spec):
        try:
            return download(url, dest, spec.get("hash"), progress=progress, **extra)
        except CheckpointError as e:
            bad = True
            failures.append(f"{url}: {e}")
        except (OSError, ValueError) as e:  # URLError is an OSError; a bad URL a ValueError
            failures.append(f"{url}: {e}")
    detail = "; ".join(failures)
    if bad:
        raise CheckpointError(f"hash mismatch: no source of {spec['file']} gave a good file ({detail})")
    raise OSError(detail)


def local_copy(spec):
    """The first local copy of a manifest file record, or None."""
    for d in search_dirs():
        candidate = os.path.join(d, spec["file"])
        if os.path.isfile(candidate):
            return candidate
    return None


def resolve_file(model_name, tag, file_key=None):
    """Finds the file for a published tag, downloading it if needed.

    Order: ``$KERAS_ZOO_WEIGHTS``, the package's ``weights/`` folder, the Keras
    cache (``~/.keras/models``), then a download into that cache from the
    manifest URL and then each of its ``mirrors``. A local file is checked
    against the manifest hash on first use (see :func:`verify_local`).

    Returns:
        A local path.

    Raises:
        FileNotFoundError: offline and no local copy; the message says which
            file to put where, with its URL and hash.
        CheckpointError: a local file or every download has the wrong hash.
    """
    spec = file_spec(model_name, tag, file_key)
    fname = spec["file"]
    dirs = search_dirs()
    found = local_copy(spec)
    if found is not None:
        verify_local(found, spec.get("hash"), f" and run `zoo weights fetch {model_name} {tag}`, "
                     f"or put a good copy from {spec['url']} there")
        return found
    dest = os.path.join(dirs[-1], fname)
    try:
        return fetch(spec, dest)
    except OSError as e:
        raise FileNotFoundError(
            f"weights {model_name}/{tag} not found and could not be downloaded ({e}).\n"
            f"Put the file {fname!r} (hash {spec.get('hash')}) from\n  "
            + "\n  ".join(file_urls(spec))
            + f"\ninto one of: {', '.join(dirs)} (or set ${ENV_DIR})."
        ) from None


def parse_hf(uri):
    """``hf://owner/repo[/path/to/file]`` -> ``(repo_id, filename)``.

    The file defaults to ``model.safetensors``, the name timm and
    transformers publish weights under.
    """
    parts = uri[len(HF_PREFIX):].strip("/").split("/")
    if len(parts) < 2 or not all(parts[:2]):
        raise ValueError(f"{uri!r}: expected hf://owner/repo or hf://owner/repo/file")
    return "/".join(parts[:2]), "/".join(parts[2:]) or HF_DEFAULT_FILE


def resolve_hf(uri):
    """Downloads (or finds in the hub cache) the file an ``hf://`` URI names.

    Returns:
        A local path (in huggingface_hub's cache).

    Raises:
        FileNotFoundError: huggingface_hub is missing, or the file is neither
            cached nor downloadable; the message says what to install or
            where to get the file.
    """
    repo_id, filename = parse_hf(uri)
    url = f"https://huggingface.co/{repo_id}/resolve/main/{filename}"
    manual = f"or download {url} yourself and pass its local path as weights="
    try:
        import huggingface_hub
    except ImportError:
        raise FileNotFoundError(
            f"{uri} needs the huggingface_hub package: pip install 'keras-zoo[hf]' "
            f"(or pip install huggingface_hub), {manual}"
        ) from None
    try:
        return huggingface_hub.hf_hub_download(repo_id=repo_id, filename=filename)
    except Exception as e:  # offline, unknown repo or file, gated repo
        raise FileNotFoundError(
            f"{uri}: could not get {filename} from the hub repo {repo_id} ({type(e).__name__}: {e}); "
            f"when offline, a copy already in the hub cache is used with HF_HUB_OFFLINE=1; {manual}"
        ) from None


# --------------------------------------------------------------- loading


def read_checkpoint(path, wanted=None):
    """Reads any supported file, detected by content, not suffix.

    ``wanted`` (see :func:`zoo.weights.readers.safetensors.read_safetensors`)
    lets a safetensors file skip reading tensors the model never uses.

    Returns:
        ``(kind, contents)``: ``("h5", {layer: [arrays]})`` or
        ``("torch", {key: array})`` (``.pth`` and ``.safetensors``). ``path``
        may also be an ``hf://`` URI.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: anything else wrong with the file; the message names it.
    """
    if isinstance(path, str) and path.startswith(HF_PREFIX):
        path = resolve_hf(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        if h5_io.is_hdf5(path) or h5_io.is_keras_archive(path):
            return "h5", h5_io.read_h5(path)
        if pth_io.is_pth(path):
            return "torch", pth_io.read_pth(path)
        if st_io.is_safetensors(path):
            # Hub state_dicts (timm, torchvision ports) use torch names and layouts.
            return "torch", st_io.read_safetensors(path, wanted)
    except CheckpointError:
        raise
    except Exception as e:  # a reader's own bug or an unforeseen corruption
        raise CheckpointError(f"{path}: cannot read weights ({type(e).__name__}: {e})") from e
    raise CheckpointError(
        f"{path}: unrecognised weights file (expected Keras .weights.h5, "
        "keras.applications .h5, .keras, PyTorch .pth or .safetensors)"
    )


def _matches(name, patterns):
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _adaptable_input_conv(layer, have, want):
    """An RGB conv kernel for a layer that differs only in its input channels."""
    import keras

    return (
        isinstance(layer, keras.layers.Conv2D)
        and not isinstance(layer, (keras.layers.DepthwiseConv2D, keras.layers.Conv2DTranspose))
        and len(have) == len(want) and len(have[0]) == 4 and len(want[0]) == 4
        and have[0][2] == 3 and want[0][2] != 3
        and have[0][:2] + have[0][3:] == want[0][:2] + want[0][3:]
        and have[1:] == want[1:]
    )


def _file_classes(have, want):
    """The output-unit counts of a classifier layer in the file and the model."""
    return have[-1][-1] if have[-1] else None, want[-1][-1] if want[-1] else None


def check_cast(name, array, dtype, path):
    """``array`` as ``dtype``, refusing casts that change what the numbers mean.

    Integer, unsigned, bool and complex tensors are never loaded into float
    weights (they are ids, counters or masks, not weights), and a float
    tensor whose finite values do not fit ``dtype`` (float64 ``1e300`` ->
    float32 ``inf``) is refused instead of loading infinities.

    Raises:
        CheckpointError: naming ``path``, the tensor and both dtypes.
    """
    src = np.asarray(array)
    target = np.dtype(dtype)
    if target.kind == "f" and src.dtype.kind in "iubc":
        raise CheckpointError(
            f"{path}: tensor {name!r} is {src.dtype}, but the model's weight is {target}; "
            f"integer, bool and complex tensors are not weights. No weights were changed.")
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.asarray(src, dtype=target)
    if target.kind == "f" and src.dtype.kind == "f" and src.dtype.itemsize > target.itemsize \
            and not np.all(np.isfinite(out)):
        bad = np.isfinite(src) & ~np.isfinite(out)
        if bad.any():
            raise CheckpointError(
                f"{path}: tensor {name!r} holds {src.dtype} values (e.g. {src[bad].flat[0]:g}) "
                f"that overflow the model's {target}; No weights were changed.")
    return out


def check_head(model, layers, origin, path):
    """Refuses a file whose dense head is not the model's (all or nothing).

    The model's head comes from its record (``model.zoo["head"]`` and
    ``["head_layers"]``); the file's from the registered heads
    (:mod:`zoo.heads`) whose ``layers`` patterns match its layers that the
    model's backbone does not have. Rules:

    * a file without dense-head layers (a classifier or backbone file) loads
      into ``mode="dense"``: the head starts from its initial values, and a
      warning is logged once per load (the normal fine-tuning path);
    * a file with dense-head layers must hold every layer of the model's
      head, and nothing outside it but that head's own (e.g. an auxiliary
      branch the build left out); otherwise the load fails naming both heads;
    * in ``classify``/``heatmap`` mode such a file is refused (the model has
      no dense head); ``features`` mode takes the backbone and ignores it.

    Raises:
        CheckpointError: naming the file, the model's head and the file's.
    """
    record = getattr(model, "zoo", None) or {}
    mode = record.get("mode")
    if not record or mode is None:
        return
    from zoo import heads as zheads

    specs = {name: zheads.get_head(name) for name in zheads.list_heads()}
    model_names = {l.name for l in model.layers if l.weights}
    own = set(record.get("head_layers") or ()) if mode == "dense" else set()
    body = model_names - own
    file_head = [n for n in layers if n not in body
                 and any(_matches(n, s.layers) for s in specs.values())]
    if not file_head:
        missing = sorted(own - set(layers))
        if mode == "dense" and missing:
            logger.warning("%s holds no %s head layers: the dense head (%s) starts from its "
                           "initial values (fine-tuning).", path, record.get("head"),
                           ", ".join(missing))
        return
    if mode == "features":
        logger.info("%s: features mode ignores the file's dense-head layers", path)
        return
    candidates = [h for h, s in specs.items() if all(_matches(n, s.layers) for n in file_head)] \
        or sorted({h for h, s in specs.items() for n in file_head if _matches(n, s.layers)})
    model_head = record.get("head")
    shown = ", ".join(origin.get(n, n) for n in file_head[:4])
    if mode != "dense":
        raise CheckpointError(
            f"{path} holds a dense {' or '.join(candidates)} head (layers {shown}); this "
            f"{record.get('model')} was built with mode={mode!r}, which has no dense head. Build "
            f"it with mode='dense', head={candidates[0]!r}. No weights were changed.")
    own_spec = specs.get(model_head)
    missing = sorted(own - set(layers))
    foreign = [n for n in file_head if n not in own
               and not (own_spec is not None and _matches(n, own_spec.layers))]
    if not missing and not foreign:
        return
    others = [h for h in candidates if h != model_head]
    file_desc = (f"a {' or '.join(others)} head" if others
                 else f"a differently configured {model_head} head")
    detail = (f"the file lacks {', '.join(missing[:4])}" if missing
              else f"the model has no {', '.join(foreign[:4])}")
    raise CheckpointError(
        f"{path} holds {file_desc} (layers {shown}), but this model was built with "
        f"head={model_head!r} ({detail}). Build it with the file's head"
        f"{' (head=' + repr(others[0]) + ')' if others else ''}, or load a {model_head} checkpoint. "
        f"No weights were changed.")


def plan_assignment(model, layers, origin, path, weight_map, classifier=(), skip_mismatch=False):
    """Checks every layer before anything is written.

    A first convolution (fed by the model input) whose file kernel has 3
    input channels while the model has N is adapted by
    :func:`zoo.weights.convert.adapt_input_kernel`; every other mismatch is an error.

    A classifier layer (``classifier``: the head record's layers) whose
    output count differs from the file's is an error too, unless
    ``skip_mismatch=True``: then those layers keep their initial values,
    with a warning, and the rest loads. Tensors are cast with
    :func:`check_cast` (no integer/bool tensors into float weights, no
    overflow to inf).

    Returns:
        A list of ``(layer, arrays)`` to assign.

    Raises:
        CheckpointError: naming the file, the first mismatched layer and both
            shapes, or the first missing or unexpected layer.
    """
    from zoo.weights.convert import adapt_input_kernel, input_fed_layers

    targets = [l for l in model.layers if l.weights]
    by_name = {l.name: l for l in targets}
    dropped = []
    counts = []
    for name in classifier:
        layer = by_name.get(name)
        if layer is None or name not in layers:
            continue
        have = [tuple(np.shape(a)) for a in layers[name]]
        want = [tuple(w.shape) for w in layer.weights]
        if have != want and len(have) == len(want) and have[-1][-1:] != want[-1][-1:]:
            dropped.append(name)
            counts.append(_file_classes(have, want))
    if dropped and not skip_mismatch:
        (file_n, model_n), = counts[:1]
        raise CheckpointError(
            f"{path}: class count differs: classifier layer(s) {', '.join(dropped)} have "
            f"{file_n} outputs in the file and {model_n} in the model. No weights were changed. "
            f"To load everything else and keep those layers' initial values (fine-tuning to "
            f"new classes), ask for it: zoo.load_weights(model, {str(path)!r}, skip_mismatch=True) "
            f"(or skip_mismatch=True to the builder, train.prepare, or the CLI's "
            f"--model-kwargs skip_mismatch=True).")
    if dropped:
        warnings.warn(
            f"{path}: class count differs, so classifier layer(s) {', '.join(dropped)} "
            "keep their initial values (skip_mismatch=True); the rest loads."
        )
    plan = []
    stem = None  # layers fed by the model input, found on first need
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
        src = origin.get(layer.name, layer.name)
        if have != want and _adaptable_input_conv(layer, have, want):
            if stem is None:
                stem = input_fed_layers(model)
            if layer.name in stem:
                arrays = [adapt_input_kernel(check_cast(src, arrays[0], "float32", path), want[0][2])] \
                    + list(arrays[1:])
                have = want
        if have != want:
            raise CheckpointError(
                f"{path}: shape mismatch at layer {layer.name!r} (file: {src!r}): "
                f"file has {have}, model expects {want}"
            )
        plan.append((layer, [check_cast(f"{src} (into {w.path})", a, w.dtype, path)
                             for a, w in zip(arrays, layer.weights)]))
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
            or weights.endswith(PATH_SUFFIXES))


def load_weights(model, weights, model_name=None, weight_map=None, file_key=None,
                 skip_mismatch=False):
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
        weight_map: a :class:`zoo.weights.convert.WeightMap` (defaults to names as-is).
        file_key: which file of a multi-file tag (e.g. ``"notop"``).
        skip_mismatch: when the file's classifier has another class count
            than the model's, load everything else and keep the classifier's
            initial values (with a warning). False (default): such a file is
            refused and nothing is written.

    A file holding dense-head layers must hold the model's head (see
    :func:`check_head`); a classifier file loads into ``mode="dense"`` with
    the head starting fresh (logged once).

    Returns:
        The model.

    Raises:
        FileNotFoundError: no such file (or, for a tag, no copy and no network).
        CheckpointError: the file is unreadable or does not fit the model;
            nothing has been written to the model.
        ValueError: an unknown tag, listing the valid ones.
    """
    from zoo.weights.convert import WeightMap, h5_layers, torch_layers

    if weights is None:
        return model
    if model_name is None and getattr(model, "name", None) in load_manifest():
        model_name = model.name
    weight_map = weight_map or WeightMap()
    if isinstance(weights, str) and weights.startswith(HF_PREFIX):
        path = resolve_hf(weights)
    elif is_weights_path(weights, model_name):
        path = os.fspath(weights)
    elif model_name is None:
        raise ValueError(
            f"weights={weights!r} is neither an existing file nor usable as a published tag "
            "without model_name (e.g. load_weights(model, 'imagenet', 'vgg16'))")
    else:
        path = resolve_file(model_name, weights, file_key)
    kind, contents = read_checkpoint(path, functools.partial(_wanted_keys, model, weight_map))
    if kind == "torch":
        flat = [k for k in contents if "." not in str(k)]
        if flat:
            raise CheckpointError(
                f"{path}: tensor {flat[0]!r} has no module path (a PyTorch state_dict names "
                f"tensors 'module.param', e.g. 'conv1.weight'); is this a state_dict of a model? "
                f"No weights were changed.")
    try:
        if kind == "torch":
            layers, origin = torch_layers(contents, model, weight_map)
        else:
            layers, origin = h5_layers(contents, model, weight_map)
    except CheckpointError as err:
        if str(path) in str(err):
            raise
        raise CheckpointError(f"{path}: {err}") from None
    record = getattr(model, "zoo", None) or {}
    classifier = record.get("head_layers", ())
    try:
        check_head(model, layers, origin, path)
        plan = plan_assignment(model, layers, origin, path, weight_map, classifier, skip_mismatch)
    except CheckpointError as err:
        found = file_layout(contents, weight_map)
        if found is None or found == weight_map.layout:
            raise
        raise CheckpointError(
            f"{path} holds a {found}-layout checkpoint, but this {model_name or model.name} was "
            f"built in the {weight_map.layout} layout; build it with "
            f"{weight_map.layouts[found][1]}. No weights were changed. ({err})") from None
    assign(plan)
    return model


def _wanted_keys(model, weight_map, keys):
    """The torch-named tensors a model can use: those whose module path maps
    to one of its weighted layers (the rest need not be read)."""
    from zoo.weights.convert import TORCH_SKIP

    strip = bool(keys) and all(k.startswith("module.") for k in keys)
    names = {l.name for l in model.layers if l.weights}
    out = set()
    for key in keys:
        module, _, param = (key[len("module."):] if strip else key).rpartition(".")
        if param in TORCH_SKIP:
            continue
        try:
            if weight_map.torch(module) in names:
                out.add(key)
        except Exception:  # an odd name: read it, and let the mapping report it
            out.add(key)
    return out


def file_layout(contents, weight_map):
    """Which of ``weight_map.layouts`` a checkpoint's names belong to, or None."""
    for name in contents:
        for layout, (marker, _) in weight_map.layouts.items():
            if re.search(marker, name):
                return layout
    return None

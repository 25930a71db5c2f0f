"""The published-weights facts ``zoo list`` and ``zoo weights list`` print, without Keras.

``zoo.weights`` imports Keras (its loaders need it), so the listing commands
read ``zoo/weights/manifest.json``, the search folders and the
verified-files cache through this mirror of its few plain-file functions
instead. :func:`weights_module` returns ``zoo.weights`` itself whenever it
is already imported (then patches and the real functions apply);
``tests/test_cli_fast.py`` checks that the mirror agrees with it.
"""

import functools
import json
import os
import sys

ENV_DIR = "KERAS_ZOO_WEIGHTS"
_WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights")


def package_weights_dir():
    return _WEIGHTS_DIR


@functools.lru_cache(maxsize=1)
def load_manifest():
    with open(os.path.join(package_weights_dir(), "manifest.json"), encoding="utf8") as f:
        return json.load(f)


def available_tags(model_name):
    return sorted(load_manifest().get(model_name, {}))


def manifest_entry(model_name, tag):
    tags = available_tags(model_name)
    if tag not in tags:
        raise ValueError(
            f"unknown weights tag {tag!r} for {model_name}; valid choices: "
            f"{', '.join(tags) if tags else '(none published)'}, None, or a file path"
        )
    return load_manifest()[model_name][tag]


def search_dirs():
    dirs = []
    if os.environ.get(ENV_DIR):
        dirs.append(os.environ[ENV_DIR])
    dirs.append(package_weights_dir())
    keras_home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    dirs.append(os.path.join(keras_home, "models"))
    return dirs


def local_copy(spec):
    for d in search_dirs():
        candidate = os.path.join(d, spec["file"])
        if os.path.isfile(candidate):
            return candidate
    return None


def verify_cache_path():
    return os.path.join(search_dirs()[-1], ".keras_zoo_verified.json")


def _read_verify_cache():
    try:
        with open(verify_cache_path(), encoding="utf8") as f:
            cache = json.load(f)
        return cache if isinstance(cache, dict) else {}
    except (OSError, ValueError):
        return {}


def is_verified(path, expected):
    record = _read_verify_cache().get(os.path.realpath(path))
    if not record or record.get("hash") != expected:
        return False
    st = os.stat(path)
    return record.get("size") == st.st_size and record.get("mtime_ns") == st.st_mtime_ns


def weights_module():
    """``zoo.weights`` when this process has imported it, else this mirror."""
    return sys.modules.get("zoo.weights") or sys.modules[__name__]

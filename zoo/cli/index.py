"""The CLI's model index: what ``zoo list`` and ``zoo info NAME`` print, without Keras.

``zoo/cli/index.json`` holds, per registered model, its ``info_mode`` and
``zoo.model_info(name, (224, 224))`` at the defaults (family, modes, params,
MACs, output stride, minimum inputs, feature pyramid, published tags, family
extras), all of which follow from source files alone. It is keyed by a hash
of those files (:data:`SOURCES`); when the hash does not match the files on
disk, :func:`load` returns None and the commands import the package and
compute: a stale index costs time, never a wrong answer.

Regenerate after changing a model, head, the assembler, the registry, the
analysis code or the manifest (minutes on two cores; it builds every model)::

    python -m zoo.cli.index --write

``python -m zoo.cli.index --check`` exits 1 when the committed index is stale.
"""

import argparse
import glob
import hashlib
import json
import os
import sys

FORMAT = 1
# The facts zoo info prints by default: model_info at this input size.
INFO_SIZE = (224, 224)

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATH = os.path.join(_PACKAGE, "cli", "index.json")
# Every file the indexed facts depend on, as globs relative to the package.
SOURCES = (
    "models/*.py", "heads/*.py", "assembler.py", "layers.py", "registry.py", "analysis/*.py",
    "weights/manifest.json", "cli/index.py",
)


def source_files():
    """The sorted package-relative paths :data:`SOURCES` names."""
    files = set()
    for pattern in SOURCES:
        files.update(os.path.relpath(p, _PACKAGE) for p in glob.glob(os.path.join(_PACKAGE, pattern)))
    return sorted(f.replace(os.sep, "/") for f in files)


def source_hash():
    """SHA-256 over the index format and every source file's path and bytes."""
    digest = hashlib.sha256(f"format {FORMAT}\n".encode())
    for rel in source_files():
        with open(os.path.join(_PACKAGE, rel), "rb") as f:
            data = f.read()
        digest.update(f"{rel}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def load(path=PATH):
    """The index when it is fresh, else None (missing, unreadable or stale)."""
    try:
        with open(path, encoding="utf8") as f:
            index = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        return None
    if index.get("source_hash") != source_hash():
        return None
    return index


def plain(value):
    """``value`` as JSON gives it back (tuples as lists, numpy scalars as numbers),
    so a live answer and an indexed one print the same."""
    def default(v):
        if hasattr(v, "item"):
            return v.item()
        return str(v)

    return json.loads(json.dumps(value, default=default))


def build(names=None, progress=None):
    """Computes the index from the live registry (imports Keras; builds every model).

    Args:
        names: the models to compute (default: all registered).
        progress: optional ``f(name)`` called before each model.

    Returns:
        The index dict.
    """
    from zoo.cli.common import load_package

    load_package()
    import keras

    from zoo.analysis.info import model_info
    from zoo.registry import get_entry, list_models

    models = {}
    for name in names or list_models():
        if progress is not None:
            progress(name)
        models[name] = {"info_mode": get_entry(name).info_mode,
                        "info": plain(model_info(name, INFO_SIZE))}
        keras.backend.clear_session()
    return {"format": FORMAT, "source_hash": source_hash(), "info_size": list(INFO_SIZE),
            "models": models}


def write(path=PATH, progress=None):
    """Regenerates ``index.json``; returns its path."""
    index = build(progress=progress)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf8") as f:
        json.dump(index, f, indent=1)  # insertion order: the order zoo info prints
        f.write("\n")
    os.replace(tmp, path)
    return path


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m zoo.cli.index", description=__doc__.splitlines()[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", action="store_true", help="regenerate zoo/cli/index.json")
    g.add_argument("--check", action="store_true", help="exit 1 when the index is stale")
    args = p.parse_args(argv)
    if args.check:
        fresh = load() is not None
        print(f"{PATH}: {'fresh' if fresh else 'stale: run python -m zoo.cli.index --write'}")
        return 0 if fresh else 1
    path = write(progress=lambda name: print(f"  {name}", file=sys.stderr, flush=True))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

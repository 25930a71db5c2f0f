"""The docs' code runs: every ```python block of README.md and docs/*.md.

The blocks of one file run in order in one fresh subprocess (one shared
namespace), in a temporary working directory, on the default (TensorFlow)
backend; a block that raises fails the file's test with the block's file and
line in the traceback. Shell blocks are not run.

A comment line right above a block directs the test:

    <!-- docs-test: needs-file resnet18/imagenet -->       (NAME/TAG[/FILE_KEY], several allowed)
    <!-- docs-test: skip (why it cannot run here) -->

``needs-file``: the block uses a published tag. Before the pages that need
them run, one subprocess makes every such file once: the model built with
random weights, saved in the upstream format the manifest records (``pth``,
``safetensors`` or ``keras_legacy_h5``) under the published file name, in
the folder the pages get as ``$KERAS_ZOO_WEIGHTS``. Its manifest hash is
accepted through the package's verified-files cache
(``zoo.weights.remember_verified``, copied into each page's temporary
``$KERAS_HOME``): the record a real file gets after its first hash check, so
no monkeypatching is needed across the process boundary. Files without a
recorded hash load with the usual warning.

``python tests/test_docs.py [PAGE ...]`` runs pages and prints their output.

The same module checks that every relative link of those pages resolves.
"""

import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MAX_SKIPPED = 3
TIMEOUT_S = 300
# Two subprocesses at a time: each is mostly TensorFlow's import and tracing.
WORKERS = 2

FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
DIRECTIVE = re.compile(r"^\s*<!--\s*docs-test:\s*(.*?)\s*-->\s*$")
NEEDS = re.compile(r"^[\w.]+/[\w.]+(/[\w.]+)?$")


def parse(path):
    """The fenced ```python blocks of one Markdown file.

    Returns:
        A list of dicts: ``path`` (relative to the repo), ``line`` (1-based
        line of the block's first code line), ``code``, ``needs`` (list of
        ``NAME/TAG[/KEY]``) and ``skip`` (the reason, or None).

    Raises:
        ValueError: an unclosed fence, an unknown directive, or a directive
            not followed by a python block.
    """
    rel = path.relative_to(ROOT).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, pending, i = [], None, 0
    while i < len(lines):
        line = lines[i]
        directive = DIRECTIVE.match(line)
        if directive:
            if pending is not None:
                raise ValueError(f"{rel}:{pending[0]}: docs-test directive not followed by a python block")
            pending = (i + 1, directive.group(1))
            i += 1
            continue
        fence = FENCE.match(line)
        if not fence:
            if line.strip() and pending is not None:
                raise ValueError(f"{rel}:{pending[0]}: docs-test directive not followed by a python block")
            i += 1
            continue
        indent, marker, lang = fence.groups()
        end = i + 1
        while end < len(lines) and not lines[end].strip().startswith(marker):
            end += 1
        if end == len(lines):
            raise ValueError(f"{rel}:{i + 1}: unclosed code fence")
        if lang.lower() in ("python", "py"):
            body = [ln[len(indent):] if ln.startswith(indent) else ln.lstrip() for ln in lines[i + 1:end]]
            needs, skip = [], None
            if pending is not None:
                words = pending[1]
                if words.startswith("needs-file"):
                    needs = words.split()[1:]
                    bad = [n for n in needs if not NEEDS.match(n)]
                    if not needs or bad:
                        raise ValueError(f"{rel}:{pending[0]}: needs-file wants NAME/TAG[/FILE_KEY]; got {words!r}")
                elif words.startswith("skip"):
                    skip = words[len("skip"):].strip(" ()") or None
                    if not skip:
                        raise ValueError(f"{rel}:{pending[0]}: skip needs a reason: skip (why)")
                else:
                    raise ValueError(f"{rel}:{pending[0]}: unknown docs-test directive {words!r}")
            blocks.append({"path": rel, "line": i + 2, "code": "\n".join(body) + "\n",
                           "needs": needs, "skip": skip})
        elif pending is not None:
            raise ValueError(f"{rel}:{pending[0]}: docs-test directive not followed by a python block")
        pending = None
        i = end + 1
    if pending is not None:
        raise ValueError(f"{rel}:{pending[0]}: docs-test directive not followed by a python block")
    return blocks


# The stand-in published files, made in one subprocess shared by every page.
MAKER = r"""
import json, os, sys

import keras
import numpy as np
import zoo
from zoo import weights as zw


def torch_state(model):
    # The model's weights under PyTorch names and layouts: each layer's module
    # path is its Keras name (the converter's name rule maps it back),
    # BatchNorm as weight/bias/running_mean/running_var.
    state = {}
    for layer in model.layers:
        if not layer.weights:
            continue
        if isinstance(layer, keras.layers.BatchNormalization):
            names = ("weight", "bias", "running_mean", "running_var")
        else:
            names = tuple(getattr(layer, "torch_param_names", ("weight", "bias")))
        for name, w in zip(names, layer.get_weights()):
            if w.ndim == 4:
                # HWIO -> OIHW; a layer with its own from_torch (a per-channel
                # transposed conv) stores (C, 1, k, k) for (k, k, C, 1).
                w = w.transpose(2, 3, 0, 1) if hasattr(layer, "from_torch") else w.transpose(3, 2, 0, 1)
            elif w.ndim == 2:
                w = w.T
            state[f"{layer.name}.{name}"] = np.ascontiguousarray(w)
    return state


def save_legacy_h5(model, path):
    # keras.applications' layout: layer_names / weight_names attributes.
    import h5py

    with h5py.File(path, "w") as f:
        layers = [layer for layer in model.layers if layer.weights]
        f.attrs["layer_names"] = np.array([layer.name.encode() for layer in layers])
        for layer in layers:
            group = f.create_group(layer.name)
            names = [f"{layer.name}/{w.path.rsplit('/', 1)[-1]}:0".encode() for w in layer.weights]
            group.attrs["weight_names"] = np.array(names)
            for name, value in zip(names, layer.get_weights()):
                group.create_dataset(name.decode(), data=value)


models = {}


def build(name, **kwargs):
    key = (name, tuple(sorted(kwargs.items())))
    if key not in models:
        try:
            # ResNet-50 and deeper build either layout; the file record says which.
            models[key] = zoo.create_model(name, **kwargs)
        except TypeError:  # a family with one layout takes no stride_in_1x1
            kwargs.pop("stride_in_1x1")
            models[key] = zoo.create_model(name, **kwargs)
    return models[key]


def make_published_file(need, folder):
    name, tag, *key = need.split("/")
    key = key[0] if key else None
    entry = zw.manifest_entry(name, tag)
    file = zw.file_spec(name, tag, key)
    mode = "features" if key and "notop" in key else entry.get("mode", "classify")
    model = build(name, weights=None, classes=entry.get("classes", 1000), mode=mode,
                  stride_in_1x1=file.get("layout") == "keras")
    path = os.path.join(folder, file["file"])
    fmt = file["format"]
    if fmt == "pth":
        import torch

        torch.save({k: torch.from_numpy(v) for k, v in torch_state(model).items()}, path)
    elif fmt == "safetensors":
        from safetensors.numpy import save_file

        save_file(torch_state(model), path)
    elif fmt == "keras_legacy_h5":
        save_legacy_h5(model, path)
    else:
        raise ValueError(f"docs-test cannot make a {fmt!r} file for {need}")
    if file.get("hash"):
        # What the first successful hash check records ($KERAS_HOME/models).
        zw.remember_verified(path, file["hash"])
    print(f"docs-test: made {path} for {need}", flush=True)


for need in json.loads(sys.argv[1]):
    make_published_file(need, os.environ["KERAS_ZOO_WEIGHTS"])
"""

# Runs one page's blocks, in order, in one namespace.
RUNNER = r"""
import json, sys, time

start = time.perf_counter()
namespace = {"__name__": "__main__"}
for block in json.load(open(sys.argv[1], encoding="utf-8")):
    print(f"docs-test: [{time.perf_counter() - start:5.1f} s] running {block['path']}:{block['line']}", flush=True)
    code = compile("\n" * (block["line"] - 1) + block["code"], block["path"], "exec")
    exec(code, namespace)
print(f"docs-test: all blocks ran [{time.perf_counter() - start:.1f} s]", flush=True)
"""


# The environment as this module was imported, in pytest's main thread: the
# pages run in threads while pytest sets and unsets PYTEST_CURRENT_TEST, and
# copying os.environ while another thread deletes a key raises KeyError.
_ENVIRON = dict(os.environ)


def _python(script, args, cwd, weights_dir, keras_home, tfds_dir):
    """Runs ``script`` in a fresh interpreter on the TensorFlow backend; returns (rc, output)."""
    env = dict(_ENVIRON)
    env.pop("KERAS_BACKEND", None)
    env.update(
        TF_CPP_MIN_LOG_LEVEL="2",
        KERAS_ZOO_WEIGHTS=str(weights_dir),
        KERAS_HOME=str(keras_home),
        TFDS_DATA_DIR=str(tfds_dir),
        HF_HUB_OFFLINE="1",
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    try:
        proc = subprocess.run([sys.executable, "-c", script, *args], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        return -1, f"timed out after {TIMEOUT_S} s\n{e.stdout or ''}\n{e.stderr or ''}"
    return proc.returncode, proc.stdout + proc.stderr


def make_files(needs, folder):
    """Writes the stand-in published files for ``needs`` under ``folder``.

    Returns:
        ``(rc, output)``; the files are in ``folder/weights``, their hashes
        recorded in ``folder/keras_home/models/.keras_zoo_verified.json``.
    """
    folder = Path(folder)
    for sub in ("weights", "keras_home", "work"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return _python(MAKER, [json.dumps(sorted(needs))], folder / "work", folder / "weights",
                   folder / "keras_home", folder / "tensorflow_datasets")


def run_file(rel, blocks, published=None):
    """Runs one page's blocks in a fresh interpreter in a temporary folder.

    Args:
        rel: the page, relative to the repository.
        blocks: its blocks (:func:`parse`).
        published: the :func:`make_files` folder holding the files the
            blocks need, or None.

    Returns:
        ``(rc, output)``.
    """
    with tempfile.TemporaryDirectory(prefix="zoo-docs-") as tmp:
        tmp = Path(tmp)
        (tmp / "work").mkdir()
        models = tmp / "keras_home" / "models"
        models.mkdir(parents=True)
        weights_dir = tmp / "weights"
        if published is not None:
            weights_dir = Path(published) / "weights"
            verified = Path(published) / "keras_home" / "models" / ".keras_zoo_verified.json"
            if verified.exists():
                shutil.copy(verified, models / verified.name)
        else:
            weights_dir.mkdir()
        (tmp / "blocks.json").write_text(json.dumps([b for b in blocks if not b["skip"]]), encoding="utf-8")
        return _python(RUNNER, [str(tmp / "blocks.json")], tmp / "work", weights_dir,
                       tmp / "keras_home", tmp / "tensorflow_datasets")


def needs_of(blocks):
    return sorted({n for b in blocks if not b["skip"] for n in b["needs"]})


ALL_BLOCKS = {path.relative_to(ROOT).as_posix(): parse(path) for path in DOC_FILES}
RUN_FILES = [rel for rel, blocks in ALL_BLOCKS.items() if any(not b["skip"] for b in blocks)]


@pytest.fixture(scope="module")
def docs_runs(request, tmp_path_factory):
    """Starts the selected pages' subprocesses, two at a time; maps page -> future.

    The stand-in weights files are made first, once, while the pages that
    need none already run; a page that needs them waits for them.
    """
    wanted = [item.callspec.params["rel"] for item in request.session.items
              if getattr(item, "originalname", None) == "test_docs_python_blocks_run"]
    # Pages without stand-in files first (they run beside the file maker),
    # then the dearest first: a fit() costs more than a forward pass.
    wanted.sort(key=lambda rel: (bool(needs_of(ALL_BLOCKS[rel])),
                                 -sum(len(b["code"]) + 10000 * (".fit(" in b["code"])
                                      for b in ALL_BLOCKS[rel] if not b["skip"])))
    needs = sorted({n for rel in wanted for n in needs_of(ALL_BLOCKS[rel])})
    published = tmp_path_factory.mktemp("published")
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS)
    maker = pool.submit(make_files, needs, published) if needs else None

    def run(rel):
        if not needs_of(ALL_BLOCKS[rel]):
            return run_file(rel, ALL_BLOCKS[rel])
        rc, output = maker.result()
        if rc != 0:
            return rc, f"making the stand-in weights files failed:\n{output}"
        return run_file(rel, ALL_BLOCKS[rel], published)

    futures = {rel: pool.submit(run, rel) for rel in wanted}
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


# One pytest-xdist worker runs every page (``--dist loadgroup``): the module
# fixture starts all the selected pages at once, so two workers would each
# run them all.
@pytest.mark.xdist_group("docs")
@pytest.mark.parametrize("rel", RUN_FILES)
def test_docs_python_blocks_run(rel, docs_runs):
    rc, output = docs_runs[rel].result()
    assert rc == 0, f"{rel}: a python block failed (exit {rc}):\n{output[-8000:]}"
    assert "docs-test: all blocks ran" in output


def test_docs_have_blocks_and_few_skips():
    blocks = [b for found in ALL_BLOCKS.values() for b in found]
    assert len(blocks) >= 10, "the docs lost their examples"
    assert "README.md" in RUN_FILES
    skipped = [f"{b['path']}:{b['line']} ({b['skip']})" for b in blocks if b["skip"]]
    assert len(skipped) <= MAX_SKIPPED, "too many skipped doc blocks:\n" + "\n".join(skipped)


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(path):
    """GitHub-style heading anchors of a Markdown file."""
    anchors, in_fence = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def test_relative_links_resolve():
    broken = []
    for path in DOC_FILES:
        text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
        for target in LINK.findall(text):
            if re.match(r"^[a-z]+:", target):
                continue  # http(s), mailto
            file, _, anchor = target.partition("#")
            dest = (path.parent / file).resolve() if file else path
            if not dest.exists():
                broken.append(f"{path.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{path.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)


if __name__ == "__main__":
    # python tests/test_docs.py [README.md docs/x.md ...]: run pages' blocks, print their output.
    pages = sys.argv[1:] or RUN_FILES
    failed = 0
    with tempfile.TemporaryDirectory(prefix="zoo-docs-published-") as published:
        needs = sorted({n for rel in pages for n in needs_of(ALL_BLOCKS[rel])})
        if needs:
            rc, output = make_files(needs, published)
            print(f"===== stand-in weights files: exit {rc}\n{output}")
            failed |= rc != 0
        for rel in pages:
            rc, output = run_file(rel, ALL_BLOCKS[rel], published if needs_of(ALL_BLOCKS[rel]) else None)
            print(f"===== {rel}: exit {rc}\n{output}")
            failed |= rc != 0
    sys.exit(failed)

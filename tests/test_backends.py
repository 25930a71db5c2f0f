"""Every Keras backend gives the same numbers: the same ``.weights.h5`` on
TensorFlow, JAX and PyTorch (issue 9 item 6), the public-ops bilinear resize,
and no private ``keras.src`` import in the package.

Keras fixes its backend per process: this process's backend is the
reference; each other backend runs ``tests/backend_worker.py`` once per group
of cases in a subprocess and writes its outputs to ``.npz`` files.
"""

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

import zoo
from tests.cases import FAMILY, LIGHT_DRN, LIGHT_RESNET, MODE_SIZES
from tests.support.helpers import BACKEND, assert_close, randomize
from tests.support.backend_worker import as_arrays
from zoo.registry import get_entry

ROOT = pathlib.Path(__file__).resolve().parent.parent
REF = keras.backend.backend()
OTHERS = [b for b in ("tensorflow", "jax", "torch") if b != REF]

# CI's backends step keeps a few cases whose blocks cover most layer types:
# ResNet-18 in every mode (residual + BN, the heatmap's FC-as-conv),
# DRN-D-22 dense (dilation, degridding, the frozen x8 up) and GoogLeNet
# classify (Inception branches, ceil-mode pools, LRN). The rest of the
# registry runs in the slow step (VGG16's .weights.h5 alone is half a
# gigabyte); each extra model costs its backend a fresh trace per mode.
LIGHT_CASES = {(LIGHT_DRN, "dense"), ("googlenet", "classify")}
# The smaller torch-backend table: one model per family and layout (the
# ResNet-50 DeepLab head adds no layer type to them).
TORCH = set(FAMILY) - {"deeplabv3_resnet50"}
CLASSES = 7
# Classify and heatmap are compared as logits (classifier_activation=None):
# a softmax over 7 classes turns a 1e-6 relative logit difference into a
# larger absolute one on probabilities near 0.5, which measures the softmax,
# not the backend.


def _cases():
    for name in zoo.list_models():
        for mode in get_entry(name).modes:
            for backend in OTHERS:
                if backend == "torch" and name not in TORCH:
                    continue
                group = "light" if name == LIGHT_RESNET or (name, mode) in LIGHT_CASES else "heavy"
                # One xdist worker per backend: its subprocess runs every
                # selected case of the group once.
                marks = [pytest.mark.backends, pytest.mark.xdist_group(f"backend-{backend}")]
                marks += [] if group == "light" else [pytest.mark.slow]
                yield pytest.param(name, mode, backend, group, marks=marks,
                                   id=f"{name}-{mode}-{backend}")


CASES = list(_cases())
_REFERENCE = {}  # (name, mode) -> (job, outputs)
_RESULTS = {}  # (group, backend) -> {(name, mode): outputs or error text}


def _reference(folder, name, mode):
    """Builds the model here, gives it random weights, saves them and predicts."""
    if (name, mode) not in _REFERENCE:
        kwargs = {"mode": mode, "classes": CLASSES}
        if mode in ("classify", "heatmap"):
            kwargs["classifier_activation"] = None
        model = zoo.create_model(name, **kwargs)
        randomize(model, seed=3)
        static = model.input_shape[1:3]
        h, w = static if None not in static else MODE_SIZES[mode]
        x = np.random.default_rng(0).normal(size=(1, h, w, 3)).astype("float32")
        stem = folder / f"{name}-{mode}"
        np.save(f"{stem}.npy", x)
        model.save_weights(f"{stem}.weights.h5")
        job = {"name": name, "kwargs": kwargs, "weights": f"{stem}.weights.h5",
               "input": f"{stem}.npy"}
        _REFERENCE[name, mode] = job, as_arrays(model.predict(x, verbose=0))
    return _REFERENCE[name, mode]


def _results(session, folder, group, backend):
    """Runs every selected case of ``group`` on ``backend`` in one subprocess
    (``-k`` may select a few: the others are not run)."""
    if (group, backend) not in _RESULTS:
        chosen = [item.callspec.params for item in session.items
                  if getattr(item, "originalname", None) == "test_same_outputs_on_every_backend"]
        wanted = [(p["name"], p["mode"]) for p in chosen
                  if p["backend"] == backend and p["group"] == group]
        jobs = []
        for name, mode in wanted:
            job = dict(_reference(folder, name, mode)[0])
            job["output"] = str(folder / f"{name}-{mode}-{backend}.npz")
            jobs.append(job)
        spec = folder / f"{group}-{backend}.json"
        spec.write_text(json.dumps(jobs))
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
        proc = subprocess.run([sys.executable, "-m", "tests.support.backend_worker", str(spec)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
        assert proc.returncode == 0, f"{backend} worker failed:\n{proc.stderr[-3000:]}"
        out = {}
        for (name, mode), job in zip(wanted, jobs):
            if os.path.exists(job["output"] + ".err"):
                out[name, mode] = pathlib.Path(job["output"] + ".err").read_text()
            else:
                with np.load(job["output"]) as z:
                    out[name, mode] = {k: z[k] for k in z.files}
        _RESULTS[group, backend] = out
    return _RESULTS[group, backend]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("backends")


@pytest.mark.parametrize("name,mode,backend,group", CASES)
def test_same_outputs_on_every_backend(request, folder, name, mode, backend, group):
    got = _results(request.session, folder, group, backend)[name, mode]
    if isinstance(got, str):
        pytest.fail(f"{name} {mode} on {backend}:\n{got[-3000:]}")
    want = _reference(folder, name, mode)[1]
    assert sorted(got) == sorted(want)
    for key in want:
        assert_close(got[key], want[key], **BACKEND, what=f"{name} {mode} {key}: {backend} vs {REF}")


def test_resize_like_follows_torch_at_two_sizes_in_one_model():
    """A second predict() at another size retraces the tf.function with
    symbolic sizes: the resize must work there and match PyTorch's
    ``interpolate(align_corners=False)`` at both sizes, up- and downsampling."""
    torch = pytest.importorskip("torch")
    from zoo.layers import ResizeLike

    x = keras.Input((None, None, 4))
    ref = keras.Input((None, None, 1))
    model = keras.Model([x, ref], ResizeLike()([x, ref]))
    rng = np.random.default_rng(0)
    for (h, w), (oh, ow) in [((7, 9), (50, 61)), ((13, 5), (40, 17)), ((20, 30), (7, 11))]:
        a = rng.normal(size=(2, h, w, 4)).astype("float32")
        got = model.predict([a, np.zeros((2, oh, ow, 1), "float32")], verbose=0)
        want = torch.nn.functional.interpolate(
            torch.from_numpy(a.transpose(0, 3, 1, 2)), (oh, ow), mode="bilinear",
            align_corners=False).numpy().transpose(0, 2, 3, 1)
        assert_close(got, want, **BACKEND, what=f"ResizeLike {h}x{w} -> {oh}x{ow} on {REF}")


def test_no_private_keras_import_in_the_package():
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in (ROOT / "zoo").rglob("*.py")
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
            if "keras.src" in line]
    assert not hits, f"keras.src is private API: {hits}"

"""SMP models: the Keras port against segmentation_models_pytorch, in one run.

Cases, for SMP's ``Unet``, ``FPN`` and ``DeepLabV3Plus`` on the encoders
``resnet34`` and ``resnet50`` (21 classes, 512x512, float32, CPU):

* ``smp_<arch>_<encoder>_infer_b1``: one batch-1 forward. Keras: the model's
  call in ``tf.function`` (``common.compiled_call``); PyTorch: eval mode under
  ``torch.inference_mode()``.
* ``smp_<arch>_<encoder>_train_b2``: one batch-2 training step: forward,
  pixel-wise softmax cross-entropy over the 21 logits (mean over pixels,
  label 255 ignored), backward and SGD (learning rate 1e-3, momentum 0.9),
  BatchNorm and dropout in training mode, random labels. Keras: the
  compiled ``train_on_batch`` with ``zoo.training.train.SegmentationLoss``
  (as ``bench_train.py`` runs it, without the metric); PyTorch:
  ``F.cross_entropy`` and ``torch.optim.SGD``.

Both sides are the same model: the SMP model (random initialisation, random
BatchNorm statistics and biases: ``tests/support/smp_ref.py``) saves its
``state_dict()`` to a temporary file and ``zoo.from_smp`` builds the Keras
model from it; before any timing, one inference output of each must agree
within 1e-3 of the output's scale (its largest magnitude; the inference rows
carry ``max_abs_diff`` and ``out_scale``), or the case fails. SMP is
imported with the test suite's torchvision workaround
(``smp_ref.import_smp``; CONTRIBUTING.md, "Running SMP in tests"). PyTorch
runs on ``os.cpu_count()`` threads (``torch.set_num_threads``), the count
TensorFlow's intra-op pool uses by default (torch's own default can be
fewer: the physical cores).

Each row: ``median_s`` (Keras), ``peer`` ("torch"), ``peer_median_s`` and
``ratio`` = Keras / PyTorch; the two sides are timed in turn, ``--warmup``
then ``--repeat`` rounds, so load from other processes hits both alike.
``BENCH_SMP_SIZE`` overrides the input side (a smoke run uses 64; SMP's forward
needs a multiple of 32). Run through ``benchmarks/run.py --only smp --out
benchmarks/results/smp.json`` the rows are written to that file.
"""

import gc
import importlib.util
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # zoo, tests.support

import keras  # noqa: E402
import numpy as np  # noqa: E402

import zoo  # noqa: E402
from bench_drn import _alternate  # noqa: E402  (the DRN bench's turn-taking timer)
from common import compiled_call, random_images  # noqa: E402

ARCHS = ("Unet", "FPN", "DeepLabV3Plus")
ENCODERS = ("resnet34", "resnet50")
CLASSES = 21
LR = 1e-3
IGNORE = 255
RTOL = 1e-3


def _labels(batch, size):
    return np.random.default_rng(1).integers(0, CLASSES, (batch, size, size)).astype("int32")


def _nchw(x):
    import torch

    return torch.from_numpy(x.transpose(0, 3, 1, 2).copy())


def _check_same(fn, net, x, case):
    """Raises unless the Keras and SMP outputs agree (the models are the same)."""
    from tests.support.smp_ref import smp_forward

    ours, ref = np.asarray(fn(x)), smp_forward(net, x)
    diff, scale = float(np.max(np.abs(ours - ref))), float(np.max(np.abs(ref)))
    if not diff <= RTOL * max(scale, 1.0):
        raise AssertionError(f"{case}: Keras and SMP differ by {diff:.3g} at scale {scale:.3g}")
    return diff, scale


def _infer(arch, encoder, model, net, size, args):
    import torch

    case = f"smp_{arch.lower()}_{encoder}_infer_b1"
    x = random_images(1, size, size)
    fn = compiled_call(model)
    diff, scale = _check_same(fn, net, x, case)  # also traces fn before the timing
    xt = _nchw(x)

    def peer():
        with torch.inference_mode():
            return net(xt)

    k, t = _alternate([lambda: fn(x), peer], args.warmup, args.repeat)
    return {"case": case, "size": size, "median_s": k, "peer": "torch", "peer_median_s": t,
            "ratio": k / t, "max_abs_diff": diff, "out_scale": scale}


def _train(arch, encoder, model, net, size, args):
    import torch
    import torch.nn.functional as F

    from zoo.training.train import SegmentationLoss

    x, y = random_images(2, size, size), _labels(2, size)
    model.compile(optimizer=keras.optimizers.SGD(LR, momentum=0.9), loss=SegmentationLoss(IGNORE))
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9)
    xt, yt = _nchw(x), torch.from_numpy(y).long()

    def peer():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(xt), yt, ignore_index=IGNORE).backward()
        opt.step()

    k, t = _alternate([lambda: model.train_on_batch(x, y), peer], args.warmup, args.repeat)
    return {"case": f"smp_{arch.lower()}_{encoder}_train_b2", "size": size, "median_s": k,
            "peer": "torch", "peer_median_s": t, "ratio": k / t}


def run(args):
    """Every (arch, encoder) pair; [] with a note when torch or SMP is missing."""
    if not all(importlib.util.find_spec(m) for m in ("torch", "segmentation_models_pytorch")):
        print("bench_smp: needs torch and segmentation_models_pytorch (the test extra); skipped")
        return []
    import torch

    from tests.support import smp_ref

    smp_ref.import_smp()  # the torchvision workaround, before SMP is first imported
    torch.set_num_threads(os.cpu_count())
    size = int(os.environ.get("BENCH_SMP_SIZE", 512))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for encoder in ENCODERS:
            for arch in ARCHS:
                net = smp_ref.smp_model(arch, encoder, classes=CLASSES)
                model = zoo.from_smp(arch, encoder, classes=CLASSES, weights=smp_ref.save_state(net, tmp))
                rows.append(_infer(arch, encoder, model, net, size, args))
                rows.append(_train(arch, encoder, model, net, size, args))
                del model, net
                keras.backend.clear_session()
                gc.collect()
    return rows


if __name__ == "__main__":
    from run import run_standalone

    run_standalone(run)

"""DRN: inference speed against the PyTorch forward, and the cost of output stride 8.

Cases:
* ``drn_d_22_224`` / ``drn_c_26_224``: classify mode, batch 1, 224x224.
* ``drn_d_22_dense_512x1024`` / ``drn_c_26_dense_512x1024``: DRNSeg (19
  classes), batch 1, a Cityscapes half-resolution frame.
  Each row: ``median_s`` (Keras, ``compiled_call``), ``gflops_s`` (2 x
  analytic MACs / time), ``peak_frac`` (that over this machine's measured
  float32 matmul rate) and, when torch is installed, ``peer_s`` for the
  official-equivalent PyTorch forward (tests/support/drn_torch_ref.py, eval mode,
  no_grad) timed alternately with Keras, and ``ratio`` = Keras / PyTorch.
* ``<model>_os8_512`` vs ``resnet<d>_os32_512``: the price of output stride 8
  at 512x512: DRN-A-18/34 against the same network with ResNet's strides
  (``output_stride=32``: torchvision ResNet-18/34 exactly), and DRN-C-26 /
  DRN-D-22 against ResNet-18. ``ratio`` is time over the ResNet's time,
  ``flops_ratio`` MACs over the ResNet's MACs.
"""

import os
import statistics
import sys

import keras

import zoo
from common import compiled_call, matmul_peak_gflops, random_images, timeit
from zoo.analysis.flops import count_flops

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

try:
    import torch

    from tests.support import drn_torch_ref as ref
except ImportError:  # torch is a test-only dependency
    torch = None


def _alternate(fns, warmup, repeat):
    """Medians of each callable in ``fns``, timed in turn so that load from
    other processes hits them alike."""
    for _ in range(warmup):
        for fn in fns:
            timeit(fn, warmup=0, repeat=1)
    times = [[] for _ in fns]
    for _ in range(repeat):
        for t, fn in zip(times, fns):
            t.append(timeit(fn, warmup=0, repeat=1)["median_s"])
    return [statistics.median(t) for t in times]


def _torch_fn(module, x):
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())

    def fn():
        with torch.no_grad():
            return module(xt)

    return fn


def _speed_case(case, builder, variant, mode, size, peak, args, classes):
    h, w = size
    x = random_images(1, h, w)
    model = builder(mode=mode, input_shape=(h, w, 3), classes=classes)
    macs = count_flops(model)
    f = compiled_call(model)
    fns = [lambda: f(x)]
    if torch is not None:
        net = ref.RefDRNSeg(variant, classes) if mode == "dense" else ref.RefDRN(variant, classes)
        fns.append(_torch_fn(ref.randomize_(net), x))
    times = _alternate(fns, min(args.warmup, 1), args.repeat)
    row = {"case": case, "median_s": times[0], "flops": macs,
           "gflops_s": 2 * macs / times[0] / 1e9}
    row["peak_frac"] = row["gflops_s"] / peak
    if torch is not None:
        row.update(peer="torch", peer_s=times[1], ratio=times[0] / times[1])
    del model
    keras.backend.clear_session()
    return row


def _stride_cases(args):
    x = random_images(1, 512, 512)
    rows = []
    pairs = [
        ("drn_a_18", zoo.DRN_A_18, "resnet18"),
        ("drn_a_34", zoo.DRN_A_34, "resnet34"),
        ("drn_d_22", zoo.DRN_D_22, "resnet18"),
        ("drn_c_26", zoo.DRN_C_26, "resnet18"),
    ]
    base = {}
    for name, builder, resnet in pairs:
        if resnet not in base:
            plain = {"resnet18": zoo.DRN_A_18, "resnet34": zoo.DRN_A_34}[resnet]
            m = plain(input_shape=(512, 512, 3), output_stride=32)
            f = compiled_call(m)
            t = _alternate([lambda: f(x)], 1, args.repeat)[0]
            base[resnet] = (t, count_flops(m))
            rows.append({"case": f"{resnet}_os32_512", "median_s": t, "flops": base[resnet][1]})
            del m
            keras.backend.clear_session()
        m = builder(input_shape=(512, 512, 3))
        f = compiled_call(m)
        t = _alternate([lambda: f(x)], 1, args.repeat)[0]
        macs = count_flops(m)
        rows.append({"case": f"{name}_os8_512", "median_s": t, "flops": macs, "peer": f"{resnet}_os32",
                     "peer_s": base[resnet][0], "ratio": t / base[resnet][0],
                     "flops_ratio": macs / base[resnet][1]})
        del m
        keras.backend.clear_session()
    return rows


def run(args):
    peak = matmul_peak_gflops()
    rows = [{"case": "matmul_peak", "median_s": 0.0, "gflops_s": peak}]
    for variant, builder in (("drn_d_22", zoo.DRN_D_22), ("drn_c_26", zoo.DRN_C_26)):
        rows.append(_speed_case(f"{variant}_224", builder, variant, "classify", (224, 224),
                                peak, args, 1000))
    for variant, builder in (("drn_d_22", zoo.DRN_D_22), ("drn_c_26", zoo.DRN_C_26)):
        rows.append(_speed_case(f"{variant}_dense_512x1024", builder, variant, "dense",
                                (512, 1024), peak, args, 19))
    rows.extend(_stride_cases(args))
    return rows

"""Dense heads on two backbones: parameters, MACs and time of each head.

Cases ``heads_<backbone>_<head>``: ``mode="dense"`` on resnet50 and drn_d_22
at 512x512, batch 1, 21 classes, random weights, compiled with
``tf.function``. Each row has the whole model's ``params`` and ``flops``
(analytic MACs, ``zoo.analysis.flops``), the head's share (``head_params``,
``head_flops``: the model's minus the features-mode backbone's at the same
output stride) and ``median_s``. Heads that need levels a backbone lacks at
its output stride are built at the stride they need (FCN skips: 32;
DRNSeg: 8), shown in ``output_stride``.

``BENCH_HEADS_SIZE`` overrides the input side (a smoke run uses 64).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import zoo  # noqa: E402
from common import compiled_call, random_images, timeit  # noqa: E402
from zoo.analysis.flops import count_flops  # noqa: E402
from zoo.heads import list_heads  # noqa: E402
from zoo.analysis.info import count_parameters  # noqa: E402

BACKBONES = ("resnet50", "drn_d_22")
HEAD_OUTPUT_STRIDE = {"fcn32s": 32, "fcn16s": 32, "fcn8s": 32, "drnseg": 8}
CLASSES = 21


def _case(backbone, head, size, args):
    from zoo.assembler import backbone_spec

    spec = backbone_spec(backbone)
    stride = HEAD_OUTPUT_STRIDE.get(head, 8)
    if stride not in spec.output_strides:
        return None
    shape = (size, size, 3)
    model = zoo.create_model(backbone, mode="dense", head=head, classes=CLASSES,
                             output_stride=stride, input_shape=shape)
    base = zoo.create_model(backbone, mode="features", output_stride=stride, input_shape=shape)
    flops, base_flops = count_flops(model), count_flops(base)
    params, base_params = count_parameters(model), count_parameters(base)
    fn = compiled_call(model)
    x = random_images(1, size, size)
    t = timeit(lambda: fn(x), warmup=args.warmup, repeat=args.repeat)
    return {"case": f"heads_{backbone}_{head}", "output_stride": stride, "params": params,
            "head_params": params - base_params, "flops": int(flops),
            "head_flops": int(flops - base_flops), **t}


def run(args):
    """Every head on every backbone of :data:`BACKBONES` (see the module docstring)."""
    size = int(os.environ.get("BENCH_HEADS_SIZE", 512))
    rows = []
    for backbone in BACKBONES:
        for head in list_heads():
            row = _case(backbone, head, size, args)
            if row is not None:
                rows.append(row)
    return rows


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    from run import print_table

    print_table(run(p.parse_args()))

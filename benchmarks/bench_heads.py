"""Dense heads on two backbones: parameters, MACs and time of each head.

Cases ``heads_<backbone>_<head>``: ``mode="dense"`` on resnet50 and drn_d_22
at 512x512, batch 1, 21 classes, random weights, compiled with
``tf.function``. Each row has the whole model's ``params`` and ``flops``
(analytic MACs, ``zoo.analysis.flops``), the head's share (``head_params``,
``head_flops``: the layers the features-mode backbone at the same output
stride does not have) and ``median_s``.

Output stride: each head is built at the stride it is made for. The
segmentation_models_pytorch (SMP) heads (unet, unetplusplus, fpn, pspnet,
deeplabv3plus, linknet, manet, upernet) take SMP's default, read from
``zoo.smp.ARCHS`` (32; deeplabv3plus 16); the FCN skip heads need 32 and
DRNSeg 8; the other heads 8. drn_d_22 is built at output stride 8 only: the
heads that read whatever levels exist (``needs=("last",)`` in the head
registry, every SMP head) run there at 8 and the row's ``note`` says so (their
deepest level is then DRN's last stage, at stride 8); the FCN skip heads need
P4/P5, which DRN does not have, and are left out on it. PSPNet reads levels
up to stride 8 only (SMP's ``encoder_depth=3``), so at output stride 32 its
model stops after ResNet's layer2, as SMP's does.

``BENCH_HEADS_SIZE`` overrides the input side (a smoke run uses 64).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402

import zoo  # noqa: E402
from common import compiled_call, random_images, timeit  # noqa: E402
from zoo.analysis.flops import count_flops  # noqa: E402
from zoo.analysis.info import count_parameters  # noqa: E402
from zoo.heads import get_head, list_heads  # noqa: E402
from zoo.smp import ARCHS  # noqa: E402

BACKBONES = ("resnet50", "drn_d_22")
# The SMP heads at SMP's own default stride; a head that fixes its stride
# says so in the registry (HeadSpec.output_stride); the rest use 8.
SMP_OUTPUT_STRIDE = {head: stride for head, _, stride in ARCHS.values()}
CLASSES = 21


def _output_stride(spec, head):
    """``(stride, note)`` for ``head`` on the backbone ``spec``, or ``(None, None)``."""
    want = get_head(head).output_stride or SMP_OUTPUT_STRIDE.get(head, 8)
    if want in spec.output_strides:
        return want, None
    if get_head(head).needs != ("last",):
        return None, None  # fixed levels (P4, P5) the backbone does not have
    stride = spec.resolve_output_stride("dense")
    return stride, (f"{spec.name} builds output stride {'/'.join(map(str, spec.output_strides))} only; "
                    f"{head} is made for {want}")


def _case(backbone, head, size, args):
    from zoo.assembler import backbone_spec

    stride, note = _output_stride(backbone_spec(backbone), head)
    if stride is None:
        return None
    shape = (size, size, 3)
    model = zoo.create_model(backbone, mode="dense", head=head, classes=CLASSES,
                             output_stride=stride, input_shape=shape)
    base = zoo.create_model(backbone, mode="features", output_stride=stride, input_shape=shape)
    # The head is every layer the backbone does not have. (Subtracting the
    # whole backbone would be wrong where a head stops early: PSPNet.)
    body = {layer.name for layer in base.layers}
    flops, per_layer = count_flops(model, per_layer=True)
    head_layers = [layer for layer in model.layers if layer.name not in body]
    fn = compiled_call(model)
    x = random_images(1, size, size)
    t = timeit(lambda: fn(x), warmup=args.warmup, repeat=args.repeat)
    row = {"case": f"heads_{backbone}_{head}", "output_stride": stride, "params": count_parameters(model),
           "head_params": count_parameters(head_layers), "flops": int(flops),
           "head_flops": int(sum(per_layer.get(layer.name, 0) for layer in head_layers)), **t}
    if note:
        row["note"] = note
    del model, base
    keras.backend.clear_session()
    return row


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
    from run import run_standalone

    run_standalone(run)

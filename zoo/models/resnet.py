"""ResNet-18/34/50/101/152 (He et al.) as fully-convolutional networks, with
``output_stride`` 8/16/32 by dilation and torchvision's FCN head.

Two published weight layouts are built, each with its upstream's layer names
so that its files load by name:

* ``"keras"`` (``stride_in_1x1=True``, the default for 50/101/152):
  keras.applications' ResNet v1 -- the stride sits in the block's first 1x1
  convolution, convolutions carry biases, BatchNorm epsilon 1.001e-5, names
  ``conv1_conv``, ``conv2_block1_1_conv``, ``conv2_block1_0_conv``
  (shortcut), ..., ``predictions``.
* ``"torchvision"`` (``stride_in_1x1=False``, always for 18/34): torchvision's
  ResNet v1.5 -- the stride sits in the 3x3 convolution, no conv biases,
  epsilon 1e-5, names ``conv1``, ``layer1_0_conv1``,
  ``layer1_0_downsample_0``, ..., ``fc`` (torch's ``.`` becomes ``_``).

``output_stride`` replaces the strides of the last stages by dilation exactly
as torchvision's ``replace_stride_with_dilation``: the stage's dilation
doubles, and its first block still uses the previous dilation. BasicBlock
(which torchvision refuses to dilate) follows timm: its first convolution uses
the previous dilation and its second the stage's.

The blocks and both layouts live in :mod:`zoo.models.residual`, shared with
DRN (DRN-A is this backbone in the torchvision layout with another dilation
plan).
"""

import functools

from keras import layers

from zoo.assembler import Backbone, Classifier, Stages
from zoo.layers import conv2d
from zoo.models.residual import LAYOUTS, relu, residual_stage
from zoo.registry import HEADLESS_MODES, Option, check_choice, register_model
from zoo.weights.convert import WeightMap, default_torch_name

# Block type and blocks per stage (conv2_x ... conv5_x / layer1 ... layer4).
RESNET_CONFIGS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}
STAGE_WIDTHS = (64, 128, 256, 512)
OUTPUT_STRIDES = (8, 16, 32)
DILATION_PLANS = ("torchvision", "smp")
STEM_STRIDE = 4
TRAIN_CROP = 224
POOL_WINDOW = 7  # c5 cells under a 224 crop at stride 32
# Layer names and numerics of both layouts: zoo.models.residual.LAYOUTS.
LAYOUT_HINT = {"keras": "stride_in_1x1=True", "torchvision": "stride_in_1x1=False"}


def stage_plan(output_stride, stages=4, dilation_plan="torchvision"):
    """Strides and dilations of the stages for one output stride.

    Args:
        output_stride: 8, 16 or 32.
        stages: number of stages.
        dilation_plan: ``"torchvision"`` (``replace_stride_with_dilation``:
            a dilated stage's first block keeps the previous dilation, and
            each dilated stage doubles it) or ``"smp"``
            (segmentation_models_pytorch's ``make_dilated``: every conv of a
            stage at stride ``s`` past the output stride gets dilation
            ``s // output_stride``, the first block's included).

    Returns:
        A list of ``(stride, first_dilations, dilation)`` per stage: stages
        that would go past ``output_stride`` get stride 1 and twice the
        previous ``dilation``; their first block's ``dilations`` are
        ``(previous, dilation)`` (torchvision's ``previous_dilation``; a
        bottleneck uses only the first).
    """
    check_choice(output_stride, OUTPUT_STRIDES, "output_stride")
    check_choice(dilation_plan, DILATION_PLANS, "dilation_plan")
    plan, stride, dilation, nominal = [], STEM_STRIDE, 1, STEM_STRIDE
    for i in range(stages):
        step = 1 if i == 0 else 2
        nominal *= step
        previous = dilation
        if stride * step > output_stride:
            dilation = nominal // output_stride if dilation_plan == "smp" else dilation * step
            step = 1
        else:
            stride *= step
        first = (dilation, dilation) if dilation_plan == "smp" else (previous, dilation)
        plan.append((step, first, dilation))
    return plan


def resnet_backbone(x, block, depths, layout, plan, widths=STAGE_WIDTHS):
    """Stem and four stages.

    Args:
        x: input tensor.
        block: ``"basic"`` or ``"bottleneck"``.
        depths: blocks per stage.
        layout: a :class:`zoo.models.residual.Layout`.
        plan: ``(stride, first_dilations, dilation)`` per stage, e.g.
            :func:`stage_plan`'s: the first block's stride and ``dilations``
            tuple, and the dilation of the others.
        widths: the four stages' widths (the stem takes the first); tiny
            test configs pass their own.

    Returns:
        A :class:`zoo.assembler.Stages`: the stem after its ReLU (stride 2)
        and the four stages (strides 4, 8, 16, 32 without dilation; dilated
        stages keep the stride they have, so the pyramid's deepest level at
        that stride is the last stage).
    """
    pad, conv, bn, act, pool_pad, pool = layout.stem
    x = layers.ZeroPadding2D(3, name=pad)(x)
    x = conv2d(widths[0], 7, strides=2, padding="valid", use_bias=layout.use_bias, name=conv)(x)
    x = layers.BatchNormalization(epsilon=layout.epsilon, momentum=layout.momentum, name=bn)(x)
    x = relu(x, layout, act)
    stages = [(x, 2)]
    # After a ReLU, zero padding equals torch's -inf padding for max pooling.
    x = layers.ZeroPadding2D(1, name=pool_pad)(x)
    x = layers.MaxPooling2D(3, strides=2, name=pool)(x)
    total = STEM_STRIDE
    for s, (depth, width, stage) in enumerate(zip(depths, widths, plan)):
        stride, first_dilations, dilation = stage
        x = residual_stage(
            x, block, depth, width, stride, first_dilations, dilation, layout,
            lambda j, s=s: layout.block.format(s1=s + 1, s2=s + 2, j0=j, j1=j + 1))
        total *= stride
        stages.append((x, total))
    return Stages(tuple(stages))


# ----------------------------------------------------------------- builder

# A file's layout, recognised by its names, when a load fails (the loader
# then names the builder option that fits the file).
LAYOUT_FILE_HINTS = {
    "keras": (LAYOUTS["keras"].marker,
              "stride_in_1x1=True (only ResNet-50/101/152 have the keras layout)"),
    "torchvision": (LAYOUTS["torchvision"].marker, "stride_in_1x1=False"),
}


def pad_input(x, multiple):
    """``x`` zero-padded bottom/right to a multiple of ``multiple`` (None: as is)."""
    if not multiple:
        return x
    from zoo.heads._smp import PadToMultiple

    return PadToMultiple(multiple, name="pad_to_multiple")(x)


def _torch_name(path):
    """torchvision's segmentation models prefix the ResNet with ``backbone.``."""
    if path.startswith("backbone."):
        path = path[len("backbone."):]
    return default_torch_name(path)


def resnet_spec(config, stride_in_1x1=None, name=None, head=None, widths=STAGE_WIDTHS,
                dilation_plan="torchvision", pad_to_multiple=None):
    """The :class:`zoo.assembler.Backbone` of one ResNet in one layout.

    Args:
        config: a ``RESNET_CONFIGS`` key.
        stride_in_1x1: True builds keras.applications' layout, False
            torchvision's; None takes True for bottleneck configs.
        name: the registry name (``"deeplabv3_resnet50"``); default ``config``.
        head: a model defined by its dense head (torchvision's
            ``deeplabv3_*``): dense and features modes only, 21 classes.
        widths: stage widths (tiny test configs pass their own).
        dilation_plan: see :func:`stage_plan` (``"smp"`` for
            segmentation_models_pytorch's dilated encoders).
        pad_to_multiple: None, or zero-pad the input bottom/right to a
            multiple of it before the stem (SMP's input rule; the SMP heads
            crop their logits back to the input).
    """
    kind, depths = RESNET_CONFIGS[config]
    if stride_in_1x1 is None:
        stride_in_1x1 = kind == "bottleneck"
    if stride_in_1x1 and kind == "basic":
        raise ValueError(f"{config} exists in the torchvision layout only; stride_in_1x1 must be False")
    layout = LAYOUTS["keras" if stride_in_1x1 else "torchvision"]
    extra = {"modes": HEADLESS_MODES, "default_head": head, "classes": 21} if head else {}
    return Backbone(
        name=name or config,
        build=lambda x, output_stride: resnet_backbone(
            pad_input(x, pad_to_multiple), kind, depths, layout,
            stage_plan(output_stride, dilation_plan=dilation_plan), widths),
        classifier=Classifier("pool_fc", (layout.classifier,), pool=layout.pool, window=POOL_WINDOW),
        output_strides=OUTPUT_STRIDES,
        default_output_stride={"dense": 8},
        default_head=extra.pop("default_head", "fcn"),
        min_input={"features": 1},
        weight_map=WeightMap(torch=_torch_name, layout=layout.name, layouts=LAYOUT_FILE_HINTS),
        layout=layout.name,
        layout_hints=LAYOUT_HINT,
        **extra,
    )


def _stage_flops(model, input_size, per_layer):
    """``model_info`` hook: multiply-adds per stage, the dilations in use and
    the output stride they give."""
    groups = {"stem": ("conv1",), "c2": ("conv2_", "layer1_"), "c3": ("conv3_", "layer2_"),
              "c4": ("conv4_", "layer3_"), "c5": ("conv5_", "layer4_")}
    out = {k: 0 for k in groups}
    out["head"] = 0
    for lname, macs in per_layer.items():
        for key, prefixes in groups.items():
            if lname.startswith(prefixes):
                out[key] += macs
                break
        else:
            out["head"] += macs
    dilations = sorted({layer.dilation_rate[0] for layer in model.layers
                        if isinstance(layer, layers.Conv2D)})
    # The built model's own stride (dense mode defaults to 8).
    return {"stage_flops": out, "dilations": dilations, "output_stride": 32 // max(dilations)}



DILATION_OPTION = Option(
    "dilation_plan", "torchvision",
    "how ``output_stride`` < 32 dilates: ``\"torchvision\"`` (``replace_stride_with_dilation``) or "
    "``\"smp\"`` (segmentation_models_pytorch's ``make_dilated``: the first block dilated too).")
PAD_OPTION = Option(
    "pad_to_multiple", None,
    "None, or zero-pad the input bottom/right to a multiple of it (segmentation_models_pytorch's "
    "input rule, see ``zoo.from_smp``); dense heads crop their logits back to the input.")

STRIDE_OPTION = Option(
    "stride_in_1x1", True,
    "True (default) builds keras.applications' layout (stride in the first 1x1 conv; its "
    "``.h5`` files load); False builds torchvision's v1.5 layout (its ``.pth`` files load).")

for _name, (_kind, _depths) in RESNET_CONFIGS.items():
    _builder = f"ResNet{_name[6:]}"
    globals()[_builder] = register_model(
        _name, family="resnet", builder_name=_builder, module=__name__,
        spec=functools.partial(resnet_spec, _name),
        summary=f"ResNet-{_name[6:]} ({_kind} blocks {_depths}), fully convolutional, with "
                f"output_stride (8/16/32 by dilation) and torchvision's FCN head.",
        options=((STRIDE_OPTION,) if _kind == "bottleneck" else ()) + (DILATION_OPTION, PAD_OPTION),
        info_hook=_stage_flops)

for _config in ("resnet50", "resnet101"):
    _builder = f"DeepLabV3_ResNet{_config[6:]}"
    globals()[_builder] = register_model(
        f"deeplabv3_{_config}", family="resnet", builder_name=_builder, module=__name__,
        spec=functools.partial(resnet_spec, _config, False, f"deeplabv3_{_config}", "deeplabv3"),
        summary=f"torchvision's deeplabv3_{_config}: the torchvision-layout {_config} at output "
                f"stride 8 with the ``deeplabv3`` head (``aux_head=True`` adds the auxiliary "
                f"FCN head); its ``coco_voc`` tag is torchvision's COCO-with-VOC-labels "
                f"checkpoint.")

"""Dilated Residual Networks (Yu, Koltun & Funkhouser, CVPR 2017) and the
DRNSeg segmentation head, layer for layer as in the official PyTorch code
(github.com/fyu/drn, ``drn.py`` and ``segment.py``).

Every weighted layer carries the official module path with ``.`` turned into
``_`` (``layer3.0.conv1`` <-> ``layer3_0_conv1``, ``layer0.0`` <->
``layer0_0`` for DRN-D's Sequential stems), so the converter is a name table.
DRNSeg checkpoints name the backbone ``base.<child index>.*``; the weight map
turns the index back into the child's name (``base.3`` is DRN-C's
``layer1``, DRN-D's ``layer3``).

Differences from the official code, all deliberate:

* Classify mode pools with true global average pooling. The official DRN-C/D
  use ``AvgPool2d(28)``, which equals it only at 224x224 (at other sizes it
  averages the top-left 28x28 cells of the map).
* Dense mode returns logits, cropped to the input size; the official DRNSeg
  returns ``log_softmax`` at 8 * ceil(H/8) rows (the crop keeps exactly the
  top-left H x W of that map).
* ``drn_c_58`` checkpoints hold ``layer7.0.downsample.*``, which the official
  forward computes but never adds (layer7 has no residual). The model does
  not build it; loading ignores those weights, so the model has 1,049,600
  fewer parameters than the README's 41.6M.
"""

import functools

from zoo.assembler import Backbone, Classifier, Stages
from zoo.models import resnet
from zoo.models.residual import DRN_LAYOUT, conv_bn, residual_stage
from zoo.registry import check_choice, register_model
from zoo.weights.convert import WeightMap

# name: (arch, residual block, blocks per stage). Stage order and widths per
# arch are in ARCH_STAGES.
DRN_CONFIGS = {
    "drn_a_18": ("A", "basic", (2, 2, 2, 2)),
    "drn_a_34": ("A", "basic", (3, 4, 6, 3)),
    "drn_a_50": ("A", "bottleneck", (3, 4, 6, 3)),
    "drn_c_26": ("C", "basic", (1, 1, 2, 2, 2, 2, 1, 1)),
    "drn_c_42": ("C", "basic", (1, 1, 3, 4, 6, 3, 1, 1)),
    "drn_c_58": ("C", "bottleneck", (1, 1, 3, 4, 6, 3, 1, 1)),
    "drn_d_22": ("D", "basic", (1, 1, 2, 2, 2, 2, 1, 1)),
    "drn_d_24": ("D", "basic", (1, 1, 2, 2, 2, 2, 2, 2)),
    "drn_d_38": ("D", "basic", (1, 1, 3, 4, 6, 3, 1, 1)),
    "drn_d_40": ("D", "basic", (1, 1, 3, 4, 6, 3, 2, 2)),
    "drn_d_54": ("D", "bottleneck", (1, 1, 3, 4, 6, 3, 1, 1)),
    "drn_d_56": ("D", "bottleneck", (1, 1, 3, 4, 6, 3, 2, 2)),
    "drn_d_105": ("D", "bottleneck", (1, 1, 3, 4, 23, 3, 1, 1)),
    "drn_d_107": ("D", "bottleneck", (1, 1, 3, 4, 23, 3, 2, 2)),
}

# Per arch: the stem (conv, BN and ReLU names, channels, stride), the official
# child modules before the stages (DRNSeg's ``base.<i>``), the supported
# output strides, file weights the forward never uses, and the stages as
# (name, unit, channels, stride, dilation, first-block dilation, residual).
# unit "block" is the config's residual block, "basic" always BasicBlock,
# "convs" DRN-D's plain conv-BN-ReLU stacks. DRN-A has no stage table: it is
# the torchvision-layout ResNet with a dilation plan (drn_a_plan).
ARCH_STAGES = {
    "A": {
        # torchvision's ResNet, built by zoo.models.resnet.resnet_backbone in
        # DRN_LAYOUT with drn_a_plan's dilations; output_stride=32 is ResNet.
        "children": ("conv1", "bn1", "relu", "maxpool"),
        "output_strides": (8, 16, 32),
        "unused": (),
        "stages": None,
    },
    "C": {
        "stem": (("conv1", "bn1", "relu"), 16, 1),
        "children": ("conv1", "bn1", "relu"),
        "output_strides": (8,),
        # drn_c_58's layer7 is computed without its residual.
        "unused": ("layer7_0_downsample_*",),
        "stages": (
            ("layer1", "basic", 16, 1, 1, 1, True),
            ("layer2", "basic", 32, 2, 1, 1, True),
            ("layer3", "block", 64, 2, 1, 1, True),
            ("layer4", "block", 128, 2, 1, 1, True),
            ("layer5", "block", 256, 1, 2, 2, True),
            ("layer6", "block", 512, 1, 4, 4, True),
            ("layer7", "basic", 512, 1, 2, 2, False),
            ("layer8", "basic", 512, 1, 1, 1, False),
        ),
    },
    "D": {
        "stem": (("layer0_0", "layer0_1", "layer0_2"), 16, 1),
        "children": ("layer0",),
        "output_strides": (8,),
        "unused": (),
        "stages": (
            ("layer1", "convs", 16, 1, 1, 1, True),
            ("layer2", "convs", 32, 2, 1, 1, True),
            ("layer3", "block", 64, 2, 1, 1, True),
            ("layer4", "block", 128, 2, 1, 1, True),
            ("layer5", "block", 256, 1, 2, 2, True),
            ("layer6", "block", 512, 1, 4, 4, True),
            ("layer7", "convs", 512, 1, 2, 2, False),
            ("layer8", "convs", 512, 1, 1, 1, False),
        ),
    },
}

TRAIN_CROP = 224


def conv_stack(x, filters, convs, stride, dilation, name):
    """DRN-D's plain stage: ``convs`` x (3x3 conv, BN, ReLU), no shortcut.

    Official names are Sequential indices: conv ``3i``, BN ``3i + 1``.

    Args:
        x: input tensor.
        filters: output channels.
        convs: number of convolutions.
        stride: stride of the first one.
        dilation: dilation of all of them.
        name: stage name, e.g. ``"layer7"``.

    Returns:
        The output tensor.
    """
    for i in range(convs):
        x = conv_bn(x, filters, 3, stride if i == 0 else 1, dilation, DRN_LAYOUT,
                    f"{name}_{3 * i}", f"{name}_{3 * i + 1}", f"{name}_{3 * i + 2}")
    return x


def drn_a_plan(output_stride):
    """DRN-A's ``(stride, first_dilations, dilation)`` per stage.

    ResNet's :func:`zoo.models.resnet.stage_plan` with every stage's first
    block undilated: fyu/drn's ``DRN_A._make_layer`` builds it with the
    default ``dilation=(1, 1)`` where torchvision gives it
    ``(previous, dilation)``.

    Args:
        output_stride: 8 (the DRN), 16, or 32 (plain ResNet).

    Returns:
        A list of four ``(stride, (1, 1), dilation)``.
    """
    return [(stride, (1, 1), dilation) for stride, _, dilation in resnet.stage_plan(output_stride)]


def stage_plan(config, channels=None):
    """The stages of a DRN-C/D ``config`` with their block counts.

    Args:
        config: a DRN-C or DRN-D ``DRN_CONFIGS`` key.
        channels: per-stage widths replacing the arch's (test-only tiny
            configs); None keeps the published widths.

    Returns:
        A list of ``(name, unit, channels, stride, dilation, first_dilation,
        residual, blocks)`` for the stages that have blocks.
    """
    arch, _, counts = DRN_CONFIGS[config]
    stages = ARCH_STAGES[arch]["stages"]
    if stages is None:
        raise ValueError(f"{config} is a ResNet: its stages are drn_a_plan's")
    if channels is not None:
        stages = [s[:2] + (c,) + s[3:] for s, c in zip(stages, channels)]
    return [s + (n,) for s, n in zip(stages, counts) if n > 0]


def drn_backbone(x, config, output_stride=8, channels=None):
    """The stem and every stage of a DRN.

    Args:
        x: input tensor (N, H, W, 3).
        config: a ``DRN_CONFIGS`` key.
        output_stride: 8; DRN-A also 16, or 32 (plain ResNet).
        channels: stage widths replacing the published ones (tiny test
            configs): 8 for DRN-C/D (the stem takes the first), 4 for DRN-A.

    Returns:
        A :class:`zoo.assembler.Stages` of the stage outputs ``layer1`` ...
        (the official ``out_middle``) with their strides; the last one feeds
        the classifier. DRN-C/D's ``layer1`` has stride 1 (pyramid ``P0``).
    """
    arch, block, counts = DRN_CONFIGS[config]
    spec = ARCH_STAGES[arch]
    check_choice(output_stride, spec["output_strides"], f"output_stride for {config}")
    if arch == "A":
        built = resnet.resnet_backbone(x, block, counts, DRN_LAYOUT, drn_a_plan(output_stride),
                                       widths=channels or resnet.STAGE_WIDTHS)
        return Stages(built.stages[1:])  # the stem is no DRN output
    names, width, stride = spec["stem"]
    x = conv_bn(x, channels[0] if channels else width, 7, stride, 1, DRN_LAYOUT, *names)
    total = stride
    stages = []
    for name, unit, width, stride, dilation, first, residual, count in stage_plan(config, channels):
        channels_ = width
        if unit == "convs":
            x = conv_stack(x, channels_, count, stride, dilation, name)
        else:
            x = residual_stage(x, block if unit == "block" else unit, count, channels_, stride,
                               (first, first), dilation, DRN_LAYOUT,
                               lambda j, name=name: f"{name}_{j}", residual)
        total *= stride
        stages.append((x, total))
    return Stages(tuple(stages))


def torch_children(config):
    """Official child-module names of the DRN, in order: DRNSeg's
    ``base.<i>`` is child ``i``."""
    spec = ARCH_STAGES[DRN_CONFIGS[config][0]]
    if spec["stages"] is None:  # DRN-A: ResNet's layer1 ... layer4
        return list(spec["children"]) + [f"layer{i}" for i in range(1, 5)]
    return list(spec["children"]) + [s[0] for s in stage_plan(config)]


def drn_weight_map(config):
    """The :class:`WeightMap` for a DRN or DRNSeg state_dict: the base name
    rule (DRNSeg's ``base.<i>`` becomes child ``i``'s name)."""
    children = torch_children(config)

    def torch_name(path):
        head, _, rest = path.partition(".")
        if head == "base":
            index, _, rest = rest.partition(".")
            head = children[int(index)]
            path = f"{head}.{rest}" if rest else head
        return path.replace(".", "_")

    return WeightMap(torch=torch_name, ignore=tuple(ARCH_STAGES[DRN_CONFIGS[config][0]]["unused"]))


CLASSIFIER = Classifier("pool_conv", ("fc",), pool="avgpool", flatten="predictions")


def drn_spec(config, channels=None):
    """The :class:`zoo.assembler.Backbone` of one DRN.

    Args:
        config: a ``DRN_CONFIGS`` key (also the registry name).
        channels: see :func:`drn_backbone` (tiny test configs only).
    """
    arch = DRN_CONFIGS[config][0]
    return Backbone(
        name=config,
        build=lambda x, output_stride: drn_backbone(x, config, output_stride, channels),
        classifier=CLASSIFIER,
        output_strides=ARCH_STAGES[arch]["output_strides"],
        default_output_stride={m: 8 for m in ("classify", "heatmap", "dense", "features")},
        default_head="drnseg",
        min_input={"features": 1},
        weight_map=drn_weight_map(config),
        classify_input=None,
    )


def _info_hook(config):
    def hook(model, input_size, per_layer_flops):
        info = {"arch": f"DRN-{DRN_CONFIGS[config][0]}"}
        by_name = {l.name: l for l in model.layers}
        if "avgpool" in by_name:
            info["feature_map"] = tuple(by_name["avgpool"].input.shape[1:3])
        if config == "drn_c_58":
            # layer7.0.downsample: Conv2d(2048, 512, 1) + BatchNorm2d(512),
            # stored in the checkpoint and counted by the README, never used.
            info["checkpoint_only_params"] = 2048 * 512 + 2 * 512
        return info

    return hook


for _name, (_arch, _block, _counts) in DRN_CONFIGS.items():
    _builder = _name.upper()
    globals()[_builder] = register_model(
        _name, family="drn", builder_name=_builder, module=__name__,
        spec=functools.partial(drn_spec, _name), info_hook=_info_hook(_name),
        summary=f"DRN-{_arch}-{_name.rsplit('_', 1)[1]}: {_block} blocks {_counts}, output stride 8 "
                f"(fyu/drn layer names; dense mode is DRNSeg).")

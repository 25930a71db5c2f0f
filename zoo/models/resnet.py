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

import os
import re

from keras import layers

from zoo.assembler import Backbone, Classifier, Stages, assemble, register_backbone
from zoo.registry import DEFAULT, check_choice
from zoo.weights.convert import WeightMap, default_torch_name
from zoo.weights.readers.errors import CheckpointError
from zoo.layers import conv2d
from zoo.models.residual import LAYOUTS, relu, residual_stage
from zoo.registry import register_model
from zoo.weights import (is_weights_path, load_weights, manifest_entry, read_checkpoint,
                         resolve_file)

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
STEM_STRIDE = 4
TRAIN_CROP = 224
POOL_WINDOW = 7  # c5 cells under a 224 crop at stride 32
# Layer names and numerics of both layouts: zoo.models.residual.LAYOUTS.
LAYOUT_HINT = {"keras": "stride_in_1x1=True", "torchvision": "stride_in_1x1=False"}


def stage_plan(output_stride, stages=4):
    """Strides and dilations of the stages for one output stride.

    Args:
        output_stride: 8, 16 or 32.
        stages: number of stages.

    Returns:
        A list of ``(stride, first_dilations, dilation)`` per stage: stages
        that would go past ``output_stride`` get stride 1 and twice the
        previous ``dilation``; their first block's ``dilations`` are
        ``(previous, dilation)`` (torchvision's ``previous_dilation``; a
        bottleneck uses only the first).
    """
    check_choice(output_stride, OUTPUT_STRIDES, "output_stride")
    plan, stride, dilation = [], STEM_STRIDE, 1
    for i in range(stages):
        step = 1 if i == 0 else 2
        previous = dilation
        if stride * step > output_stride:
            dilation *= step
            step = 1
        else:
            stride *= step
        plan.append((step, (previous, dilation), dilation))
    return plan


def resnet_backbone(x, block, depths, layout, plan):
    """Stem and four stages.

    Args:
        x: input tensor.
        block: ``"basic"`` or ``"bottleneck"``.
        depths: blocks per stage.
        layout: a :class:`zoo.models.residual.Layout`.
        plan: ``(stride, first_dilations, dilation)`` per stage, e.g.
            :func:`stage_plan`'s: the first block's stride and ``dilations``
            tuple, and the dilation of the others.

    Returns:
        A :class:`zoo.assembler.Stages`: the stem after its ReLU (stride 2)
        and the four stages (strides 4, 8, 16, 32 without dilation; dilated
        stages keep the stride they have, so the pyramid's deepest level at
        that stride is the last stage).
    """
    pad, conv, bn, act, pool_pad, pool = layout.stem
    x = layers.ZeroPadding2D(3, name=pad)(x)
    x = conv2d(64, 7, strides=2, padding="valid", use_bias=layout.use_bias, name=conv)(x)
    x = layers.BatchNormalization(epsilon=layout.epsilon, momentum=layout.momentum, name=bn)(x)
    x = relu(x, layout, act)
    stages = [(x, 2)]
    # After a ReLU, zero padding equals torch's -inf padding for max pooling.
    x = layers.ZeroPadding2D(1, name=pool_pad)(x)
    x = layers.MaxPooling2D(3, strides=2, name=pool)(x)
    total = STEM_STRIDE
    for s, (depth, width, stage) in enumerate(zip(depths, STAGE_WIDTHS, plan)):
        stride, first_dilations, dilation = stage
        x = residual_stage(
            x, block, depth, width, stride, first_dilations, dilation, layout,
            lambda j, s=s: layout.block.format(s1=s + 1, s2=s + 2, j0=j, j1=j + 1))
        total *= stride
        stages.append((x, total))
    return Stages(tuple(stages))


# ----------------------------------------------------------------- weights


def checkpoint_layout(path):
    """Which layout a checkpoint's names belong to.

    Returns:
        ``"keras"``, ``"torchvision"`` or None when neither is recognised.
    """
    _, contents = read_checkpoint(path)
    for name in contents:
        for layout in LAYOUTS.values():
            if re.search(layout.marker, name):
                return layout.name
    return None


def _file_key(model_name, weights, layout, headless):
    """Manifest file key for a tag, refusing tags not published in ``layout``."""
    key = "torch" if layout.name == "torchvision" else ("keras_notop" if headless else "keras_top")
    if weights is None or is_weights_path(weights, model_name):
        return key
    files = manifest_entry(model_name, weights).get("files", {})
    if key not in files:
        have = sorted({"torchvision" if k == "torch" else "keras" for k in files})
        raise ValueError(
            f"weights {weights!r} of {model_name} are published in the {', '.join(have)} "
            f"layout only; build the model with "
            f"{' or '.join(LAYOUT_HINT[h] for h in have)} (it was built with {layout.name})"
        )
    return key


def _torch_name(path):
    """torchvision's segmentation models prefix the ResNet with ``backbone.``."""
    if path.startswith("backbone."):
        path = path[len("backbone."):]
    return default_torch_name(path)


def _load(model, weights, model_name, layout, mode, weight_map):
    headless = mode in ("dense", "features")
    file_key = _file_key(model_name, weights, layout, headless)
    try:
        return load_weights(model, weights, model_name, weight_map, file_key=file_key)
    except CheckpointError as err:
        if is_weights_path(weights, model_name):
            path = os.fspath(weights)
        else:
            path = resolve_file(model_name, weights, file_key)
        found = checkpoint_layout(path)
        if found is None or found == layout.name:
            raise
        raise CheckpointError(
            f"{path} holds a {found}-layout {('ResNet' if found == 'keras' else 'torchvision ResNet')} "
            f"checkpoint, but this {model_name} was built in the {layout.name} layout; "
            f"build it with {LAYOUT_HINT[found]}"
            + (" (only ResNet-50/101/152 have the keras layout)" if found == "keras" else "")
            + f". No weights were changed. ({err})"
        ) from None


# ----------------------------------------------------------------- builder


def resnet_spec(config, stride_in_1x1=False, model_name=None):
    """The :class:`zoo.assembler.Backbone` of one ResNet in one layout."""
    kind, depths = RESNET_CONFIGS[config]
    if stride_in_1x1 and kind == "basic":
        raise ValueError(f"{config} exists in the torchvision layout only; stride_in_1x1 must be False")
    layout = LAYOUTS["keras" if stride_in_1x1 else "torchvision"]
    model_name = model_name or config
    return Backbone(
        name=config,
        build=lambda x, output_stride: resnet_backbone(
            x, kind, depths, layout, stage_plan(output_stride)),
        classifier=Classifier("pool_fc", (layout.classifier,), pool=layout.pool, window=POOL_WINDOW),
        output_strides=OUTPUT_STRIDES,
        default_output_stride={"dense": 8},
        default_head="fcn",
        min_input={"features": 1},
        weight_map=WeightMap(torch=_torch_name),
        load=lambda model, weights, weight_map, mode: _load(
            model, weights, model_name, layout, mode, weight_map),
        file_key=lambda mode: "torch" if layout.name == "torchvision" else (
            "keras_notop" if mode in ("dense", "features") else "keras_top"),
    )


def _resnet(config, weights, mode, input_shape, classes, classifier_activation, name,
            stride_in_1x1=False, model_name=None, **kwargs):
    return assemble(resnet_spec(config, stride_in_1x1, model_name), weights=weights, mode=mode,
                    input_shape=input_shape, classes=classes,
                    classifier_activation=classifier_activation, name=name,
                    model_name=model_name, **kwargs)


_DOC = """{summary}

    Args:
        weights: None, a published tag (``"imagenet"``; ``"imagenet_v2"`` and,
            in dense mode, ``"coco_voc"`` where published) or a file path
            (keras.applications ``.h5``, Keras ``.weights.h5``/``.keras``,
            torchvision ``.pth``), detected by content. Tags pick the file of
            the model's layout.
        mode: ``"classify"``, ``"heatmap"``, ``"dense"`` (torchvision FCN
            head by default, logits at input size; ``head=`` picks another
            from ``zoo.heads.list_heads()``) or ``"features"`` (the pyramid
            ``P1`` ... ``P5``; dilated stages share their stride's key).
        input_shape: defaults to (224, 224, 3) for classify, else (None, None, 3).
        classes: number of output classes.
        classifier_activation: ``"softmax"`` by default for classify and
            heatmap; None gives logits. Dense and features have none.
        name: model name.{extra}
        output_stride: 8, 16 or 32; later stages use dilation instead of
            stride. Defaults to 8 in dense mode, else 32.
        aux_head: dense mode with the fcn/deeplabv3 head: also build
            torchvision's auxiliary FCN head on layer3 (c4); the model then
            returns ``{{"out": ..., "aux": ...}}``.
        head, in_channels, include_preprocessing, preprocessing: see
            :func:`zoo.assembler.assemble`.

    Returns:
        A ``keras.Model``.
    """
_STRIDE_ARG = """
        stride_in_1x1: True (default) builds keras.applications' layout
            (stride in the first 1x1 conv; its ``.h5`` files load); False
            builds torchvision's v1.5 layout (its ``.pth`` files load)."""


def ResNet18(weights=None, mode="classify", input_shape=None, classes=1000,
             classifier_activation=DEFAULT, name=None, **kwargs):
    return _resnet("resnet18", weights, mode, input_shape, classes, classifier_activation, name, **kwargs)


def ResNet34(weights=None, mode="classify", input_shape=None, classes=1000,
             classifier_activation=DEFAULT, name=None, **kwargs):
    return _resnet("resnet34", weights, mode, input_shape, classes, classifier_activation, name, **kwargs)


def ResNet50(weights=None, mode="classify", input_shape=None, classes=1000,
             classifier_activation=DEFAULT, name=None, stride_in_1x1=True, **kwargs):
    return _resnet("resnet50", weights, mode, input_shape, classes, classifier_activation, name,
                   stride_in_1x1, **kwargs)


def ResNet101(weights=None, mode="classify", input_shape=None, classes=1000,
              classifier_activation=DEFAULT, name=None, stride_in_1x1=True, **kwargs):
    return _resnet("resnet101", weights, mode, input_shape, classes, classifier_activation, name,
                   stride_in_1x1, **kwargs)


def ResNet152(weights=None, mode="classify", input_shape=None, classes=1000,
              classifier_activation=DEFAULT, name=None, stride_in_1x1=True, **kwargs):
    return _resnet("resnet152", weights, mode, input_shape, classes, classifier_activation, name,
                   stride_in_1x1, **kwargs)


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


for _name, _builder in (("resnet18", ResNet18), ("resnet34", ResNet34), ("resnet50", ResNet50),
                        ("resnet101", ResNet101), ("resnet152", ResNet152)):
    _kind, _depths = RESNET_CONFIGS[_name]
    _builder.__doc__ = _DOC.format(
        summary=f"ResNet-{_name[6:]} ({_kind} blocks {_depths}), fully convolutional, "
                f"with output_stride and FCN head.",
        extra=_STRIDE_ARG if _kind == "bottleneck" else "",
    )
    register_backbone(_name, lambda n=_name: resnet_spec(n, RESNET_CONFIGS[n][0] == "bottleneck"))
    register_model(_name, _builder, "resnet", output_stride=32, info_mode="classify",
                   info_hook=_stage_flops)


def _deeplabv3(config):
    def builder(weights=None, mode="dense", input_shape=None, classes=21,
                classifier_activation=None, name=None, **kwargs):
        kwargs.setdefault("head", "deeplabv3")
        return _resnet(config, weights, mode, input_shape, classes, classifier_activation,
                       name or f"deeplabv3_{config}", stride_in_1x1=False,
                       model_name=f"deeplabv3_{config}", **kwargs)

    builder.__name__ = f"DeepLabV3_{config.capitalize()}"
    builder.__doc__ = f"""torchvision's ``deeplabv3_{config}``: the torchvision-layout {config}
    at output stride 8 with the ``"deeplabv3"`` head (``aux_head=True`` adds the
    auxiliary FCN head). Same as ``zoo.create_model("{config}", mode="dense",
    head="deeplabv3", stride_in_1x1=False, classes=21)``; its ``coco_voc`` tag
    is torchvision's COCO-with-VOC-labels checkpoint.

    Args:
        weights: None, ``"coco_voc"`` or a torchvision state_dict path.
        mode: ``"dense"`` only.
        input_shape: defaults to (None, None, 3).
        classes: output classes (21).
        classifier_activation: None (logits).
        name: model name.
        **kwargs: ``aux_head``, ``output_stride``, ``in_channels``,
            ``include_preprocessing``, ``preprocessing``.

    Returns:
        A ``keras.Model``.
    """
    return builder


DeepLabV3_ResNet50 = _deeplabv3("resnet50")
DeepLabV3_ResNet101 = _deeplabv3("resnet101")
for _name, _builder in (("deeplabv3_resnet50", DeepLabV3_ResNet50),
                        ("deeplabv3_resnet101", DeepLabV3_ResNet101)):
    register_backbone(_name, lambda n=_name: resnet_spec(n[len("deeplabv3_"):], False, n))
    register_model(_name, _builder, "resnet", output_stride=8, modes=("dense",), info_mode="dense")

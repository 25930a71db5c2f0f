"""VGG16/19 (Simonyan & Zisserman) as fully-convolutional networks, and
FCN-32s/16s/8s (Long, Shelhamer & Darrell) on a VGG16 backbone.

Layer names are keras.applications' (``block1_conv1`` ... ``predictions``),
so its published ``.h5`` files load by name; torchvision's ``.pth`` files
load through a name table (``features.0`` -> ``block1_conv1``). In heatmap mode ``fc1``, ``fc2``
and ``predictions`` become 7x7 (valid), 1x1 and 1x1 convolutions; the
converter reshapes their Dense kernels (Keras's Flatten over 7x7x512 is
row-major in (h, w, c), the conv kernel's order).
"""

import dataclasses
import functools

from keras import layers

from zoo.assembler import Backbone, Classifier, Stages
from zoo.layers import conv2d
from zoo.registry import Option, register_model
from zoo.weights.convert import WeightMap

# Convolutions per block; every block ends with a 2x2 max pool.
VGG_CONFIGS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
VGG_WIDTHS = (64, 128, 256, 512, 512)
HEAD_LAYERS = ("fc1", "fc2", "predictions")
TRAIN_CROP = 224

def vgg_block(x, filters, convs, name, pool_padding="valid"):
    """``convs`` 3x3 ReLU convolutions then a 2x2 max pool.

    Args:
        x: input tensor.
        filters: output channels.
        convs: number of convolutions.
        name: block name (``"block3"``); layers are ``block3_conv1`` ... ``block3_pool``.
        pool_padding: ``"valid"`` (keras.applications, floor) or ``"same"``
            (Caffe's ceil-mode pooling, as FCN uses).

    Returns:
        The pooled tensor.
    """
    for i in range(convs):
        x = conv2d(filters, 3, padding="same", activation="relu", name=f"{name}_conv{i + 1}")(x)
    return layers.MaxPooling2D(2, strides=2, padding=pool_padding, name=f"{name}_pool")(x)


def vgg_base(x, config, pool_padding="valid", widths=VGG_WIDTHS):
    """The five conv blocks (``widths``: their channels; tiny test configs
    pass their own).

    Returns:
        A dict ``block1`` ... ``block5`` of the pooled outputs (strides 2 ... 32).
    """
    feats = {}
    for i, (convs, width) in enumerate(zip(VGG_CONFIGS[config], widths)):
        x = vgg_block(x, width, convs, f"block{i + 1}", pool_padding)
        feats[f"block{i + 1}"] = x
    return feats


def _pool_input(t):
    """The input tensor of the pooling layer that produced ``t``."""
    return t._keras_history.operation.input


def torchvision_names(config):
    """torchvision's VGG module paths -> our layer names (a name table).

    ``features`` is one Sequential of conv, ReLU, ..., pool; ``classifier`` is
    Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear.
    """
    table, index = {}, 0
    for b, convs in enumerate(VGG_CONFIGS[config]):
        for i in range(convs):
            table[f"features.{index}"] = f"block{b + 1}_conv{i + 1}"
            index += 2
        index += 1
    table.update({"classifier.0": "fc1", "classifier.3": "fc2", "classifier.6": "predictions"})
    return table


def vgg_spec(config, widths=VGG_WIDTHS, hidden=(4096, 4096), pyramid="pooled", pad_to_multiple=None):
    """The :class:`zoo.assembler.Backbone` of VGG16/19: five blocks, levels P1..P5.

    Args:
        config: a ``VGG_CONFIGS`` key (also the registry name).
        widths: the blocks' channels; hidden: the FC widths (tiny test
            configs pass their own).
        pyramid: ``"pooled"`` (levels P1..P5 are the pools' outputs) or
            ``"pre_pool"`` (segmentation_models_pytorch's VGG encoder: P0..P4
            are each block's last conv before its pool, P5 the last pool).
        pad_to_multiple: None, or zero-pad the input bottom/right to a
            multiple of it (SMP's input rule, see ``zoo.from_smp``).
    """
    if pyramid not in ("pooled", "pre_pool"):
        raise ValueError(f"pyramid must be 'pooled' or 'pre_pool'; got {pyramid!r}")

    def build(x, output_stride):
        del output_stride
        if pad_to_multiple:
            from zoo.heads._smp import PadToMultiple

            x = PadToMultiple(pad_to_multiple, name="pad_to_multiple")(x)
        feats = vgg_base(x, config, widths=widths)
        stages = [(t, 2 ** (i + 1)) for i, t in enumerate(feats.values())]
        if pyramid == "pre_pool":
            # Each pool's input, at the stride before it; the deepest stage
            # per stride wins in the pyramid, so P0..P4 are these, P5 the pool.
            pre = [(_pool_input(t), s // 2) for t, s in stages]
            stages = [item for pair in zip(pre, stages) for item in pair]
        return Stages(tuple(stages))

    classifier = dataclasses.replace(CLASSIFIER, hidden=tuple(hidden))
    return Backbone(
        name=config, build=build, classifier=classifier, default_head="bilinear",
        weight_map=WeightMap(
            torch=lambda path, table=torchvision_names(config): table.get(path, path.replace(".", "_")),
            torch_flatten={"fc1": (7, 7, widths[-1])},
        ),
        min_input={"classify": TRAIN_CROP, "features": 32, "dense": 32},
    )


def fcn_spec(kind):
    """The reference FCN (``kind`` = fcn32s/16s/8s) on VGG16, dense only.

    Caffe's conv1_1 pads by 100 so that the stride-32 map is never empty (99
    here plus the conv's own "same" pad of 1), pools are ceil-mode, and the
    FCN heads get Caffe's exact crop offsets and the fc6/fc7 convolutional
    body (the VGG classifier as convolutions, with dropout and a zero score).
    """
    def build(x, output_stride):
        del output_stride
        x = layers.ZeroPadding2D(99, name="pad100")(x)
        feats = vgg_base(x, "vgg16", pool_padding="same")
        return Stages(tuple((t, 2 ** (i + 1)) for i, t in enumerate(feats.values())))

    return Backbone(
        name=kind, build=build, classifier=CLASSIFIER, modes=("dense",), default_head=kind,
        weight_map=WeightMap(h5={"fc1": "fc6", "fc2": "fc7"}),
        head_extras={"fcn": {"body": lambda x, classes: FCN_BODY.heatmap(x, classes, None),
                             "offsets": FCN_OFFSETS}},
        min_input={"dense": 1}, classes=21,
    )


CLASSIFIER = Classifier("flatten_fc", HEAD_LAYERS, hidden=(4096, 4096), window=7)
FCN_BODY = Classifier("flatten_fc", ("fc6", "fc7", "score_fr"), hidden=(4096, 4096), window=7,
                      hidden_dropout=(("drop6", 0.5), ("drop7", 0.5)), score_init="zeros")
FCN_OFFSETS = {"pool4": 5, "pool3": 9, "upscore": 19, "upscore16": 27, "upscore8": 31}

VGG_OPTIONS = (
    Option("pyramid", "pooled",
           "``\"pooled\"`` (dense levels are the pools' outputs) or ``\"pre_pool\"`` (each block's "
           "last conv before its pool, then the last pool: segmentation_models_pytorch's VGG encoder)."),
    Option("pad_to_multiple", None,
           "None, or zero-pad the input bottom/right to a multiple of it (segmentation_models_pytorch's "
           "input rule, see ``zoo.from_smp``)."),
)

# name: (builder, summary)
VGG_MODELS = {
    "vgg16": ("VGG16", "VGG16 with keras.applications layer names; FC head as convs in heatmap mode."),
    "vgg19": ("VGG19", "VGG19 with keras.applications layer names; FC head as convs in heatmap mode."),
}
FCN_MODELS = {
    "fcn32s": ("FCN32s", "FCN-32s: VGG16, fc6/fc7 as convs, one x32 bilinear-initialised upsampling."),
    "fcn16s": ("FCN16s", "FCN-16s: FCN-32s plus a pool4 skip; x2 then x16 upsampling."),
    "fcn8s": ("FCN8s", "FCN-8s: FCN-16s plus a pool3 skip; x2, x2 then x8 upsampling."),
}

for _name, (_builder, _summary) in VGG_MODELS.items():
    globals()[_builder] = register_model(
        _name, family="vgg", spec=functools.partial(vgg_spec, _name), builder_name=_builder,
        summary=_summary, module=__name__, options=VGG_OPTIONS)
for _name, (_builder, _summary) in FCN_MODELS.items():
    globals()[_builder] = register_model(
        _name, family="fcn", spec=functools.partial(fcn_spec, _name), builder_name=_builder,
        summary=_summary, module=__name__)

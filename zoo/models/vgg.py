"""VGG16/19 (Simonyan & Zisserman) as fully-convolutional networks, and
FCN-32s/16s/8s (Long, Shelhamer & Darrell) on a VGG16 backbone.

Layer names are keras.applications' (``block1_conv1`` ... ``predictions``),
so its published ``.h5`` files load by name; torchvision's ``.pth`` files
load through a name table (``features.0`` -> ``block1_conv1``). In heatmap mode ``fc1``, ``fc2``
and ``predictions`` become 7x7 (valid), 1x1 and 1x1 convolutions; the
converter reshapes their Dense kernels (Keras's Flatten over 7x7x512 is
row-major in (h, w, c), the conv kernel's order).
"""

import keras
from keras import layers

from zoo.assembler import Backbone, Classifier, Stages, assemble, register_backbone
from zoo.registry import DEFAULT
from zoo.weights.convert import WeightMap
from zoo.layers import WindowConv2D, conv2d
from zoo.registry import register_model

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


def vgg_base(x, config, pool_padding="valid"):
    """The five conv blocks.

    Returns:
        A dict ``block1`` ... ``block5`` of the pooled outputs (strides 2 ... 32).
    """
    feats = {}
    for i, (convs, width) in enumerate(zip(VGG_CONFIGS[config], VGG_WIDTHS)):
        x = vgg_block(x, width, convs, f"block{i + 1}", pool_padding)
        feats[f"block{i + 1}"] = x
    return feats


def conv_head(x, classes, activation, names=HEAD_LAYERS, dropout=0.0, score_init="glorot_uniform"):
    """The FC classifier as convolutions: 7x7 valid, 1x1, 1x1.

    Each output cell is exactly the Dense head applied to one 7x7 window of
    the pool5 map.

    Args:
        x: pool5 features.
        classes: output channels of the last layer.
        activation: activation of the last layer (softmax or None).
        names: names of the three layers.
        dropout: dropout rate after the first two (FCN's drop6/drop7).
        score_init: initializer of the last layer (FCN starts it at zero).

    Returns:
        The score map.
    """
    x = WindowConv2D(4096, 7, activation="relu", name=names[0])(x)
    if dropout:
        x = layers.Dropout(dropout, name="drop6")(x)
    x = layers.Conv2D(4096, 1, activation="relu", name=names[1])(x)
    if dropout:
        x = layers.Dropout(dropout, name="drop7")(x)
    return layers.Conv2D(classes, 1, activation=activation, kernel_initializer=score_init, name=names[2])(x)


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


def _backbone(config, fcn=False):
    """The VGG backbone: five blocks, levels P1..P5.

    ``fcn=True`` is the reference FCN's variant: Caffe's conv1_1 pads by 100
    so that the stride-32 map is never empty (99 here plus the conv's own
    "same" pad of 1), pools are ceil-mode, and the FCN heads get Caffe's exact
    crop offsets and the fc6/fc7 convolutional body.
    """
    def build(x, output_stride):
        del output_stride
        if fcn:
            x = layers.ZeroPadding2D(99, name="pad100")(x)
        feats = vgg_base(x, config, pool_padding="same" if fcn else "valid")
        return Stages(tuple((t, 2 ** (i + 1)) for i, t in enumerate(feats.values())))

    if fcn:
        return Backbone(
            name=config, build=build, classifier=CLASSIFIER, modes=("dense",),
            weight_map=WeightMap(h5={"fc1": "fc6", "fc2": "fc7"}),
            head_extras={"fcn": {"body": _fcn_body, "offsets": FCN_OFFSETS}},
            min_input={"dense": 1},
        )
    return Backbone(
        name=config, build=build, classifier=CLASSIFIER, default_head="bilinear",
        weight_map=WeightMap(
            torch=lambda path, table=torchvision_names(config): table.get(path, path.replace(".", "_")),
            torch_flatten={"fc1": (7, 7, 512)},
        ),
        file_key=lambda mode: "notop" if mode in ("dense", "features") else "top",
        min_input={"classify": TRAIN_CROP, "features": 32, "dense": 32},
    )


def _fcn_body(x, classes):
    return conv_head(x, classes, None, names=("fc6", "fc7", "score_fr"), dropout=0.5, score_init="zeros")


CLASSIFIER = Classifier("flatten_fc", HEAD_LAYERS, hidden=(4096, 4096), window=7)
FCN_HEADS = ("fcn32s", "fcn16s", "fcn8s")
FCN_OFFSETS = {"pool4": 5, "pool3": 9, "upscore": 19, "upscore16": 27, "upscore8": 31}


def _vgg(config, weights, mode, input_shape, classes, classifier_activation, name, **kwargs):
    return assemble(_backbone(config), weights=weights, mode=mode, input_shape=input_shape,
                    classes=classes, classifier_activation=classifier_activation, name=name, **kwargs)


def _fcn(config, weights, mode, input_shape, classes, classifier_activation, name, **kwargs):
    return assemble(_backbone("vgg16", fcn=True), weights=weights, mode=mode, input_shape=input_shape,
                    classes=classes, classifier_activation=None, name=name or config, head=config,
                    model_name=config, **kwargs)


def _doc(builder, summary):
    builder.__doc__ = f"""{summary}

    Args:
        weights: None, a published tag (``"imagenet"``) or a file path
            (Keras ``.weights.h5``, keras.applications ``.h5``, ``.keras``,
            PyTorch ``.pth``), detected by content.
        mode: ``"classify"``, ``"heatmap"``, ``"dense"`` or ``"features"``
            (FCNs: ``"dense"`` only).
        input_shape: defaults to (224, 224, 3) for classify, else (None, None, 3).
        classes: number of output classes.
        classifier_activation: ``"softmax"`` by default for classify and
            heatmap; None gives logits. Dense mode always returns logits.
        name: model name.
        **kwargs: ``output_stride`` (32 only), ``head`` (dense: ``"bilinear"``
            by default), ``aux_head``, ``in_channels``,
            ``include_preprocessing``, ``preprocessing`` (see
            :func:`zoo.assembler.assemble`).

    Returns:
        A ``keras.Model``.
    """
    return builder


def VGG16(weights=None, mode="classify", input_shape=None, classes=1000,
          classifier_activation=DEFAULT, name=None, **kwargs):
    return _vgg("vgg16", weights, mode, input_shape, classes, classifier_activation, name, **kwargs)


def VGG19(weights=None, mode="classify", input_shape=None, classes=1000,
          classifier_activation=DEFAULT, name=None, **kwargs):
    return _vgg("vgg19", weights, mode, input_shape, classes, classifier_activation, name, **kwargs)


def FCN32s(weights=None, mode="dense", input_shape=None, classes=21,
           classifier_activation=None, name=None, **kwargs):
    return _fcn("fcn32s", weights, mode, input_shape, classes, classifier_activation, name, **kwargs)


def FCN16s(weights=None, mode="dense", input_shape=None, classes=21,
           classifier_activation=None, name=None, **kwargs):
    return _fcn("fcn16s", weights, mode, input_shape, classes, classifier_activation, name, **kwargs)


def FCN8s(weights=None, mode="dense", input_shape=None, classes=21,
          classifier_activation=None, name=None, **kwargs):
    return _fcn("fcn8s", weights, mode, input_shape, classes, classifier_activation, name, **kwargs)


_doc(VGG16, "VGG16 with keras.applications layer names; FC head as convs in heatmap mode.")
_doc(VGG19, "VGG19 with keras.applications layer names; FC head as convs in heatmap mode.")
_doc(FCN32s, "FCN-32s: VGG16, fc6/fc7 as convs, one x32 bilinear-initialised upsampling.")
_doc(FCN16s, "FCN-16s: FCN-32s plus a pool4 skip; x2 then x16 upsampling.")
_doc(FCN8s, "FCN-8s: FCN-16s plus a pool3 skip; x2, x2 then x8 upsampling.")

for _name in ("vgg16", "vgg19"):
    register_backbone(_name, lambda n=_name: _backbone(n))
for _name in FCN_HEADS:
    register_backbone(_name, lambda: _backbone("vgg16", fcn=True))
for _name, _builder in (("vgg16", VGG16), ("vgg19", VGG19)):
    register_model(_name, _builder, "vgg", output_stride=32, info_mode="heatmap")
for _name, _builder, _stride in (("fcn32s", FCN32s, 32), ("fcn16s", FCN16s, 16), ("fcn8s", FCN8s, 8)):
    register_model(_name, _builder, "fcn", output_stride=_stride, modes=("dense",),
                   info_mode="dense")

"""``"deeplabv3"``: torchvision's ``DeepLabHead`` (Chen et al., "Rethinking
atrous convolution"): ASPP (a 1x1 branch, three dilated 3x3 branches and an
image-pooling branch, each conv-BN-ReLU to 256 channels), a 1x1 projection
with dropout 0.5, a 3x3 conv-BN-ReLU and a 1x1 classifier, bilinearly resized
to the input. The dilation rates are 12/24/36 at output stride 8 and
6/12/18 at 16 (scaled with the stride).

Layer names are torchvision's module paths with ``.`` as ``_``
(``classifier.0.convs.0.0`` -> ``classifier_0_convs_0_0``), so a
``deeplabv3_resnet50`` state_dict loads by the name rule; ``aux_head=True``
adds torchvision's auxiliary FCNHead (``aux_classifier_*``).
"""

from keras import layers

from zoo.heads import register_head
from zoo.heads.fcn import aux_output
from zoo.layers import ResizeLike, conv2d

ASPP_CHANNELS = 256
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # PyTorch's momentum 0.1
PROJECT_DROPOUT = 0.5


def atrous_rates(output_stride):
    """12/24/36 at output stride 8, 6/12/18 at 16, 3/6/9 at 32."""
    base = max(1, 96 // output_stride)
    return (base, 2 * base, 3 * base)


def _cbr(x, filters, kernel, prefix, dilation=1):
    x = conv2d(filters, kernel, dilation_rate=dilation, padding="same" if kernel > 1 else "valid",
               use_bias=False, name=f"{prefix}_0")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{prefix}_1")(x)
    return layers.ReLU(name=f"{prefix}_2")(x)


def deeplabv3_head(pyramid, inputs, classes, ctx, aux_head=False, rates=None):
    """Builds the head.

    Args:
        pyramid: the backbone's levels; the last one is used.
        inputs: the model input (the output's size).
        classes: output channels.
        ctx: the assembler's ``HeadContext``.
        aux_head: also return torchvision's auxiliary FCN output.
        rates: the three ASPP dilation rates; default from the output stride.

    Returns:
        Logits (N, H, W, classes), or ``{"out", "aux"}``.
    """
    rates = tuple(rates or atrous_rates(ctx.output_stride))
    x = pyramid[ctx.last]
    p = "classifier_0"
    branches = [_cbr(x, ASPP_CHANNELS, 1, f"{p}_convs_0")]
    for i, rate in enumerate(rates, start=1):
        branches.append(_cbr(x, ASPP_CHANNELS, 3, f"{p}_convs_{i}", dilation=rate))
    pooled = layers.GlobalAveragePooling2D(keepdims=True, name=f"{p}_convs_4_0")(x)
    pooled = conv2d(ASPP_CHANNELS, 1, padding="valid", use_bias=False, name=f"{p}_convs_4_1")(pooled)
    pooled = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{p}_convs_4_2")(pooled)
    pooled = layers.ReLU(name=f"{p}_convs_4_3")(pooled)
    branches.append(ResizeLike(name=f"{p}_convs_4_up")([pooled, x]))
    y = layers.Concatenate(name=f"{p}_cat")(branches)
    y = _cbr(y, ASPP_CHANNELS, 1, f"{p}_project")
    y = layers.Dropout(PROJECT_DROPOUT, name=f"{p}_project_3")(y)
    y = conv2d(ASPP_CHANNELS, 3, padding="same", use_bias=False, name="classifier_1")(y)
    y = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name="classifier_2")(y)
    y = layers.ReLU(name="classifier_3")(y)
    y = conv2d(classes, 1, padding="valid", name="classifier_4")(y)
    out = ResizeLike(name="upsample")([y, inputs])
    if aux_head:
        return {"out": out, "aux": aux_output(ctx, inputs, classes)}
    return out


register_head("deeplabv3", deeplabv3_head, needs=("last",),
              layers=("classifier_*", "aux_classifier_*"), options=("aux_head", "rates"))

"""``"deeplabv3plus"``: segmentation_models_pytorch's ``DeepLabV3Plus`` decoder
(Chen et al., "Encoder-decoder with atrous separable convolution"), SMP
0.6.0's defaults and module names.

``decoder.aspp.0`` is the ASPP (a 1x1 branch, three dilated 3x3 branches --
depthwise-separable by default -- and an image-pooling branch, each
conv-BN-ReLU, then a 1x1 projection with dropout), ``decoder.aspp.1..3`` a
separable 3x3 conv-BN-ReLU; that map is upsampled (bilinear,
``align_corners=True``) to the stride-4 level, concatenated with
``decoder.block1`` (1x1 conv to 48, BN, ReLU on that level), fused by
``decoder.block2`` (separable 3x3 conv-BN-ReLU), and a 1x1
``segmentation_head.0`` with an ``align_corners`` x``upsampling`` resize gives
the logits. SMP builds it at ``encoder_output_stride=16`` (8 allowed): on a
ResNet that is ``output_stride=16, dilation_plan="smp"``. The atrous rates
are SMP's fixed ``(12, 24, 36)`` whatever the stride.
"""

from keras import layers

from zoo.heads import register_head
from zoo.heads import _smp
from zoo.layers import ResizeLike, conv2d

DECODER_CHANNELS = 256
ATROUS_RATES = (12, 24, 36)
HIGHRES_CHANNELS = 48


def separable(x, filters, name, dilation=1):
    """SMP's ``SeparableConv2d``: depthwise 3x3 ``{name}_0`` (no bias), pointwise
    1x1 ``{name}_1`` (no bias: always followed by BN here)."""
    x = layers.DepthwiseConv2D(3, padding="same", dilation_rate=dilation, use_bias=False,
                               name=f"{name}_0")(x)
    return conv2d(filters, 1, padding="valid", use_bias=False, name=f"{name}_1")(x)


def _conv(x, filters, kernel, name, dilation=1, separable_conv=False):
    if separable_conv:
        return separable(x, filters, name, dilation)
    return conv2d(filters, kernel, dilation_rate=dilation, padding="same" if kernel > 1 else "valid",
                  use_bias=False, name=name)(x)


def _cbr(x, filters, kernel, prefix, dilation=1, separable_conv=False):
    """conv ``{prefix}_0``, BN ``{prefix}_1``, ReLU ``{prefix}_2``."""
    x = _conv(x, filters, kernel, f"{prefix}_0", dilation, separable_conv)
    x = _smp.bn(x, f"{prefix}_1")
    return layers.ReLU(name=f"{prefix}_2")(x)


def aspp(x, filters, rates, separable_conv, dropout, name):
    """SMP's ``ASPP`` as ``{name}_convs_{0..4}`` and ``{name}_project``."""
    branches = [_cbr(x, filters, 1, f"{name}_convs_0")]
    for i, rate in enumerate(rates, start=1):
        branches.append(_cbr(x, filters, 3, f"{name}_convs_{i}", rate, separable_conv))
    p = f"{name}_convs_4"
    pooled = layers.GlobalAveragePooling2D(keepdims=True, name=f"{p}_0")(x)
    pooled = conv2d(filters, 1, padding="valid", use_bias=False, name=f"{p}_1")(pooled)
    pooled = _smp.bn(pooled, f"{p}_2")
    pooled = layers.ReLU(name=f"{p}_3")(pooled)
    branches.append(ResizeLike(name=f"{p}_up")([pooled, x]))
    y = layers.Concatenate(name=f"{name}_cat")(branches)
    y = _cbr(y, filters, 1, f"{name}_project")
    return layers.Dropout(dropout, name=f"{name}_project_3")(y)


def deeplabv3plus_head(pyramid, inputs, classes, ctx, encoder_depth=5, decoder_channels=DECODER_CHANNELS,
                       decoder_atrous_rates=ATROUS_RATES, decoder_aspp_separable=True,
                       decoder_aspp_dropout=0.5, upsampling=4):
    """Builds SMP's DeepLabV3+ decoder and segmentation head.

    Args:
        pyramid: the backbone's levels: the deepest one at stride
            ``<= 2**encoder_depth`` and the stride-4 one (``P2``) are read.
        inputs: the model input (the output's size).
        classes: output channels.
        ctx: the assembler's ``HeadContext``.
        encoder_depth: SMP's ``encoder_depth`` (3 .. 5).
        decoder_channels: the ASPP and decoder width.
        decoder_atrous_rates: the three ASPP dilations.
        decoder_aspp_separable: depthwise-separable ASPP branches.
        decoder_aspp_dropout: dropout after the ASPP projection.
        upsampling: the final factor (SMP: 4, from the stride-4 level).

    Returns:
        Logits (N, H, W, classes).
    """
    keys = _smp.levels_upto(pyramid, ctx, encoder_depth)
    deep = keys[0]
    high = "P2" if "P2" in pyramid else keys[-1]
    x = aspp(pyramid[deep], decoder_channels, tuple(decoder_atrous_rates), decoder_aspp_separable,
             decoder_aspp_dropout, "decoder_aspp_0")
    x = separable(x, decoder_channels, "decoder_aspp_1")
    x = _smp.bn(x, "decoder_aspp_2")
    x = layers.ReLU(name="decoder_aspp_3")(x)
    h = _cbr(pyramid[high], HIGHRES_CHANNELS, 1, "decoder_block1")
    x = _smp.up_to(x, h, _smp.factor(ctx.strides[deep], ctx.strides[high]), "bilinear_corners",
                   "decoder_up")
    x = layers.Concatenate(name="decoder_cat")([x, h])
    x = _cbr(x, decoder_channels, 3, "decoder_block2", separable_conv=True)
    return _smp.segmentation_head(x, inputs, classes, kernel=1, upsampling=upsampling)


register_head("deeplabv3plus", deeplabv3plus_head, needs=("last",),
              layers=("decoder_aspp_*", "decoder_block1_*", "decoder_block2_*", "segmentation_head_*"),
              options=("encoder_depth", "decoder_channels", "decoder_atrous_rates", "decoder_aspp_separable",
                       "decoder_aspp_dropout", "upsampling"))

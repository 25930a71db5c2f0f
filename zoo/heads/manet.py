"""``"manet"``: segmentation_models_pytorch's ``MAnet`` decoder (Fan et al.,
multi-scale attention net), SMP 0.6.0's defaults and module names.

``decoder.center`` is the position-wise attention block (PAB) on the deepest
level: 1x1 ``top_conv``/``center_conv`` to ``decoder_pab_channels``, a 3x3
``bottom_conv``; an (HW x HW) map, softmaxed over all its entries as SMP
does, weights the bottom features; the result is read back in SMP's memory
order, added, and a 3x3 ``out_conv`` follows. Each ``decoder.blocks.{i}``
with a skip is a multi-scale fusion attention block (MFAB: ``hl_conv``,
nearest x2, squeeze-excitation ``SE_hl``/``SE_ll`` gates, concat, two
conv-BN-ReLU); the last block (no skip) is a plain two-conv block at stride
1; a 3x3 ``segmentation_head.0`` gives the logits. Levels: strides 2 ..
``2**encoder_depth`` (``P1`` .. ``P5`` on a ResNet at ``output_stride=32``).
"""

import keras
from keras import layers, ops

from zoo.heads import register_head
from zoo.heads import _smp
from zoo.heads.unet import DECODER_CHANNELS
from zoo.layers import conv2d

PAB_CHANNELS = 64
REDUCTION = 16


@keras.saving.register_keras_serializable(package="zoo")
class PositionAttention(keras.layers.Layer):
    """SMP's PAB product: ``softmax(center^T top)`` (over all HW*HW entries)
    times ``bottom``, reshaped as PyTorch's NCHW ``reshape`` reads it."""

    def call(self, inputs):
        top, center, bottom = inputs
        shape = ops.shape(bottom)
        n, h, w, c = shape[0], shape[1], shape[2], shape[3]
        t = ops.reshape(top, (n, h * w, -1))
        q = ops.reshape(center, (n, h * w, -1))
        v = ops.reshape(bottom, (n, h * w, c))
        scores = ops.matmul(q, ops.transpose(t, (0, 2, 1)))
        flat = ops.reshape(scores, (n, -1))  # one softmax over all HW*HW entries, as SMP's
        flat = ops.exp(flat - ops.max(flat, axis=-1, keepdims=True))
        scores = ops.reshape(flat / ops.sum(flat, axis=-1, keepdims=True), (n, h * w, h * w))
        out = ops.matmul(scores, v)  # (n, HW, C) in memory, which torch reads as (n, C, H, W)
        return ops.transpose(ops.reshape(out, (n, c, h, w)), (0, 2, 3, 1))

    def compute_output_shape(self, input_shapes):
        return input_shapes[2]


def pab(x, pab_channels, name="decoder_center"):
    """SMP's ``PABBlock``."""
    channels = int(x.shape[-1])
    top = conv2d(pab_channels, 1, padding="valid", name=f"{name}_top_conv")(x)
    center = conv2d(pab_channels, 1, padding="valid", name=f"{name}_center_conv")(x)
    bottom = conv2d(channels, 3, padding="same", name=f"{name}_bottom_conv")(x)
    sp = PositionAttention(name=f"{name}_attention")([top, center, bottom])
    x = layers.Add(name=f"{name}_add")([x, sp])
    return conv2d(channels, 3, padding="same", name=f"{name}_out_conv")(x)


def _se(x, reduced, channels, name):
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_0")(x)
    s = conv2d(reduced, 1, padding="valid", name=f"{name}_1")(s)
    s = layers.ReLU(name=f"{name}_2")(s)
    return conv2d(channels, 1, padding="valid", activation="sigmoid", name=f"{name}_3")(s)


def mfab(x, skip, filters, factor, use_norm, interpolation, name):
    """SMP's ``MFABBlock`` (a block with a skip)."""
    skip_channels = int(skip.shape[-1])
    x = _smp.conv_relu(x, int(x.shape[-1]), 3, f"{name}_hl_conv_0", use_norm)
    x = _smp.conv_relu(x, skip_channels, 1, f"{name}_hl_conv_1", use_norm)
    x = _smp.up_to(x, skip, factor, interpolation, name)
    reduced = max(1, skip_channels // REDUCTION)
    gate = layers.Add(name=f"{name}_gate")([_se(x, reduced, skip_channels, f"{name}_SE_hl"),
                                            _se(skip, reduced, skip_channels, f"{name}_SE_ll")])
    x = layers.Multiply(name=f"{name}_mul")([x, gate])
    x = layers.Concatenate(name=f"{name}_cat")([x, skip])
    x = _smp.conv_relu(x, filters, 3, f"{name}_conv1", use_norm)
    return _smp.conv_relu(x, filters, 3, f"{name}_conv2", use_norm)


def plain_block(x, filters, factor, use_norm, interpolation, name):
    """SMP's MAnet ``DecoderBlock`` without a skip: upsample, two conv-BN-ReLU."""
    x = _smp.up(x, factor, interpolation, f"{name}_up")
    x = _smp.conv_relu(x, filters, 3, f"{name}_conv1", use_norm)
    return _smp.conv_relu(x, filters, 3, f"{name}_conv2", use_norm)


def manet_head(pyramid, inputs, classes, ctx, encoder_depth=5, decoder_channels=DECODER_CHANNELS,
               decoder_use_norm="batchnorm", decoder_pab_channels=PAB_CHANNELS,
               decoder_interpolation="nearest"):
    """Builds SMP's MAnet decoder and segmentation head.

    Args:
        pyramid: the backbone's levels; ``P1`` .. ``P<encoder_depth>`` are read.
        inputs: the model input (the output's size).
        classes: output channels.
        ctx: the assembler's ``HeadContext``.
        encoder_depth: SMP's ``encoder_depth``.
        decoder_channels: one width per block (``encoder_depth`` of them).
        decoder_use_norm: True/``"batchnorm"`` or False/``"identity"``.
        decoder_pab_channels: the PAB's query/key width.
        decoder_interpolation: ``"nearest"`` or ``"bilinear"``.

    Returns:
        Logits (N, H, W, classes).
    """
    if len(tuple(decoder_channels)) != encoder_depth:
        raise ValueError(f"manet: decoder_channels needs encoder_depth={encoder_depth} widths; "
                         f"got {tuple(decoder_channels)}")
    keys = _smp.levels_upto(pyramid, ctx, encoder_depth)
    widths = list(decoder_channels)[-len(keys):]
    x = pab(pyramid[keys[0]], decoder_pab_channels)
    for i, width in enumerate(widths):
        src = ctx.strides[keys[i]]
        name = f"decoder_blocks_{i}"
        if i + 1 < len(keys):
            skip = keys[i + 1]
            x = mfab(x, pyramid[skip], width, _smp.factor(src, ctx.strides[skip]), decoder_use_norm,
                     decoder_interpolation, name)
        else:
            x = plain_block(x, width, src, decoder_use_norm, decoder_interpolation, name)
    return _smp.segmentation_head(x, inputs, classes, kernel=3)


register_head("manet", manet_head, needs=("last",),
              layers=("decoder_center_*", "decoder_blocks_*", "segmentation_head_*"),
              options=("encoder_depth", "decoder_channels", "decoder_use_norm", "decoder_pab_channels",
                       "decoder_interpolation"))

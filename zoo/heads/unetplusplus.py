"""``"unetplusplus"``: segmentation_models_pytorch's ``UnetPlusPlus`` decoder
(Zhou et al.), SMP 0.6.0's defaults and module names.

Nested dense skips: block ``decoder.blocks.x_{d}_{l}`` upsamples (nearest x2)
node ``x_{d}_{l-1}`` (or level ``d`` for ``l == d``), concatenates the nodes
``x_{d+1..l}_{l}`` and level ``l + 1``, and applies two 3x3 conv-BN-ReLU
(``conv1``/``conv2``, ``scse`` attention on request); ``x_0_{depth}`` lands at
stride 1 without a skip; a 3x3 ``segmentation_head.0`` gives the logits.
Levels are SMP's: strides 2 .. ``2**encoder_depth`` (``P1`` .. ``P5`` on a
ResNet at ``output_stride=32``); a pyramid with fewer levels gets fewer nodes
and takes the last of ``decoder_channels``. (SMP builds a ``decoder.center``
for its VGG encoders but never runs it; :func:`zoo.from_smp` skips its
weights.)
"""

from keras import layers

from zoo.heads import register_head
from zoo.heads import _smp
from zoo.heads.unet import DECODER_CHANNELS


def node(x, skip, ref, filters, up_factor, use_norm, attention_type, interpolation, name):
    """One nested ``DecoderBlock``: upsample ``x`` to ``ref``, concat ``skip``, two conv-BN-ReLU."""
    if ref is not None:
        x = _smp.up_to(x, ref, up_factor, interpolation, name)
    else:
        x = _smp.up(x, up_factor, interpolation, f"{name}_up")
    if skip is not None:
        x = layers.Concatenate(name=f"{name}_cat")([x] + skip)
        x = _smp.attention(x, attention_type, f"{name}_attention1")
    x = _smp.conv_relu(x, filters, 3, f"{name}_conv1", use_norm)
    x = _smp.conv_relu(x, filters, 3, f"{name}_conv2", use_norm)
    return _smp.attention(x, attention_type, f"{name}_attention2")


def unetplusplus_head(pyramid, inputs, classes, ctx, encoder_depth=5, decoder_channels=DECODER_CHANNELS,
                      decoder_use_norm="batchnorm", decoder_attention_type=None,
                      decoder_interpolation="nearest"):
    """Builds SMP's UnetPlusPlus decoder and segmentation head.

    Args:
        pyramid: the backbone's levels; ``P1`` .. ``P<encoder_depth>`` are read.
        inputs: the model input (the output's size).
        classes: output channels.
        ctx: the assembler's ``HeadContext``.
        encoder_depth: SMP's ``encoder_depth``.
        decoder_channels: one width per column (``encoder_depth`` of them).
        decoder_use_norm: True/``"batchnorm"`` or False/``"identity"``.
        decoder_attention_type: None or ``"scse"``.
        decoder_interpolation: ``"nearest"`` or ``"bilinear"``.

    Returns:
        Logits (N, H, W, classes).
    """
    if len(tuple(decoder_channels)) != encoder_depth:
        raise ValueError(f"unetplusplus: decoder_channels needs encoder_depth={encoder_depth} widths; "
                         f"got {tuple(decoder_channels)}")
    keys = _smp.levels_upto(pyramid, ctx, encoder_depth)
    feats = [pyramid[k] for k in keys]
    strides = [ctx.strides[k] for k in keys]
    depth = len(feats) - 1
    widths = list(decoder_channels)[-(depth + 1):]
    kw = dict(use_norm=decoder_use_norm, attention_type=decoder_attention_type,
              interpolation=decoder_interpolation)
    dense = {}
    for layer in range(depth):
        for d in range(depth - layer):
            name = f"decoder_blocks_x_{d}_{d + layer}"
            if layer == 0:
                x, l = feats[d], d
                filters = widths[d] if d == 0 else int(feats[d + 1].shape[-1])
                skip = [feats[d + 1]]
                src = strides[d]
            else:
                l = d + layer
                x = dense[(d, l - 1)]
                skip = [dense[(i, l)] for i in range(d + 1, l + 1)] + [feats[l + 1]]
                filters = widths[l] if d == 0 else int(feats[l + 1].shape[-1])
                src = strides[l]
            dense[(d, l)] = node(x, skip, feats[l + 1], filters, _smp.factor(src, strides[l + 1]),
                                 name=name, **kw)
    x = dense[(0, depth - 1)] if depth else feats[0]
    x = node(x, None, None, widths[-1], strides[-1], name=f"decoder_blocks_x_0_{depth}", **kw)
    return _smp.segmentation_head(x, inputs, classes, kernel=3)


register_head("unetplusplus", unetplusplus_head, needs=("last",),
              layers=("decoder_blocks_x_*", "segmentation_head_*"),
              options=("encoder_depth", "decoder_channels", "decoder_use_norm", "decoder_attention_type",
                       "decoder_interpolation"))

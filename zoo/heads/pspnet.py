"""``"pspnet"``: segmentation_models_pytorch's ``PSPNet`` decoder (Zhao et
al.), SMP 0.6.0's defaults and module names.

On the deepest level at stride ``<= 2**encoder_depth`` (SMP's default depth 3:
``P3``), ``decoder.psp.blocks.{i}`` average-pool it to 1, 2, 3 and 6 bins,
1x1 conv-BN-ReLU each to a quarter of its channels (no BN on the 1x1 bin),
and resize back (bilinear, ``align_corners=True``); the four and the level
are concatenated, ``decoder.conv`` (1x1 conv-BN-ReLU to 512) and spatial
dropout follow, and a 3x3 ``segmentation_head.0`` with an ``align_corners``
x``upsampling`` resize gives the logits.
"""

from keras import layers

from zoo.heads import register_head
from zoo.heads import _smp

SIZES = (1, 2, 3, 6)
OUT_CHANNELS = 512


def psp_block(x, filters, size, use_norm, name):
    """``PSPBlock``: adaptive average pool to ``size``, 1x1 conv-BN-ReLU, resize back."""
    y = _smp.AdaptiveAvgPool(size, name=f"{name}_pool_0")(x)
    y = _smp.conv_relu(y, filters, 1, f"{name}_pool_1", "identity" if size == 1 else use_norm)
    return _smp.ResizeCorners(name=f"{name}_up")([y, x])


def pspnet_head(pyramid, inputs, classes, ctx, encoder_depth=3, psp_out_channels=OUT_CHANNELS,
                decoder_use_norm="batchnorm", psp_dropout=0.2, upsampling=None):
    """Builds SMP's PSPNet decoder and segmentation head.

    Args:
        pyramid: the backbone's levels.
        inputs: the model input (the output's size).
        classes: output channels.
        ctx: the assembler's ``HeadContext``.
        encoder_depth: SMP's ``encoder_depth`` (default 3: the stride-8 level).
        psp_out_channels: ``decoder.conv``'s width.
        decoder_use_norm: True/``"batchnorm"`` or False/``"identity"``.
        psp_dropout: ``Dropout2d`` rate.
        upsampling: the final factor; None takes the level's stride (SMP's 8).

    Returns:
        Logits (N, H, W, classes).
    """
    key = _smp.levels_upto(pyramid, ctx, encoder_depth)[0]
    x = pyramid[key]
    filters = int(x.shape[-1]) // len(SIZES)
    branches = [psp_block(x, filters, s, decoder_use_norm, f"decoder_psp_blocks_{i}")
                for i, s in enumerate(SIZES)]
    x = layers.Concatenate(name="decoder_psp_cat")(branches + [x])
    x = _smp.conv_relu(x, psp_out_channels, 1, "decoder_conv", decoder_use_norm)
    x = layers.SpatialDropout2D(psp_dropout, name="decoder_dropout")(x)
    return _smp.segmentation_head(x, inputs, classes, kernel=3,
                                  upsampling=ctx.strides[key] if upsampling is None else upsampling)


register_head("pspnet", pspnet_head, needs=("last",),
              layers=("decoder_psp_*", "decoder_conv_*", "segmentation_head_*"),
              options=("encoder_depth", "psp_out_channels", "decoder_use_norm", "psp_dropout",
                       "upsampling"))

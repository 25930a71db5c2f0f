"""``"upernet"``: segmentation_models_pytorch's ``UPerNet`` decoder (Xiao et
al., unified perceptual parsing), SMP 0.6.0's defaults and module names.

The levels from stride 4 to ``2**encoder_depth`` (``P2`` .. ``P5``) are each
channel-normalised (``decoder.feature_norms.{i}``, LayerNorm eps 1e-6); a PSP
module (``decoder.psp``: pools of 1, 2, 3, 6 bins, 1x1 conv-BN-ReLU each,
bilinear back, concat, 3x3 ``out_conv``) runs on the deepest; a top-down path
adds ``fpn_lateral_blocks`` (1x1 conv-BN-ReLU) to the bilinearly resized
state and refines each sum with ``fpn_conv_blocks``; everything is resized to
the stride-4 map, concatenated (shallow first), fused by ``fusion_block``,
and a 1x1 ``segmentation_head.0`` with an ``align_corners`` x``upsampling``
resize gives the logits.
"""

from keras import layers

from zoo.heads import register_head
from zoo.heads import _smp
from zoo.layers import ResizeLike

DECODER_CHANNELS = 256
SIZES = (1, 2, 3, 6)
LN_EPSILON = 1e-6


def upernet_head(pyramid, inputs, classes, ctx, encoder_depth=5, decoder_channels=DECODER_CHANNELS,
                 decoder_use_norm="batchnorm", upsampling=None):
    """Builds SMP's UPerNet decoder and segmentation head.

    Args:
        pyramid: the backbone's levels; strides 4 .. ``2**encoder_depth`` are read.
        inputs: the model input (the output's size).
        classes: output channels.
        ctx: the assembler's ``HeadContext``.
        encoder_depth: SMP's ``encoder_depth`` (3 .. 5).
        decoder_channels: the decoder's width.
        decoder_use_norm: True/``"batchnorm"`` or False/``"identity"``.
        upsampling: the final factor; None takes the shallowest level's
            stride (SMP's 4).

    Returns:
        Logits (N, H, W, classes).
    """
    keys = _smp.levels_upto(pyramid, ctx, encoder_depth, lowest=2) or \
        _smp.levels_upto(pyramid, ctx, encoder_depth)[:1]
    shallow_first = keys[::-1]
    feats = [layers.LayerNormalization(epsilon=LN_EPSILON, name=f"decoder_feature_norms_{i}")(pyramid[k])
             for i, k in enumerate(shallow_first)]
    deep = feats[-1]
    branches = [deep]
    for i, size in enumerate(SIZES):
        p = f"decoder_psp_blocks_{i}"
        y = _smp.AdaptiveAvgPool(size, name=f"{p}_0")(deep)
        y = _smp.conv_relu(y, decoder_channels, 1, f"{p}_1", decoder_use_norm)
        branches.append(ResizeLike(name=f"{p}_up")([y, deep]))
    x = layers.Concatenate(name="decoder_psp_cat")(branches)
    fpn = [_smp.conv_relu(x, decoder_channels, 3, "decoder_psp_out_conv", "batchnorm")]
    for i, lateral in enumerate(feats[:-1][::-1]):
        p = f"decoder_fpn_lateral_blocks_{i}"
        lat = _smp.conv_relu(lateral, decoder_channels, 1, f"{p}_conv_norm_relu", decoder_use_norm)
        state = ResizeLike(name=f"{p}_up")([fpn[-1], lat])
        fpn.append(layers.Add(name=f"{p}_add")([state, lat]))
    for i in range(1, len(fpn)):
        fpn[i] = _smp.conv_relu(fpn[i], decoder_channels, 3, f"decoder_fpn_conv_blocks_{i - 1}",
                                decoder_use_norm)
    target = fpn[-1]
    resized = [ResizeLike(name=f"decoder_fuse_up_{i}")([f, target]) if i < len(fpn) - 1 else f
               for i, f in enumerate(fpn)]
    x = layers.Concatenate(name="decoder_fuse_cat")(resized[::-1]) if len(resized) > 1 else resized[0]
    x = _smp.conv_relu(x, decoder_channels, 3, "decoder_fusion_block", decoder_use_norm)
    finest = ctx.strides[keys[-1]]
    return _smp.segmentation_head(x, inputs, classes, kernel=1,
                                  upsampling=finest if upsampling is None else upsampling)


register_head("upernet", upernet_head, needs=("last",),
              layers=("decoder_feature_norms_*", "decoder_psp_*", "decoder_fpn_*", "decoder_fusion_block_*",
                      "segmentation_head_*"),
              options=("encoder_depth", "decoder_channels", "decoder_use_norm", "upsampling"))

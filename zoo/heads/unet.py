"""``"unet"``: segmentation_models_pytorch's ``Unet`` decoder (Ronneberger et
al.), SMP 0.6.0's defaults and module names.

From the deepest level, each decoder block upsamples (nearest) to the next
shallower level, concatenates it, and applies two 3x3 conv-BN-ReLU
(``decoder.blocks.{i}.conv1``/``conv2``, with ``scse`` attention on
``decoder_attention_type="scse"``); the last block has no skip and lands at
stride 1; a 3x3 ``segmentation_head.0`` gives the logits. SMP reads the
encoder's levels at strides 2 .. ``2**encoder_depth``; on a zoo pyramid those
are ``P1`` .. ``P<depth>`` (ResNet at ``output_stride=32``). A pyramid with
fewer levels (a dilated backbone) gets the same number of blocks: the first
ones then stay at the deepest level's stride without a skip.
"""

from keras import layers

from zoo.heads import register_head
from zoo.heads import _smp

DECODER_CHANNELS = (256, 128, 64, 32, 16)


def decoder_block(x, skip, filters, up_factor, use_norm, attention_type, interpolation, name):
    """One ``UnetDecoderBlock``: upsample, concat the skip, two conv-BN-ReLU.

    Args:
        x: the deeper map.
        skip: the skip level, or None.
        filters: output channels.
        up_factor: the upsampling factor (2, or 1 at a dilated level).
        use_norm: SMP's ``decoder_use_norm``.
        attention_type: None or ``"scse"``.
        interpolation: ``"nearest"`` or ``"bilinear"``.
        name: ``decoder_blocks_{i}``.

    Returns:
        The block's output.
    """
    if skip is not None:
        x = _smp.up_to(x, skip, up_factor, interpolation, name)
        x = layers.Concatenate(name=f"{name}_cat")([x, skip])
        x = _smp.attention(x, attention_type, f"{name}_attention1")
    else:
        x = _smp.up(x, up_factor, interpolation, f"{name}_up")
    x = _smp.conv_relu(x, filters, 3, f"{name}_conv1", use_norm)
    x = _smp.conv_relu(x, filters, 3, f"{name}_conv2", use_norm)
    return _smp.attention(x, attention_type, f"{name}_attention2")


def unet_head(pyramid, inputs, classes, ctx, encoder_depth=5, decoder_channels=DECODER_CHANNELS,
              decoder_use_norm="batchnorm", decoder_attention_type=None,
              decoder_interpolation="nearest", decoder_add_center_block=False):
    """Builds SMP's Unet decoder and segmentation head.

    Args:
        pyramid: the backbone's levels; ``P1`` .. ``P<encoder_depth>`` are read.
        inputs: the model input (the output's size).
        classes: output channels.
        ctx: the assembler's ``HeadContext``.
        encoder_depth: SMP's ``encoder_depth`` (levels up to stride ``2**depth``).
        decoder_channels: one width per block (``encoder_depth`` of them).
        decoder_use_norm: True/``"batchnorm"`` or False/``"identity"``.
        decoder_attention_type: None or ``"scse"``.
        decoder_interpolation: ``"nearest"`` or ``"bilinear"``.
        decoder_add_center_block: SMP's ``add_center_block`` (``decoder.center``).

    Returns:
        Logits (N, H, W, classes).
    """
    decoder_channels = tuple(decoder_channels)
    if len(decoder_channels) != encoder_depth:
        raise ValueError(f"unet: decoder_channels needs encoder_depth={encoder_depth} widths; "
                         f"got {decoder_channels}")
    keys = _smp.levels_upto(pyramid, ctx, encoder_depth)
    if not keys:
        raise ValueError(f"unet needs a level at stride 2 .. {2 ** encoder_depth}; {ctx.backbone} "
                         f"has {ctx.describe()}")
    head, skips = keys[0], keys[1:]
    x = pyramid[head]
    if decoder_add_center_block:
        channels = int(x.shape[-1])
        x = _smp.conv_relu(x, channels, 3, "decoder_center_0", decoder_use_norm)
        x = _smp.conv_relu(x, channels, 3, "decoder_center_1", decoder_use_norm)
    # Block targets: the skips' strides, then stride 1; missing deep levels
    # (a dilated backbone) give leading blocks that keep the head's stride.
    targets = [(k, ctx.strides[k]) for k in skips][: encoder_depth - 1] + [(None, 1)]
    targets = [(None, ctx.strides[head])] * (encoder_depth - len(targets)) + targets
    stride = ctx.strides[head]
    for i, ((key, target), width) in enumerate(zip(targets, decoder_channels)):
        x = decoder_block(x, pyramid[key] if key else None, width, _smp.factor(stride, target),
                          decoder_use_norm, decoder_attention_type, decoder_interpolation,
                          f"decoder_blocks_{i}")
        stride = min(stride, target)
    return _smp.segmentation_head(x, inputs, classes, kernel=3)


register_head("unet", unet_head, needs=("last",),
              layers=("decoder_blocks_*", "decoder_center_*", "segmentation_head_*"),
              options=("encoder_depth", "decoder_channels", "decoder_use_norm",
                       "decoder_attention_type", "decoder_interpolation", "decoder_add_center_block"))

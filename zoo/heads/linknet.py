"""``"linknet"``: segmentation_models_pytorch's ``Linknet`` decoder (Chaurasia
& Culurciello), SMP 0.6.0's defaults and module names.

From the deepest level, each ``decoder.blocks.{i}`` is a 1x1 conv-BN-ReLU to a
quarter of its input channels (``block.0``), a 4x4 stride-2 transposed
conv-BN-ReLU (``block.1``), a 1x1 conv-BN-ReLU to the next level's channels
(``block.2``), plus that level (the last block ends at 32 channels, stride 1,
with no skip); a 1x1 ``segmentation_head.0`` gives the logits. SMP reads the
levels at strides 2 .. ``2**encoder_depth`` (``P1`` .. ``P5`` on a ResNet at
``output_stride=32``); one block per level.
"""

from keras import layers

from zoo.heads import register_head
from zoo.heads import _smp

PREFINAL_CHANNELS = 32


def decoder_block(x, skip, filters, use_norm, name):
    """``DecoderBlock``: 1x1 reduce, x2 transposed conv, 1x1 expand, + skip.

    Args:
        x: the deeper map.
        skip: the next level, or None.
        filters: output channels.
        use_norm: SMP's ``decoder_use_norm``.
        name: ``decoder_blocks_{i}``.

    Returns:
        The block's output.
    """
    inner = int(x.shape[-1]) // 4
    kind = _smp.norm_kind(use_norm)
    x = _smp.conv_relu(x, inner, 1, f"{name}_block_0", use_norm)
    x = _smp.TorchConvTranspose2D(inner, 4, strides=2, padding="same",
                               name=f"{name}_block_1_0")(x)
    if kind == "batchnorm":
        x = _smp.bn(x, f"{name}_block_1_1")
    x = layers.ReLU(name=f"{name}_block_1_2")(x)
    x = _smp.conv_relu(x, filters, 1, f"{name}_block_2", use_norm)
    if skip is None:
        return x
    x = _smp.fit(x, skip, f"{name}_fit")
    return layers.Add(name=f"{name}_add")([x, skip])


def linknet_head(pyramid, inputs, classes, ctx, encoder_depth=5, decoder_use_norm="batchnorm"):
    """Builds SMP's Linknet decoder and segmentation head.

    Args:
        pyramid: the backbone's levels; ``P1`` .. ``P<encoder_depth>`` are read.
        inputs: the model input (the output's size).
        classes: output channels.
        ctx: the assembler's ``HeadContext``.
        encoder_depth: SMP's ``encoder_depth``.
        decoder_use_norm: True/``"batchnorm"`` or False/``"identity"``.

    Returns:
        Logits (N, H, W, classes).
    """
    keys = _smp.levels_upto(pyramid, ctx, encoder_depth)
    x = pyramid[keys[0]]
    skips = keys[1:]
    for i in range(len(keys)):
        skip = pyramid[skips[i]] if i < len(skips) else None
        filters = int(skip.shape[-1]) if skip is not None else PREFINAL_CHANNELS
        x = decoder_block(x, skip, filters, decoder_use_norm, f"decoder_blocks_{i}")
    return _smp.segmentation_head(x, inputs, classes, kernel=1)


register_head("linknet", linknet_head, needs=("last",),
              layers=("decoder_blocks_*", "segmentation_head_*"),
              options=("encoder_depth", "decoder_use_norm"))

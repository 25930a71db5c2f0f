"""``"fpn"``: segmentation_models_pytorch's ``FPN`` decoder (Kirillov et al.'s
panoptic FPN head), SMP 0.6.0's defaults and module names.

A 1x1 ``decoder.p5`` on the deepest level; ``decoder.p4``/``p3``/``p2`` add
a 1x1 ``skip_conv`` of the next shallower level to the nearest-upsampled map;
each of the four maps goes through ``decoder.seg_blocks.{i}`` (3x3
conv-GroupNorm(32)-ReLU blocks, each followed by an ``align_corners`` x2
upsampling, down to the shallowest level's stride); the maps are summed (or
concatenated, ``decoder_merge_policy="cat"``), then spatial dropout, a 1x1
``segmentation_head.0`` and an ``align_corners`` x``upsampling`` resize.
SMP reads the four deepest of the levels at strides up to
``2**encoder_depth`` (``P2`` .. ``P5`` on a ResNet at ``output_stride=32``);
a pyramid with fewer levels gets fewer ``p``/``seg_blocks``.
"""

from keras import layers

from zoo.heads import register_head
from zoo.heads import _smp
from zoo.layers import conv2d

PYRAMID_CHANNELS = 256
SEGMENTATION_CHANNELS = 128
GROUPS = 32


def seg_block(x, filters, n_upsamples, name):
    """``SegmentationBlock``: ``max(1, n)`` conv-GN-ReLU, each but a lone
    one followed by an ``align_corners`` x2 upsampling.

    Args:
        x: a pyramid map.
        filters: ``segmentation_channels``.
        n_upsamples: the number of x2 steps to the finest level.
        name: ``decoder_seg_blocks_{i}``.

    Returns:
        The map at the finest level's stride.
    """
    for j in range(max(1, n_upsamples)):
        p = f"{name}_block_{j}_block"
        x = conv2d(filters, 3, padding="same", use_bias=False, name=f"{p}_0")(x)
        x = _smp.GroupNorm(GROUPS, epsilon=_smp.GN_EPSILON, name=f"{p}_1")(x)
        x = layers.ReLU(name=f"{p}_2")(x)
        if n_upsamples:
            x = _smp.up(x, 2, "bilinear_corners", f"{p}_up")
    return x


def fpn_head(pyramid, inputs, classes, ctx, encoder_depth=5, decoder_pyramid_channels=PYRAMID_CHANNELS,
             decoder_segmentation_channels=SEGMENTATION_CHANNELS, decoder_merge_policy="add",
             decoder_dropout=0.2, decoder_interpolation="nearest", upsampling=None):
    """Builds SMP's FPN decoder and segmentation head.

    Args:
        pyramid: the backbone's levels.
        inputs: the model input (the output's size).
        classes: output channels.
        ctx: the assembler's ``HeadContext``.
        encoder_depth: SMP's ``encoder_depth`` (3 .. 5).
        decoder_pyramid_channels: ``pyramid_channels``.
        decoder_segmentation_channels: ``segmentation_channels``.
        decoder_merge_policy: ``"add"`` or ``"cat"``.
        decoder_dropout: ``Dropout2d`` rate.
        decoder_interpolation: the top-down upsampling, ``"nearest"`` or ``"bilinear"``.
        upsampling: the final factor; None takes the finest level's stride
            (SMP's default 4 on ``P2``).

    Returns:
        Logits (N, H, W, classes).
    """
    if decoder_merge_policy not in ("add", "cat"):
        raise ValueError(f"fpn: decoder_merge_policy must be 'add' or 'cat'; got {decoder_merge_policy!r}")
    keys = _smp.levels_upto(pyramid, ctx, encoder_depth)[:4]
    if not keys:
        raise ValueError(f"fpn needs a level at stride 2 .. {2 ** encoder_depth}; {ctx.backbone} "
                         f"has {ctx.describe()}")
    p = conv2d(decoder_pyramid_channels, 1, padding="valid", name="decoder_p5")(pyramid[keys[0]])
    maps = [p]
    for i, key in enumerate(keys[1:]):
        name = f"decoder_p{4 - i}"
        deeper = maps[-1]
        skip = conv2d(decoder_pyramid_channels, 1, padding="valid", name=f"{name}_skip_conv")(pyramid[key])
        deeper = _smp.up_to(deeper, skip, _smp.factor(ctx.strides[keys[i]], ctx.strides[key]),
                            decoder_interpolation, name)
        maps.append(layers.Add(name=f"{name}_add")([deeper, skip]))
    finest = ctx.strides[keys[-1]]
    segs = []
    for i, (key, m) in enumerate(zip(keys, maps)):
        n_up = (ctx.strides[key] // finest).bit_length() - 1
        s = seg_block(m, decoder_segmentation_channels, n_up, f"decoder_seg_blocks_{i}")
        segs.append(_smp.fit(s, maps[-1], f"decoder_seg_blocks_{i}_fit") if n_up else s)
    if len(segs) == 1:
        x = segs[0]
    elif decoder_merge_policy == "add":
        x = layers.Add(name="decoder_merge")(segs)
    else:
        x = layers.Concatenate(name="decoder_merge")(segs)
    x = layers.SpatialDropout2D(decoder_dropout, name="decoder_dropout")(x)
    return _smp.segmentation_head(x, inputs, classes, kernel=1,
                                  upsampling=finest if upsampling is None else upsampling)


register_head("fpn", fpn_head, needs=("last",),
              layers=("decoder_p2*", "decoder_p3*", "decoder_p4*", "decoder_p5", "decoder_seg_blocks_*",
                      "segmentation_head_*"),
              options=("encoder_depth", "decoder_pyramid_channels", "decoder_segmentation_channels",
                       "decoder_merge_policy", "decoder_dropout", "decoder_interpolation", "upsampling"))

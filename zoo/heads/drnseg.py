"""``"drnseg"``: fyu/drn's DRNSeg head: a 1x1 ``seg`` conv on the stride-8
last level, then the frozen per-channel x8 bilinear ``up``
(``ConvTranspose2d(C, C, 16, stride=8, padding=4, groups=C)``), cropped to
the input."""

from zoo.heads import register_head
from zoo.layers import CropLike, DepthwiseConv2DTranspose, conv2d

UP_KERNEL, UP_STRIDE, UP_CROP = 16, 8, 4


def drnseg_head(pyramid, inputs, classes, ctx):
    """Builds the head (see the module docstring); the last level must have stride 8."""
    if ctx.output_stride != UP_STRIDE:
        raise ValueError(
            f"head 'drnseg' upsamples x8 and needs the last level at stride 8 "
            f"(output_stride=8); {ctx.backbone} was built with output_stride="
            f"{ctx.output_stride} ({ctx.describe()})"
        )
    x = conv2d(classes, 1, padding="valid", name="seg")(pyramid[ctx.last])
    x = DepthwiseConv2DTranspose(UP_KERNEL, UP_STRIDE, crop=UP_CROP, trainable=False, name="up")(x)
    return CropLike(0, name="crop")([x, inputs])


register_head("drnseg", drnseg_head, needs=("last",), layers=("seg", "up"), output_stride=8)

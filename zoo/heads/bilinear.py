"""``"bilinear"``: a 1x1 score on the last level, bilinearly resized to the
input (VGG's and Inception's dense mode). Inception adds FCN-style skips: the
score is resized onto shallower levels and fused with their zero-initialised
1x1 scores before the final resize."""

from keras import layers

from zoo.heads import register_head
from zoo.layers import ResizeLike, conv2d


def bilinear_head(pyramid, inputs, classes, ctx, skips=None):
    """Builds the head.

    Args:
        pyramid: the backbone's stride-keyed levels.
        inputs: the model input (the output's size).
        classes: output channels.
        ctx: the assembler's ``HeadContext``; ``ctx.extras["bilinear_skips"]``
            gives a backbone's default skips.
        skips: ``[(name, level key), ...]`` deep to shallow; None takes the
            backbone's default (none for most).

    Returns:
        Logits (N, H, W, classes).
    """
    if skips is None:
        skips = ctx.extras.get("bilinear_skips", ())
    x = conv2d(classes, 1, name="score")(pyramid[ctx.last])
    for src, key in skips:
        if key not in pyramid:
            raise ValueError(f"head 'bilinear' skip {src!r} needs level {key}; "
                             f"{ctx.backbone} has {ctx.describe()}")
        feat = pyramid[key]
        x = ResizeLike(name=f"up_{src}")([x, feat])
        skip = conv2d(classes, 1, kernel_initializer="zeros", name=f"score_{src}")(feat)
        x = layers.Add(name=f"fuse_{src}")([x, skip])
    return ResizeLike(name="upscore")([x, inputs])


register_head("bilinear", bilinear_head, needs=("last",), layers=("score", "score_*"),
              options=("skips",))

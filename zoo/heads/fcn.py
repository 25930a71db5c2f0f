"""FCN heads.

* ``"fcn"``: torchvision's ``FCNHead`` (3x3 conv to C/4 without bias, BN,
  ReLU, dropout 0.1, 1x1 conv) on the last level, bilinearly resized to the
  input; ``aux_head=True`` adds torchvision's auxiliary FCNHead on the stage
  before the last (``layer3``). Layer names are torchvision's
  (``classifier.0`` -> ``classifier_0``).
* ``"fcn32s"``, ``"fcn16s"``, ``"fcn8s"``: Long et al.'s Caffe nets: a
  zero-initialised score on the stride-32 level, fused with zero-initialised
  scores of the stride-16/8 levels after frozen, bilinear-initialised
  transposed convolutions. A backbone may supply Caffe's exact crop offsets
  and its fc6/fc7 body (VGG16 with the pad-100 first convolution, the
  registered ``fcn*`` models); otherwise maps are aligned by the levels'
  strides: a ``2s`` kernel at stride ``s`` puts input cell ``i`` at output
  ``s*i + s/2``, so the crop offset is ``s/2``.
"""

from keras import layers

from zoo.heads import register_head
from zoo.layers import BilinearInitializer, CropLike, FitLike, ResizeLike, conv2d

FCN_DROPOUT = 0.1
FCN_BN_EPSILON = 1e-5  # torchvision's BatchNorm2d

# Per head: the skip levels fused (deep to shallow) and the final upsampler.
CAFFE_FCN = {
    "fcn32s": {"skips": (), "final": ("upscore", 32)},
    "fcn16s": {"skips": ("P4",), "final": ("upscore16", 16)},
    "fcn8s": {"skips": ("P4", "P3"), "final": ("upscore8", 8)},
}
SKIP_UPSAMPLERS = ("upscore2", "upscore_pool4")


def torchvision_fcn_block(x, classes, prefix, inter=None):
    """torchvision's ``FCNHead`` as layers ``{prefix}_0`` .. ``{prefix}_4``."""
    inter = inter or x.shape[-1] // 4
    x = conv2d(inter, 3, padding="same", use_bias=False, name=f"{prefix}_0")(x)
    x = layers.BatchNormalization(epsilon=FCN_BN_EPSILON, momentum=0.9, name=f"{prefix}_1")(x)
    x = layers.Activation("relu", name=f"{prefix}_2")(x)
    x = layers.Dropout(FCN_DROPOUT, name=f"{prefix}_3")(x)
    return conv2d(classes, 1, padding="valid", name=f"{prefix}_4")(x)


def aux_output(ctx, inputs, classes):
    """torchvision's auxiliary FCNHead on the stage before the last, resized."""
    aux = torchvision_fcn_block(ctx.aux, classes, "aux_classifier")
    return ResizeLike(name="aux_upsample")([aux, inputs])


def fcn_head(pyramid, inputs, classes, ctx, aux_head=False):
    """torchvision's FCN head; ``{"out", "aux"}`` with ``aux_head=True``."""
    out = ResizeLike(name="upsample")([torchvision_fcn_block(pyramid[ctx.last], classes, "classifier"),
                                       inputs])
    if aux_head:
        return {"out": out, "aux": aux_output(ctx, inputs, classes)}
    return out


def _upsample(x, classes, stride, name):
    return layers.Conv2DTranspose(
        classes, 2 * stride, strides=stride, use_bias=False, kernel_initializer=BilinearInitializer(),
        trainable=False, name=name,
    )(x)


def caffe_fcn(kind):
    """The build function of ``fcn32s``/``fcn16s``/``fcn8s``."""
    spec = CAFFE_FCN[kind]

    def build(pyramid, inputs, classes, ctx):
        exact = ctx.extras.get("fcn")  # {"body": fn, "offsets": {...}} for VGG's pad-100 FCN
        if exact:
            x = exact["body"](pyramid["P5"], classes)
        else:
            x = conv2d(classes, 1, padding="valid", kernel_initializer="zeros", name="score_fr")(pyramid["P5"])
        for i, key in enumerate(spec["skips"]):
            src = f"pool{key[1:]}"
            x = _upsample(x, classes, 2, SKIP_UPSAMPLERS[i])
            skip = conv2d(classes, 1, padding="valid", kernel_initializer="zeros",
                          name=f"score_{src}")(pyramid[key])
            if exact:
                skip = CropLike(exact["offsets"][src], name=f"score_{src}c")([skip, x])
            else:
                x = FitLike(1, name=f"upscore_{src}c")([x, skip])
            x = layers.Add(name=f"fuse_{src}")([x, skip])
        up_name, stride = spec["final"]
        x = _upsample(x, classes, stride, up_name)
        if exact:
            return CropLike(exact["offsets"][up_name], name="score")([x, inputs])
        return FitLike(stride // 2, name="score")([x, inputs])

    build.__doc__ = f"""Long et al.'s {kind}: skips {spec['skips'] or 'none'}, final x{spec['final'][1]}."""
    return build


register_head("fcn", fcn_head, needs=("last",), layers=("classifier_*", "aux_classifier_*"),
              options=("aux_head",))
for _kind, _spec in CAFFE_FCN.items():
    register_head(_kind, caffe_fcn(_kind), needs=("P5",) + _spec["skips"],
                  layers=("score_fr", "score_pool*", "upscore*"), output_stride=32)

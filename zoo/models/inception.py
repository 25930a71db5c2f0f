"""The Inception family: GoogLeNet (Szegedy et al., "Going deeper with
convolutions") and Inception v3 (Szegedy et al., "Rethinking the Inception
architecture"), with the 1x1-reduction savings made visible.

* GoogLeNet defaults to torchvision's variant (BatchNorm after every conv,
  eps 1e-3; the "5x5" branch uses 3x3 kernels; a 2x2 ``maxpool4``; ceil-mode
  max pools), whose layer names map 1:1 to torchvision's state_dict keys
  (``inception3a.branch2.0.conv`` <-> ``inception3a_branch2_0_conv``), so
  ``googlenet-1378be20.pth`` loads as is. ``batch_norm=False`` is the paper's
  network: biases, true 5x5 kernels, LRN after the first two stages, 3x3
  ``maxpool4``, 5x5/3 average pools in the auxiliary heads.
* InceptionV3 is keras.applications' graph with explicit names (torchvision's
  module names: ``Conv2d_1a_3x3``, ``Mixed_5b_branch5x5_1`` ...; the
  concatenations keep Keras's ``mixed0`` ... ``mixed10``). keras.applications
  names its layers automatically (``conv2d_17``), and its legacy ``.h5`` files
  load by layer order, so the converter pairs the file's weighted layers, in
  file order, with :data:`INCEPTION_V3_FILE_ORDER` (generated from
  keras.applications' layer order; the tests check it).

Ceil-mode max pools (torchvision, Caffe) are a one-pixel bottom/right zero pad
then a "valid" pool: every pooled map follows a ReLU, so a zero is never above
the window's real maximum, and the output sizes and windows equal PyTorch's
``ceil_mode=True`` for every input size.
"""

import keras
from keras import layers, ops

from zoo.analysis.info import count_parameters
from zoo.assembler import Backbone, Classifier, Stages
from zoo.layers import conv2d, conv_bn_relu, inception_block
from zoo.registry import Option, register_model
from zoo.weights.convert import WeightMap
from zoo.weights.readers.errors import CheckpointError

# ----------------------------------------------------------------- configs

# The paper's table (inception 3a .. 5b):
# (1x1, reduce 3x3, 3x3, reduce 5x5, 5x5, pool proj).
GOOGLENET_BLOCKS = {
    "inception3a": (64, 96, 128, 16, 32, 32),
    "inception3b": (128, 128, 192, 32, 96, 64),
    "inception4a": (192, 96, 208, 16, 48, 64),
    "inception4b": (160, 112, 224, 24, 64, 64),
    "inception4c": (128, 128, 256, 24, 64, 64),
    "inception4d": (112, 144, 288, 32, 64, 64),
    "inception4e": (256, 160, 320, 32, 128, 128),
    "inception5a": (256, 160, 320, 32, 128, 128),
    "inception5b": (384, 192, 384, 48, 128, 128),
}
# Stages: blocks, then the ceil-mode max pool that follows (None: none).
GOOGLENET_STAGES = (
    ("inception3", ("inception3a", "inception3b"), "maxpool3"),
    ("inception4", ("inception4a", "inception4b", "inception4c", "inception4d", "inception4e"), "maxpool4"),
    ("inception5", ("inception5a", "inception5b"), None),
)
# Auxiliary classifiers: name -> the block whose output feeds it.
GOOGLENET_AUX = {"aux1": "inception4a", "aux2": "inception4d"}

# batch_norm -> the variant's differences.
GOOGLENET_VARIANTS = {
    True: {"kernel_5x5": 3, "maxpool4": 2, "lrn": False, "aux_pool": "adaptive", "dropout": 0.2},
    False: {"kernel_5x5": 5, "maxpool4": 3, "lrn": True, "aux_pool": "paper", "dropout": 0.4},
}
# torchvision's transform_input: ImageNet-normalised input -> (x - 0.5) / 0.5.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The 1x1 reductions of each block type: reduction -> the convs it feeds.
GOOGLENET_REDUCTIONS = {"branch2_0": ("branch2_1",), "branch3_0": ("branch3_1",)}

# Inception v3: (Keras concat name, torchvision module name, block type, arg).
INCEPTION_V3_BLOCKS = (
    ("mixed0", "Mixed_5b", "a", 32),
    ("mixed1", "Mixed_5c", "a", 64),
    ("mixed2", "Mixed_5d", "a", 64),
    ("mixed3", "Mixed_6a", "b", None),
    ("mixed4", "Mixed_6b", "c", 128),
    ("mixed5", "Mixed_6c", "c", 160),
    ("mixed6", "Mixed_6d", "c", 160),
    ("mixed7", "Mixed_6e", "c", 192),
    ("mixed8", "Mixed_7a", "d", None),
    ("mixed9", "Mixed_7b", "e", None),
    ("mixed10", "Mixed_7c", "e", None),
)
INCEPTION_V3_REDUCTIONS = {
    "a": {"branch5x5_1": ("branch5x5_2",), "branch3x3dbl_1": ("branch3x3dbl_2",)},
    "b": {"branch3x3dbl_1": ("branch3x3dbl_2",)},
    "c": {"branch7x7_1": ("branch7x7_2",), "branch7x7dbl_1": ("branch7x7dbl_2",)},
    "d": {"branch3x3_1": ("branch3x3_2",), "branch7x7x3_1": ("branch7x7x3_2",)},
    "e": {"branch3x3_1": ("branch3x3_2a", "branch3x3_2b"), "branch3x3dbl_1": ("branch3x3dbl_2",)},
}
V3_STAGES = {"mixed2": 8, "mixed7": 16, "mixed10": 32}
V3_MIN_SIZE = 75

# --------------------------------------------------------------- layers


@keras.saving.register_keras_serializable(package="zoo")
class LocalResponseNorm(keras.layers.Layer):
    """Cross-channel LRN as Caffe and ``torch.nn.LocalResponseNorm`` define it:
    ``x / (k + alpha / size * sum_{window} x^2) ** beta``, the window of
    ``size`` channels centred on each channel, zeros beyond the edges.
    """

    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=1.0, **kwargs):
        super().__init__(**kwargs)
        self.size, self.alpha, self.beta, self.k = int(size), float(alpha), float(beta), float(k)

    def call(self, x):
        channels = x.shape[-1]
        sq = ops.pad(ops.square(x), [[0, 0], [0, 0], [0, 0], [self.size // 2, (self.size - 1) // 2]])
        total = sq[..., 0:channels]
        for i in range(1, self.size):
            total = total + sq[..., i:i + channels]
        return x / ops.power(self.k + (self.alpha / self.size) * total, self.beta)

    def get_config(self):
        return {**super().get_config(), "size": self.size, "alpha": self.alpha,
                "beta": self.beta, "k": self.k}


# --------------------------------------------------------------- blocks


def ceil_max_pool(x, pool_size, name, strides=2):
    """PyTorch's ``MaxPool2d(pool_size, strides, ceil_mode=True)`` on a
    non-negative map: a bottom/right pad of one zero, then a valid pool.

    Args:
        x: input tensor (non-negative, e.g. after ReLU).
        pool_size: window side (2 or 3).
        name: pool layer name; the pad is ``{name}_pad``.
        strides: pool stride (2).

    Returns:
        The pooled tensor, ``ceil((n - pool_size) / 2) + 1`` per side.
    """
    x = layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"{name}_pad")(x)
    return layers.MaxPooling2D(pool_size, strides=strides, padding="valid", name=name)(x)


def googlenet_aux(x, classes, activation, name, use_bn, pool):
    """GoogLeNet's auxiliary classifier (torchvision's ``InceptionAux``).

    Args:
        x: output of inception 4a or 4d.
        classes: output classes.
        activation: activation of the output.
        name: ``"aux1"`` or ``"aux2"``.
        use_bn: BN in the 1x1 conv (torchvision) or bias (paper).
        pool: ``"adaptive"`` (torchvision's 4x4 adaptive average pool) or
            ``"paper"`` (5x5/3 average pool).

    Returns:
        The auxiliary prediction, (N, classes).
    """
    if pool == "adaptive":
        x = layers.AdaptiveAveragePooling2D((4, 4), name=f"{name}_pool")(x)
    else:
        x = layers.AveragePooling2D(5, strides=3, name=f"{name}_pool")(x)
    x = conv_bn_relu(x, 128, 1, f"{name}_conv", use_bn=use_bn)
    # fc1 as a 4x4 valid conv: the converter lays torch's Linear(2048, 1024),
    # whose input is flattened in (C, H, W) order, into its kernel.
    x = conv2d(1024, 4, padding="valid", activation="relu", name=f"{name}_fc1")(x)
    x = layers.Flatten(name=f"{name}_flatten")(x)
    x = layers.Dropout(0.7, name=f"{name}_dropout")(x)
    return layers.Dense(classes, activation=activation, name=f"{name}_fc2")(x)


def v3_conv(x, filters, kernel, name, strides=1, padding="same"):
    """keras.applications' ``conv2d_bn``: bias-free conv, BN without scale, ReLU."""
    return conv_bn_relu(x, filters, kernel, name, strides=strides, padding=padding,
                        use_bn=True, bn_scale=False)


def v3_block_a(x, pool_features, name, concat_name):
    """Inception v3's 35x35 block (Mixed_5b/c/d, ``mixed0``-``mixed2``).

    Args:
        x: input tensor.
        pool_features: channels of the pooled branch's projection.
        name: layer prefix (``"Mixed_5b"``).
        concat_name: the concatenation's name (``"mixed0"``).

    Returns:
        The concatenated tensor.
    """
    b1 = v3_conv(x, 64, 1, f"{name}_branch1x1")
    b5 = v3_conv(x, 48, 1, f"{name}_branch5x5_1")
    b5 = v3_conv(b5, 64, 5, f"{name}_branch5x5_2")
    b3 = v3_conv(x, 64, 1, f"{name}_branch3x3dbl_1")
    b3 = v3_conv(b3, 96, 3, f"{name}_branch3x3dbl_2")
    b3 = v3_conv(b3, 96, 3, f"{name}_branch3x3dbl_3")
    bp = layers.AveragePooling2D(3, strides=1, padding="same", name=f"{name}_branch_pool_avg")(x)
    bp = v3_conv(bp, pool_features, 1, f"{name}_branch_pool")
    return layers.Concatenate(name=concat_name)([b1, b5, b3, bp])


def v3_block_b(x, _, name, concat_name):
    """Inception v3's 35->17 grid reduction (Mixed_6a, ``mixed3``)."""
    b3 = v3_conv(x, 384, 3, f"{name}_branch3x3", strides=2, padding="valid")
    bd = v3_conv(x, 64, 1, f"{name}_branch3x3dbl_1")
    bd = v3_conv(bd, 96, 3, f"{name}_branch3x3dbl_2")
    bd = v3_conv(bd, 96, 3, f"{name}_branch3x3dbl_3", strides=2, padding="valid")
    bp = layers.MaxPooling2D(3, strides=2, name=f"{name}_branch_pool")(x)
    return layers.Concatenate(name=concat_name)([b3, bd, bp])


def v3_block_c(x, c7, name, concat_name):
    """Inception v3's 17x17 block with factorised 7x7s (Mixed_6b-e, ``mixed4``-``mixed7``).

    Args:
        x: input tensor.
        c7: channels inside the 7x7 branches.
        name: layer prefix.
        concat_name: the concatenation's name.

    Returns:
        The concatenated tensor.
    """
    b1 = v3_conv(x, 192, 1, f"{name}_branch1x1")
    b7 = v3_conv(x, c7, 1, f"{name}_branch7x7_1")
    b7 = v3_conv(b7, c7, (1, 7), f"{name}_branch7x7_2")
    b7 = v3_conv(b7, 192, (7, 1), f"{name}_branch7x7_3")
    bd = v3_conv(x, c7, 1, f"{name}_branch7x7dbl_1")
    bd = v3_conv(bd, c7, (7, 1), f"{name}_branch7x7dbl_2")
    bd = v3_conv(bd, c7, (1, 7), f"{name}_branch7x7dbl_3")
    bd = v3_conv(bd, c7, (7, 1), f"{name}_branch7x7dbl_4")
    bd = v3_conv(bd, 192, (1, 7), f"{name}_branch7x7dbl_5")
    bp = layers.AveragePooling2D(3, strides=1, padding="same", name=f"{name}_branch_pool_avg")(x)
    bp = v3_conv(bp, 192, 1, f"{name}_branch_pool")
    return layers.Concatenate(name=concat_name)([b1, b7, bd, bp])


def v3_block_d(x, _, name, concat_name):
    """Inception v3's 17->8 grid reduction (Mixed_7a, ``mixed8``)."""
    b3 = v3_conv(x, 192, 1, f"{name}_branch3x3_1")
    b3 = v3_conv(b3, 320, 3, f"{name}_branch3x3_2", strides=2, padding="valid")
    b7 = v3_conv(x, 192, 1, f"{name}_branch7x7x3_1")
    b7 = v3_conv(b7, 192, (1, 7), f"{name}_branch7x7x3_2")
    b7 = v3_conv(b7, 192, (7, 1), f"{name}_branch7x7x3_3")
    b7 = v3_conv(b7, 192, 3, f"{name}_branch7x7x3_4", strides=2, padding="valid")
    bp = layers.MaxPooling2D(3, strides=2, name=f"{name}_branch_pool")(x)
    return layers.Concatenate(name=concat_name)([b3, b7, bp])


def v3_block_e(x, _, name, concat_name):
    """Inception v3's 8x8 block with expanded filter banks (Mixed_7b/c, ``mixed9``/``mixed10``)."""
    b1 = v3_conv(x, 320, 1, f"{name}_branch1x1")
    b3 = v3_conv(x, 384, 1, f"{name}_branch3x3_1")
    b3 = layers.Concatenate(name=f"{name}_branch3x3")([
        v3_conv(b3, 384, (1, 3), f"{name}_branch3x3_2a"),
        v3_conv(b3, 384, (3, 1), f"{name}_branch3x3_2b"),
    ])
    bd = v3_conv(x, 448, 1, f"{name}_branch3x3dbl_1")
    bd = v3_conv(bd, 384, 3, f"{name}_branch3x3dbl_2")
    bd = layers.Concatenate(name=f"{name}_branch3x3dbl")([
        v3_conv(bd, 384, (1, 3), f"{name}_branch3x3dbl_3a"),
        v3_conv(bd, 384, (3, 1), f"{name}_branch3x3dbl_3b"),
    ])
    bp = layers.AveragePooling2D(3, strides=1, padding="same", name=f"{name}_branch_pool_avg")(x)
    bp = v3_conv(bp, 192, 1, f"{name}_branch_pool")
    return layers.Concatenate(name=concat_name)([b1, b3, bd, bp])


V3_BLOCK_FNS = {"a": v3_block_a, "b": v3_block_b, "c": v3_block_c, "d": v3_block_d, "e": v3_block_e}


# --------------------------------------------------------------- savings


def reduction_savings(cin, cout, kernel, reduced, hw=(1, 1)):
    """Cost of a ``kernel``x``kernel`` conv from ``cin`` to ``cout`` channels,
    with and without a 1x1 reduction to ``reduced`` channels first.

    Example: 4x4, 256 -> 256, reduced to 64: 256*256*16 weights naive,
    256*64 + 64*256*16 = 256*64*17 reduced, a ratio of 64/17 (about 3.76).

    Args:
        cin, cout: channels in and out.
        kernel: the costly conv's side.
        reduced: channels after the 1x1 reduction.
        hw: output size (both convs keep it); MACs are weights times pixels.

    Returns:
        A dict with ``naive_params``, ``params``, ``naive_flops``, ``flops``
        (weights only, no biases) and ``ratio`` (naive / reduced).
    """
    naive = cin * cout * kernel * kernel
    reduced_cost = cin * reduced + reduced * cout * kernel * kernel
    pixels = hw[0] * hw[1]
    return {"naive_params": naive, "params": reduced_cost, "naive_flops": naive * pixels,
            "flops": reduced_cost * pixels, "ratio": naive / reduced_cost}


def _layer_params(layer):
    """Learned parameters of one layer: BatchNorm's running statistics are
    buffers, not parameters (``zoo.analysis.info.count_parameters``'s convention)."""
    n = layer.count_params()
    if isinstance(layer, layers.BatchNormalization):
        n -= 2 * layer.moving_mean.shape[0]
    return n


def _conv_cost(layer, cin):
    """(params, MACs) of ``layer`` (a Conv2D) if it read ``cin`` channels."""
    kh, kw = layer.kernel_size
    weights = kh * kw * cin * layer.filters
    _, oh, ow, _ = layer.output.shape
    return weights + (layer.filters if layer.use_bias else 0), weights * oh * ow


def block_savings(model, per_layer_flops, prefix, reductions):
    """Params and MACs of one inception block, with and without its 1x1 reductions.

    The naive block drops each 1x1 reduction (conv, BN) and feeds the convs
    it fed from the block's input instead; all output channels stay.

    Args:
        model: a built model with a static input size.
        per_layer_flops: ``{layer: MACs}`` from ``zoo.analysis.flops.count_flops``.
        prefix: the block's layer prefix (``"inception3a"``, ``"Mixed_5b"``).
        reductions: ``{reduction: (consumers, ...)}`` by branch name.

    Returns:
        A dict: ``params``, ``flops``, ``naive_params``, ``naive_flops``,
        ``flops_ratio`` (naive / actual).
    """
    block = [l for l in model.layers if l.name.startswith(prefix + "_")]
    params = sum(_layer_params(l) for l in block)
    flops = sum(per_layer_flops.get(l.name, 0) for l in block)
    naive_params, naive_flops = params, flops
    for red, consumers in reductions.items():
        red_conv = model.get_layer(f"{prefix}_{red}_conv")
        cin = red_conv.input.shape[-1]
        for suffix in ("_conv", "_bn"):
            lname = f"{prefix}_{red}{suffix}"
            if any(l.name == lname for l in block):
                naive_params -= _layer_params(model.get_layer(lname))
                naive_flops -= per_layer_flops.get(lname, 0)
        for cons in consumers:
            conv = model.get_layer(f"{prefix}_{cons}_conv")
            p, f = _conv_cost(conv, cin)
            naive_params += p - _layer_params(conv)
            naive_flops += f - per_layer_flops.get(conv.name, 0)
    return {"params": params, "flops": flops, "naive_params": naive_params,
            "naive_flops": naive_flops, "flops_ratio": round(naive_flops / flops, 3)}


def _savings_hook(blocks):
    """An ``info_hook`` over ``[(prefix, reductions), ...]``."""
    def hook(model, input_size, per_layer_flops):
        rows, extra_params, extra_flops = [], 0, 0
        for prefix, reductions in blocks:
            if not any(l.name.startswith(prefix + "_") for l in model.layers):
                continue
            row = block_savings(model, per_layer_flops, prefix, reductions)
            rows.append({"block": prefix, **row})
            extra_params += row["naive_params"] - row["params"]
            extra_flops += row["naive_flops"] - row["flops"]
        total_flops = sum(per_layer_flops.values())
        total_params = count_parameters(model)
        return {
            "inception_blocks": rows,
            "naive_params": total_params + extra_params,
            "naive_flops": total_flops + extra_flops,
            "naive_flops_ratio": round((total_flops + extra_flops) / total_flops, 3),
        }
    return hook


# --------------------------------------------------------------- builders


GOOGLENET_MIN_INPUT = {True: 15, False: 31}  # the last ceil-mode pool keeps one cell


def googlenet_spec(batch_norm=True, aux_logits=False, transform_input=None, dropout=None,
                   weights=None):
    """The :class:`zoo.assembler.Backbone` of GoogLeNet (either variant).

    Args:
        batch_norm: torchvision's BN variant (True) or the paper's (False).
        aux_logits: classify mode returns ``[logits, aux2, aux1]``.
        transform_input: torchvision's input re-mapping; None follows the
            published tag's preprocessing (``weights``), else False.
        dropout: rate before ``fc``; None takes the variant's.
        weights: the builder's weights (only to resolve ``transform_input``).
    """
    variant = GOOGLENET_VARIANTS[bool(batch_norm)]
    use_bn = bool(batch_norm)
    tagged = isinstance(weights, str) and weights == "imagenet"
    if tagged and not batch_norm:
        raise ValueError("no published weights for batch_norm=False (the paper's variant); "
                         "pass weights=None or a file path")
    if transform_input is None:
        from zoo.preprocessing import published_preprocessing  # a path: the file it is
        transform_input = bool(published_preprocessing("googlenet", weights).get("transform_input", False))

    def build(x, output_stride):
        del output_stride
        if transform_input:
            x = layers.Rescaling(
                scale=[s / 0.5 for s in IMAGENET_STD],
                offset=[(m - 0.5) / 0.5 for m in IMAGENET_MEAN], name="transform_input")(x)
        x = layers.ZeroPadding2D(3, name="conv1_pad")(x)
        x = conv_bn_relu(x, 64, 7, "conv1", strides=2, padding="valid", use_bn=use_bn)
        x = ceil_max_pool(x, 3, "maxpool1")
        if variant["lrn"]:
            x = LocalResponseNorm(name="norm1")(x)
        x = conv_bn_relu(x, 64, 1, "conv2", use_bn=use_bn)
        x = conv_bn_relu(x, 192, 3, "conv3", use_bn=use_bn)
        if variant["lrn"]:
            x = LocalResponseNorm(name="norm2")(x)
        stages = [(x, 4)]
        x = ceil_max_pool(x, 3, "maxpool2")
        block_out, stride = {}, 8
        for _, blocks, pool in GOOGLENET_STAGES:
            for block in blocks:
                x = inception_block(x, *GOOGLENET_BLOCKS[block], name=block, use_bn=use_bn,
                                    kernel_5x5=variant["kernel_5x5"])
                block_out[block] = x
            stages.append((x, stride))
            if pool:
                x = ceil_max_pool(x, variant["maxpool4"] if pool == "maxpool4" else 3, pool)
                stride *= 2
        return Stages(tuple(stages), extras=block_out)

    def finish(outputs, built, mode, classes, act):
        if not aux_logits:
            return outputs
        if mode != "classify":
            raise ValueError(f"aux_logits=True needs mode='classify'; got mode={mode!r}")
        aux = {k: googlenet_aux(built.extras[src], classes, act, k, use_bn, variant["aux_pool"])
               for k, src in GOOGLENET_AUX.items()}
        # torchvision's order: (logits, aux2, aux1).
        return [outputs, aux["aux2"], aux["aux1"]]

    return Backbone(
        name="googlenet",
        build=build,
        classifier=Classifier("pool_fc", ("fc",), pool="avgpool",
                              dropout=("dropout", variant["dropout"] if dropout is None else dropout)),
        default_head="bilinear",
        head_extras={"bilinear_skips": (("inception4e", "P4"), ("inception3b", "P3"))},
        min_input={"features": GOOGLENET_MIN_INPUT[use_bn]},
        finish=finish,
        # Without the auxiliary classifiers, a file's aux heads are not loaded.
        weight_map=WeightMap(ignore=() if aux_logits else ("aux1_*", "aux2_*")),
    )


def _v3_build(x, output_stride):
    del output_stride
    x = v3_conv(x, 32, 3, "Conv2d_1a_3x3", strides=2, padding="valid")
    x = v3_conv(x, 32, 3, "Conv2d_2a_3x3", padding="valid")
    x = v3_conv(x, 64, 3, "Conv2d_2b_3x3")
    x = layers.MaxPooling2D(3, strides=2, name="maxpool1")(x)
    x = v3_conv(x, 80, 1, "Conv2d_3b_1x1", padding="valid")
    x = v3_conv(x, 192, 3, "Conv2d_4a_3x3", padding="valid")
    stages = [(x, 4)]
    x = layers.MaxPooling2D(3, strides=2, name="maxpool2")(x)
    for concat_name, prefix, kind, arg in INCEPTION_V3_BLOCKS:
        x = V3_BLOCK_FNS[kind](x, arg, prefix, concat_name)
        if concat_name in V3_STAGES:
            stages.append((x, V3_STAGES[concat_name]))
    return Stages(tuple(stages))


def inception_v3_spec():
    """The :class:`zoo.assembler.Backbone` of Inception v3."""
    return Backbone(
        name="inception_v3",
        build=_v3_build,
        classifier=Classifier("pool_fc", ("predictions",), pool="avg_pool"),
        default_head="bilinear",
        head_extras={"bilinear_skips": (("mixed7", "P4"), ("mixed2", "P3"))},
        min_input={"features": V3_MIN_SIZE},
        train_crop=299,
        classify_input=299,
        weight_map=WeightMap(h5=v3_h5_renames),
    )


def v3_h5_renames(names):
    """The ``WeightMap.h5`` renames for one InceptionV3 file's weighted layers.

    keras.applications' files carry automatic names in its layer order; they
    pair, position by position, with :data:`INCEPTION_V3_FILE_ORDER` (188
    conv/BN layers, plus ``predictions`` in a file with top). Files that
    already use this model's names need no renaming.

    Args:
        names: the file's weighted layer names, in file order.

    Raises:
        CheckpointError: automatic names whose count fits neither file.
    """
    if not names or set(names) <= set(INCEPTION_V3_FILE_ORDER) | {"score"}:
        return {}
    n = len(INCEPTION_V3_FILE_ORDER)
    if len(names) not in (n, n - 1):
        raise CheckpointError(
            f"{len(names)} weighted layers; keras.applications' InceptionV3 "
            f"files have {n - 1} (no top) or {n} (with top)")
    return dict(zip(names, INCEPTION_V3_FILE_ORDER))


# keras.applications' InceptionV3 weighted layers in its (and its files')
# order, as this model's names. Generated by pairing the two models' layers;
# tests/test_inception.py checks it against keras.applications.
INCEPTION_V3_FILE_ORDER = tuple("""
Conv2d_1a_3x3_conv Conv2d_1a_3x3_bn Conv2d_2a_3x3_conv Conv2d_2a_3x3_bn Conv2d_2b_3x3_conv
Conv2d_2b_3x3_bn Conv2d_3b_1x1_conv Conv2d_3b_1x1_bn Conv2d_4a_3x3_conv Conv2d_4a_3x3_bn
Mixed_5b_branch3x3dbl_1_conv Mixed_5b_branch3x3dbl_1_bn Mixed_5b_branch5x5_1_conv
Mixed_5b_branch3x3dbl_2_conv Mixed_5b_branch5x5_1_bn Mixed_5b_branch3x3dbl_2_bn
Mixed_5b_branch1x1_conv Mixed_5b_branch5x5_2_conv Mixed_5b_branch3x3dbl_3_conv
Mixed_5b_branch_pool_conv Mixed_5b_branch1x1_bn Mixed_5b_branch5x5_2_bn
Mixed_5b_branch3x3dbl_3_bn Mixed_5b_branch_pool_bn Mixed_5c_branch3x3dbl_1_conv
Mixed_5c_branch3x3dbl_1_bn Mixed_5c_branch5x5_1_conv Mixed_5c_branch3x3dbl_2_conv
Mixed_5c_branch5x5_1_bn Mixed_5c_branch3x3dbl_2_bn Mixed_5c_branch1x1_conv
Mixed_5c_branch5x5_2_conv Mixed_5c_branch3x3dbl_3_conv Mixed_5c_branch_pool_conv
Mixed_5c_branch1x1_bn Mixed_5c_branch5x5_2_bn Mixed_5c_branch3x3dbl_3_bn
Mixed_5c_branch_pool_bn Mixed_5d_branch3x3dbl_1_conv Mixed_5d_branch3x3dbl_1_bn
Mixed_5d_branch5x5_1_conv Mixed_5d_branch3x3dbl_2_conv Mixed_5d_branch5x5_1_bn
Mixed_5d_branch3x3dbl_2_bn Mixed_5d_branch1x1_conv Mixed_5d_branch5x5_2_conv
Mixed_5d_branch3x3dbl_3_conv Mixed_5d_branch_pool_conv Mixed_5d_branch1x1_bn
Mixed_5d_branch5x5_2_bn Mixed_5d_branch3x3dbl_3_bn Mixed_5d_branch_pool_bn
Mixed_6a_branch3x3dbl_1_conv Mixed_6a_branch3x3dbl_1_bn Mixed_6a_branch3x3dbl_2_conv
Mixed_6a_branch3x3dbl_2_bn Mixed_6a_branch3x3_conv Mixed_6a_branch3x3dbl_3_conv
Mixed_6a_branch3x3_bn Mixed_6a_branch3x3dbl_3_bn Mixed_6b_branch7x7dbl_1_conv
Mixed_6b_branch7x7dbl_1_bn Mixed_6b_branch7x7dbl_2_conv Mixed_6b_branch7x7dbl_2_bn
Mixed_6b_branch7x7_1_conv Mixed_6b_branch7x7dbl_3_conv Mixed_6b_branch7x7_1_bn
Mixed_6b_branch7x7dbl_3_bn Mixed_6b_branch7x7_2_conv Mixed_6b_branch7x7dbl_4_conv
Mixed_6b_branch7x7_2_bn Mixed_6b_branch7x7dbl_4_bn Mixed_6b_branch1x1_conv
Mixed_6b_branch7x7_3_conv Mixed_6b_branch7x7dbl_5_conv Mixed_6b_branch_pool_conv
Mixed_6b_branch1x1_bn Mixed_6b_branch7x7_3_bn Mixed_6b_branch7x7dbl_5_bn
Mixed_6b_branch_pool_bn Mixed_6c_branch7x7dbl_1_conv Mixed_6c_branch7x7dbl_1_bn
Mixed_6c_branch7x7dbl_2_conv Mixed_6c_branch7x7dbl_2_bn Mixed_6c_branch7x7_1_conv
Mixed_6c_branch7x7dbl_3_conv Mixed_6c_branch7x7_1_bn Mixed_6c_branch7x7dbl_3_bn
Mixed_6c_branch7x7_2_conv Mixed_6c_branch7x7dbl_4_conv Mixed_6c_branch7x7_2_bn
Mixed_6c_branch7x7dbl_4_bn Mixed_6c_branch1x1_conv Mixed_6c_branch7x7_3_conv
Mixed_6c_branch7x7dbl_5_conv Mixed_6c_branch_pool_conv Mixed_6c_branch1x1_bn
Mixed_6c_branch7x7_3_bn Mixed_6c_branch7x7dbl_5_bn Mixed_6c_branch_pool_bn
Mixed_6d_branch7x7dbl_1_conv Mixed_6d_branch7x7dbl_1_bn Mixed_6d_branch7x7dbl_2_conv
Mixed_6d_branch7x7dbl_2_bn Mixed_6d_branch7x7_1_conv Mixed_6d_branch7x7dbl_3_conv
Mixed_6d_branch7x7_1_bn Mixed_6d_branch7x7dbl_3_bn Mixed_6d_branch7x7_2_conv
Mixed_6d_branch7x7dbl_4_conv Mixed_6d_branch7x7_2_bn Mixed_6d_branch7x7dbl_4_bn
Mixed_6d_branch1x1_conv Mixed_6d_branch7x7_3_conv Mixed_6d_branch7x7dbl_5_conv
Mixed_6d_branch_pool_conv Mixed_6d_branch1x1_bn Mixed_6d_branch7x7_3_bn
Mixed_6d_branch7x7dbl_5_bn Mixed_6d_branch_pool_bn Mixed_6e_branch7x7dbl_1_conv
Mixed_6e_branch7x7dbl_1_bn Mixed_6e_branch7x7dbl_2_conv Mixed_6e_branch7x7dbl_2_bn
Mixed_6e_branch7x7_1_conv Mixed_6e_branch7x7dbl_3_conv Mixed_6e_branch7x7_1_bn
Mixed_6e_branch7x7dbl_3_bn Mixed_6e_branch7x7_2_conv Mixed_6e_branch7x7dbl_4_conv
Mixed_6e_branch7x7_2_bn Mixed_6e_branch7x7dbl_4_bn Mixed_6e_branch1x1_conv
Mixed_6e_branch7x7_3_conv Mixed_6e_branch7x7dbl_5_conv Mixed_6e_branch_pool_conv
Mixed_6e_branch1x1_bn Mixed_6e_branch7x7_3_bn Mixed_6e_branch7x7dbl_5_bn
Mixed_6e_branch_pool_bn Mixed_7a_branch7x7x3_1_conv Mixed_7a_branch7x7x3_1_bn
Mixed_7a_branch7x7x3_2_conv Mixed_7a_branch7x7x3_2_bn Mixed_7a_branch3x3_1_conv
Mixed_7a_branch7x7x3_3_conv Mixed_7a_branch3x3_1_bn Mixed_7a_branch7x7x3_3_bn
Mixed_7a_branch3x3_2_conv Mixed_7a_branch7x7x3_4_conv Mixed_7a_branch3x3_2_bn
Mixed_7a_branch7x7x3_4_bn Mixed_7b_branch3x3dbl_1_conv Mixed_7b_branch3x3dbl_1_bn
Mixed_7b_branch3x3_1_conv Mixed_7b_branch3x3dbl_2_conv Mixed_7b_branch3x3_1_bn
Mixed_7b_branch3x3dbl_2_bn Mixed_7b_branch3x3_2a_conv Mixed_7b_branch3x3_2b_conv
Mixed_7b_branch3x3dbl_3a_conv Mixed_7b_branch3x3dbl_3b_conv Mixed_7b_branch1x1_conv
Mixed_7b_branch3x3_2a_bn Mixed_7b_branch3x3_2b_bn Mixed_7b_branch3x3dbl_3a_bn
Mixed_7b_branch3x3dbl_3b_bn Mixed_7b_branch_pool_conv Mixed_7b_branch1x1_bn
Mixed_7b_branch_pool_bn Mixed_7c_branch3x3dbl_1_conv Mixed_7c_branch3x3dbl_1_bn
Mixed_7c_branch3x3_1_conv Mixed_7c_branch3x3dbl_2_conv Mixed_7c_branch3x3_1_bn
Mixed_7c_branch3x3dbl_2_bn Mixed_7c_branch3x3_2a_conv Mixed_7c_branch3x3_2b_conv
Mixed_7c_branch3x3dbl_3a_conv Mixed_7c_branch3x3dbl_3b_conv Mixed_7c_branch1x1_conv
Mixed_7c_branch3x3_2a_bn Mixed_7c_branch3x3_2b_bn Mixed_7c_branch3x3dbl_3a_bn
Mixed_7c_branch3x3dbl_3b_bn Mixed_7c_branch_pool_conv Mixed_7c_branch1x1_bn
Mixed_7c_branch_pool_bn predictions
""".split())


GoogLeNet = register_model(
    "googlenet", family="inception", builder_name="GoogLeNet", module=__name__,
    spec=googlenet_spec,
    summary="GoogLeNet: torchvision's BN variant by default, the paper's with batch_norm=False.",
    options=(
        Option("batch_norm", True, "True (torchvision, published weights) or False (the paper: "
               "biases, 5x5 kernels, LRN)."),
        Option("aux_logits", False, "classify mode only: three outputs ``[logits, aux2, aux1]`` "
               "(torchvision's order), the auxiliary heads on 4d and 4a."),
        Option("transform_input", None, "torchvision's re-mapping of ImageNet-normalised input to "
               "``(x - 0.5) / 0.5`` per channel; None follows the manifest's preprocessing for a "
               "tag (True for ``\"imagenet\"``), else False."),
        Option("dropout", None, "rate before ``fc`` (default 0.2, paper 0.4)."),
    ),
    info_hook=_savings_hook([(b, GOOGLENET_REDUCTIONS) for b in GOOGLENET_BLOCKS]))

InceptionV3 = register_model(
    "inception_v3", family="inception", builder_name="InceptionV3", module=__name__,
    spec=inception_v3_spec,
    summary="Inception v3, keras.applications' network with explicit layer names.",
    info_hook=_savings_hook([(prefix, INCEPTION_V3_REDUCTIONS[kind])
                             for _, prefix, kind, _ in INCEPTION_V3_BLOCKS]))

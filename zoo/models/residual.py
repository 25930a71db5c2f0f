"""The residual blocks of ResNet and DRN, one module for both families.

A block is a function ``(x, filters, stride, dilations, layout, name,
residual=True) -> x``. Everything that differs between upstreams is data in
a :class:`Layout`: layer-name templates, conv biases, BatchNorm epsilon and
momentum, where a bottleneck puts its stride, and how the graph is wired.
The stage loops compute ``dilations``: torchvision's "a dilated stage's
first block keeps the previous dilation" and DRN's per-stage dilations are
both just the tuple they pass.
"""

import dataclasses

from keras import layers

from zoo.layers import conv2d

EXPANSION = {"basic": 1, "bottleneck": 4}


@dataclasses.dataclass(frozen=True)
class Layout:
    """Layer naming and numerics of one published weight layout.

    Name templates are filled with ``b`` (the block's name), ``i`` (conv
    index 1..3), ``s1``/``s2`` (stage number from 1 / from 2) and
    ``j0``/``j1`` (block index from 0 / from 1).

    Attributes:
        torch_graph: builds the graph as torch's forward writes it: ReLU
            layers and the residual add as ``branch + shortcut``, instead of
            keras.applications' ``Activation("relu")`` and
            ``shortcut + branch``. No weight or output changes; it fixes the
            order of ``model.layers`` (which Keras-native ``save_weights``
            files depend on) for the family that was built that way.
    """

    name: str
    use_bias: bool
    epsilon: float
    momentum: float  # Keras's BN momentum; PyTorch's momentum 0.1 is Keras's 0.9
    stride_in_1x1: bool
    stem: tuple  # names: pad, conv, bn, relu, pool pad, pool
    block: str
    conv: str
    bn: str
    relu: str
    shortcut: tuple  # names: conv, bn
    add: str
    out: str
    pool: str
    classifier: str
    marker: str  # regex matching this layout's names in a checkpoint
    torch_graph: bool = False


LAYOUTS = {
    # keras.applications' ResNet v1 (resnet.py: BatchNormalization(epsilon=1.001e-5),
    # Keras's default momentum 0.99).
    "keras": Layout(
        name="keras", use_bias=True, epsilon=1.001e-5, momentum=0.99, stride_in_1x1=True,
        stem=("conv1_pad", "conv1_conv", "conv1_bn", "conv1_relu", "pool1_pad", "pool1_pool"),
        block="conv{s2}_block{j1}", conv="{b}_{i}_conv", bn="{b}_{i}_bn", relu="{b}_{i}_relu",
        shortcut=("{b}_0_conv", "{b}_0_bn"), add="{b}_add", out="{b}_out",
        pool="avg_pool", classifier="predictions", marker=r"conv\d_block\d+_\d_(conv|bn)",
    ),
    # torchvision's ResNet v1.5: nn.BatchNorm2d defaults, eps 1e-5, momentum 0.1.
    "torchvision": Layout(
        name="torchvision", use_bias=False, epsilon=1e-5, momentum=0.9, stride_in_1x1=False,
        stem=("conv1_pad", "conv1", "bn1", "relu", "maxpool_pad", "maxpool"),
        block="layer{s1}_{j0}", conv="{b}_conv{i}", bn="{b}_bn{i}", relu="{b}_relu{i}",
        shortcut=("{b}_downsample_0", "{b}_downsample_1"), add="{b}_add", out="{b}_out",
        pool="avgpool", classifier="fc", marker=r"layer\d[._]\d+[._](conv|bn)\d",
    ),
}

# fyu/drn: torchvision's module names (DRN-A is torchvision's ResNet) and
# nn.BatchNorm2d's defaults, eps 1e-5, momentum 0.1.
DRN_LAYOUT = dataclasses.replace(
    LAYOUTS["torchvision"], name="drn", epsilon=1e-5, momentum=0.9, torch_graph=True)


def relu(x, layout, name):
    """The ReLU layer of ``layout`` (see :attr:`Layout.torch_graph`).

    Args:
        x: input tensor.
        layout: a :class:`Layout`.
        name: layer name.

    Returns:
        The output tensor.
    """
    if layout.torch_graph:
        return layers.ReLU(name=name)(x)
    return layers.Activation("relu", name=name)(x)


def conv_bn(x, filters, kernel, stride, dilation, layout, conv_name, bn_name, relu_name=None):
    """Convolution, BatchNorm and optional ReLU with torch's symmetric padding.

    Args:
        x: input tensor.
        filters: output channels.
        kernel: square kernel side.
        stride: 1 or 2.
        dilation: dilation rate (never combined with stride 2).
        layout: a :class:`Layout` (bias, epsilon, momentum).
        conv_name: the convolution's name; a strided kxk conv gets a
            ``<conv_name>_pad`` ZeroPadding2D.
        bn_name: the BatchNorm's name.
        relu_name: the ReLU's name, or None for no activation.

    Returns:
        The output tensor.
    """
    padding = "valid"
    if kernel > 1:
        if stride > 1:
            # Keras's "same" would pad only bottom/right at stride 2.
            x = layers.ZeroPadding2D(dilation * (kernel - 1) // 2, name=f"{conv_name}_pad")(x)
        else:
            padding = "same"  # symmetric at stride 1 for odd kernels
    x = conv2d(
        filters, kernel, strides=stride, dilation_rate=dilation, padding=padding,
        use_bias=layout.use_bias, name=conv_name,
    )(x)
    x = layers.BatchNormalization(epsilon=layout.epsilon, momentum=layout.momentum, name=bn_name)(x)
    if relu_name:
        x = relu(x, layout, relu_name)
    return x


def _shortcut(x, channels, stride, layout, name):
    if stride == 1 and x.shape[-1] == channels:
        return x
    conv, bn = (t.format(b=name) for t in layout.shortcut)
    return conv_bn(x, channels, 1, stride, 1, layout, conv, bn)


def _merge(branch, shortcut, layout, name):
    pair = [branch, shortcut] if layout.torch_graph else [shortcut, branch]
    x = layers.Add(name=layout.add.format(b=name))(pair)
    return relu(x, layout, layout.out.format(b=name))


def _names(layout, name, i):
    return tuple(t.format(b=name, i=i) for t in (layout.conv, layout.bn, layout.relu))


def basic_block(x, filters, stride, dilations, layout, name, residual=True):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34, DRN).

    Args:
        x: input tensor.
        filters: channels of both convolutions.
        stride: stride of the first convolution and the shortcut.
        dilations: ``(d1, d2)``, the dilations of the two convolutions
            (a dilated ResNet stage's first block: the previous dilation,
            then the stage's, as timm does).
        layout: a :class:`Layout`.
        name: block name (``layer2_0``).
        residual: False drops the shortcut and the add (DRN-C's layer7 and
            layer8); the block is then conv-BN-ReLU, conv-BN, ReLU.

    Returns:
        The block's output.
    """
    c1, b1, r1 = _names(layout, name, 1)
    c2, b2, _ = _names(layout, name, 2)
    shortcut = _shortcut(x, filters, stride, layout, name) if residual else None
    y = conv_bn(x, filters, 3, stride, dilations[0], layout, c1, b1, r1)
    y = conv_bn(y, filters, 3, 1, dilations[1], layout, c2, b2)
    if not residual:
        return relu(y, layout, layout.out.format(b=name))
    return _merge(y, shortcut, layout, name)


def bottleneck_block(x, filters, stride, dilations, layout, name, residual=True):
    """1x1 reduce, 3x3, 1x1 expand (x4) with a residual connection.

    Args:
        x: input tensor.
        filters: bottleneck width; the block outputs ``4 * filters``.
        stride: stride of the block, in the first 1x1 convolution
            (``layout.stride_in_1x1``, Caffe/Keras) or the 3x3 one
            (torchvision, DRN).
        dilations: ``(d1, d2)``; the single 3x3 convolution uses ``d1``
            (torchvision gives a dilated stage's first block the previous
            dilation). fyu/drn's Bottleneck reads ``d2``; DRN always passes
            ``d1 == d2``.
        layout: a :class:`Layout`.
        name: block name (``conv3_block1`` or ``layer2_0``).
        residual: ignored: fyu/drn's Bottleneck always adds its shortcut,
            even in DRN-C-58's ``residual=False`` layer7 (whose checkpoint
            weights are then never used, see ``zoo.models.drn``).

    Returns:
        The block's output.
    """
    del residual
    channels = EXPANSION["bottleneck"] * filters
    shortcut = _shortcut(x, channels, stride, layout, name)
    s1, s3 = (stride, 1) if layout.stride_in_1x1 else (1, stride)
    for i, (width, kernel, s, d) in enumerate(
        ((filters, 1, s1, 1), (filters, 3, s3, dilations[0]), (channels, 1, 1, 1)), start=1
    ):
        conv, bn, act = _names(layout, name, i)
        x = conv_bn(x, width, kernel, s, d, layout, conv, bn, act if i < 3 else None)
    return _merge(x, shortcut, layout, name)


BLOCKS = {"basic": basic_block, "bottleneck": bottleneck_block}


def residual_stage(x, block, count, filters, stride, first_dilations, dilation, layout, names,
                   residual=True):
    """``count`` blocks: the first one strided, the others at ``dilation``.

    Args:
        x: input tensor.
        block: ``"basic"`` or ``"bottleneck"``.
        count: number of blocks.
        filters: the blocks' ``filters``.
        stride: stride of the first block.
        first_dilations: the first block's ``dilations`` tuple.
        dilation: the other blocks' dilation (both convolutions).
        layout: a :class:`Layout`.
        names: ``names(j)`` gives block ``j``'s name (from 0).
        residual: passed to every block.

    Returns:
        The stage's output.
    """
    fn = BLOCKS[block]
    for j in range(count):
        if j == 0:
            x = fn(x, filters, stride, first_dilations, layout, names(j), residual)
        else:
            x = fn(x, filters, 1, (dilation, dilation), layout, names(j), residual)
    return x

"""Blocks shared by the segmentation_models_pytorch (SMP) decoder heads.

Not a head itself (the leading underscore keeps :mod:`zoo.heads` discovery
off it). Every weighted layer is named after SMP's module path with ``.`` as
``_`` (``decoder.blocks.0.conv1.0`` -> ``decoder_blocks_0_conv1_0``), so an
SMP ``state_dict`` loads by the name rule.

Sizes: SMP runs on H, W divisible by ``2**encoder_depth``, where every
level is exactly twice the next deeper one. The heads resize each map to
the level it meets by ``F.interpolate(size=...)``'s rule, which at those
exact factors is the ``scale_factor`` upsampling SMP runs (and at equal
sizes the identity), so the numbers are SMP's; on other sizes the levels of
a floor- or ceil-mode backbone are aligned that way and the logits are
cropped (or zero-padded) to the input.
"""

import keras
from keras import layers, ops

from zoo.layers import FitLike, _half_pixel_taps, conv2d, separable_resize

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # PyTorch's momentum 0.1
GN_EPSILON = 1e-5


def norm_kind(use_norm):
    """SMP's ``use_norm`` (``decoder_use_norm``) as ``"batchnorm"`` or ``"identity"``.

    Args:
        use_norm: True, False, ``"batchnorm"``, ``"identity"`` or a dict
            with that ``type`` (SMP's other norms are not built).

    Returns:
        ``"batchnorm"`` or ``"identity"``.
    """
    kind = use_norm
    if isinstance(use_norm, dict):
        kind = use_norm.get("type")
    if kind is True:
        return "batchnorm"
    if kind is False:
        return "identity"
    if isinstance(kind, str) and kind.lower() in ("batchnorm", "identity"):
        return kind.lower()
    raise ValueError(f"decoder_use_norm must be True, False, 'batchnorm' or 'identity'; got {use_norm!r}")


def bn(x, name):
    """``nn.BatchNorm2d`` with PyTorch's defaults."""
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)(x)


def conv_relu(x, filters, kernel, name, use_norm="batchnorm", padding=None):
    """SMP's ``Conv2dReLU``: conv ``{name}_0``, norm ``{name}_1``, ReLU ``{name}_2``.

    Args:
        x: input tensor.
        filters: output channels.
        kernel: square kernel side (padding ``kernel // 2``, stride 1).
        name: the module path with ``_`` (``decoder_blocks_0_conv1``).
        use_norm: see :func:`norm_kind`; with no norm the conv has a bias.
        padding: None ("same" for kernel > 1), or ``"valid"``.

    Returns:
        The activated tensor.
    """
    kind = norm_kind(use_norm)
    pad = padding or ("same" if kernel > 1 else "valid")
    x = conv2d(filters, kernel, padding=pad, use_bias=kind == "identity", name=f"{name}_0")(x)
    if kind == "batchnorm":
        x = bn(x, f"{name}_1")
    return layers.ReLU(name=f"{name}_2")(x)


def scse(x, name, reduction=16):
    """SMP's ``SCSEModule`` (``attention_type="scse"``) as ``{name}_cSE_1`` ...

    Args:
        x: input tensor.
        name: the attention module path with ``_`` (``..._attention1_attention``).
        reduction: channel reduction of the cSE branch.

    Returns:
        ``x * cSE(x) + x * sSE(x)``.
    """
    channels = int(x.shape[-1])
    c = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_cSE_0")(x)
    c = conv2d(channels // reduction, 1, padding="valid", name=f"{name}_cSE_1")(c)
    c = layers.ReLU(name=f"{name}_cSE_2")(c)
    c = conv2d(channels, 1, padding="valid", activation="sigmoid", name=f"{name}_cSE_3")(c)
    s = conv2d(1, 1, padding="valid", activation="sigmoid", name=f"{name}_sSE_0")(x)
    a = layers.Multiply(name=f"{name}_cmul")([x, c])
    b = layers.Multiply(name=f"{name}_smul")([x, s])
    return layers.Add(name=f"{name}_add")([a, b])


def attention(x, kind, name):
    """SMP's ``Attention(kind)``: identity for None, else :func:`scse`."""
    if kind is None:
        return x
    if kind != "scse":
        raise ValueError(f"decoder_attention_type must be None or 'scse'; got {kind!r}")
    return scse(x, f"{name}_attention")


def _corner_taps(in_size, out_size, dtype):
    """Source rows and weights of an ``align_corners=True`` bilinear resize."""
    n_in = ops.cast(in_size, "float32")
    n_out = ops.cast(out_size, "float32")
    scale = ops.where(n_out > 1, (n_in - 1.0) / ops.maximum(n_out - 1.0, 1.0), 0.0)
    src = ops.cast(ops.arange(out_size), "float32") * scale
    lo = ops.floor(src)
    frac = ops.cast(src - lo, dtype)
    lo = ops.cast(lo, "int32")
    hi = ops.minimum(lo + 1, ops.cast(in_size, "int32") - 1)
    return lo, hi, frac


@keras.saving.register_keras_serializable(package="zoo")
class Upsample(keras.layers.Layer):
    """``F.interpolate(x, scale_factor=factor, mode=...)`` with PyTorch's rules.

    ``mode``: ``"nearest"``, ``"bilinear"`` (``align_corners=False``) or
    ``"bilinear_corners"`` (``align_corners=True``, ``nn.UpsamplingBilinear2d``
    and SMP's ``SegmentationHead``). Written with ``keras.ops`` gathers so
    every backend computes the same thing at symbolic sizes.
    """

    def __init__(self, factor, mode="nearest", **kwargs):
        super().__init__(**kwargs)
        self.factor = int(factor)
        self.mode = mode
        if mode not in ("nearest", "bilinear", "bilinear_corners"):
            raise ValueError(f"upsampling mode must be nearest, bilinear or bilinear_corners; got {mode!r}")

    def call(self, x):
        f = self.factor
        if f == 1:
            return x
        if self.mode == "nearest":
            return ops.repeat(ops.repeat(x, f, axis=1), f, axis=2)
        shape = ops.shape(x)
        taps = _corner_taps if self.mode == "bilinear_corners" else _half_pixel_taps
        return separable_resize(x, (shape[1] * f, shape[2] * f), taps)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        f = self.factor
        return (n, None if h is None else h * f, None if w is None else w * f, c)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "mode": self.mode}


@keras.saving.register_keras_serializable(package="zoo")
class ResizeCorners(keras.layers.Layer):
    """Bilinear ``align_corners=True`` resize of ``x`` to ``ref``'s size
    (PSPNet's pooled branches)."""

    def call(self, inputs):
        x, ref = inputs
        out_shape = ops.shape(ref)
        return separable_resize(x, (out_shape[1], out_shape[2]), _corner_taps)

    def compute_output_shape(self, input_shapes):
        x, ref = input_shapes
        return (x[0], ref[1], ref[2], x[3])


@keras.saving.register_keras_serializable(package="zoo")
class AdaptiveAvgPool(keras.layers.Layer):
    """``nn.AdaptiveAvgPool2d(size)``: bin ``i`` of ``n`` averages rows
    ``floor(i*H/n)`` .. ``ceil((i+1)*H/n) - 1`` (the same for columns)."""

    def __init__(self, size, **kwargs):
        super().__init__(**kwargs)
        self.size = int(size)

    def _bins(self, x, axis):
        n = ops.shape(x)[axis]
        out = []
        for i in range(self.size):
            start = (i * n) // self.size
            end = -((-(i + 1) * n) // self.size)
            sl = [slice(None)] * 4
            sl[axis] = slice(start, end)
            out.append(ops.mean(x[tuple(sl)], axis=axis, keepdims=True))
        return ops.concatenate(out, axis=axis) if len(out) > 1 else out[0]

    def call(self, x):
        return self._bins(self._bins(x, 1), 2)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size, self.size, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "size": self.size}


@keras.saving.register_keras_serializable(package="zoo")
class PadToMultiple(keras.layers.Layer):
    """Zero-pads H and W at the bottom/right to the next multiple of
    ``multiple`` (identity on divisible sizes): SMP's input rule, for
    :func:`zoo.smp.from_smp`; the heads crop their logits back."""

    def __init__(self, multiple, **kwargs):
        super().__init__(**kwargs)
        self.multiple = int(multiple)

    def call(self, x):
        m = self.multiple
        pads = []
        for axis in (1, 2):
            side = x.shape[axis]
            if not isinstance(side, int):
                side = ops.shape(x)[axis]
            pads.append((-side) % m)
        if all(isinstance(p, int) and p == 0 for p in pads):
            return x
        return ops.pad(x, [[0, 0], [0, pads[0]], [0, pads[1]], [0, 0]])

    def compute_output_shape(self, input_shape):
        m = self.multiple
        n, h, w, c = input_shape
        return (n, None if h is None else -(-h // m) * m, None if w is None else -(-w // m) * m, c)

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple}


@keras.saving.register_keras_serializable(package="zoo")
class GroupNorm(keras.layers.Layer):
    """``nn.GroupNorm(groups, C)`` on NHWC maps (weights ``gamma``, ``beta``).

    Written with ``keras.ops`` moments: TensorFlow's gradient of Keras's
    ``GroupNormalization`` crashes the process on 1x1 maps (a small input
    to FPN's deepest level), and the same arithmetic on every backend keeps
    them in step.
    """

    def __init__(self, groups, epsilon=GN_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.groups = int(groups)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels % self.groups:
            raise ValueError(f"{self.name}: {channels} channels do not split into {self.groups} groups")
        self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros")

    def call(self, x):
        shape = ops.shape(x)
        c = x.shape[-1]
        y = ops.reshape(x, (shape[0], shape[1], shape[2], self.groups, c // self.groups))
        mean = ops.mean(y, axis=(1, 2, 4), keepdims=True)
        var = ops.mean(ops.square(y - mean), axis=(1, 2, 4), keepdims=True)
        y = ops.reshape((y - mean) / ops.sqrt(var + self.epsilon), shape)
        return y * ops.cast(self.gamma, x.dtype) + ops.cast(self.beta, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "groups": self.groups, "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="zoo")
class TorchConvTranspose2D(keras.layers.Conv2DTranspose):
    """``nn.ConvTranspose2d`` (its kernel ``(in, out, kh, kw)`` loads as
    Keras's ``(kh, kw, out, in)``); with ``padding="same"``, a 4x4 stride-2
    kernel is PyTorch's ``padding=1``."""

    def from_torch(self, array):
        """PyTorch's kernel in this layer's layout."""
        return array.transpose(2, 3, 1, 0)


@keras.saving.register_keras_serializable(package="zoo")
class ResizeTo(keras.layers.Layer):
    """Resizes ``x`` to ``ref``'s spatial size by ``F.interpolate(size=...)``'s
    rule for ``mode`` (``"nearest"``: source ``floor(i * in / out)``;
    ``"bilinear"``; ``"bilinear_corners"``). At an exact factor it is the
    ``scale_factor`` upsampling SMP runs; at equal sizes the identity."""

    def __init__(self, mode="nearest", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("nearest", "bilinear", "bilinear_corners"):
            raise ValueError(f"resize mode must be nearest, bilinear or bilinear_corners; got {mode!r}")
        self.mode = mode

    def call(self, inputs):
        x, ref = inputs
        if self.mode == "bilinear":
            return _bilinear_to(x, ref)
        if self.mode == "bilinear_corners":
            return ResizeCorners().call([x, ref])
        in_shape, out_shape = ops.shape(x), ops.shape(ref)
        for axis in (1, 2):
            n_in, n_out = in_shape[axis], out_shape[axis]
            src = ops.floor(ops.cast(ops.arange(n_out), "float32") * (ops.cast(n_in, "float32")
                                                                       / ops.cast(n_out, "float32")))
            src = ops.minimum(ops.cast(src, "int32"), ops.cast(n_in, "int32") - 1)
            x = ops.take(x, src, axis=axis)
        return x

    def compute_output_shape(self, input_shapes):
        x, ref = input_shapes
        return (x[0], ref[1], ref[2], x[3])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def _bilinear_to(x, ref):
    out_shape = ops.shape(ref)
    return separable_resize(x, (out_shape[1], out_shape[2]))


def fit(x, ref, name, mode="nearest"):
    """``x`` resized to ``ref``'s spatial size (:class:`ResizeTo`): the
    identity wherever SMP runs, an alignment on other sizes. (Not a crop and
    zero pad: TensorFlow's oneDNN graph rewrites crash the process on the
    gradient of such a pad feeding an add, seen on FPN over VGG16 at 40x40.)"""
    return ResizeTo(mode, name=name)([x, ref])


def crop(x, ref, name):
    """Crops (or zero-pads bottom/right) ``x`` to ``ref``'s size: the logits
    of a padded input back to the input."""
    return FitLike(0, name=name)([x, ref])


def up(x, factor, mode, name):
    """:class:`Upsample` by ``factor`` (the identity at 1)."""
    if factor == 1:
        return x
    return Upsample(factor, mode, name=name)(x)


def up_to(x, ref, factor, mode, name):
    """SMP's x``factor`` upsampling to the next level (``ref``), as a resize
    to its size (``factor`` is implied by the sizes)."""
    del factor
    return fit(x, ref, f"{name}_up", mode)


def segmentation_head(x, inputs, classes, kernel=3, upsampling=1, name="segmentation_head"):
    """SMP's ``SegmentationHead``: conv ``{name}_0`` (padding ``kernel // 2``),
    ``align_corners=True`` bilinear x``upsampling``, then the crop to the input.

    Args:
        x: decoder output.
        inputs: the model input (the output's size).
        classes: output channels.
        kernel: conv kernel (3 for Unet-like, 1 for FPN/DeepLabV3+/PSPNet).
        upsampling: SMP's ``upsampling`` factor.
        name: layer name prefix.

    Returns:
        Logits at the input's size.
    """
    x = conv2d(classes, kernel, padding="same" if kernel > 1 else "valid", name=f"{name}_0")(x)
    x = up(x, upsampling, "bilinear_corners", f"{name}_1")
    return crop(x, inputs, "logits")


def stride_of(ctx, key):
    """A pyramid key's stride."""
    return ctx.strides[key]


def levels_upto(pyramid, ctx, depth, lowest=1):
    """Pyramid keys with ``2**lowest <= stride <= 2**depth``, deep to shallow
    (SMP's ``features[lowest:depth + 1]`` reversed)."""
    keys = [k for k in pyramid if 2 ** lowest <= ctx.strides[k] <= 2 ** depth]
    return sorted(keys, key=lambda k: -ctx.strides[k])


def factor(src_stride, dst_stride):
    """The integer upsampling factor between two strides (1 when not finer)."""
    return max(1, int(src_stride) // int(dst_stride))


__all__ = ["AdaptiveAvgPool", "GroupNorm", "PadToMultiple", "ResizeCorners", "ResizeTo", "Upsample",
           "attention", "bn", "conv_relu", "crop", "factor", "fit", "levels_upto", "norm_kind",
           "segmentation_head", "up", "up_to"]

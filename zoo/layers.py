"""Layers with their own math or state, shared by the families.

Blocks are plain functions in each family's file; this module holds only
what a function cannot express: a bilinear kernel initializer, a per-channel
transposed convolution, cropping and resizing to a reference tensor, and an
input-size guard.
"""

import keras
import numpy as np
from keras import ops


def bilinear_kernel(size):
    """The (size, size) bilinear interpolation filter used by FCN and DRNSeg."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = np.arange(size, dtype="float64")
    filt = 1 - np.abs(og - center) / factor
    return np.outer(filt, filt).astype("float32")


@keras.saving.register_keras_serializable(package="zoo")
class BilinearInitializer(keras.initializers.Initializer):
    """Initialises a transposed-conv kernel to per-channel bilinear upsampling.

    Works for Conv2DTranspose kernels ``(k, k, C, C)`` (identity across
    channels, as FCN's surgery does) and depthwise kernels ``(k, k, C, 1)``.
    """

    def __call__(self, shape, dtype=None):
        kh, kw, cout, cin = shape
        kernel = np.zeros(shape, dtype="float32")
        filt = bilinear_kernel(kh)
        if cin == 1:
            kernel[:, :, :, 0] = filt[:, :, None]
        else:
            for c in range(min(cout, cin)):
                kernel[:, :, c, c] = filt
        return ops.convert_to_tensor(kernel, dtype=dtype)

    def get_config(self):
        return {}


@keras.saving.register_keras_serializable(package="zoo")
class DepthwiseConv2DTranspose(keras.layers.Layer):
    """PyTorch's ``ConvTranspose2d(C, C, k, stride, padding, groups=C)``.

    Keras has no grouped transposed convolution. The per-channel kernels are
    expanded to a block-diagonal full kernel at call time, which keeps the
    checkpoint's ``(C, 1, k, k)`` weights exact (a trained ``up`` loads as is)
    at a cost that is small beside the backbone for segmentation class counts.

    Args:
        kernel_size: square kernel side.
        strides: upsampling factor.
        crop: PyTorch's ``padding``: rows/cols removed from each border.
        trainable: False freezes the kernel (DRNSeg's ``up``).
    """

    torch_param_names = ("weight",)

    def __init__(self, kernel_size, strides, crop=0, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.crop = int(crop)

    def build(self, input_shape):
        channels = input_shape[-1]
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.kernel_size, self.kernel_size, channels, 1),
            initializer=BilinearInitializer(),
            trainable=True,
        )

    def call(self, x):
        channels = self.kernel.shape[2]
        eye = ops.eye(channels, dtype=self.kernel.dtype)
        # (k, k, C, 1) -> (k, k, C_out, C_in) block-diagonal.
        full = ops.expand_dims(self.kernel[:, :, :, 0], -1) * eye
        y = ops.conv_transpose(x, ops.cast(full, x.dtype), self.strides, padding="valid")
        if self.crop:
            c = self.crop
            y = y[:, c:-c, c:-c, :]
        return y

    def compute_output_shape(self, input_shape):
        def side(n):
            return None if n is None else (n - 1) * self.strides + self.kernel_size - 2 * self.crop

        return (input_shape[0], side(input_shape[1]), side(input_shape[2]), input_shape[3])

    @staticmethod
    def from_torch(weight):
        """(C, 1, k, k) -> (k, k, C, 1)."""
        return weight.transpose(2, 3, 0, 1)

    def flops(self, in_shape, out_shape):
        # The per-channel math, not the block-diagonal kernel computing it.
        return in_shape[1] * in_shape[2] * in_shape[3] * self.kernel_size**2

    def get_config(self):
        cfg = super().get_config()
        cfg.update(kernel_size=self.kernel_size, strides=self.strides, crop=self.crop)
        return cfg


@keras.saving.register_keras_serializable(package="zoo")
class WindowConv2D(keras.layers.Conv2D):
    """A stride-1 "valid" Conv2D computed as one matmul over extracted windows.

    This is how a classifier's first FC layer runs as a convolution (VGG's
    ``fc1`` as 7x7x512x4096). The math is Conv2D's and so are the weights,
    but a large-kernel convolution over a small map runs far below the
    machine's matmul rate on CPU, while the FC layer it replaces is a matmul.
    Gathering the kh*kw shifted views (row-major (i, j, c), the kernel's own
    order) turns it back into one.
    """

    def __init__(self, filters, kernel_size, **kwargs):
        kwargs.setdefault("padding", "valid")
        super().__init__(filters, kernel_size, **kwargs)
        if self.padding != "valid" or self.strides != (1, 1) or self.dilation_rate != (1, 1):
            raise ValueError("WindowConv2D supports stride 1, no dilation, 'valid' padding only")

    def call(self, x):
        kh, kw = self.kernel_size
        h = ops.shape(x)[1] - kh + 1
        w = ops.shape(x)[2] - kw + 1
        views = [x[:, i : i + h, j : j + w, :] for i in range(kh) for j in range(kw)]
        patches = ops.concatenate(views, axis=-1)
        kernel = ops.reshape(self.kernel, (-1, self.filters))
        y = ops.matmul(patches, ops.cast(kernel, patches.dtype))
        if self.use_bias:
            y = y + ops.cast(self.bias, y.dtype)
        return self.activation(y) if self.activation is not None else y


@keras.saving.register_keras_serializable(package="zoo")
class CropLike(keras.layers.Layer):
    """Crops ``x`` to the spatial size of ``ref`` starting at ``offset``.

    This is Caffe's Crop layer as the reference FCN uses it: with its
    ``pad=100`` first convolution, fixed offsets align every score map with
    the input for any input size.
    """

    def __init__(self, offset, **kwargs):
        super().__init__(**kwargs)
        self.offset = int(offset)

    def call(self, inputs):
        x, ref = inputs
        h, w = ops.shape(ref)[1], ops.shape(ref)[2]
        o = self.offset
        return x[:, o : o + h, o : o + w, :]

    def compute_output_shape(self, input_shapes):
        x, ref = input_shapes
        return (x[0], ref[1], ref[2], x[3])

    def get_config(self):
        return {**super().get_config(), "offset": self.offset}


def _half_pixel_taps(in_size, out_size, dtype):
    """Source rows (or columns) and weights of a half-pixel bilinear resize.

    The rule of ``torch.nn.functional.interpolate(..., align_corners=False)``
    and TensorFlow's ``half_pixel_centers``: output pixel ``i`` samples the
    input at ``(i + 0.5) * in / out - 0.5``, clamped to the first pixel.
    Sizes may be symbolic (a retraced ``tf.function``), so everything is
    ``keras.ops``.
    """
    scale = ops.cast(in_size, "float32") / ops.cast(out_size, "float32")
    src = (ops.cast(ops.arange(out_size), "float32") + 0.5) * scale - 0.5
    src = ops.maximum(src, 0.0)
    lo = ops.floor(src)
    frac = ops.cast(src - lo, dtype)
    lo = ops.cast(lo, "int32")
    hi = ops.minimum(lo + 1, ops.cast(in_size, "int32") - 1)
    return lo, hi, frac


def separable_resize(x, size, taps=_half_pixel_taps):
    """``x`` (N, H, W, C) linearly resized to ``size`` by two separable gathers.

    Args:
        x: a 4-D tensor.
        size: ``(out_h, out_w)``, concrete or symbolic.
        taps: ``taps(in_size, out_size, dtype) -> (lo, hi, frac)``, the
            sampling rule (default: half-pixel centres, :func:`_half_pixel_taps`).

    Returns:
        The resized tensor.
    """
    in_shape = ops.shape(x)
    for axis, out_size in zip((1, 2), size):
        lo, hi, frac = taps(in_shape[axis], out_size, x.dtype)
        frac = ops.reshape(frac, (1, -1, 1, 1) if axis == 1 else (1, 1, -1, 1))
        a, b = ops.take(x, lo, axis=axis), ops.take(x, hi, axis=axis)
        x = a + (b - a) * frac
    return x


@keras.saving.register_keras_serializable(package="zoo")
class ResizeLike(keras.layers.Layer):
    """Bilinear resize of ``x`` to the spatial size of ``ref``.

    Half-pixel centres, i.e. PyTorch's ``interpolate(..., align_corners=False)``.
    Written as two separable gathers rather than ``ops.image.resize``:
    that op checks ``size[0] <= 0`` in Python, which fails on the symbolic
    sizes of a retraced tf.function (a second predict() at another input
    size), and the same arithmetic on every backend keeps them in step.
    """

    def call(self, inputs):
        x, ref = inputs
        out_shape = ops.shape(ref)
        return separable_resize(x, (out_shape[1], out_shape[2]))

    def compute_output_shape(self, input_shapes):
        x, ref = input_shapes
        return (x[0], ref[1], ref[2], x[3])


@keras.saving.register_keras_serializable(package="zoo")
class MinSize(keras.layers.Layer):
    """Passes its input through, refusing spatial sizes below ``min_size``.

    Every model declares its minimum input side per mode (heatmap mode's
    FC-as-conv head needs a full training-crop window; valid-padded
    reductions need a few pixels to leave a non-empty map). Without this
    guard a small input fails deep inside a convolution with an opaque
    message, or returns an empty map.

    Concrete sizes (eager calls, JAX and PyTorch at run time, static shapes)
    are checked in Python and raise a ValueError. Symbolic sizes (a JAX
    ``eval_shape`` or a ``tf.function`` traced with ``None`` dims) are not
    comparable in Python; on TensorFlow they get a graph assertion instead,
    which raises ``InvalidArgumentError`` with the same message when the
    graph runs.
    """

    def __init__(self, min_size, mode="heatmap", model=None, **kwargs):
        super().__init__(**kwargs)
        self.min_size = int(min_size)
        self.mode = mode
        self.model = model

    def _message(self, size):
        who = f"{self.model} {self.mode}" if self.model else self.mode
        return (f"{self.name}: {who} mode: input of {size} is smaller than the "
                f"{self.min_size}x{self.min_size} minimum (inputs must be at least "
                f"{self.min_size}x{self.min_size})")

    def call(self, x):
        sides = tuple(x.shape[1:3])
        concrete = [s for s in sides if isinstance(s, int)]
        if any(s < self.min_size for s in concrete):
            raise ValueError(self._message(sides))
        if len(concrete) < 2 and keras.backend.backend() == "tensorflow":
            x = _tf_assert_min(x, self.min_size, self._message("(H, W)"))
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "min_size": self.min_size, "mode": self.mode,
                "model": self.model}


def _tf_assert_min(x, min_size, message):
    """A run-time size check inside a TensorFlow graph (unknown dims at
    trace time). keras.ops has no assertion op; this is the only backend
    whose traced shapes can stay unknown until the graph runs."""
    import tensorflow as tf

    if not tf.is_symbolic_tensor(x) and not tf.inside_function():
        return x
    hw = tf.shape(x)[1:3]
    check = tf.debugging.assert_greater_equal(hw, tf.constant(min_size, hw.dtype), message=message)
    with tf.control_dependencies([check]):
        return tf.identity(x)


def _side(t, axis):
    """A static side where known (Python int), else the dynamic one."""
    side = t.shape[axis]
    return side if isinstance(side, int) else ops.shape(t)[axis]


@keras.saving.register_keras_serializable(package="zoo")
class FitLike(keras.layers.Layer):
    """Crops ``x`` to ``ref``'s spatial size from ``offset``, zero-padding the
    bottom/right where ``x`` is short.

    The general (non-Caffe) FCN alignment: a ``k = 2s`` stride-``s``
    transposed convolution lands input cell ``i`` at output ``s*i + s/2``
    after an ``s/2`` crop; backbones with floor-mode pooling can leave that
    map a few pixels short of the reference, which the pad fills.
    """

    def __init__(self, offset, **kwargs):
        super().__init__(**kwargs)
        self.offset = int(offset)

    def call(self, inputs):
        x, ref = inputs
        o = self.offset
        x = x[:, o:, o:, :]
        h, w = _side(ref, 1), _side(ref, 2)
        pads = [h - _side(x, 1), w - _side(x, 2)]
        if all(isinstance(p, int) for p in pads):
            pads = [max(p, 0) for p in pads]
        else:
            pads = [ops.maximum(p, 0) for p in pads]
        x = ops.pad(x, [[0, 0], [0, pads[0]], [0, pads[1]], [0, 0]])
        return x[:, :h, :w, :]

    def compute_output_shape(self, input_shapes):
        x, ref = input_shapes
        return (x[0], ref[1], ref[2], x[3])

    def get_config(self):
        return {**super().get_config(), "offset": self.offset}


def _split_phases(x, dh, dw):
    """(N, H, W, C) with H % dh == W % dw == 0 -> (N*dh*dw, H/dh, W/dw, C).

    Phase (p, q) holds rows ``p::dh`` and columns ``q::dw``. Plain reshapes and
    one transpose, so every backend differentiates it as cheap data movement.
    """
    shape = ops.shape(x)
    n, h, w, c = shape[0], shape[1], shape[2], shape[3]
    x = ops.reshape(x, (n, h // dh, dh, w // dw, dw, c))
    x = ops.transpose(x, (0, 2, 4, 1, 3, 5))
    return ops.reshape(x, (n * dh * dw, h // dh, w // dw, c))


def _merge_phases(y, n, dh, dw):
    """Inverse of :func:`_split_phases`."""
    shape = ops.shape(y)
    h, w, c = shape[1], shape[2], shape[3]
    y = ops.reshape(y, (n, dh, dw, h, w, c))
    y = ops.transpose(y, (0, 3, 1, 4, 2, 5))
    return ops.reshape(y, (n, h * dh, w * dw, c))


@keras.saving.register_keras_serializable(package="zoo")
class DilatedConv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` with dilation computed as an undilated conv.

    A stride-1 convolution dilated by ``d`` only ever mixes pixels whose
    coordinates agree modulo ``d``. Splitting the map into its ``d*d`` phases
    (space-to-batch with plain reshapes), running the *undilated* kernel on
    each phase and interleaving the results is exactly the dilated
    convolution. It matters for training: on CPU, TensorFlow's backprop
    kernels do not support dilation and fall back to a path several times
    slower than the undilated convolution of the same size
    (tensorflow/tensorflow#28264, #54279), which made dilated models (DRN,
    ResNet at output stride 8/16, ASPP) train up to 8x slower than PyTorch.

    Weights (``kernel`` ``(kh, kw, cin, cout)``, ``bias``), names, config and
    results are Conv2D's; only the schedule differs. Cases the trick does
    not cover (strides > 1, even kernels with "same" padding, groups, no
    dilation) run Conv2D's own call.

    The map is zero-padded at the bottom/right to a multiple of the dilation:
    those zeros are exactly the zeros "same" padding would read, and outputs
    that depend on them are cropped away for "valid".
    """

    def _phase_split_applies(self):
        dh, dw = self.dilation_rate
        kh, kw = self.kernel_size
        if (dh, dw) == (1, 1) or tuple(self.strides) != (1, 1) or self.groups != 1:
            return False
        if self.padding == "same" and (kh % 2 == 0 or kw % 2 == 0):
            return False
        return self.padding in ("same", "valid")

    # Phase maps up to this many pixels (4x4) use the window matmul: TF's CPU
    # convolution backward is several times slower than the same FLOPs as a
    # matmul on such tiny maps (README, Benchmarks: bench_train).
    WINDOW_MAX_PHASE_PIXELS = 16
    # Per backend, the schedule for maps of at most WINDOW_MAX_PHASE_PIXELS
    # phase pixels and for the rest, as measured (README, Benchmarks:
    # bench_train). torch's own dilated backward is as fast as undilated; XLA
    # on CPU runs its own dilated convolution faster than the window matmul on
    # tiny maps (and far faster than the phase split's many 2x2 maps).
    SCHEDULES = {"tensorflow": ("window", "phase"), "jax": ("conv", "phase"), "torch": ("conv", "conv")}
    # Tests and benchmarks pin one schedule ("conv", "window", "phase") here.
    force_schedule = None

    def _schedule(self, inputs):
        """``"conv"`` (Conv2D's own call), ``"window"`` or ``"phase"``."""
        if not self._phase_split_applies():
            return "conv"
        if self.force_schedule:
            return self.force_schedule
        tiny, large = self.SCHEDULES.get(keras.backend.backend(), self.SCHEDULES["tensorflow"])
        axes = (2, 3) if self.data_format == "channels_first" else (1, 2)
        h, w = (inputs.shape[a] for a in axes)
        if h is not None and w is not None:
            dh, dw = self.dilation_rate
            if -(-h // dh) * -(-w // dw) <= self.WINDOW_MAX_PHASE_PIXELS:
                return tiny
        return large

    def call(self, inputs):
        schedule = self._schedule(inputs)
        if schedule == "conv":
            return super().call(inputs)
        if self.data_format == "channels_first":
            inputs = ops.transpose(inputs, (0, 2, 3, 1))
        y = self._window(inputs) if schedule == "window" else self._phases(inputs)
        if self.use_bias:
            y = y + ops.cast(self.bias, y.dtype)
        if self.data_format == "channels_first":
            y = ops.transpose(y, (0, 3, 1, 2))
        return self.activation(y) if self.activation is not None else y

    def _window(self, x):
        """All kh*kw dilated taps side by side, then one matmul (channels last)."""
        dh, dw = self.dilation_rate
        kh, kw = self.kernel_size
        h, w = ops.shape(x)[1], ops.shape(x)[2]
        if self.padding == "same":
            ph, pw = dh * (kh - 1) // 2, dw * (kw - 1) // 2
            x = ops.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
        else:
            h, w = h - dh * (kh - 1), w - dw * (kw - 1)
        # Row-major (i, j, c): the order of the kernel's own reshape.
        views = [x[:, i * dh : i * dh + h, j * dw : j * dw + w, :] for i in range(kh) for j in range(kw)]
        patches = ops.concatenate(views, axis=-1)
        kernel = ops.reshape(self.kernel, (-1, self.filters))
        return ops.matmul(patches, ops.cast(kernel, patches.dtype))

    def _phases(self, inputs):
        """The undilated kernel on each dilation phase (channels last)."""
        dh, dw = self.dilation_rate
        kh, kw = self.kernel_size
        shape = ops.shape(inputs)
        n, h, w = shape[0], shape[1], shape[2]
        pad_h, pad_w = (-h) % dh, (-w) % dw
        x = inputs
        if not (isinstance(pad_h, int) and isinstance(pad_w, int) and pad_h == 0 and pad_w == 0):
            x = ops.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))
        x = _split_phases(x, dh, dw)
        y = ops.conv(x, ops.cast(self.kernel, x.dtype), strides=1, padding=self.padding,
                     data_format="channels_last")
        y = _merge_phases(y, n, dh, dw)
        if self.padding == "same":
            out_h, out_w = h, w
        else:
            out_h, out_w = h - dh * (kh - 1), w - dw * (kw - 1)
        if not (isinstance(pad_h, int) and isinstance(pad_w, int) and pad_h == 0 and pad_w == 0):
            y = y[:, :out_h, :out_w, :]
        return y


def conv2d(filters, kernel_size, strides=1, dilation_rate=1, padding="same", use_bias=True,
           name=None, **kwargs):
    """The convolution every block and head builds (the single place that picks
    the implementation of a dilated convolution).

    Dilated convolutions get :class:`DilatedConv2D` (the same layer computed
    by phase splitting, several times faster to train on CPU); the others
    stay ``keras.layers.Conv2D``.

    Args:
        filters: output channels.
        kernel_size: int or ``(kh, kw)``.
        strides: convolution stride.
        dilation_rate: dilation rate.
        padding: ``"same"`` or ``"valid"``.
        use_bias: add a bias.
        name: layer name (stable: it maps to the upstream module path).
        **kwargs: further ``keras.layers.Conv2D`` arguments.

    Returns:
        A Conv2D-compatible layer (same weights, same names, same math).
    """
    dil = (dilation_rate, dilation_rate) if isinstance(dilation_rate, int) else tuple(dilation_rate)
    cls = DilatedConv2D if dil != (1, 1) else keras.layers.Conv2D
    return cls(filters, kernel_size, strides=strides, dilation_rate=dilation_rate,
               padding=padding, use_bias=use_bias, name=name, **kwargs)


# ---------------------------------------------------------------------------
# Inception block (issue 5)
# ---------------------------------------------------------------------------


def conv_bn_relu(x, filters, kernel_size, name, strides=1, padding="same", use_bn=True,
                 bn_epsilon=1e-3, bn_scale=True):
    """Convolution, optional BatchNorm, ReLU: torchvision's ``BasicConv2d``.

    Args:
        x: input tensor.
        filters: output channels.
        kernel_size: int or ``(kh, kw)``.
        name: prefix; layers are ``{name}_conv``, ``{name}_bn``, ``{name}_relu``.
        strides: convolution stride.
        padding: ``"same"`` or ``"valid"``.
        use_bn: BatchNorm after a bias-free conv; False gives a conv with bias.
        bn_epsilon: BN epsilon (torchvision's BasicConv2d and Keras: 1e-3).
        bn_scale: BN with a learned gamma (keras.applications' InceptionV3: False).

    Returns:
        The activated tensor.
    """
    x = conv2d(filters, kernel_size, strides=strides, padding=padding, use_bias=not use_bn,
               name=f"{name}_conv")(x)
    if use_bn:
        x = keras.layers.BatchNormalization(epsilon=bn_epsilon, scale=bn_scale, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def inception_block(x, branch_1x1, reduce_3x3, branch_3x3, reduce_5x5, branch_5x5, pool_proj,
                    name, use_bn=False, reduce=True, kernel_5x5=5, bn_epsilon=1e-3):
    """The Inception module of "Going deeper with convolutions" (Szegedy et al.).

    Four parallel branches concatenated on channels: a 1x1 conv; a 1x1
    reduction then a 3x3 conv; a 1x1 reduction then a 5x5 conv; a 3x3/1 max
    pool then a 1x1 projection. The reductions shrink the channel depth the
    costly convolutions multiply; ``reduce=False`` builds the naive module
    (3x3 and 5x5 straight from the input) with the same output channels.

    Layer names follow torchvision's module paths: ``{name}_branch1_conv``,
    ``{name}_branch2_0_conv`` (3x3 reduction), ``{name}_branch2_1_conv``,
    ``{name}_branch3_0_conv``, ``{name}_branch3_1_conv``, ``{name}_branch4_pool``,
    ``{name}_branch4_1_conv`` (plus ``_bn`` and ``_relu``), then ``{name}``
    for the concatenation.

    Args:
        x: input tensor.
        branch_1x1: channels of the 1x1 branch.
        reduce_3x3: channels of the 1x1 reduction before the 3x3 conv.
        branch_3x3: channels of the 3x3 conv.
        reduce_5x5: channels of the 1x1 reduction before the "5x5" conv.
        branch_5x5: channels of the "5x5" conv.
        pool_proj: channels of the 1x1 projection after the max pool.
        name: block name, e.g. ``"inception3a"``.
        use_bn: BatchNorm after each conv (torchvision) instead of biases (paper).
        reduce: False builds the naive module without the two reductions.
        kernel_5x5: kernel of the "5x5" branch (torchvision uses 3).
        bn_epsilon: BN epsilon.

    Returns:
        The concatenated tensor with
        ``branch_1x1 + branch_3x3 + branch_5x5 + pool_proj`` channels.
    """
    def conv(t, filters, kernel, sub):
        return conv_bn_relu(t, filters, kernel, f"{name}_{sub}", use_bn=use_bn, bn_epsilon=bn_epsilon)

    b1 = conv(x, branch_1x1, 1, "branch1")
    b2 = conv(x, reduce_3x3, 1, "branch2_0") if reduce else x
    b2 = conv(b2, branch_3x3, 3, "branch2_1")
    b3 = conv(x, reduce_5x5, 1, "branch3_0") if reduce else x
    b3 = conv(b3, branch_5x5, kernel_5x5, "branch3_1")
    b4 = keras.layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_branch4_pool")(x)
    b4 = conv(b4, pool_proj, 1, "branch4_1")
    return keras.layers.Concatenate(axis=-1, name=name)([b1, b2, b3, b4])

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


@keras.saving.register_keras_serializable(package="zoo")
class ResizeLike(keras.layers.Layer):
    """Bilinear resize of ``x`` to the spatial size of ``ref``.

    Half-pixel centres, i.e. PyTorch's ``interpolate(..., align_corners=False)``.
    """

    def call(self, inputs):
        x, ref = inputs
        size = (ops.shape(ref)[1], ops.shape(ref)[2])
        return ops.image.resize(x, size, interpolation="bilinear", antialias=False)

    def compute_output_shape(self, input_shapes):
        x, ref = input_shapes
        return (x[0], ref[1], ref[2], x[3])


@keras.saving.register_keras_serializable(package="zoo")
class MinSize(keras.layers.Layer):
    """Passes its input through, refusing spatial sizes below ``min_size``.

    Heatmap mode's FC-as-conv head needs a full training-crop window; without
    this guard a small input fails deep inside a convolution with an opaque
    message.
    """

    def __init__(self, min_size, **kwargs):
        super().__init__(**kwargs)
        self.min_size = int(min_size)

    def call(self, x):
        for side in x.shape[1:3]:
            if side is not None and side < self.min_size:
                raise ValueError(
                    f"{self.name}: input of {tuple(x.shape[1:3])} is smaller than the "
                    f"{self.min_size}x{self.min_size} training crop that heatmap mode slides"
                )
        return x

    def get_config(self):
        return {**super().get_config(), "min_size": self.min_size}

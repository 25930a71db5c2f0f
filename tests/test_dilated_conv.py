"""DilatedConv2D (zoo.layers.conv2d for dilation > 1) against keras.layers.Conv2D.

Every schedule the layer can pick ("window": dilated taps + one matmul;
"phase": the undilated kernel on the map's dilation phases) must give
Conv2D's outputs and gradients with the same weights, at map sizes that are
and are not multiples of the dilation.
"""

import os
import subprocess
import sys
import textwrap
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo.layers import DilatedConv2D, conv2d

RTOL, ATOL = 1e-4, 1e-5
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pair(filters, dilation, shape, use_bias, padding="same", kernel=3, seed=0):
    """A Conv2D and a conv2d() layer with the same random weights."""
    ref = keras.layers.Conv2D(filters, kernel, dilation_rate=dilation, padding=padding, use_bias=use_bias)
    ref.build(shape)
    rng = np.random.default_rng(seed)
    ref.set_weights([rng.normal(size=w.shape).astype("float32") for w in ref.weights])
    fast = conv2d(filters, kernel, dilation_rate=dilation, padding=padding, use_bias=use_bias)
    fast.build(shape)
    fast.set_weights(ref.get_weights())
    return ref, fast


def _out_and_grads(layer, x):
    """Output and d(sum(y * r))/d(x, kernel) with a fixed random cotangent r."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        r = tf.constant(np.random.default_rng(7).normal(size=y.shape).astype("float32"))
        loss = tf.reduce_sum(y * r)
    gx, gk = tape.gradient(loss, [x, layer.kernel])
    return y.numpy(), gx.numpy(), gk.numpy()


@pytest.mark.parametrize("schedule", ["window", "phase", None])
@pytest.mark.parametrize("dilation", [2, 4])
@pytest.mark.parametrize("hw", [(8, 8), (9, 11), (12, 7)])
@pytest.mark.parametrize("use_bias", [True, False])
def test_same_padding_outputs_and_gradients_match_conv2d(monkeypatch, schedule, dilation, hw, use_bias):
    monkeypatch.setattr(DilatedConv2D, "force_schedule", schedule)
    shape = (3, *hw, 5)
    ref, fast = _pair(6, dilation, shape, use_bias)
    assert type(fast) is DilatedConv2D
    x = np.random.default_rng(1).normal(size=shape).astype("float32")
    for want, got, what in zip(_out_and_grads(ref, x), _out_and_grads(fast, x), ("output", "d/dx", "d/dkernel")):
        assert got.shape == want.shape, what
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=what)


@pytest.mark.parametrize("schedule", ["window", "phase"])
@pytest.mark.parametrize("hw", [(13, 13), (14, 11)])
def test_valid_padding_and_bias_gradient_match_conv2d(monkeypatch, schedule, hw):
    monkeypatch.setattr(DilatedConv2D, "force_schedule", schedule)
    shape = (2, *hw, 4)
    ref, fast = _pair(3, 2, shape, True, padding="valid")
    x = tf.constant(np.random.default_rng(2).normal(size=shape).astype("float32"))
    grads = []
    for layer in (ref, fast):
        with tf.GradientTape() as tape:
            y = layer(x)
            loss = tf.reduce_sum(y * y)
        grads.append((y.numpy(), tape.gradient(loss, layer.bias).numpy()))
    assert grads[1][0].shape == grads[0][0].shape == (2, hw[0] - 4, hw[1] - 4, 3)
    for want, got in zip(grads[0], grads[1]):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_schedule_choice():
    small = conv2d(8, 3, dilation_rate=4, name="a")
    small.build((1, 8, 8, 8))
    assert small._schedule(keras.KerasTensor((1, 8, 8, 8))) == "window"  # 2x2 phases
    assert small._schedule(keras.KerasTensor((1, 64, 64, 8))) == "phase"
    assert small._schedule(keras.KerasTensor((1, None, None, 8))) == "phase"
    grouped = DilatedConv2D(8, 3, dilation_rate=2, groups=2)
    assert grouped._schedule(keras.KerasTensor((1, 8, 8, 8))) == "conv"
    even = DilatedConv2D(8, 2, dilation_rate=2, padding="same")
    assert even._schedule(keras.KerasTensor((1, 8, 8, 8))) == "conv"
    assert type(conv2d(8, 3, dilation_rate=1)) is keras.layers.Conv2D


@pytest.mark.parametrize("backend, tiny, large", [("tensorflow", "window", "phase"),
                                                  ("jax", "conv", "phase"), ("torch", "conv", "conv")])
def test_schedule_per_backend(monkeypatch, backend, tiny, large):
    # The measured choice (README, bench_train): TF's dilated backward is
    # slow everywhere; XLA's own dilated conv wins on tiny maps only; torch's
    # never needs help.
    monkeypatch.setattr(keras.backend, "backend", lambda: backend)
    layer = conv2d(8, 3, dilation_rate=4, name="a")
    assert layer._schedule(keras.KerasTensor((1, 8, 8, 8))) == tiny
    assert layer._schedule(keras.KerasTensor((1, 64, 64, 8))) == large
    assert layer._schedule(keras.KerasTensor((1, None, None, 8))) == large


def test_keras_round_trip_keeps_class_weights_and_outputs(tmp_path):
    inputs = keras.Input((None, None, 4))
    y = conv2d(6, 3, dilation_rate=2, name="layer4_0_conv2")(inputs)
    model = keras.Model(inputs, y)
    layer = model.get_layer("layer4_0_conv2")
    assert [w.path for w in layer.weights] == ["layer4_0_conv2/kernel", "layer4_0_conv2/bias"]
    assert layer.kernel.shape == (3, 3, 4, 6)
    plain = keras.layers.Conv2D(6, 3, dilation_rate=2, padding="same", name="layer4_0_conv2")
    assert layer.get_config() == plain.get_config()
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.get_layer("layer4_0_conv2")) is DilatedConv2D
    x = np.random.default_rng(3).normal(size=(2, 10, 9, 4)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=0, atol=0)


def _drn_with_fast_convs(monkeypatch):
    """drn_d_22 dense, its dilated convolutions built by conv2d's class.

    Until the families build through ``zoo.layers.conv2d``, ``zoo.models.drn``
    calls ``keras.layers.Conv2D``; route dilated ones to DilatedConv2D.
    """
    from zoo.models import drn

    def conv(*args, **kwargs):
        d = kwargs.get("dilation_rate", 1)
        cls = DilatedConv2D if d not in (1, (1, 1)) else keras.layers.Conv2D
        return cls(*args, **kwargs)

    if hasattr(drn, "layers") and drn.layers is keras.layers:
        proxy = types.SimpleNamespace(**{k: getattr(keras.layers, k) for k in dir(keras.layers)
                                         if not k.startswith("_")})
        proxy.Conv2D = conv
        monkeypatch.setattr(drn, "layers", proxy)
    keras.utils.set_random_seed(0)
    return drn.DRN_D_22(mode="dense", classes=5, input_shape=(64, 64, 3))


def test_drn_d_22_dense_unchanged_against_plain_conv2d(monkeypatch):
    model = _drn_with_fast_convs(monkeypatch)
    dilated = [layer for layer in model.layers if isinstance(layer, DilatedConv2D)]
    assert len(dilated) >= 8, "DRN-D-22's dilated convolutions should be DilatedConv2D"
    assert {layer._schedule(keras.KerasTensor((2, 8, 8, 1))) for layer in dilated} == {"window"}
    x = tf.constant(np.random.default_rng(4).uniform(-1, 1, (2, 64, 64, 3)).astype("float32"))
    kernels = [layer.kernel for layer in model.layers if hasattr(layer, "kernel")]

    start = model.get_weights()

    def run():
        model.set_weights(start)  # training=True moves the BN statistics
        out = [model(x, training=True).numpy()]
        model.set_weights(start)
        # Gradients in inference mode: with batch statistics, this random
        # net flips a ReLU on a 1e-7 relative change of any weight, which
        # moves every earlier gradient by ~4e-3 whatever computed the conv.
        with tf.GradientTape() as tape:
            y = model(x, training=False)
            loss = tf.reduce_mean(y * y)
        return out + [y.numpy()] + [g.numpy() for g in tape.gradient(loss, kernels)]

    fast = run()
    monkeypatch.setattr(DilatedConv2D, "force_schedule", "conv")  # exactly Conv2D.call
    plain = run()
    for got, want in zip(fast, plain):
        scale = float(np.abs(want).max())
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale)


_OTHER_BACKEND = textwrap.dedent("""
    import numpy as np, keras
    from keras import ops
    from zoo.layers import DilatedConv2D
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 9, 10, 3)).astype("float32")
    layer = DilatedConv2D(4, 3, dilation_rate=2, padding="same", name="c")
    layer.build(x.shape)
    layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in layer.weights])
    out = {}
    for schedule in ("conv", "window", "phase"):
        DilatedConv2D.force_schedule = schedule  # eager: every call re-runs call()
        if keras.backend.backend() == "jax":
            import jax
            y = layer(x)
            g = jax.grad(lambda t: (layer(t) ** 2).sum())(x)
        else:
            import torch
            t = torch.tensor(x, requires_grad=True)
            y = layer(t)
            (y ** 2).sum().backward()
            g = t.grad
        out[schedule] = (ops.convert_to_numpy(y), ops.convert_to_numpy(g))
    for schedule in ("window", "phase"):
        for got, want in zip(out[schedule], out["conv"]):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    print("ok", keras.backend.backend())
""")


@pytest.mark.backends
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_backends_match_conv2d(backend):
    pytest.importorskip(backend)
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": ROOT}
    proc = subprocess.run([sys.executable, "-c", _OTHER_BACKEND], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"ok {backend}" in proc.stdout

"""ResNet-50: zoo vs keras.applications inference, and the cost of output_stride.

Cases:
* ``resnet50_<size>``: zoo.ResNet50 (keras layout) against
  keras.applications.ResNet50 with the same weights, both through
  ``compiled_call`` (tf.function), batch 1, at 224 and 512, timed
  alternately; ``ratio`` is zoo / keras (target <= 1.0).
* ``resnet50_os<k>_512``: zoo.ResNet50 at output_stride 32/16/8 on 512x512,
  with analytic multiply-adds; ``ratio`` is time relative to stride 32.
* ``resnet50_predict_224``: ``model.predict`` beside the compiled path once,
  to show the per-call overhead ``predict`` adds for a single batch.
"""

import statistics

import keras

import zoo
from common import compiled_call, random_images, timeit
from zoo.analysis.flops import count_flops


def _time(model, x, args):
    fn = compiled_call(model)
    return timeit(lambda: fn(x), warmup=args.warmup, repeat=args.repeat)["median_s"]


def _interleaved(fn_a, fn_b, args):
    """Medians of ``fn_a`` and ``fn_b`` timed alternately, so that load from
    other processes on a shared machine hits both alike."""
    for _ in range(args.warmup):
        timeit(fn_a, warmup=0, repeat=1)
        timeit(fn_b, warmup=0, repeat=1)
    a, b = [], []
    for _ in range(max(args.repeat, 5)):
        a.append(timeit(fn_a, warmup=0, repeat=1)["median_s"])
        b.append(timeit(fn_b, warmup=0, repeat=1)["median_s"])
    return statistics.median(a), statistics.median(b)


def run(args):
    rows = []
    for size in (224, 512):
        x = random_images(1, size, size)
        ours = zoo.ResNet50(input_shape=(size, size, 3))
        peer = keras.applications.ResNet50(weights=None, input_shape=(size, size, 3))
        for layer in peer.layers:  # same weights, by name
            if layer.weights:
                layer.set_weights(ours.get_layer(layer.name).get_weights())
        f_ours, f_peer = compiled_call(ours), compiled_call(peer)
        t_ours, t_peer = _interleaved(lambda: f_ours(x), lambda: f_peer(x), args)
        rows.append({"case": f"resnet50_{size}", "median_s": t_ours, "peer": "keras.applications",
                     "peer_s": t_peer, "ratio": t_ours / t_peer, "flops": count_flops(ours)})
        if size == 224:
            t_pred, t_ours = _interleaved(lambda: ours.predict(x, verbose=0),
                                          lambda: f_ours(x), args)
            rows.append({"case": "resnet50_predict_224", "median_s": t_pred,
                         "peer": "compiled_call", "peer_s": t_ours, "ratio": t_pred / t_ours})
        del ours, peer
        keras.backend.clear_session()
    x = random_images(1, 512, 512)
    base = None
    for stride in (32, 16, 8):
        model = zoo.ResNet50(input_shape=(512, 512, 3), output_stride=stride)
        t = _time(model, x, args)
        base = base or t
        rows.append({"case": f"resnet50_os{stride}_512", "median_s": t, "peer": "os32",
                     "ratio": t / base, "flops": count_flops(model)})
        del model
        keras.backend.clear_session()
    return rows

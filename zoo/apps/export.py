"""Deployment artifacts through Keras's ``model.export``, and runners that
load each artifact in its own runtime (for tests, benchmarks and users).

Formats (the converters are in the ``export`` extra, never a runtime
dependency: ``pip install keras-zoo[export]``):

========== ==================== =============================== ===========================
format     Keras format         runtime                         dynamic H/W
========== ==================== =============================== ===========================
savedmodel ``tf_saved_model``   ``tf.saved_model.load``         yes
tflite     ``litert``           ``ai_edge_litert`` Interpreter  yes (``resize_tensor_input``)
onnx       ``onnx`` (tf2onnx)   ``onnxruntime``                 yes
========== ==================== =============================== ===========================

H and W stay dynamic unless ``size`` fixes them or the model itself has a
static input size (e.g. a VGG classifier's 224x224).

Every artifact is traced with :class:`zoo.layers.DilatedConv2D` on its
``"conv"`` schedule (the framework's own dilated convolution): the phase
split's size-dependent padding is a training-speed trick whose dynamic
``pad``/``reshape`` graph tf2onnx converts wrongly for sizes that are not a
multiple of the dilation (onnxruntime then fails at e.g. 97x131), and the
plain dilated convolution is the portable op in every runtime. The
results are the same numbers (to float rounding).
"""

import contextlib
import os

import keras
import numpy as np

FORMATS = {"savedmodel": "tf_saved_model", "tflite": "litert", "onnx": "onnx"}


def input_spec(model, size=None, dtype=None):
    """The export signature: the model's own input, H and W dynamic.

    Args:
        model: a ``keras.Model`` with one image input.
        size: optional ``(H, W)`` that fixes the spatial size.
        dtype: the artifact's input dtype; None keeps the model's (e.g.
            ``"uint8"`` for a model whose first layer is ``Preprocess``).

    Returns:
        A one-element list of ``keras.InputSpec``.
    """
    shape = list(model.inputs[0].shape)
    if size is not None:
        shape[1:3] = [int(size[0]), int(size[1])]
    shape[0] = None
    dtype = dtype or keras.backend.standardize_dtype(model.inputs[0].dtype)
    return [keras.InputSpec(shape=tuple(shape), dtype=dtype)]


def export_model(model, path, format="savedmodel", size=None, dtype=None, progress=None):
    """Writes a deployment artifact.

    Args:
        model: a ``keras.Model``.
        path: output directory (savedmodel) or file (tflite, onnx).
        format: ``"savedmodel"``, ``"tflite"`` or ``"onnx"``.
        size: optional ``(H, W)``; None keeps them dynamic where possible.
        dtype: the artifact's input dtype (see :func:`input_spec`).
        progress: called with a one-line message as each phase starts and
            ends (``zoo export`` passes ``print``); None says nothing.

    Returns:
        ``path``. A model the zoo built also gets its head record
        (``model.zoo``: model, mode, head, head layers, classes, output
        stride) as JSON beside the artifact (:func:`record_path`), so a
        deployment knows what the outputs are.

    Raises:
        ValueError: unknown format.
        ImportError: the format's converter is not installed (with the
            extra to install).
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; valid choices: {', '.join(FORMATS)}")
    if format == "onnx":
        try:
            import tf2onnx  # noqa: F401
        except ImportError as e:
            raise ImportError("ONNX export needs tf2onnx: pip install 'keras-zoo[export]'") from e
    import time

    say = progress or (lambda message: None)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    spec = input_spec(model, size, dtype)[0]
    dims = "x".join("?" if d is None else str(d) for d in spec.shape[1:])
    # Tracing and converting happen inside one Keras call, the slow part
    # (seconds to minutes): say so before it starts, and how long it took.
    say(f"exporting {model.name} ({model.count_params():,} parameters) as {format}: tracing the "
        f"model for input batch x {dims} {spec.dtype} and converting, please wait ...")
    t0 = time.perf_counter()
    with portable_schedule():
        model.export(path, format=FORMATS[format], verbose=False, input_signature=[spec])
    say(f"  traced and converted in {time.perf_counter() - t0:.1f} s")
    record = getattr(model, "zoo", None)
    if record:
        import json

        with open(record_path(path, format), "w", encoding="utf8") as f:
            json.dump(dict(record, format=format), f, indent=2)
        say(f"  head record: {record_path(path, format)}")
    return path


@contextlib.contextmanager
def portable_schedule():
    """Traces :class:`zoo.layers.DilatedConv2D` with its ``"conv"`` schedule
    (the plain dilated convolution) inside the block; see the module notes."""
    from zoo.layers import DilatedConv2D

    saved = DilatedConv2D.__dict__.get("force_schedule")
    DilatedConv2D.force_schedule = "conv"
    try:
        yield
    finally:
        DilatedConv2D.force_schedule = saved


def record_path(path, format):
    """Where :func:`export_model` writes the head record: inside a SavedModel
    folder (``zoo.json``), else beside the file (``<file>.zoo.json``)."""
    return os.path.join(path, "zoo.json") if format == "savedmodel" else f"{path}.zoo.json"


def load_artifact(path, format):
    """A callable that runs an exported artifact in its own runtime.

    Args:
        path: what :func:`export_model` wrote.
        format: ``"savedmodel"``, ``"tflite"`` or ``"onnx"``.

    Returns:
        ``f(images) -> numpy array`` for a numpy batch of the exported
        input dtype.
    """
    if format == "savedmodel":
        import tensorflow as tf

        loaded = tf.saved_model.load(path)

        def run(x):
            return loaded.serve(x).numpy()

        run.artifact = loaded  # the functions need the loaded object alive
        return run
    if format == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})[0]
    if format == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=path)
        inp = interpreter.get_input_details()[0]
        out = interpreter.get_output_details()[0]
        state = {"shape": None}

        def run(x):
            if state["shape"] != x.shape:
                # dynamic dims are -1 in shape_signature: resize, then allocate
                interpreter.resize_tensor_input(inp["index"], x.shape)
                interpreter.allocate_tensors()
                state["shape"] = x.shape
            interpreter.set_tensor(inp["index"], np.ascontiguousarray(x))
            interpreter.invoke()
            return interpreter.get_tensor(out["index"]).copy()

        return run
    raise ValueError(f"unknown export format {format!r}; valid choices: {', '.join(FORMATS)}")


def with_preprocessing(model, spec):
    """Puts a :class:`zoo.preprocessing.Preprocess` layer in front of a model
    that was built without one; the new input takes uint8 RGB.

    Args:
        model: a ``keras.Model`` taking preprocessed floats.
        spec: the preprocessing record of its weights.

    Returns:
        A ``keras.Model`` on uint8 images.
    """
    from zoo.assembler import ZooModel
    from zoo.preprocessing import Preprocess

    inp = keras.Input(tuple(model.inputs[0].shape[1:]), dtype="uint8", name="image")
    record = dict(getattr(model, "zoo", None) or {}, preprocessing=spec)
    return ZooModel(inp, model(Preprocess(spec, name="preprocess")(inp)), name=model.name,
                    zoo=record)

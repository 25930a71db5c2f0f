"""One assembler for every family: backbone + classifier spec + head -> model.

A family describes itself with a :class:`Backbone` (a function from the input
tensor and an output stride to its stages, the classifier it was trained
with, its valid output strides, its default head and minimum input sizes) and
calls :func:`assemble`. This module alone turns that into the four modes:

* ``classify``: the classifier spec on the last stage;
* ``heatmap``: the same classifier as convolutions, one output cell per
  training-crop window (the exact FC-on-window identity);
* ``dense``: a head from :mod:`zoo.heads` over the stride-keyed pyramid;
* ``features``: the pyramid itself (``"P0"`` .. ``"P5"``, stride ``2**k``).

The weight map's ignore/optional lists come from here too: the chosen head's
``layers`` patterns are optional in dense mode, every head's patterns and the
classifier's layers are ignored where the model does not have them.
"""

import collections
import dataclasses
import math
from typing import Callable, Dict, Optional, Tuple

import keras
from keras import layers

from zoo import heads as zheads
from zoo.registry import DEFAULT, MODES, check_choice, resolve_mode
from zoo.weights.convert import WeightMap
from zoo.layers import MinSize, WindowConv2D
from zoo.weights import load_weights


@dataclasses.dataclass(frozen=True)
class Classifier:
    """How a backbone was trained to classify.

    Attributes:
        kind: ``"flatten_fc"`` (VGG: Flatten, hidden Dense layers, Dense),
            ``"pool_fc"`` (ResNet, GoogLeNet, Inception: global average pool,
            Dense) or ``"pool_conv"`` (DRN: global average pool, 1x1 conv).
        names: weighted layer names, the output layer last.
        pool: the pooling layer's name (pool kinds).
        hidden: widths of the hidden FC layers (``flatten_fc``).
        window: cells of the last stage the classifier sees at the training
            crop (the Flatten's or the pool's window); 0 means heatmap mode
            applies the classifier at every cell.
        dropout: ``(name, rate)`` of a dropout before the output layer in
            classify mode.
        flatten: name of the Flatten (``flatten_fc``) or of the trailing
            Flatten of ``pool_conv``.
    """

    kind: str
    names: Tuple[str, ...]
    pool: Optional[str] = None
    hidden: Tuple[int, ...] = ()
    window: int = 0
    dropout: Optional[Tuple[str, float]] = None
    flatten: str = "flatten"

    def classify(self, x, classes, activation):
        """The trained classifier on the last stage's map."""
        if self.kind == "flatten_fc":
            x = layers.Flatten(name=self.flatten)(x)
            for width, lname in zip(self.hidden, self.names[:-1]):
                x = layers.Dense(width, activation="relu", name=lname)(x)
            return layers.Dense(classes, activation=activation, name=self.names[-1])(x)
        if self.kind == "pool_fc":
            x = layers.GlobalAveragePooling2D(name=self.pool)(x)
            if self.dropout:
                x = layers.Dropout(self.dropout[1], name=self.dropout[0])(x)
            return layers.Dense(classes, activation=activation, name=self.names[-1])(x)
        if self.kind == "pool_conv":
            x = layers.GlobalAveragePooling2D(keepdims=True, name=self.pool)(x)
            x = layers.Conv2D(classes, 1, activation=activation, name=self.names[-1])(x)
            return layers.Flatten(name=self.flatten)(x)
        raise ValueError(f"unknown classifier kind {self.kind!r}")

    def heatmap(self, x, classes, activation):
        """The classifier as convolutions: each output cell is the classifier
        on one ``window`` x ``window`` block of cells (or on one cell)."""
        if self.kind == "flatten_fc":
            widths = list(self.hidden)
            x = WindowConv2D(widths[0], self.window, activation="relu", name=self.names[0])(x)
            for width, lname in zip(widths[1:], self.names[1:-1]):
                x = layers.Conv2D(width, 1, activation="relu", name=lname)(x)
            return layers.Conv2D(classes, 1, activation=activation, name=self.names[-1])(x)
        if self.window:
            x = layers.AveragePooling2D(self.window, strides=1, name=self.pool)(x)
        return layers.Conv2D(classes, 1, activation=activation, name=self.names[-1])(x)


@dataclasses.dataclass(frozen=True)
class Stages:
    """What a backbone's build function returns.

    Attributes:
        stages: ``[(tensor, stride), ...]`` in depth order; the last one
            feeds the classifier.
        extras: backbone-specific tensors a hook may need (GoogLeNet's
            auxiliary-head inputs).
    """

    stages: Tuple[Tuple[object, int], ...]
    extras: Dict[str, object] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class HeadContext:
    """What a head may know about the backbone besides the pyramid.

    Attributes:
        backbone: the backbone's model name.
        output_stride: stride of the last stage.
        strides: ``{key: stride}`` of the pyramid's levels.
        channels: ``{key: channels}``.
        last: the pyramid key of the last stage.
        aux: the stage before the last (torchvision's auxiliary heads read it).
        extras: backbone-specific head data (VGG's pad-100 FCN offsets,
            Inception's skip names).
    """

    backbone: str
    output_stride: int
    strides: Dict[str, int]
    channels: Dict[str, int]
    last: str
    aux: object
    extras: Dict[str, object]

    def describe(self):
        """``"P1 (stride 2), P2 (stride 4), ..."`` for error messages."""
        return ", ".join(f"{k} (stride {s})" for k, s in self.strides.items())


@dataclasses.dataclass(frozen=True)
class Backbone:
    """A family's description for :func:`assemble`.

    Attributes:
        name: model name for weights and messages (``"resnet50"``).
        build: ``build(x, output_stride) -> Stages``.
        classifier: a :class:`Classifier`.
        output_strides: the valid ``output_stride`` values.
        default_output_stride: ``{mode: stride}``; modes not listed use the
            largest valid value.
        default_head: the dense head of this family.
        min_input: ``{mode: side}`` minimum input side per mode for the
            default output stride, or a callable ``(mode, output_stride) ->
            side``. Heatmap with a windowed classifier adds its own minimum.
        train_crop: the classify-mode input side.
        modes: modes this backbone supports.
        weight_map: base :class:`WeightMap` (name rules, renames, weights
            upstream stores but never uses); the assembler adds the mode's
            ignore/optional lists.
        load: ``load(model, weights, weight_map, mode) -> model``; defaults
            to :func:`zoo.weights.load_weights` with ``file_key(mode)``.
        file_key: ``file_key(mode) -> str`` for multi-file manifest tags.
        head_extras: passed to heads as ``HeadContext.extras``.
        classify_input: None lets classify mode take any size (global
            pooling); else the classify-mode default side.
        finish: optional ``finish(outputs, stages, mode, classes, activation)
            -> outputs`` hook (GoogLeNet's auxiliary classifiers).
    """

    name: str
    build: Callable
    classifier: Classifier
    output_strides: Tuple[int, ...] = (32,)
    default_output_stride: Dict[str, int] = dataclasses.field(default_factory=dict)
    default_head: str = "bilinear"
    min_input: object = dataclasses.field(default_factory=dict)
    train_crop: int = 224
    modes: Tuple[str, ...] = MODES
    weight_map: WeightMap = dataclasses.field(default_factory=WeightMap)
    load: Optional[Callable] = None
    file_key: Optional[Callable] = None
    head_extras: Dict[str, object] = dataclasses.field(default_factory=dict)
    classify_input: Optional[int] = 224
    finish: Optional[Callable] = None


def level_key(stride):
    """``8 -> "P3"``: the pyramid key of a stride."""
    k = int(round(math.log2(stride)))
    if 2**k != stride:
        raise ValueError(f"stride {stride} is not a power of two")
    return f"P{k}"


def make_pyramid(stages):
    """Stride-keyed pyramid of ``[(tensor, stride), ...]``: the deepest stage
    per stride wins; keys ordered by stride."""
    by_key = {}
    for tensor, stride in stages:
        by_key[level_key(stride)] = (tensor, stride)
    ordered = sorted(by_key.items(), key=lambda kv: kv[1][1])
    return collections.OrderedDict((k, t) for k, (t, _) in ordered)


def resolve_output_stride(backbone, mode, output_stride):
    """The output stride to build, or a ValueError listing the valid ones."""
    if output_stride is None:
        return backbone.default_output_stride.get(mode, max(backbone.output_strides))
    if output_stride not in backbone.output_strides:
        raise ValueError(
            f"{backbone.name}: output_stride must be one of "
            f"{', '.join(map(str, backbone.output_strides))}; got {output_stride!r}"
        )
    return output_stride


def min_input_side(backbone, mode, output_stride):
    """The smallest input side ``mode`` accepts at ``output_stride``."""
    if callable(backbone.min_input):
        side = backbone.min_input(mode, output_stride)
    else:
        side = backbone.min_input.get(mode, backbone.min_input.get("features", 1))
    if mode == "heatmap" and backbone.classifier.window:
        side = max(side, backbone.classifier.window * output_stride)
    return int(side)


def check_static_min(backbone, mode, input_shape, side):
    """Refuses a static input side below ``side`` with the minimum named."""
    for s in input_shape[:2]:
        if s is not None and s < side:
            raise ValueError(
                f"{backbone.name} {mode} mode needs inputs of at least {side}x{side}; "
                f"got input_shape={tuple(input_shape)} (smaller inputs leave an empty "
                f"feature map or no full classifier window)"
            )


def derive_weight_map(backbone, mode, head_spec, extra_ignore=()):
    """The mode's weight map: head layers optional in dense mode; every head's
    layers and (headless) the classifier ignored in a file."""
    base = backbone.weight_map
    all_heads = tuple(p for name in zheads.list_heads() for p in zheads.get_head(name).layers)
    ignore = tuple(base.ignore) + tuple(extra_ignore) + all_heads
    optional = tuple(base.optional)
    if mode in ("dense", "features"):
        ignore += tuple(backbone.classifier.names)
    if mode == "dense":
        optional += tuple(head_spec.layers)
    return dataclasses.replace(base, ignore=ignore, optional=optional)


def _build_head(spec, pyramid, inputs, classes, ctx, options):
    missing = [k for k in spec.needs if k != "last" and k not in pyramid]
    if missing:
        raise ValueError(
            f"head {spec.name!r} needs pyramid levels {', '.join(spec.needs)}; "
            f"{ctx.backbone} at output_stride={ctx.output_stride} has {ctx.describe()} "
            f"(a larger output_stride may provide them)"
        )
    return spec.build(pyramid, inputs, classes, ctx, **options)


def assemble(backbone, *, weights=None, mode="classify", input_shape=None, classes=1000,
             classifier_activation=DEFAULT, name=None, output_stride=None, head=None,
             aux_head=False, in_channels=3, include_preprocessing=False, preprocessing=None,
             head_options=None, extra_ignore=(), model_name=None):
    """Builds ``backbone`` in ``mode`` and loads ``weights``.

    Args:
        backbone: a :class:`Backbone`.
        weights: None, a published tag or a file path.
        mode: ``"classify"``, ``"heatmap"``, ``"dense"`` or ``"features"``.
        input_shape: ``(H, W, C)``; defaults per mode.
        classes: output classes.
        classifier_activation: ``"default"`` (softmax in classify/heatmap),
            an activation, or None.
        name: model name.
        output_stride: stride of the last stage (dilation beyond it); None
            takes the backbone's default for the mode.
        head: dense head name (:func:`zoo.heads.list_heads`); None takes the
            backbone's default.
        aux_head: build the head's auxiliary output (heads with that option).
        in_channels: input channels.
        include_preprocessing: put :func:`zoo.preprocessing.preprocessing_layer`
            first.
        preprocessing: explicit preprocessing record for that layer.
        head_options: further keyword options for the head.
        extra_ignore: further file layers to ignore (family options such as
            GoogLeNet without auxiliary classifiers).
        model_name: manifest name for weights and preprocessing (defaults to
            ``backbone.name``).

    Returns:
        A ``keras.Model``.
    """
    model_name = model_name or backbone.name
    check_choice(mode, backbone.modes, "mode")
    output_stride = resolve_output_stride(backbone, mode, output_stride)
    if head is not None and mode != "dense":
        raise ValueError(f"head={head!r} needs mode='dense'; got mode={mode!r}")
    spec = zheads.get_head(head or backbone.default_head)
    options = dict(head_options or {})
    if aux_head:
        if mode != "dense" or "aux_head" not in spec.options:
            raise ValueError(
                f"aux_head=True needs mode='dense' and a head with an auxiliary output "
                f"(fcn, deeplabv3); got mode={mode!r}, head={spec.name!r}"
            )
        options["aux_head"] = True
    if input_shape is None and mode == "classify" and backbone.classify_input is None:
        input_shape = (None, None, in_channels)
    input_shape, act = resolve_mode(mode, input_shape, classifier_activation,
                                    backbone.classify_input or backbone.train_crop,
                                    modes=backbone.modes)
    if in_channels != 3:
        input_shape = tuple(input_shape[:2]) + (in_channels,)
    min_side = min_input_side(backbone, mode, output_stride)
    check_static_min(backbone, mode, input_shape, min_side)

    inputs = keras.Input(input_shape, name="input")
    x = inputs
    file_key = backbone.file_key(mode) if backbone.file_key else None
    if include_preprocessing:
        from zoo.preprocessing import preprocessing_layer

        x = preprocessing_layer(model_name, weights, preprocessing, file_key)(x)
    if min_side > 1:
        x = MinSize(min_side, name="min_size", mode=mode, model=backbone.name)(x)
    built = backbone.build(x, output_stride)
    stages = list(built.stages)
    last, last_stride = stages[-1]
    pyramid = make_pyramid(stages)
    if mode == "classify":
        outputs = backbone.classifier.classify(last, classes, act)
    elif mode == "heatmap":
        outputs = backbone.classifier.heatmap(last, classes, act)
    elif mode == "dense":
        ctx = HeadContext(
            backbone=backbone.name, output_stride=last_stride,
            strides={k: 2 ** int(k[1:]) for k in pyramid},
            channels={k: int(t.shape[-1]) for k, t in pyramid.items()},
            last=level_key(last_stride), aux=stages[-2][0] if len(stages) > 1 else last,
            extras=dict(backbone.head_extras),
        )
        outputs = _build_head(spec, pyramid, inputs, classes, ctx, options)
    else:
        outputs = dict(pyramid)
    if backbone.finish is not None:
        outputs = backbone.finish(outputs, built, mode, classes, act)
    model = keras.Model(inputs, outputs, name=name or backbone.name)
    weight_map = derive_weight_map(backbone, mode, spec, extra_ignore)
    if backbone.load is not None:
        return backbone.load(model, weights, weight_map, mode)
    return load_weights(model, weights, model_name, weight_map, file_key=file_key)


_SPECS = {}


def register_backbone(model_name, factory):
    """Records ``factory() -> Backbone`` for a registry name (``model_info``
    reads its pyramid and minimum input sizes)."""
    _SPECS[model_name] = factory


def backbone_spec(model_name):
    """The default-config :class:`Backbone` of a registry name."""
    return _SPECS[model_name]()


def min_input_table(model_name, output_stride=None):
    """``{mode: side}``: the smallest input side each mode of a registry name accepts.

    Args:
        model_name: registry name.
        output_stride: the builder's ``output_stride``; None (or one the
            backbone does not offer) takes each mode's default.

    Returns:
        A dict over exactly the modes the registry name's builder accepts
        (``fcn8s`` and ``deeplabv3_*`` share a backbone with classifiers but
        are dense-only).
    """
    from zoo.registry import get_entry

    spec = backbone_spec(model_name)
    modes = get_entry(model_name).modes
    table = {}
    for mode in (m for m in spec.modes if m in modes):
        os_ = resolve_output_stride(spec, mode, output_stride if output_stride in spec.output_strides
                                    else None)
        table[mode] = min_input_side(spec, mode, os_)
    return table

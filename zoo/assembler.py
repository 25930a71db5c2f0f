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
classifier's layers are ignored where the model does not have them. Ignoring
is only about layers the file has and the model does not: before anything is
written, :func:`zoo.weights.check_head` refuses a file whose dense head is not
the model's (``model.zoo["head"]``), naming both heads.
"""

import collections
import dataclasses
import math
from typing import Callable, Dict, Optional, Tuple

import keras
from keras import layers

from zoo import heads as zheads
from zoo.layers import MinSize, WindowConv2D
from zoo.registry import DEFAULT, MODES, check_choice, is_headless, resolve_mode
from zoo.weights import (HF_PREFIX, available_tags, is_weights_path, load_weights,
                         manifest_entry)
from zoo.weights.convert import WeightMap


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
        hidden_dropout: ``(name, rate)`` after each hidden layer in heatmap
            mode (FCN's drop6/drop7).
        score_init: the output layer's initializer in heatmap mode (FCN
            starts its score at zero).
    """

    kind: str
    names: Tuple[str, ...]
    pool: Optional[str] = None
    hidden: Tuple[int, ...] = ()
    window: int = 0
    dropout: Optional[Tuple[str, float]] = None
    flatten: str = "flatten"
    hidden_dropout: Tuple[Tuple[str, float], ...] = ()
    score_init: str = "glorot_uniform"

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
            drops = dict(enumerate(self.hidden_dropout))
            for i, (width, lname) in enumerate(zip(self.hidden, self.names[:-1])):
                if i == 0:
                    x = WindowConv2D(width, self.window, activation="relu", name=lname)(x)
                else:
                    x = layers.Conv2D(width, 1, activation="relu", name=lname)(x)
                if i in drops:
                    x = layers.Dropout(drops[i][1], name=drops[i][0])(x)
            return layers.Conv2D(classes, 1, activation=activation,
                                 kernel_initializer=self.score_init, name=self.names[-1])(x)
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
            ignore/optional lists from the built model's head record.
        head_extras: passed to heads as ``HeadContext.extras``.
        classify_input: None lets classify mode take any size (global
            pooling); else the classify-mode default side.
        finish: optional ``finish(outputs, stages, mode, classes, activation)
            -> outputs`` hook (GoogLeNet's auxiliary classifiers).
        classes: the default class count when the weights give none.
        layout: the published weight layout this build has (ResNet's
            ``"keras"``/``"torchvision"``), or None: a tag's files with
            another ``layout`` are not for it.
        layout_hints: ``{layout: "the builder option that builds it"}`` for
            messages when a file or tag has another layout.
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
    head_extras: Dict[str, object] = dataclasses.field(default_factory=dict)
    classify_input: Optional[int] = 224
    finish: Optional[Callable] = None
    classes: int = 1000
    layout: Optional[str] = None
    layout_hints: Dict[str, str] = dataclasses.field(default_factory=dict)

    def assemble(self, **kwargs):
        """:func:`assemble` on this backbone (the registry's generated
        builders call this, so the registry needs no import of this module)."""
        return assemble(self, **kwargs)

    def resolve_output_stride(self, mode, output_stride=None):
        """:func:`resolve_output_stride` on this backbone."""
        return resolve_output_stride(self, mode, output_stride)


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


def derive_weight_map(backbone, mode, head_layers=()):
    """The mode's weight map, from the built model's head record.

    Args:
        backbone: the :class:`Backbone`.
        mode: the built mode.
        head_layers: the weighted layers the built head owns (dense mode);
            a backbone checkpoint may lack them (they keep their initial
            values).

    Returns:
        ``backbone.weight_map`` with the head's layers optional, and the
        file layers of any registered head (and, headless, of the
        classifier) ignored when the model does not have them.
    """
    base = backbone.weight_map
    file_heads = tuple(p for name in zheads.list_heads() for p in zheads.get_head(name).layers)
    ignore = tuple(base.ignore) + file_heads
    optional = tuple(base.optional)
    if is_headless(mode):
        ignore += tuple(backbone.classifier.names)
    if mode == "dense":
        optional += tuple(head_layers)
    return dataclasses.replace(base, ignore=ignore, optional=optional)


def choose_file(backbone, tag, mode):
    """The one rule for which file of a published tag a build loads.

    A tag holds one file, or several under ``files``: those with another
    ``layout`` than the build's are not candidates, and of the rest a
    headless mode (dense, features) takes the ``*notop`` file and the others
    the ``*top`` one; a tag with one candidate uses it.

    Returns:
        The ``files`` key, or None for a one-file tag.

    Raises:
        ValueError: the tag has no file in the build's layout, naming the
            builder option that builds the published one.
    """
    entry = manifest_entry(backbone.name, tag)
    files = entry.get("files")
    if not files:
        return None
    keys = [k for k, f in files.items()
            if backbone.layout is None or f.get("layout", backbone.layout) == backbone.layout]
    if not keys:
        have = sorted({f.get("layout") for f in files.values()})
        hints = " or ".join(backbone.layout_hints.get(h, h) for h in have)
        raise ValueError(
            f"weights {tag!r} of {backbone.name} are published in the {', '.join(have)} "
            f"layout only; build the model with {hints} (it was built with {backbone.layout})")
    want = "notop" if is_headless(mode) else "top"
    for key in keys:
        if key.split("_")[-1] == want:
            return key
    return keys[0]


def file_key_for(backbone, weights, mode):
    """The file key of a build: a tag's by :func:`choose_file`; for a path or
    no weights, that of the model's default tag (``"imagenet"``, else its
    first), whose per-file preprocessing a path or random init follows.
    None when nothing is published (or the build's layout has no file)."""
    if weights is not None and not is_weights_path(weights, backbone.name) \
            and not str(weights).startswith(HF_PREFIX):
        return choose_file(backbone, weights, mode)
    tags = available_tags(backbone.name)
    if not tags:
        return None
    try:
        return choose_file(backbone, "imagenet" if "imagenet" in tags else tags[0], mode)
    except ValueError:
        return None


def tag_classes(backbone, weights, mode):
    """The class count a published tag gives ``mode``: the tag's own when it
    was trained with a head for this mode (a dense tag in dense mode, a
    classifier tag in classify/heatmap), else ``backbone.classes``."""
    if isinstance(weights, str) and weights in available_tags(backbone.name):
        entry = manifest_entry(backbone.name, weights)
        if (entry.get("mode") == "dense") == (mode == "dense") and mode != "features":
            return entry.get("classes", backbone.classes)
    return backbone.classes


@keras.saving.register_keras_serializable(package="zoo")
class ZooModel(keras.Model):
    """A functional model that records how the zoo built it.

    ``model.zoo`` is a dict: ``model`` (registry name), ``mode``, ``head``
    (the dense head's name, else None), ``head_layers`` (the weighted layers
    the head owns in dense mode, or the classifier's in classify/heatmap
    mode), ``classes`` and ``output_stride``. It survives ``.keras`` saving;
    ``freeze="backbone"``, ``zoo.training.train.prepare``, the weights
    loader and export read it.
    """

    def __init__(self, *args, zoo=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.zoo = dict(zoo or {})

    def get_config(self):
        config = super().get_config()
        config["zoo"] = dict(self.zoo)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        record = config.pop("zoo", {})
        model = super().from_config(config, custom_objects=custom_objects)
        model.zoo = dict(record)
        return model


def head_record(model):
    """A built model's head record (``model.zoo``), or None for a model the
    zoo did not build."""
    return getattr(model, "zoo", None) or None


def clone_model(model, **kwargs):
    """``keras.models.clone_model`` that keeps the zoo's head record.

    Keras rebuilds a functional subclass as ``cls(inputs, outputs,
    name=...)``, so its clone has an empty ``model.zoo`` and
    ``freeze="backbone"`` then refuses it. The clone keeps every layer's
    name (unless ``clone_function`` renames them), so the record still
    describes it.

    Args:
        model: a model the zoo built (or any Keras model: then this is
            ``keras.models.clone_model``).
        **kwargs: passed to ``keras.models.clone_model`` (``input_tensors``,
            ``clone_function``, ...).

    Returns:
        The clone, with fresh weights as Keras makes them, and a copy of
        ``model.zoo``.

    Raises:
        ValueError: the clone lacks a layer the record names as the head's
            (a ``clone_function`` renamed it): the record would be wrong.
    """
    clone = keras.models.clone_model(model, **kwargs)
    record = head_record(model)
    if record is None:
        return clone
    names = {layer.name for layer in clone.layers}
    missing = [name for name in record.get("head_layers", ()) if name not in names]
    if missing:
        raise ValueError(f"the clone of {model.name!r} has no layer {missing[0]!r} of its head record "
                         f"(renamed by clone_function?); the record cannot describe it")
    clone.zoo = dict(record)
    return clone


def _weighted_names(model):
    return [l.name for l in model.layers if l.weights]


def _build_head(spec, pyramid, inputs, classes, ctx, options):
    missing = [k for k in spec.needs if k != "last" and k not in pyramid]
    if missing:
        raise ValueError(
            f"head {spec.name!r} needs pyramid levels {', '.join(spec.needs)}; "
            f"{ctx.backbone} at output_stride={ctx.output_stride} has {ctx.describe()} "
            f"(a larger output_stride may provide them)"
        )
    return spec.build(pyramid, inputs, classes, ctx, **options)


def assemble(backbone, *, weights=None, mode="classify", input_shape=None, classes=None,
             classifier_activation=DEFAULT, name=None, output_stride=None, head=None,
             aux_head=False, in_channels=3, include_preprocessing=False, preprocessing=None,
             head_options=None, skip_mismatch=False):
    """Builds ``backbone`` in ``mode`` and loads ``weights``.

    Args:
        backbone: a :class:`Backbone`.
        weights: None, a published tag or a file path.
        mode: ``"classify"``, ``"heatmap"``, ``"dense"`` or ``"features"``.
        input_shape: ``(H, W, C)``; defaults per mode.
        classes: output classes; None takes :func:`tag_classes`.
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
        skip_mismatch: passed to :func:`zoo.weights.load_weights`: a file
            whose classifier has another class count loads everything else
            (False: such a file is refused). Builders pass it once the
            registry lists it among their options.

    Returns:
        A :class:`ZooModel`.
    """
    model_name = backbone.name
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive integer; got {in_channels!r}")
    check_choice(mode, backbone.modes, "mode")
    if classes is None:
        classes = tag_classes(backbone, weights, mode)
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
    file_key = file_key_for(backbone, weights, mode)
    if include_preprocessing:
        from zoo.preprocessing import preprocessing_layer

        layer = preprocessing_layer(model_name, weights, preprocessing, file_key)
        if in_channels != 3 and layer.spec.get("type", "torch") != "tf":
            raise ValueError(
                f"include_preprocessing=True with in_channels={in_channels}: the "
                f"{layer.spec.get('type', 'torch')} preprocessing record is per RGB channel; build "
                "with include_preprocessing=False and preprocess the input yourself")
        x = layer(x)
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
    model = ZooModel(inputs, outputs, name=name or backbone.name)
    owned = []
    if mode != "features":
        # The head (or classifier) owns the weighted layers that the
        # backbone's graph does not reach.
        body = {l.name for l in keras.Model(inputs, list(pyramid.values()) + [last]).layers}
        owned = [l.name for l in model.layers if l.weights and l.name not in body]
    model.zoo = {"model": model_name, "mode": mode, "head": spec.name if mode == "dense" else None,
                 "head_layers": owned, "classes": int(classes), "output_stride": int(last_stride)}
    weight_map = derive_weight_map(backbone, mode, owned if mode == "dense" else ())
    return load_weights(model, weights, model_name, weight_map, file_key=file_key,
                        skip_mismatch=skip_mismatch)


def backbone_spec(model_name):
    """The default-config :class:`Backbone` of a registry name."""
    from zoo.registry import get_entry

    return get_entry(model_name).backbone()


def min_input_table(model_name, output_stride=None):
    """``{mode: side}``: the smallest input side each mode of a registry name accepts.

    Args:
        model_name: registry name.
        output_stride: the builder's ``output_stride``; None (or one the
            backbone does not offer) takes each mode's default.

    Returns:
        A dict over exactly the modes the registry name's builder accepts.
    """
    spec = backbone_spec(model_name)
    table = {}
    for mode in spec.modes:
        os_ = resolve_output_stride(spec, mode, output_stride if output_stride in spec.output_strides
                                    else None)
        table[mode] = min_input_side(spec, mode, os_)
    return table

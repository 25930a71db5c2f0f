"""The model registry: one record per public model name, and the rules every
builder shares.

A family registers each model once with :func:`register_model`: its name, its
spec factory (``spec(**options) -> zoo.assembler.Backbone``), the public
builder's name and summary, and any family options. Everything else is
derived from the spec and ``zoo/weights/manifest.json``: the modes, output
strides, minimum inputs, default head and published tags. The public builder
(``zoo.VGG16``, ``zoo.DRN_D_22`` ...) is generated from the record, with its
name, signature and docstring; ``zoo.create_model(name)`` calls the same
function.

Family modules in :mod:`zoo.models` and heads in :mod:`zoo.heads` are
discovered with :mod:`pkgutil`, so a new family or head is one file. This
module imports no Keras (the CLI's listing commands read it without
TensorFlow); the families load on the first lookup.
"""

import dataclasses
import fnmatch
import functools
import importlib
import inspect
import pkgutil
from typing import Callable, Optional, Tuple

MODES = ("classify", "heatmap", "dense", "features")
DEFAULT = "default"


def check_choice(value, choices, what):
    """Raises a ValueError listing ``choices`` when ``value`` is not one of them."""
    if value not in choices:
        raise ValueError(
            f"unknown {what} {value!r}; valid choices: {', '.join(map(str, choices))}"
        )
    return value


def resolve_mode(mode, input_shape, classifier_activation, classify_size=224, modes=MODES):
    """Checks ``mode`` and fills the defaults every builder shares.

    Args:
        mode: one of ``modes``.
        input_shape: user value or None.
        classifier_activation: user value, or ``"default"``.
        classify_size: side of the training crop; classify mode defaults to it.
        modes: the modes this family accepts.

    Returns:
        ``(input_shape, classifier_activation)``. Classify mode defaults to the
        training crop (its Flatten or pooling needs a fixed size); the others
        accept any size. Dense and features modes never apply an activation.
    """
    check_choice(mode, modes, "mode")
    if input_shape is None:
        if mode == "classify":
            input_shape = (classify_size, classify_size, 3)
        else:
            input_shape = (None, None, 3)
    if classifier_activation == DEFAULT:
        classifier_activation = "softmax" if mode in ("classify", "heatmap") else None
    if is_headless(mode):
        classifier_activation = None
    return tuple(input_shape), classifier_activation


# The assembler's arguments every generated builder takes, keyword-only.
COMMON_KWARGS = (("output_stride", None), ("head", None), ("head_options", None), ("aux_head", False),
                 ("in_channels", 3), ("include_preprocessing", False), ("preprocessing", None),
                 ("skip_mismatch", False))
HEADLESS_MODES = ("dense", "features")


def is_headless(mode):
    """The one rule for files: dense and features modes have no classifier,
    so they take a tag's no-top file and ignore a file's classifier."""
    return mode in HEADLESS_MODES


@dataclasses.dataclass(frozen=True)
class Option:
    """A family-specific builder argument, passed to the spec factory.

    Attributes:
        name: the keyword (``"stride_in_1x1"``).
        default: its default.
        doc: its ``Args:`` text for the generated docstring.
    """

    name: str
    default: object
    doc: str


@dataclasses.dataclass(frozen=True)
class ModelRecord:
    """What the registry knows about one public model name.

    Attributes:
        name: registry name, e.g. ``"vgg16"``.
        family: family name for listings (``"vgg"``, ``"fcn"``, ``"drn"``).
        spec: ``spec(**options) -> zoo.assembler.Backbone``; a factory that
            also takes ``weights`` receives the builder's ``weights``.
        builder_name: the public builder's name (``"VGG16"``).
        summary: the builder docstring's first line.
        options: family options (:class:`Option`) the builder takes.
        info_hook: optional ``f(model, input_size, per_layer_macs) -> dict``
            adding family facts to ``zoo.model_info``.
        module: the defining module (for the builder's ``__module__``).
    """

    name: str
    family: str
    spec: Callable
    builder_name: str
    summary: str
    options: Tuple[Option, ...] = ()
    info_hook: Optional[Callable] = None
    module: str = "zoo"

    def backbone(self, **options):
        """The :class:`zoo.assembler.Backbone` for ``options`` (defaults if none)."""
        if not options:
            return _default_backbone(self.name)
        return self.spec(**options)

    @property
    def modes(self):
        """The modes the model accepts (the spec's)."""
        return self.backbone().modes

    @property
    def default_mode(self):
        """The builder's default mode: the spec's first."""
        return self.modes[0]

    @property
    def info_mode(self):
        """The mode ``model_info`` counts in: classify, unless its classifier
        needs a fixed input (VGG's Flatten: then heatmap), or the model has
        no classifier (its first mode)."""
        bb = self.backbone()
        if "classify" not in bb.modes:
            return bb.modes[0]
        if bb.classifier.kind == "flatten_fc" and "heatmap" in bb.modes:
            return "heatmap"
        return "classify"

    @property
    def output_stride(self):
        """The output stride of the info mode at its default."""
        return self.backbone().resolve_output_stride(self.info_mode)

    @property
    def builder(self):
        """The generated public builder."""
        return _BUILDERS[self.name]


_REGISTRY = {}
_BUILDERS = {}


@functools.lru_cache(maxsize=None)
def _default_backbone(name):
    return _REGISTRY[name].spec()


def register_model(name, *, family, spec, builder_name, summary, options=(), info_hook=None,
                   module="zoo"):
    """Adds a model to the registry and generates its public builder.

    Args:
        name: lower-case registry name.
        family: family name, used in listings.
        spec: ``spec(**options) -> Backbone`` (see :class:`ModelRecord`).
        builder_name: the public builder's name.
        summary: one line for the builder's docstring.
        options: family options, :class:`Option` records.
        info_hook: see :class:`ModelRecord`.
        module: the family module's name, shown as the builder's ``__module__``.

    Returns:
        The generated builder.
    """
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    record = ModelRecord(name=name, family=family, spec=spec, builder_name=builder_name,
                         summary=summary, options=tuple(options), info_hook=info_hook,
                         module=module)
    _REGISTRY[name] = record
    _default_backbone.cache_clear()
    _BUILDERS[name] = make_builder(record)
    return _BUILDERS[name]


def unregister_model(name):
    """Removes a model (tests that register throwaway configs clean up with it)."""
    _REGISTRY.pop(name, None)
    _BUILDERS.pop(name, None)
    _default_backbone.cache_clear()


_COMMON_DOCS = {
    "output_stride": "stride of the last stage; later stages dilate instead of striding. "
                     "None takes the model's default for the mode.",
    "head": "dense mode's head (``zoo.heads.list_heads()``); None takes the model's default.",
    "head_options": "further keyword options of the head (a dict).",
    "aux_head": "dense mode: also build the head's auxiliary output (fcn, deeplabv3); "
                "the model then returns ``{\"out\", \"aux\"}``.",
    "in_channels": "input channels; a pretrained RGB stem kernel is adapted.",
    "include_preprocessing": "put the weights' preprocessing layer first (raw 0-255 RGB in).",
    "preprocessing": "an explicit preprocessing record for that layer.",
    "skip_mismatch": "load a file whose classifier or head has another class count, leaving "
                     "those layers at their initial values (a warning says which); without it "
                     "that is an error and nothing loads.",
}


def _docstring(record, backbone):
    modes = ", ".join(f"``{m!r}``" for m in backbone.modes)
    strides = ", ".join(map(str, backbone.output_strides))
    lines = [
        record.summary,
        "",
        f"Generated from the registry record of ``{record.name}``; the same as "
        f"``zoo.create_model({record.name!r}, ...)``.",
        "",
        "Args:",
        "    weights: None, a published tag (``zoo.weights.available_tags"
        f"({record.name!r})``) or a file path (Keras ``.weights.h5``/``.keras``, "
        "keras.applications ``.h5``, PyTorch ``.pth``, ``.safetensors``), detected by content.",
        f"    mode: one of {modes}.",
        "    input_shape: ``(H, W, C)``; classify defaults to the training crop "
        "where its classifier needs one, the other modes to ``(None, None, C)``.",
        f"    classes: output classes; None takes the published tag's count for this "
        f"mode, else {backbone.classes}.",
        "    classifier_activation: ``\"softmax\"`` by default in classify and heatmap "
        "modes; None gives logits. Dense and features modes never apply one.",
        "    name: the Keras model's name.",
    ]
    for key, _ in COMMON_KWARGS:
        text = _COMMON_DOCS[key]
        if key == "output_stride":
            text += f" Valid: {strides}."
        if key == "head":
            text = text.replace("the model's default", f"``{backbone.default_head!r}``")
        lines.append(f"    {key}: {text}")
    for opt in record.options:
        lines.append(f"    {opt.name}: {opt.doc}")
    lines += ["", "Returns:", "    A ``keras.Model`` (a ``zoo.assembler.ZooModel`` that records its head)."]
    return "\n".join(lines)


def make_builder(record):
    """The public builder function of a record: name, signature and docstring
    from the record; the body is the assembler.

    Args:
        record: a :class:`ModelRecord`.

    Returns:
        A function ``builder(weights=None, mode=..., ...) -> keras.Model``.
    """
    P = inspect.Parameter
    backbone = record.spec()
    params = [P("weights", P.POSITIONAL_OR_KEYWORD, default=None),
              P("mode", P.POSITIONAL_OR_KEYWORD, default=backbone.modes[0]),
              P("input_shape", P.POSITIONAL_OR_KEYWORD, default=None),
              P("classes", P.POSITIONAL_OR_KEYWORD, default=None),
              P("classifier_activation", P.POSITIONAL_OR_KEYWORD, default=DEFAULT),
              P("name", P.POSITIONAL_OR_KEYWORD, default=None)]
    params += [P(key, P.KEYWORD_ONLY, default=default) for key, default in COMMON_KWARGS]
    params += [P(opt.name, P.KEYWORD_ONLY, default=opt.default) for opt in record.options]
    signature = inspect.Signature(params)
    spec_takes_weights = "weights" in inspect.signature(record.spec).parameters
    option_names = tuple(opt.name for opt in record.options)

    def builder(*args, **kwargs):
        values = signature.bind(*args, **kwargs)
        values.apply_defaults()
        values = dict(values.arguments)
        options = {k: values.pop(k) for k in option_names}
        if spec_takes_weights:
            options["weights"] = values["weights"]
        return record.spec(**options).assemble(**values)

    builder.__name__ = builder.__qualname__ = record.builder_name
    builder.__module__ = record.module
    builder.__signature__ = signature
    builder.__doc__ = _docstring(record, backbone)
    return builder


# ------------------------------------------------------------ discovery

_LOADED = []


def discover(package="zoo.models"):
    """Imports every module of ``package`` (its ``__path__``), so that each
    family or head registers itself. Idempotent.

    Args:
        package: ``"zoo.models"`` or ``"zoo.heads"`` (or a package whose
            ``__path__`` was extended with more folders).

    Returns:
        The names of the modules imported.
    """
    pkg = importlib.import_module(package)
    names = []
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("_"):
            continue
        importlib.import_module(f"{package}.{info.name}")
        names.append(info.name)
    return names


def _ensure_loaded():
    if not _LOADED:
        _LOADED.append(True)
        discover("zoo.heads")
        discover("zoo.models")


def records():
    """Every :class:`ModelRecord`, sorted by name."""
    _ensure_loaded()
    return [_REGISTRY[n] for n in sorted(_REGISTRY)]


def builders():
    """``{builder_name: builder}`` for every registered model (the ``zoo``
    namespace exports these)."""
    return {r.builder_name: r.builder for r in records()}


def list_models(pattern=None):
    """Returns the sorted registered model names.

    Args:
        pattern: optional shell-style pattern such as ``"drn_d_*"``.

    Returns:
        A sorted list of names.
    """
    _ensure_loaded()
    names = sorted(_REGISTRY)
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    return names


def get_entry(name):
    """Returns the :class:`ModelRecord` for ``name`` or raises a ValueError
    listing the valid names."""
    _ensure_loaded()
    key = name.lower() if isinstance(name, str) else name
    if key not in _REGISTRY:
        raise ValueError(
            f"unknown model {name!r}; valid names: {', '.join(list_models())}"
        )
    return _REGISTRY[key]


get_record = get_entry


def create_model(name, **kwargs):
    """Builds a registered model.

    Args:
        name: a name from :func:`list_models`.
        **kwargs: the builder's arguments (``weights``, ``mode``,
            ``input_shape``, ``classes``, ``classifier_activation``, ``name``,
            the common keyword arguments and the family's options).

    Returns:
        A ``keras.Model``.
    """
    return get_entry(name).builder(**kwargs)

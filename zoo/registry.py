"""The model registry: one entry per public model name.

Families register their named builders with :func:`register_model`. The
registry is what ``zoo.list_models``, ``zoo.create_model``, ``zoo.model_info``
and the CLI read, so a family needs no other wiring.
"""

import dataclasses
import fnmatch
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
    if mode in ("dense", "features"):
        classifier_activation = None
    return tuple(input_shape), classifier_activation


COMMON_KWARGS = (("output_stride", None), ("head", None), ("aux_head", False), ("in_channels", 3),
                 ("include_preprocessing", False), ("preprocessing", None))


def with_common_kwargs(builder):
    """Shows the assembler's common arguments in ``builder``'s signature.

    Builders pass them through ``**kwargs``; listing them keeps
    ``inspect.signature`` (the CLI, apps and docs read it) truthful.
    """
    import inspect

    sig = inspect.signature(builder)
    params = [p for p in sig.parameters.values() if p.kind != p.VAR_KEYWORD]
    have = {p.name for p in params}
    params += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d)
               for n, d in COMMON_KWARGS if n not in have]
    builder.__signature__ = sig.replace(parameters=params)
    return builder



@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """What the registry knows about one public model name.

    Attributes:
        name: registry name, e.g. ``"vgg16"``.
        builder: the public builder, e.g. ``zoo.VGG16``.
        family: family module name, e.g. ``"vgg"``.
        output_stride: stride of the final feature map in the default config.
        modes: the modes the builder accepts.
        info_mode: the mode ``model_info`` builds to count parameters and
            FLOPs (one that accepts any input size).
        info_hook: optional ``f(model, input_size) -> dict`` adding
            family-specific facts to ``model_info`` (e.g. Inception savings).
    """

    name: str
    builder: Callable
    family: str
    output_stride: int = 32
    modes: Tuple[str, ...] = MODES
    info_mode: str = "classify"
    info_hook: Optional[Callable] = None


_REGISTRY = {}


def register_model(name, builder, family, **kwargs):
    """Adds a named builder to the registry.

    Args:
        name: lower-case registry name.
        builder: callable returning a ``keras.Model``.
        family: family name, used in listings.
        **kwargs: further :class:`ModelEntry` fields.

    Returns:
        The builder, so this can be used inline.
    """
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    with_common_kwargs(builder)
    _REGISTRY[name] = ModelEntry(name=name, builder=builder, family=family, **kwargs)
    return builder


def list_models(pattern=None):
    """Returns the sorted registered model names.

    Args:
        pattern: optional shell-style pattern such as ``"drn_d_*"``.

    Returns:
        A sorted list of names.
    """
    names = sorted(_REGISTRY)
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    return names


def get_entry(name):
    """Returns the :class:`ModelEntry` for ``name`` or raises a ValueError
    listing the valid names."""
    key = name.lower() if isinstance(name, str) else name
    if key not in _REGISTRY:
        raise ValueError(
            f"unknown model {name!r}; valid names: {', '.join(list_models())}"
        )
    return _REGISTRY[key]


def create_model(name, **kwargs):
    """Builds a registered model.

    Args:
        name: a name from :func:`list_models`.
        **kwargs: passed to the builder (``weights``, ``mode``,
            ``input_shape``, ``classes``, ``classifier_activation``, ``name``
            and family-specific arguments).

    Returns:
        A ``keras.Model``.
    """
    return get_entry(name).builder(**kwargs)

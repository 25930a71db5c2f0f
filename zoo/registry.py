"""The model registry: one entry per public model name.

Families register their named builders with :func:`register_model`. The
registry is what ``zoo.list_models``, ``zoo.create_model``, ``zoo.model_info``
and the CLI read, so a family needs no other wiring.
"""

import dataclasses
import fnmatch
from typing import Callable, Optional, Tuple

MODES = ("classify", "heatmap", "dense", "features")


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
    from zoo.assembler import with_common_kwargs

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

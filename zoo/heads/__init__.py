"""Dense heads over a backbone's feature pyramid, chosen by name.

A head is a function that reads levels of the stride-keyed pyramid a backbone
returns and produces per-pixel logits at the input's size. Heads register
themselves here with :func:`register_head`; the assembler looks them up by
the ``head=`` argument of ``mode="dense"``.

Pyramid contract (every backbone): an ordered dict ``{"P1": t, "P2": t, ...}``
where level ``Pk`` has stride ``2**k`` (``P0`` for stride 1). Dilated stages
keep the key of the stride they have; when several stages share a stride the
level is the deepest of them.
"""

import dataclasses
from typing import Callable, Optional, Tuple

_HEADS = {}


@dataclasses.dataclass(frozen=True)
class HeadSpec:
    """What the assembler needs to know about one head.

    Attributes:
        name: the ``head=`` value, e.g. ``"deeplabv3"``.
        build: ``build(pyramid, inputs, classes, context, **options) -> logits``
            (or ``{"out": ..., "aux": ...}``) at the input's size. ``context``
            is the assembler's :class:`zoo.assembler.HeadContext` (backbone
            name, its output stride, level strides/channels, and any
            backbone-specific alignment data).
        needs: pyramid keys the head reads (``("P5",)``, ``("P5", "P4",
            "P3")``); the special key ``"last"`` means the backbone's final
            level, whatever its stride.
        layers: fnmatch patterns of the head's weighted layer names as
            they appear in a *file*: a checkpoint of a model with this head
            may hold them, and another mode's build ignores them there. (A
            built model knows its own head's layers from its record,
            ``model.zoo["head_layers"]``.)
        options: names of extra keyword options the head accepts (e.g.
            ``("aux_head",)``).
        output_stride: the backbone output stride the head must be built
            at (the FCN skip heads read P5: 32; DRNSeg's fixed x8 up: 8), or
            None when any stride works. Tables and benchmarks that put every
            head on a backbone read it here.
    """

    name: str
    build: Callable
    needs: Tuple[str, ...]
    layers: Tuple[str, ...]
    options: Tuple[str, ...] = ()
    output_stride: Optional[int] = None


def register_head(name, build, needs, layers, options=(), output_stride=None):
    """Adds a head to the registry; returns ``build`` so it can decorate."""
    if name in _HEADS:
        raise ValueError(f"head {name!r} is already registered")
    _HEADS[name] = HeadSpec(name, build, tuple(needs), tuple(layers), tuple(options), output_stride)
    return build


def get_head(name):
    """Returns the :class:`HeadSpec` for ``name``, or a ValueError listing the heads."""
    if name not in _HEADS:
        raise ValueError(f"unknown head {name!r}; valid heads: {', '.join(list_heads())}")
    return _HEADS[name]


def list_heads():
    """Sorted names of the registered heads."""
    return sorted(_HEADS)


def _discover():
    # Every module in this folder is a head that registers itself on import,
    # so a new head is one file.
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


_discover()
